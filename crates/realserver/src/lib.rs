//! Prepares a Linux real server for the LVS director's DR and Tun forwarding methods.
//!
//! * DR: the VIP goes on `lo` as a /32 and the ARP sysctls (`arp_ignore=1`, `arp_announce=2`)
//!   stop the real server from answering or advertising the VIP on the shared segment.
//! * Tun: where the kernel has `ipip`, `tunl0` holds the VIP; where it does not (this project's
//!   machines), [`decap`] + [`run_decapsulator`] bring a user-space decapsulator: a raw
//!   `IPPROTO_IPIP` socket receives the tunnelled packets and the inner packets are written into
//!   a TUN device, from where the kernel delivers them to the VIP on `lo`.
//!
//! Everything this crate changes is recorded in a [`state::State`] file so that `teardown`
//! can undo it. Network configuration shells out to iproute2 (`ip`), which every target has;
//! sysctls are written through `/proc/sys` directly.
#![forbid(unsafe_code)]

pub mod decap;
pub mod state;
pub mod sysctl;

use std::io::{ErrorKind, Read};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::state::State;

/// Default name of the TUN device used by the user-space decapsulator.
pub const DEFAULT_TUN_NAME: &str = "lvsdecap0";

/// Forwarding method the real server is prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Direct routing: VIP on `lo`, ARP sysctls.
    Dr,
    /// IP-in-IP tunnelling: `tunl0` or the user-space decapsulator, VIP, ARP and rp_filter sysctls.
    Tun,
}

impl Method {
    /// Name as written in the state file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Dr => "dr",
            Method::Tun => "tun",
        }
    }
}

/// Runs `ip ARGS`; fails with `ip`'s stderr unless it contains one of `tolerated`.
/// Returns whether the command succeeded (false when a tolerated error occurred).
pub fn ip(args: &[&str], tolerated: &[&str]) -> Result<bool> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2): is it installed and on PATH?")?;
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if tolerated.iter().any(|t| err.contains(t)) {
        return Ok(false);
    }
    bail!("`ip {}` failed: {}", args.join(" "), err.trim())
}

/// Fails with a clear message unless the effective user is root.
pub fn require_root() -> Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        bail!("lvs-realserver must run as root (it changes addresses and sysctls)");
    }
    Ok(())
}

/// Whether the kernel has the `ipip` module usable in this namespace (tries `modprobe ipip`).
pub fn kernel_has_ipip() -> bool {
    let present = || Path::new("/sys/class/net/tunl0").exists();
    if present() {
        return true;
    }
    // modprobe may be missing or fail (no module): both just mean "no".
    let _ = Command::new("modprobe").arg("ipip").output();
    present()
}

/// Sets `arp_ignore=1` and `arp_announce=2` on `all` and on every interface (lo included).
fn arp_sysctls(st: &mut State) -> Result<()> {
    for (key, val) in [("arp_ignore", "1"), ("arp_announce", "2")] {
        for iface in sysctl::ipv4_conf_interfaces()? {
            if iface == "default" {
                continue;
            }
            st.set_sysctl(&sysctl::ipv4_conf_path(&iface, key), val)?;
        }
    }
    Ok(())
}

/// Adds `vip/32` to `lo` (idempotent) and brings `lo` up.
fn vip_on_lo(vip: Ipv4Addr, st: &mut State) -> Result<()> {
    ip(&["link", "set", "lo", "up"], &[])?;
    ip(
        &["addr", "add", &format!("{vip}/32"), "dev", "lo"],
        &["File exists", "already assigned"],
    )?;
    st.vip_on_lo = true;
    Ok(())
}

/// Whether `vip/32` is on `lo` in this namespace.
fn vip_is_on_lo(vip: Ipv4Addr) -> bool {
    Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {vip}/32 ")))
}

/// The state file of this namespace, unless it is stale: state files are named after the
/// namespace's inode, which the kernel reuses once a namespace is gone, so a file that says
/// the VIP is on `lo` when it is not belongs to an earlier namespace and is ignored.
fn current_state() -> Result<State> {
    let st = State::load()?;
    match st.vip {
        Some(old) if st.vip_on_lo && !vip_is_on_lo(old) => {
            eprintln!(
                "lvs-realserver: ignoring stale state {} (VIP {old} is not on lo here)",
                State::path()?.display()
            );
            Ok(State::default())
        }
        _ => Ok(st),
    }
}

/// Loads the state for this namespace and checks it is compatible with `vip`.
fn load_for(vip: Ipv4Addr) -> Result<State> {
    let st = current_state()?;
    if let Some(old) = st.vip
        && old != vip
    {
        bail!(
            "this network namespace is already set up for VIP {old} (state file {}); \
             run `lvs-realserver teardown --vip {old}` first",
            State::path()?.display()
        );
    }
    if let Some(pid) = st.live_decap_pid() {
        bail!("a decapsulator (pid {pid}) is already running for VIP {vip}; stop it first");
    }
    Ok(st)
}

/// DR setup: VIP on `lo`, ARP sysctls. Idempotent.
pub fn setup_dr(vip: Ipv4Addr) -> Result<()> {
    let mut st = load_for(vip)?;
    st.vip = Some(vip);
    st.method = Some(Method::Dr);
    let res = arp_sysctls(&mut st).and_then(|()| vip_on_lo(vip, &mut st));
    st.save()?;
    res
}

/// Tun setup with the kernel's `tunl0`: VIP on `tunl0`, rp_filter 0, ARP sysctls. Idempotent.
pub fn setup_tun_kernel(vip: Ipv4Addr) -> Result<()> {
    let mut st = load_for(vip)?;
    st.vip = Some(vip);
    st.method = Some(Method::Tun);
    let res = (|| {
        arp_sysctls(&mut st)?;
        ip(&["link", "set", "lo", "up"], &[])?;
        ip(
            &["addr", "add", &format!("{vip}/32"), "dev", "tunl0"],
            &["File exists", "already assigned"],
        )?;
        st.tunl0 = true;
        ip(&["link", "set", "tunl0", "up"], &[])?;
        st.set_sysctl(&sysctl::ipv4_conf_path("all", "rp_filter"), "0")?;
        st.set_sysctl(&sysctl::ipv4_conf_path("tunl0", "rp_filter"), "0")?;
        Ok(())
    })();
    st.save()?;
    res
}

/// Tun setup without kernel `ipip`: prepares VIP, sysctls and the TUN device, then runs the
/// user-space decapsulator until SIGTERM/SIGINT, then undoes everything. Returns the counters.
pub fn run_decapsulator(vip: Ipv4Addr, tun_name: &str) -> Result<decap::Counters> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    let mut st = load_for(vip)?;
    st.vip = Some(vip);
    st.method = Some(Method::Tun);
    st.decap_pid = Some(std::process::id());
    st.tun_dev = Some(tun_name.to_string());
    st.save()?;
    let result = decap_inner(vip, tun_name, &mut st, &stop);
    st.save()?;
    let undo = teardown_with(&mut st);
    let counters = result?;
    undo?;
    Ok(counters)
}

fn decap_inner(
    vip: Ipv4Addr,
    tun_name: &str,
    st: &mut State,
    stop: &AtomicBool,
) -> Result<decap::Counters> {
    use socket2::{Domain, Protocol, Socket, Type};

    arp_sysctls(st)?;
    vip_on_lo(vip, st)?;
    // The raw socket only tells the kernel that protocol 4 is handled here (no "protocol
    // unreachable" back to the director); it is emptied and ignored. Packets are read from
    // AF_PACKET instead, whose offload header says when a checksum was left partial or a
    // frame is a super-frame (what a director's kernel fast path forwards from a local
    // stack): the raw socket would hand those over unfinished.
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(decap::IPPROTO_IPIP))),
    )
    .context("opening a raw IPPROTO_IPIP socket (needs root / CAP_NET_RAW)")?;
    sock.set_nonblocking(true)?;
    let mut taps = Vec::new();
    for i in lvs_io::iface::interfaces().context("listing interfaces")? {
        let tap = lvs_io::AfPacket::open(i.index, &lvs_io::AfPacketConfig::default())
            .with_context(|| format!("opening an AF_PACKET socket on {}", i.name))?;
        taps.push(tap);
    }
    if taps.is_empty() {
        bail!("no interface to receive tunnelled packets on");
    }
    let tun = tun_rs::DeviceBuilder::new()
        .name(tun_name)
        .layer(tun_rs::Layer::L3)
        .packet_information(false)
        .build_sync()
        .with_context(|| format!("creating TUN device {tun_name} (is /dev/net/tun available?)"))?;
    ip(&["link", "set", tun_name, "up"], &[])?;
    st.set_sysctl(&sysctl::ipv4_conf_path("all", "rp_filter"), "0")?;
    // The TUN device disappears with us: nothing to restore for its own sysctl.
    sysctl::write(&sysctl::ipv4_conf_path(tun_name, "rp_filter"), "0")?;
    st.save()?;
    eprintln!(
        "lvs-realserver: decapsulating IPIP for VIP {vip} into {tun_name}; Ctrl-C or SIGTERM to stop"
    );

    let mut counters = decap::Counters::default();
    let mut sink = vec![0u8; 65536];
    let mut arena = vec![0u8; 256 * 1024];
    let mut segs = vec![lvs_io::gso::Segment::default(); 64];
    let wait = Duration::from_millis(200 / taps.len().max(1) as u64);
    while !stop.load(Ordering::Relaxed) {
        while (&sock).read(&mut sink).is_ok() {}
        for tap in &mut taps {
            use lvs_io::PacketIo;
            let res = tap.rx_batch(wait, |mut frame, _| {
                deliver(&mut frame, vip, &tun, &mut counters, &mut arena, &mut segs);
            });
            match res {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {}
                Err(e) => return Err(e).context("receiving tunnelled packets"),
            }
        }
    }
    drop(tun);
    Ok(counters)
}

/// Decapsulate one received frame into the TUN device if it is IP-in-IP for `vip`: partial
/// checksums are finished and TCP super-frames cut into segments first (nothing after us
/// would do either). Other frames are not ours and are left alone.
fn deliver(
    frame: &mut lvs_io::RxFrame<'_>,
    vip: Ipv4Addr,
    tun: &tun_rs::SyncDevice,
    counters: &mut decap::Counters,
    arena: &mut [u8],
    segs: &mut [lvs_io::gso::Segment],
) {
    use lvs_io::backend::{VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4};
    const ETH: usize = 14;
    const PACKET_HOST: u8 = 0;
    let (vnet, partial) = (frame.vnet, frame.csum_not_ready || frame.vnet.needs_csum());
    if frame.pkt_type != PACKET_HOST {
        return;
    }
    let f = frame.frame_mut();
    let is_ipip =
        f.len() >= ETH + 20 && f[12..14] == [0x08, 0x00] && f[ETH + 9] == decap::IPPROTO_IPIP;
    if !is_ipip {
        return;
    }
    counters.received += 1;
    let outer = &mut f[ETH..];
    let r = match decap::inner_range(outer, vip) {
        Ok(r) => r,
        Err(reason) => return counters.drop(reason),
    };
    let inner_at = ETH + r.start;
    let inner = &mut outer[r];
    if vnet.gso_type != VNET_GSO_NONE {
        if vnet.gso_type & !VNET_GSO_ECN != VNET_GSO_TCPV4 {
            return counters.drop(decap::DropReason::GsoUnsupported);
        }
        let n = match lvs_io::gso::segment_tcp_ipv4(
            inner,
            0,
            usize::from(vnet.gso_size),
            0,
            arena,
            segs,
        ) {
            Ok(n) => n,
            Err(_) => return counters.drop(decap::DropReason::GsoUnsupported),
        };
        counters.super_frames += 1;
        for s in segs.iter().take(n) {
            match tun.send(&arena[s.start..s.start + s.len]) {
                Ok(_) => counters.delivered += 1,
                Err(_) => counters.drop(decap::DropReason::TunWrite),
            }
        }
        return;
    }
    if partial {
        let Some(start) = usize::from(vnet.csum_start).checked_sub(inner_at) else {
            return counters.drop(decap::DropReason::BadOffload);
        };
        if !vnet.needs_csum() {
            return counters.drop(decap::DropReason::BadOffload);
        }
        if let Err(reason) = decap::finish_checksum(inner, start, usize::from(vnet.csum_offset)) {
            return counters.drop(reason);
        }
        counters.checksums_finished += 1;
    }
    match tun.send(inner) {
        Ok(_) => counters.delivered += 1,
        Err(_) => counters.drop(decap::DropReason::TunWrite),
    }
}

/// Undoes what the recorded state says was set up in this namespace.
fn teardown_with(st: &mut State) -> Result<()> {
    let mut errors = Vec::new();
    if let Some(vip) = st.vip {
        let cidr = format!("{vip}/32");
        if let Err(e) = ip(
            &["addr", "del", &cidr, "dev", "lo"],
            &["Cannot assign", "not found"],
        ) {
            errors.push(e.to_string());
        }
        if (st.tunl0 || Path::new("/sys/class/net/tunl0").exists())
            && let Err(e) = ip(
                &["addr", "del", &cidr, "dev", "tunl0"],
                &["Cannot assign", "not found", "Cannot find"],
            )
        {
            errors.push(e.to_string());
        }
    }
    if let Some(dev) = &st.tun_dev
        && Path::new("/sys/class/net").join(dev).exists()
        && let Err(e) = ip(&["link", "del", dev], &["Cannot find"])
    {
        errors.push(e.to_string());
    }
    for (path, old) in std::mem::take(&mut st.saved) {
        // Interfaces may have gone away since: nothing to restore then.
        if Path::new(&path).exists()
            && let Err(e) = sysctl::write(&path, &old)
        {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        State::remove()?;
        Ok(())
    } else {
        st.save()?;
        bail!("teardown incomplete: {}", errors.join("; "))
    }
}

/// Removes the VIP, tunl0 address / TUN device and restores saved sysctls.
/// Fails if a decapsulator recorded in the state is still running.
pub fn teardown(vip: Ipv4Addr) -> Result<()> {
    let mut st = current_state()?;
    if let Some(pid) = st.live_decap_pid() {
        bail!(
            "the decapsulator (pid {pid}) is still running; stop it with `kill -TERM {pid}` \
             (it tears down by itself)"
        );
    }
    if let Some(old) = st.vip
        && old != vip
    {
        bail!("this namespace was set up for VIP {old}, not {vip}; run `teardown --vip {old}`");
    }
    if st.vip.is_none() {
        eprintln!(
            "lvs-realserver: no saved state for this namespace; removing VIP {vip} only \
             (sysctls are left as they are)"
        );
        st.vip = Some(vip);
    }
    teardown_with(&mut st)
}
