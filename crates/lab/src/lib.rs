//! `lvs_lab`: the seed's three LVS topologies (NAT, DR, Tun) built in network namespaces.
//!
//! Namespaces and links are created by shelling out to iproute2 (`ip`, via
//! `std::process::Command`): the lab is test infrastructure, `ip` exists on every machine we run
//! on, and it keeps this crate free of netlink code (which lives in `crates/io`).
//! Sysctls inside a namespace are written with `ip netns exec NS sh -c 'echo V > /proc/sys/..'`.
//!
//! # Address plan (identical for the three methods, all inside the namespaces)
//!
//! | namespace  | interface | address           | role |
//! |------------|-----------|-------------------|------|
//! | `client`   | `eth0`    | 10.201.1.2/24     | client, default via 10.201.1.1 |
//! | `router`   | `eth0`    | 10.201.1.1/24     | client side |
//! | `router`   | `eth1`    | 10.201.2.1/24     | DIRECTOR_GW, front (VIP) net |
//! | `router`   | `eth2`    | 10.201.3.1/24     | SERVER_GW on the server LAN (DR and Tun only) |
//! | `director` | `eth0`    | 10.201.2.2/24 + VIP 10.201.2.100/24 | front NIC, default via 10.201.2.1 |
//! | `director` | `eth1`    | 10.201.3.2/24 (DIP) | back NIC on the server LAN |
//! | `rs1..rs3` | `eth0`    | 10.201.3.11-13/24 (RIP) | real servers; default via DIP (NAT) or 10.201.3.1 (DR/Tun) |
//! | `switch`   | `br0`     | —                 | bridge of the server LAN: ports `p-dir`, `p-rs1..3`, `p-rt` |
//!
//! Routes: the router reaches 10.201.3.0/24 via the director (10.201.2.2) in NAT, directly on
//! `eth2` in DR/Tun. `ip_forward=1` in the router and in the director (NAT needs the director
//! as the real servers' gateway; it also lets the client reach the RIPs directly through the
//! director in NAT). rp_filter is 0 in the router (DR/Tun replies come from the VIP on the server
//! LAN side). The VIP is an address of the director's front NIC so that the router's ARP
//! resolves it; nothing forwards VIP traffic until lvsd is started in the director namespace.
#![forbid(unsafe_code)]

pub mod blob;
pub mod serve;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Client address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);
/// Router, client side (client's default gateway).
pub const ROUTER_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 1);
/// Router, front side (DIRECTOR_GW).
pub const ROUTER_FRONT_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 1);
/// Router on the server LAN (SERVER_GW, DR/Tun only).
pub const ROUTER_SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 3, 1);
/// Director's own front address.
pub const DIRECTOR_FRONT_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 2);
/// The virtual IP (on the director's front NIC).
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 100);
/// Director's address on the server LAN.
pub const DIP: Ipv4Addr = Ipv4Addr::new(10, 201, 3, 2);
/// Real server addresses.
pub const RIPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 201, 3, 11),
    Ipv4Addr::new(10, 201, 3, 12),
    Ipv4Addr::new(10, 201, 3, 13),
];
/// Prefix length of every lab subnet.
pub const PREFIX_LEN: u8 = 24;

/// Client's interface (toward the router).
pub const CLIENT_IF: &str = "eth0";
/// Router's client-side interface.
pub const ROUTER_CLIENT_IF: &str = "eth0";
/// Router's front interface (toward the director's front NIC).
pub const ROUTER_FRONT_IF: &str = "eth1";
/// Router's server-LAN interface (DR/Tun only).
pub const ROUTER_SERVER_IF: &str = "eth2";
/// Director's front interface (VIP).
pub const DIRECTOR_FRONT_IF: &str = "eth0";
/// Director's back interface (DIP, server LAN).
pub const DIRECTOR_BACK_IF: &str = "eth1";
/// Real server's interface.
pub const RS_IF: &str = "eth0";
/// Bridge of the server LAN in the switch namespace.
pub const SWITCH_BRIDGE: &str = "br0";

/// Directory of the owner files: `<prefix>` containing the owner pid or `detached`.
pub const OWNER_DIR: &str = "/run/lvs-lab";

/// Roles (namespace name suffixes) of a lab, in creation order.
pub const ROLES: [&str; 7] = [
    "client", "router", "director", "switch", "rs1", "rs2", "rs3",
];

/// LVS forwarding method the topology is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// LVS-NAT: real servers route through the director (DIP).
    Nat,
    /// LVS-DR: real servers share the L2 segment and reply via the router (SERVER_GW).
    Dr,
    /// LVS-Tun: as DR, the director reaches real servers with IP-in-IP.
    Tun,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Nat => "nat",
            Method::Dr => "dr",
            Method::Tun => "tun",
        })
    }
}

/// Runs `ip ARGS` and fails with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2 missing?)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Names of all network namespaces (from `/run/netns`).
pub fn list_namespaces() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Kills every process in namespace `ns` (by pid) and deletes it. Missing namespaces are fine.
pub fn delete_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.chars().all(|c| c.is_ascii_digit()) {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

fn valid_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 40
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Removes every namespace of the lab `prefix` and its owner file; returns the namespaces removed.
pub fn down(prefix: &str) -> Result<Vec<String>> {
    if !valid_prefix(prefix) {
        bail!("invalid prefix {prefix:?}: use 1-40 characters of [A-Za-z0-9_-]");
    }
    let mut removed = Vec::new();
    for role in ROLES {
        let ns = format!("{prefix}-{role}");
        if list_namespaces().contains(&ns) {
            delete_namespace(&ns);
            removed.push(ns);
        }
    }
    let _ = std::fs::remove_file(Path::new(OWNER_DIR).join(prefix));
    Ok(removed)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes labs whose owner process is dead: those with an owner file naming a dead pid, and
/// those with a default prefix (`lvs<pid>-<n>`) and no owner file whose pid is dead.
/// Detached labs are left alone. Returns the prefixes removed.
pub fn cleanup_stale() -> Result<Vec<String>> {
    let mut stale = Vec::new();
    if let Ok(rd) = std::fs::read_dir(OWNER_DIR) {
        for e in rd.filter_map(|e| e.ok()) {
            let prefix = e.file_name().to_string_lossy().into_owned();
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            if let Ok(pid) = owner.trim().parse::<u32>()
                && !pid_alive(pid)
            {
                stale.push(prefix);
            }
        }
    }
    for ns in list_namespaces() {
        let Some((prefix, role)) = ns.rsplit_once('-') else {
            continue;
        };
        if !ROLES.contains(&role) || Path::new(OWNER_DIR).join(prefix).exists() {
            continue;
        }
        let pid = prefix
            .strip_prefix("lvs")
            .and_then(|r| r.split_once('-'))
            .and_then(|(p, _)| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !pid_alive(pid)
            && !stale.iter().any(|s| s == prefix)
        {
            stale.push(prefix.to_string());
        }
    }
    for p in &stale {
        down(p)?;
    }
    Ok(stale)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A built lab. Dropping it kills every process in its namespaces and deletes them.
#[derive(Debug)]
pub struct Lab {
    method: Method,
    prefix: String,
    children: Mutex<Vec<Child>>,
    detached: bool,
}

impl Lab {
    /// Builds the topology for `method`. `prefix` defaults to `lvs<pid>-<n>`, unique per
    /// process and call; namespaces are `<prefix>-client`, `-router`, `-director`, `-switch`,
    /// `-rs1..3`. Fails (leaving nothing behind) if not root or if the prefix is in use.
    pub fn build(method: Method, prefix: Option<String>) -> Result<Lab> {
        let prefix = prefix.unwrap_or_else(|| {
            format!(
                "lvs{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            )
        });
        if !valid_prefix(&prefix) {
            bail!("invalid prefix {prefix:?}: use 1-40 characters of [A-Za-z0-9_-]");
        }
        if !is_root() {
            bail!("building a lab needs root (network namespaces)");
        }
        let existing = list_namespaces();
        if ROLES
            .iter()
            .any(|r| existing.contains(&format!("{prefix}-{r}")))
        {
            bail!(
                "a lab with prefix {prefix} already exists; remove it with `lvs-lab down --prefix {prefix}`"
            );
        }
        std::fs::create_dir_all(OWNER_DIR).with_context(|| format!("creating {OWNER_DIR}"))?;
        std::fs::write(
            Path::new(OWNER_DIR).join(&prefix),
            format!("{}\n", std::process::id()),
        )
        .context("writing the lab owner file")?;
        let lab = Lab {
            method,
            prefix,
            children: Mutex::new(Vec::new()),
            detached: false,
        };
        // On error `lab` is dropped here, which removes whatever was created.
        lab.create()
            .with_context(|| format!("building the {method} lab {}", lab.prefix))?;
        Ok(lab)
    }

    fn create(&self) -> Result<()> {
        let m = self.method;
        for r in ROLES {
            ip(&["netns", "add", &self.ns(r)])?;
            ip(&["-n", &self.ns(r), "link", "set", "lo", "up"])?;
        }
        let (client, router, director, switch) = (
            self.client_ns(),
            self.router_ns(),
            self.director_ns(),
            self.switch_ns(),
        );
        let veth = |a: &str, an: &str, b: &str, bn: &str| {
            ip(&[
                "-n", a, "link", "add", an, "type", "veth", "peer", "name", bn, "netns", b,
            ])
        };
        let addr = |ns: &str, dev: &str, a: Ipv4Addr| {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{a}/{PREFIX_LEN}"),
                "dev",
                dev,
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])
        };
        veth(&client, CLIENT_IF, &router, ROUTER_CLIENT_IF)?;
        veth(&router, ROUTER_FRONT_IF, &director, DIRECTOR_FRONT_IF)?;
        ip(&[
            "-n",
            &switch,
            "link",
            "add",
            SWITCH_BRIDGE,
            "type",
            "bridge",
        ])?;
        ip(&["-n", &switch, "link", "set", SWITCH_BRIDGE, "up"])?;
        let port = |name: &str, peer_ns: &str, peer_if: &str| -> Result<()> {
            veth(&switch, name, peer_ns, peer_if)?;
            ip(&["-n", &switch, "link", "set", name, "master", SWITCH_BRIDGE])?;
            ip(&["-n", &switch, "link", "set", name, "up"])
        };
        port("p-dir", &director, DIRECTOR_BACK_IF)?;
        for i in 0..3 {
            port(&format!("p-rs{}", i + 1), &self.rs_ns(i), RS_IF)?;
        }
        if m != Method::Nat {
            port("p-rt", &router, ROUTER_SERVER_IF)?;
        }
        addr(&client, CLIENT_IF, CLIENT_IP)?;
        addr(&router, ROUTER_CLIENT_IF, ROUTER_CLIENT_IP)?;
        addr(&router, ROUTER_FRONT_IF, ROUTER_FRONT_IP)?;
        addr(&director, DIRECTOR_FRONT_IF, DIRECTOR_FRONT_IP)?;
        addr(&director, DIRECTOR_FRONT_IF, VIP)?;
        addr(&director, DIRECTOR_BACK_IF, DIP)?;
        let gw = if m == Method::Nat {
            DIP
        } else {
            ROUTER_SERVER_IP
        };
        for (i, rip) in RIPS.iter().enumerate() {
            addr(&self.rs_ns(i), RS_IF, *rip)?;
            ip(&[
                "-n",
                &self.rs_ns(i),
                "route",
                "add",
                "default",
                "via",
                &gw.to_string(),
            ])?;
        }
        if m == Method::Nat {
            ip(&[
                "-n",
                &router,
                "route",
                "add",
                "10.201.3.0/24",
                "via",
                &DIRECTOR_FRONT_IP.to_string(),
            ])?;
        } else {
            addr(&router, ROUTER_SERVER_IF, ROUTER_SERVER_IP)?;
        }
        ip(&[
            "-n",
            &client,
            "route",
            "add",
            "default",
            "via",
            &ROUTER_CLIENT_IP.to_string(),
        ])?;
        ip(&[
            "-n",
            &director,
            "route",
            "add",
            "default",
            "via",
            &ROUTER_FRONT_IP.to_string(),
        ])?;
        let mut router_sysctls = vec!["net.ipv4.ip_forward=1".to_string()];
        for dev in ["all", "default", ROUTER_CLIENT_IF, ROUTER_FRONT_IF] {
            router_sysctls.push(format!("net.ipv4.conf.{dev}.rp_filter=0"));
        }
        if m != Method::Nat {
            router_sysctls.push(format!("net.ipv4.conf.{ROUTER_SERVER_IF}.rp_filter=0"));
        }
        self.sysctls(&router, &router_sysctls)?;
        self.sysctls(&director, &["net.ipv4.ip_forward=1".to_string()])?;
        Ok(())
    }

    /// Writes `key=value` sysctls (dotted names) inside namespace `ns` through `/proc/sys`.
    pub fn sysctls(&self, ns: &str, kvs: &[String]) -> Result<()> {
        let mut script = String::from("set -e\n");
        for kv in kvs {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("sysctl {kv:?} is not key=value"))?;
            if !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
                || !v.chars().all(|c| c.is_ascii_alphanumeric())
            {
                bail!("refusing odd sysctl {kv:?}");
            }
            script += &format!("echo {v} > /proc/sys/{}\n", k.replace('.', "/"));
        }
        let out = self.exec(ns, &["sh", "-c", &script])?;
        if !out.status.success() {
            bail!(
                "setting sysctls in {ns} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Keeps the namespaces after this value is dropped (for `lvs-lab up --detach`); the owner
    /// file then says `detached` so `cleanup-stale` leaves the lab alone.
    pub fn detach(mut self) -> String {
        self.detached = true;
        let _ = std::fs::write(Path::new(OWNER_DIR).join(&self.prefix), "detached\n");
        self.prefix.clone()
    }

    /// The method this lab was built for.
    pub fn method(&self) -> Method {
        self.method
    }
    /// The namespace name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Namespace name of a role (`client`, `router`, `director`, `switch`, `rs1`..`rs3`).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }
    /// All namespace names of this lab.
    pub fn namespaces(&self) -> Vec<String> {
        ROLES.iter().map(|r| self.ns(r)).collect()
    }
    /// The client namespace.
    pub fn client_ns(&self) -> String {
        self.ns("client")
    }
    /// The router namespace.
    pub fn router_ns(&self) -> String {
        self.ns("router")
    }
    /// The director namespace (lvsd runs here).
    pub fn director_ns(&self) -> String {
        self.ns("director")
    }
    /// The switch namespace holding the server-LAN bridge.
    pub fn switch_ns(&self) -> String {
        self.ns("switch")
    }
    /// Namespace of real server `i` (0-based: 0 is `rs1`). Panics if `i >= 3`.
    pub fn rs_ns(&self, i: usize) -> String {
        assert!(i < RIPS.len(), "real server index {i} out of range (0..3)");
        self.ns(&format!("rs{}", i + 1))
    }
    /// Client address.
    pub fn client_ip(&self) -> Ipv4Addr {
        CLIENT_IP
    }
    /// Virtual IP.
    pub fn vip(&self) -> Ipv4Addr {
        VIP
    }
    /// Director's address on the server LAN.
    pub fn dip(&self) -> Ipv4Addr {
        DIP
    }
    /// Director's own front address (besides the VIP).
    pub fn director_front_ip(&self) -> Ipv4Addr {
        DIRECTOR_FRONT_IP
    }
    /// Real server `i`'s address (0-based). Panics if `i >= 3`.
    pub fn rip(&self, i: usize) -> Ipv4Addr {
        RIPS[i]
    }
    /// All real server addresses.
    pub fn rips(&self) -> [Ipv4Addr; 3] {
        RIPS
    }
    /// Router, client side.
    pub fn router_client_ip(&self) -> Ipv4Addr {
        ROUTER_CLIENT_IP
    }
    /// Router, front side (the director's gateway).
    pub fn router_front_ip(&self) -> Ipv4Addr {
        ROUTER_FRONT_IP
    }
    /// Router on the server LAN (SERVER_GW): `Some` for DR and Tun only.
    pub fn router_server_ip(&self) -> Option<Ipv4Addr> {
        (self.method != Method::Nat).then_some(ROUTER_SERVER_IP)
    }
    /// Real servers' default gateway: DIP in NAT, SERVER_GW in DR/Tun.
    pub fn rs_gateway(&self) -> Ipv4Addr {
        self.router_server_ip().unwrap_or(DIP)
    }

    fn netns_exec(ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    }

    /// Runs `args` in namespace `ns` (`ip netns exec`) and returns its output.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<Output> {
        Self::netns_exec(ns, args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {args:?} in {ns}"))
    }

    /// Runs `args` in `ns` and returns stdout, failing with stderr on a non-zero exit.
    pub fn exec_ok(&self, ns: &str, args: &[&str]) -> Result<String> {
        let out = self.exec(ns, args)?;
        if !out.status.success() {
            bail!(
                "{args:?} in {ns} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `args` in namespace `ns` (stdin null, stdout/stderr inherited). The process is
    /// killed when the lab is dropped, like every other process in the lab's namespaces.
    pub fn spawn(&self, ns: &str, args: &[&str]) -> Result<Child> {
        Self::netns_exec(ns, args)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {args:?} in {ns}"))
    }

    /// Starts `lvs-lab serve --name rsN --http-port 80 --udp-port 5353` on every real server,
    /// using the `lvs-lab` binary at `exe`, and waits until each HTTP port answers.
    pub fn start_servers(&self, exe: &Path) -> Result<()> {
        let exe = exe.to_str().context("lvs-lab path is not UTF-8")?;
        for i in 0..RIPS.len() {
            let name = format!("rs{}", i + 1);
            let child = Self::netns_exec(
                &self.rs_ns(i),
                &[
                    exe,
                    "serve",
                    "--name",
                    &name,
                    "--http-port",
                    "80",
                    "--udp-port",
                    "5353",
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the server on {name}"))?;
            self.children
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(child);
        }
        for (i, rip) in RIPS.iter().enumerate() {
            self.wait_http(
                &self.rs_ns(i),
                &format!("http://{rip}/"),
                Duration::from_secs(10),
            )?;
        }
        Ok(())
    }

    /// Polls `url` with curl from namespace `ns` until it answers 200 or `timeout` passes.
    pub fn wait_http(&self, ns: &str, url: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let out = self.exec(ns, &["curl", "-sf", "-m", "1", "-o", "/dev/null", url])?;
            if out.status.success() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("{url} did not answer from {ns} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Path of the lab's owner file.
    pub fn owner_file(&self) -> PathBuf {
        Path::new(OWNER_DIR).join(&self.prefix)
    }

    /// Human-readable address plan of this lab.
    pub fn describe(&self) -> String {
        let mut s = format!("lab {} ({} topology)\n", self.prefix, self.method);
        s += &format!(
            "  {:<22} {CLIENT_IF}  {CLIENT_IP}/24 gw {ROUTER_CLIENT_IP}\n",
            self.client_ns()
        );
        s += &format!(
            "  {:<22} {ROUTER_CLIENT_IF}  {ROUTER_CLIENT_IP}/24, {ROUTER_FRONT_IF} {ROUTER_FRONT_IP}/24",
            self.router_ns()
        );
        match self.router_server_ip() {
            Some(a) => s += &format!(", {ROUTER_SERVER_IF} {a}/24 (SERVER_GW)\n"),
            None => s += &format!(", route 10.201.3.0/24 via {DIRECTOR_FRONT_IP}\n"),
        }
        s += &format!(
            "  {:<22} {DIRECTOR_FRONT_IF}  {DIRECTOR_FRONT_IP}/24 + VIP {VIP}/24, {DIRECTOR_BACK_IF} DIP {DIP}/24, gw {ROUTER_FRONT_IP}\n",
            self.director_ns()
        );
        for (i, rip) in RIPS.iter().enumerate() {
            s += &format!(
                "  {:<22} {RS_IF}  RIP {rip}/24 gw {}\n",
                self.rs_ns(i),
                self.rs_gateway()
            );
        }
        s += &format!(
            "  {:<22} {SWITCH_BRIDGE} bridge of the server LAN\n",
            self.switch_ns()
        );
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let mut children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = down(&self.prefix);
    }
}

/// Whether we run as root (effective uid 0): the test kit's one check.
pub use lvs_testkit::is_root;

/// Starts `lvs-realserver setup --vip VIP --method tun` (binary `realserver`) in `ns` and waits
/// until it reports that it decapsulates; returns the running decapsulator and that line, or
/// `None` when the kernel has `ipip` (setup configures `tunl0` and exits). The caller stops
/// the decapsulator with SIGTERM; its stderr keeps being drained meanwhile.
pub fn start_tun_decapsulator(
    ns: &str,
    realserver: &str,
    vip: &str,
) -> Result<Option<(Child, String)>> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("ip")
        .args([
            "netns", "exec", ns, realserver, "setup", "--vip", vip, "--method", "tun",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start lvs-realserver")?;
    let stderr = child.stderr.take().context("lvs-realserver stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains("decapsulating") => return Ok(Some((child, line))),
            Ok(line) => seen.push(line),
            Err(_) => {}
        }
        if let Ok(Some(st)) = child.try_wait() {
            if st.success() {
                return Ok(None);
            }
            bail!("lvs-realserver exited with {st}: {}", seen.join("\n"));
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the decapsulator did not start within 10 s: {}",
                seen.join("\n")
            );
        }
    }
}
