//! Kernel steering: make the kernel ignore what lvsd forwards, and nothing else.
//!
//! lvsd taps every frame with AF_PACKET (`ETH_P_ALL`), which sees a frame before the
//! nftables `netdev ingress` hook does. An ingress `drop` for exactly the traffic lvsd
//! forwards therefore takes it away from the kernel (no RST from the director for VIP:port,
//! no second copy of a NAT reply forwarded by the kernel) while ARP for the VIP, ping, ssh
//! and the box's own traffic go on as before.
//!
//! Everything lives in one table, `netdev lvsd`, replaced atomically by `nft -f -` on every
//! change and deleted on stop; a stale table left by a crash is replaced at the next start.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use lvs_core::Director;
use lvs_core::types::{ForwardMethod, Protocol, ServiceKey};

/// Name of the nftables table lvsd owns.
pub const TABLE: &str = "lvsd";

/// What must be taken from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// `(proto, VIP, port)` of every address service (port 0 = all ports), and of every
    /// deleted one whose connections have not ended.
    pub services: BTreeSet<(Protocol, IpAddr, u16)>,
    /// `(proto, RIP, port)` of every NAT real server, and of every removed one whose
    /// connections have not ended: its replies are lvsd's to rewrite.
    pub nat_replies: BTreeSet<(Protocol, IpAddr, u16)>,
    /// The director's own addresses: replies addressed to them (health checks) stay the kernel's.
    pub local: BTreeSet<IpAddr>,
}

impl Spec {
    /// What the director's current service table needs, lingering connections included: a
    /// real server removed (`-d`, a reload, a failed health check) or a service deleted
    /// (`-D`) keeps its entries while the core still forwards connections of it, as IPVS
    /// does (`expire_nodest_conn=0`); otherwise the kernel would see its packets and reset
    /// them. While a deleted service lingers, a new connection to it is dropped here
    /// (not refused by the kernel) until its last connection ends.
    pub fn of(d: &Director, local: &BTreeSet<IpAddr>) -> Spec {
        let mut spec = Spec {
            local: local.clone(),
            ..Spec::default()
        };
        for (_, svc) in d.services().iter_all() {
            if let ServiceKey::Addr { proto, addr, port } = svc.config().key {
                spec.services.insert((proto, addr, port));
                for dest in svc.dests().iter().chain(svc.trash()) {
                    if dest.config.method == ForwardMethod::Masq {
                        spec.nat_replies.insert((proto, dest.addr(), dest.port()));
                    }
                }
            }
        }
        spec
    }
}

/// A [`Spec`] with the order in which the data path made it: specs reach the kernel from
/// several threads (control clients, the expiry refresh), and an older one must never
/// replace a newer one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// Increases with every spec the data path makes.
    pub seq: u64,
    /// The rules.
    pub spec: Spec,
}

/// A change for the thread that applies steering off the data path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The sets, after connections ended.
    Spec(Versioned),
    /// The served interfaces changed: hook the table on these, with this spec.
    Devices(Vec<String>, Versioned),
}

/// The one writer of the installed table: applies specs in order, skipping any older than
/// one already applied, follows the served interfaces, and does nothing after
/// [`Applier::remove`].
#[derive(Debug, Default)]
pub struct Applier {
    installed: Mutex<Installed>,
}

/// What the kernel has now.
#[derive(Debug, Default)]
struct Installed {
    /// Sequence number of the last spec applied; `u64::MAX` once the table was removed.
    last: u64,
    spec: Spec,
    devices: Vec<String>,
    /// Interfaces a re-hook failed for: the next spec is installed with them (retried).
    retry_devices: Option<Vec<String>>,
}

impl Applier {
    /// The writer of a table installed (by [`install`]) with `spec` on `devices`.
    pub fn new(devices: Vec<String>, spec: Spec) -> Applier {
        Applier {
            installed: Mutex::new(Installed {
                devices,
                spec,
                last: 0,
                retry_devices: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Installed> {
        self.installed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bring the installed sets in line with `v`, unless a newer spec is in already.
    pub fn apply(&self, v: &Versioned) -> Result<()> {
        let mut st = self.lock();
        if v.seq <= st.last {
            return Ok(());
        }
        match st.retry_devices.clone() {
            Some(devices) => {
                install(&v.spec, &devices)?;
                st.devices = devices;
                st.retry_devices = None;
            }
            None => update(&v.spec)?,
        }
        st.last = v.seq;
        st.spec = v.spec.clone();
        Ok(())
    }

    /// Hook the table on `devices` (the served interfaces changed), with `v` or the newer
    /// spec already applied, in one transaction: the rules never lapse on the interfaces
    /// that stay.
    pub fn set_devices(&self, devices: Vec<String>, v: &Versioned) -> Result<()> {
        let mut st = self.lock();
        if st.last == u64::MAX {
            return Ok(());
        }
        if v.seq > st.last {
            st.last = v.seq;
            st.spec = v.spec.clone();
        }
        if let Err(e) = install(&st.spec, &devices) {
            st.retry_devices = Some(devices);
            return Err(e);
        }
        st.devices = devices;
        st.retry_devices = None;
        Ok(())
    }

    /// The interfaces the table is hooked on.
    #[cfg(test)]
    pub fn devices(&self) -> Vec<String> {
        self.lock().devices.clone()
    }

    /// Remove the table; later specs are ignored.
    pub fn remove(&self) -> Result<()> {
        self.lock().last = u64::MAX;
        remove()
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// `set NAME { type T; elements = { ... } }` (no `elements` when empty: nft refuses `{ }`).
fn set(out: &mut String, name: &str, ty: &str, elements: &[String]) {
    out.push_str(&format!("  set {name} {{\n    type {ty}\n"));
    if !elements.is_empty() {
        out.push_str("    elements = { ");
        out.push_str(&elements.join(", "));
        out.push_str(" }\n");
    }
    out.push_str("  }\n");
}

/// Set name, element type and elements of every set, for both families.
fn sets(spec: &Spec) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for (fam, addr_ty, v4) in [("ip", "ipv4_addr", true), ("ip6", "ipv6_addr", false)] {
        let fam_ok = |a: &IpAddr| a.is_ipv4() == v4;
        let svc: Vec<String> = spec
            .services
            .iter()
            .filter(|(_, a, port)| fam_ok(a) && *port != 0)
            .map(|(p, a, port)| format!("{a} . {} . {port}", proto_name(*p)))
            .collect();
        let svc_all: Vec<String> = spec
            .services
            .iter()
            .filter(|(_, a, port)| fam_ok(a) && *port == 0)
            .map(|(p, a, _)| format!("{a} . {}", proto_name(*p)))
            .collect();
        let nat: Vec<String> = spec
            .nat_replies
            .iter()
            .filter(|(_, a, _)| fam_ok(a))
            .map(|(p, a, port)| format!("{a} . {} . {port}", proto_name(*p)))
            .collect();
        let local: Vec<String> = spec
            .local
            .iter()
            .filter(|a| fam_ok(a))
            .map(|a| a.to_string())
            .collect();
        out.push((
            format!("svc_{fam}"),
            format!("{addr_ty} . inet_proto . inet_service"),
            svc,
        ));
        out.push((
            format!("svcall_{fam}"),
            format!("{addr_ty} . inet_proto"),
            svc_all,
        ));
        out.push((
            format!("nat_{fam}"),
            format!("{addr_ty} . inet_proto . inet_service"),
            nat,
        ));
        out.push((format!("local_{fam}"), addr_ty.to_string(), local));
    }
    out
}

/// The nft script that replaces the table with what `spec` needs on `devices`.
///
/// Matching uses sets (address . protocol . port), so ten thousand services are ten thousand
/// set elements and still three rules per family.
pub fn script(spec: &Spec, devices: &[String]) -> String {
    let mut s = String::new();
    // Create-then-delete makes the replacement work whether or not the table exists, all in
    // one transaction.
    s.push_str(&format!(
        "table netdev {TABLE} {{}}\ndelete table netdev {TABLE}\n"
    ));
    s.push_str(&format!("table netdev {TABLE} {{\n"));
    for (name, ty, elements) in sets(spec) {
        set(&mut s, &name, &ty, &elements);
    }
    for (i, dev) in devices.iter().enumerate() {
        s.push_str(&format!(
            "  chain in{i} {{\n    type filter hook ingress device \"{}\" priority -500; policy accept;\n",
            dev.replace('"', "")
        ));
        for fam in ["ip", "ip6"] {
            s.push_str(&format!(
                "    {fam} daddr . meta l4proto . th dport @svc_{fam} drop\n"
            ));
            s.push_str(&format!(
                "    {fam} daddr . meta l4proto @svcall_{fam} drop\n"
            ));
            s.push_str(&format!(
                "    {fam} saddr . meta l4proto . th sport @nat_{fam} {fam} daddr != @local_{fam} drop\n"
            ));
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// The nft script that brings the sets of an installed table in line with `spec`, in one
/// transaction, leaving the chains (and their hooks) in place: there is no moment in which
/// the kernel sees VIP traffic during a change.
pub fn update_script(spec: &Spec) -> String {
    let mut s = String::new();
    for (name, _, elements) in sets(spec) {
        s.push_str(&format!("flush set netdev {TABLE} {name}\n"));
        if !elements.is_empty() {
            s.push_str(&format!(
                "add element netdev {TABLE} {name} {{ {} }}\n",
                elements.join(", ")
            ));
        }
    }
    s
}

fn nft(input: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (install the nftables package)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft refused the steering rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Install the table (replacing any stale one) with the rules for `spec`.
pub fn install(spec: &Spec, devices: &[String]) -> Result<()> {
    nft(&script(spec, devices))
}

/// Change the installed table's sets to match `spec`, atomically, without touching the hooks.
pub fn update(spec: &Spec) -> Result<()> {
    nft(&update_script(spec))
}

/// Remove lvsd's table (no error if it is not there).
pub fn remove() -> Result<()> {
    nft(&format!(
        "table netdev {TABLE} {{}}\ndelete table netdev {TABLE}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_core::director::{RxMeta, Verdict};
    use lvs_core::sim::{self, PacketSpec, addr, tcp_flags};
    use lvs_core::types::SchedulerKind;
    use lvs_core::{Director, Time};
    use std::time::Duration;

    /// A SYN from the client to VIP:80; the real server (index) it went to.
    fn connect(d: &mut Director, now: Time, cport: u16) -> usize {
        let (mut buf, len) =
            PacketSpec::tcp((addr::CLIENT, cport), (addr::VIP, 80), tcp_flags::SYN).frame();
        let meta = RxMeta {
            ifindex: addr::FRONT,
            ..RxMeta::default()
        };
        let Verdict::Transmit(t) = d.process(now, &meta, &mut buf, sim::HEADROOM, len) else {
            panic!("SYN not forwarded");
        };
        let ip = &buf[t.start + 14..t.start + t.len];
        let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        sim::rs_index(dst).expect("to a real server")
    }

    fn rip(i: usize) -> (Protocol, IpAddr, u16) {
        (Protocol::Tcp, IpAddr::V4(addr::RIPS[i]), 8080)
    }

    /// A removed NAT real server and a deleted service keep their entries while a connection
    /// of theirs lives, and lose them (with `freed` moving) once it expired.
    #[test]
    fn lingering_connections_keep_their_entries_until_they_expire() {
        let t0 = Time::ZERO;
        let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, t0);
        let local = BTreeSet::new();
        let rs = connect(&mut d, t0, 40000);
        let key = sim::http_service();
        let vip80 = (Protocol::Tcp, IpAddr::V4(addr::VIP), 80);
        // An idle real server removed: gone at once.
        let idle = (rs + 1) % 3;
        d.delete_dest(&key, IpAddr::V4(addr::RIPS[idle]), 8080)
            .unwrap();
        assert!(!Spec::of(&d, &local).nat_replies.contains(&rip(idle)));
        // The busy one removed: kept.
        d.delete_dest(&key, IpAddr::V4(addr::RIPS[rs]), 8080)
            .unwrap();
        assert!(Spec::of(&d, &local).nat_replies.contains(&rip(rs)));
        // The service deleted: its VIP:port and the real server stay.
        d.delete_service(&key).unwrap();
        let spec = Spec::of(&d, &local);
        assert!(spec.services.contains(&vip80), "{spec:?}");
        assert!(spec.nat_replies.contains(&rip(rs)), "{spec:?}");
        let freed = d.services().freed();
        // The connection (a SYN seen, SYN_RECV) expires; then both go.
        d.expire(t0 + Duration::from_secs(3600));
        assert_eq!(d.conns().len(), 0);
        assert!(d.services().freed() > freed);
        let spec = Spec::of(&d, &local);
        assert!(!spec.services.contains(&vip80), "{spec:?}");
        assert!(!spec.nat_replies.contains(&rip(rs)), "{spec:?}");
    }

    #[test]
    fn applier_never_goes_back() {
        let a = Applier::new(vec!["eth0".into()], Spec::default());
        a.lock().last = 5;
        // Older and equal specs are skipped without running nft.
        let old = Versioned {
            seq: 4,
            spec: Spec::default(),
        };
        assert!(a.apply(&old).is_ok());
        assert_eq!(a.lock().last, 5);
        a.lock().last = u64::MAX;
        let newer = Versioned {
            seq: 6,
            spec: Spec::default(),
        };
        assert!(a.apply(&newer).is_ok(), "nothing applies after removal");
        assert!(a.set_devices(vec!["eth1".into()], &newer).is_ok());
        assert_eq!(a.devices(), ["eth0"], "nor after removal");
    }

    #[test]
    fn script_covers_services_and_nat_replies() {
        let mut spec = Spec::default();
        spec.services
            .insert((Protocol::Tcp, "10.0.0.100".parse().unwrap(), 80));
        spec.services
            .insert((Protocol::Udp, "10.0.0.100".parse().unwrap(), 0));
        spec.services
            .insert((Protocol::Tcp, "2001:db8::1".parse().unwrap(), 443));
        spec.nat_replies
            .insert((Protocol::Tcp, "10.0.1.11".parse().unwrap(), 8080));
        spec.local.insert("10.0.1.1".parse().unwrap());
        spec.local.insert("10.0.0.100".parse().unwrap());
        let s = script(&spec, &["eth0".into(), "eth1".into()]);
        assert!(s.starts_with("table netdev lvsd {}\ndelete table netdev lvsd\n"));
        assert!(s.contains("type filter hook ingress device \"eth1\" priority -500;"));
        assert!(s.contains("elements = { 10.0.0.100 . tcp . 80 }"));
        assert!(s.contains("elements = { 10.0.0.100 . udp }"));
        assert!(s.contains("elements = { 2001:db8::1 . tcp . 443 }"));
        assert!(s.contains("elements = { 10.0.1.11 . tcp . 8080 }"));
        assert!(s.contains("elements = { 10.0.0.100, 10.0.1.1 }"));
        assert!(
            s.contains("ip saddr . meta l4proto . th sport @nat_ip ip daddr != @local_ip drop")
        );
        assert_eq!(s.matches("chain in").count(), 2);
    }

    #[test]
    fn update_only_touches_sets() {
        let mut spec = Spec::default();
        spec.services
            .insert((Protocol::Tcp, "10.0.0.100".parse().unwrap(), 80));
        let u = update_script(&spec);
        assert!(u.contains("flush set netdev lvsd svc_ip\n"));
        assert!(u.contains("add element netdev lvsd svc_ip { 10.0.0.100 . tcp . 80 }"));
        assert!(!u.contains("chain") && !u.contains("delete"));
        assert_eq!(u.matches("flush set").count(), 8);
    }

    /// The generated script is accepted by the real nft (when installed and root).
    #[test]
    fn nft_accepts_the_script() {
        if !lvs_testkit::runs("nft", &["--version"]) || !lvs_testkit::is_root() {
            lvs_testkit::skip("nft_accepts_the_script", "needs nft and root");
            return;
        }
        let mut spec = Spec::default();
        spec.services
            .insert((Protocol::Tcp, "10.0.0.100".parse().unwrap(), 80));
        spec.services
            .insert((Protocol::Sctp, "10.0.0.100".parse().unwrap(), 0));
        spec.nat_replies
            .insert((Protocol::Udp, "fd00::5".parse().unwrap(), 53));
        // `nft -c` checks without applying; `lo` exists everywhere.
        let mut child = Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script(&spec, &["lo".into()]).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
