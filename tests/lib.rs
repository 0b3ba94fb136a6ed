//! `lvs_e2e`: the fixture and the scenarios of the end-to-end tests.
//!
//! Every test builds its own lab (`lvs_lab::Lab`, seven network namespaces with a prefix made of
//! the test process id and a hash of the test name), starts the lab's HTTP/UDP servers on
//! rs1..rs3, prepares the real servers for the method (`lvs-realserver setup` for DR; a
//! `lvs-realserver setup --method tun` decapsulator per real server for Tun), and starts `lvsd`
//! in the director namespace with a control socket under `/tmp` unique to the test. Nothing is
//! shared between tests but the machine, so the tests of one binary may run in parallel; the
//! heavy part of each test (from lab build to teardown) is nevertheless serialised across all
//! test processes with a file lock ([`LOCK_FILE`]) because the project's machines have two
//! cores and timing-sensitive checks (a 50 MB download, a load loop while the table changes)
//! should not compete with three other labs for them.
//!
//! The tests need root (network namespaces) and `nft` (lvsd's kernel steering). Without them
//! they fail under `CI=true` and elsewhere report a counted skip (`lvs_testkit::skip`). They
//! use the binaries of the same target directory as the test executable (`target/debug` or
//! `target/release`): build them first with `cargo build --workspace --bins` (scripts/test.sh
//! does); a binary
//! older than any source file its cargo dep-info lists fails the test as stale ([`fresh`]).
//! `LVS_E2E_BIN_DIR` overrides the directory.
//!
//! `LVS_E2E_DATAPATH` chooses lvsd's `--datapath` for every test (`afpacket` when unset);
//! scripts/test.sh runs the suite once per datapath. With `tc`, the scenarios also check
//! that the kernel fast path, not user space, forwarded the bulk of the traffic.
//!
//! Offloads are left at their defaults everywhere: the tests never run `ethtool`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub use lvs_lab::{CLIENT_IP, Lab, Method, RIPS, VIP};

/// Lock file serialising the labs of all e2e test processes (see the crate docs).
pub const LOCK_FILE: &str = "/tmp/lvs-e2e.lock";

/// HTTP port of the virtual service (and of the lab servers).
pub const HTTP_PORT: u16 = 80;
/// UDP echo port of the virtual service (and of the lab servers).
pub const UDP_PORT: u16 = 5353;

/// Paths of the project binaries the tests drive.
#[derive(Debug, Clone)]
pub struct Bins {
    /// The director daemon.
    pub lvsd: PathBuf,
    /// The administration tool.
    pub lvsadm: PathBuf,
    /// Real-server preparation (DR / Tun decapsulator).
    pub realserver: PathBuf,
    /// The lab tool (its `serve` subcommand runs on the real servers).
    pub lab: PathBuf,
}

/// Directory holding the binaries: `LVS_E2E_BIN_DIR`, else the target profile directory of
/// the running test executable (`target/debug/deps/nat-…` → `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LVS_E2E_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("cannot locate the test executable");
    let mut dir = exe
        .parent()
        .expect("test executable has a parent")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The binaries, or a panic that says how to build them.
pub fn bins() -> Bins {
    let dir = bin_dir();
    let find = |name: &str| {
        let p = dir.join(name);
        assert!(
            p.is_file(),
            "{} is not built: run `cargo build --workspace --bins` (same profile as the tests) \
             first, or point LVS_E2E_BIN_DIR at the directory holding lvsd, lvsadm, \
             lvs-realserver and lvs-lab",
            p.display()
        );
        if let Err(e) = fresh(&p) {
            panic!(
                "{} is stale: {e}; run `cargo build --workspace --bins` (same profile as the \
                 tests) first",
                p.display()
            );
        }
        p
    };
    Bins {
        lvsd: find("lvsd"),
        lvsadm: find("lvsadm"),
        realserver: find("lvs-realserver"),
        lab: find("lvs-lab"),
    }
}

/// Whether a binary was built from the sources now in the tree: every file its cargo dep-info
/// (`<bin>.d`, written beside it) lists must be no newer than the binary, the rule cargo
/// itself rebuilds by. A binary without dep-info (an `LVS_E2E_BIN_DIR` from elsewhere) is
/// taken as it is.
pub fn fresh(bin: &Path) -> Result<(), String> {
    let Ok(dep) = std::fs::read_to_string(bin.with_extension("d")) else {
        return Ok(());
    };
    let built = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .map_err(|e| format!("cannot read its modification time: {e}"))?;
    for src in dep_info_sources(&dep) {
        let Ok(changed) = std::fs::metadata(&src).and_then(|m| m.modified()) else {
            return Err(format!("{src} (a source it was built from) is gone"));
        };
        if changed > built {
            return Err(format!("{src} changed after it was built"));
        }
    }
    Ok(())
}

/// The prerequisites of a make-style dep-info file's first rule (`target: a.rs b\ c.rs`).
fn dep_info_sources(dep: &str) -> Vec<String> {
    let line = dep.lines().next().unwrap_or("");
    let Some((_, deps)) = line.split_once(": ") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ' ' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// True when the e2e tests cannot run here (not root, no `nft`): then the test is skipped by
/// the one rule of [`lvs_testkit::skip`] (a failure under `CI=true`, a counted skip elsewhere).
pub fn skip(test: &str) -> bool {
    let why = if !lvs_testkit::is_root() {
        "needs root (network namespaces)"
    } else if !lvs_testkit::runs("nft", &["--version"]) {
        "`nft` not found (install nftables: scripts/install-deps.sh)"
    } else {
        return false;
    };
    lvs_testkit::skip(test, why);
    true
}

/// True when trafgen (netsniff-ng) is missing: then the test is skipped (a failure under
/// `CI=true`: scripts/install-deps.sh installs it).
pub fn skip_without_trafgen(test: &str) -> bool {
    if lvs_testkit::runs("sh", &["-c", "command -v trafgen"]) {
        return false;
    }
    assert!(
        !lvs_testkit::under_ci(),
        "{test}: trafgen is missing (netsniff-ng; scripts/install-deps.sh installs it)"
    );
    lvs_testkit::skip(test, "trafgen (netsniff-ng) is not installed");
    true
}

/// A `KiB` line of `/proc/PID/status` (`key` such as `VmRSS:` or `VmHWM:`); 0 when unreadable.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// lvsd's `--datapath` in this run: `LVS_E2E_DATAPATH`, else `afpacket`.
pub fn datapath() -> String {
    std::env::var("LVS_E2E_DATAPATH").unwrap_or_else(|_| "afpacket".into())
}

/// Whether this run tests the kernel fast path.
pub fn kernel_datapath() -> bool {
    datapath() == "tc"
}

/// The method's forwarding flag for `lvsadm -a/-e`.
pub fn forward_flag(method: Method) -> &'static str {
    match method {
        Method::Nat => "-m",
        Method::Dr => "-g",
        Method::Tun => "-i",
    }
}

/// `VIP:port`.
pub fn vip_port(port: u16) -> String {
    format!("{VIP}:{port}")
}

/// Real server `i`'s `RIP:port` (0-based).
pub fn rip_port(i: usize, port: u16) -> String {
    format!("{}:{port}", RIPS[i])
}

/// Index (0-based) of the real server named in an answer `rsN saw IP:PORT ...`.
pub fn answered_by(body: &str) -> Option<usize> {
    let n: usize = body.strip_prefix("rs")?.split(' ').next()?.parse().ok()?;
    (1..=3).contains(&n).then(|| n - 1)
}

/// The client address named in an answer `rsN saw IP:PORT ...`.
pub fn client_seen(body: &str) -> Option<Ipv4Addr> {
    let rest = body.split(" saw ").nth(1)?;
    rest.split(':').next()?.parse().ok()
}

fn prefix_for(test: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    test.hash(&mut h);
    format!(
        "e{}{}x{:04x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        h.finish() & 0xffff
    )
}

/// Held while a lab exists: an exclusive lock on [`LOCK_FILE`].
#[derive(Debug)]
struct LabLock(File);

impl LabLock {
    fn acquire() -> LabLock {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .unwrap_or_else(|e| panic!("cannot open {LOCK_FILE}: {e}"));
        f.lock()
            .unwrap_or_else(|e| panic!("cannot lock {LOCK_FILE}: {e}"));
        LabLock(f)
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// One service line (and its real servers) of `lvsadm -L -n --stats --exact`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// `TCP`, `UDP`, ...
    pub proto: String,
    /// `VIP:port`.
    pub addr: String,
    /// The service's own counters.
    pub counters: Counters,
    /// Per real server: `RIP:port` → counters.
    pub dests: BTreeMap<String, Counters>,
}

/// The five counters of a `--stats` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub in_pkts: u64,
    /// Packets server → client through the director.
    pub out_pkts: u64,
    /// Bytes client → server.
    pub in_bytes: u64,
    /// Bytes server → client through the director.
    pub out_bytes: u64,
}

fn parse_counters(fields: &[&str]) -> Option<Counters> {
    let n: Vec<u64> = fields
        .iter()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [conns, in_pkts, out_pkts, in_bytes, out_bytes] = n[..] else {
        return None;
    };
    Some(Counters {
        conns,
        in_pkts,
        out_pkts,
        in_bytes,
        out_bytes,
    })
}

/// Parses `lvsadm -L -n --stats --exact`.
pub fn parse_stats(text: &str) -> Vec<ServiceStats> {
    let mut out: Vec<ServiceStats> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 7 && f[0] == "->" {
            let c = parse_counters(&f[2..])
                .unwrap_or_else(|| panic!("bad real-server stats line {line:?}"));
            out.last_mut()
                .unwrap_or_else(|| panic!("real server before any service in:\n{text}"))
                .dests
                .insert(f[1].to_string(), c);
        } else if f.len() == 7 && ["TCP", "UDP", "SCTP", "FWM"].contains(&f[0]) {
            let c = parse_counters(&f[2..]).unwrap_or_else(|| panic!("bad service line {line:?}"));
            out.push(ServiceStats {
                proto: f[0].to_string(),
                addr: f[1].to_string(),
                counters: c,
                dests: BTreeMap::new(),
            });
        }
    }
    out
}

static CLEANUP: Once = Once::new();

/// A lab with the method's real servers prepared and `lvsd` running in the director
/// namespace. Dropping it stops lvsd (SIGTERM, SIGKILL after 5 s), stops the decapsulators and
/// removes the lab. On a panicking thread it prints lvsd's log first.
#[derive(Debug)]
pub struct Director {
    method: Method,
    test: String,
    bins: Bins,
    socket: PathBuf,
    log: PathBuf,
    lvsd: Option<Child>,
    /// Extra arguments for lvsd (see [`Director::set_lvsd_args`]).
    lvsd_args: Vec<String>,
    /// Extra environment variables for lvsd (see [`Director::set_lvsd_env`]).
    lvsd_env: Vec<(String, String)>,
    decaps: Vec<Child>,
    lab: Option<Lab>,
    _lock: LabLock,
}

impl Director {
    /// Builds the `method` lab for test `test`, starts the servers, prepares the real servers
    /// and starts lvsd (no service configured yet).
    pub fn start(method: Method, test: &str) -> Director {
        let mut d = Director::without_lvsd(method, test);
        d.start_lvsd();
        d
    }

    /// As [`Director::start`] without starting lvsd.
    pub fn without_lvsd(method: Method, test: &str) -> Director {
        let bins = bins();
        let lock = LabLock::acquire();
        CLEANUP.call_once(|| {
            if let Ok(stale) = lvs_lab::cleanup_stale()
                && !stale.is_empty()
            {
                eprintln!("removed stale labs of dead test runs: {stale:?}");
            }
        });
        let prefix = prefix_for(test);
        let lab = Lab::build(method, Some(prefix.clone()))
            .unwrap_or_else(|e| panic!("{test}: building the {method} lab: {e:#}"));
        let mut d = Director {
            method,
            test: test.to_string(),
            socket: PathBuf::from(format!("/tmp/lvs-e2e-{prefix}.sock")),
            log: PathBuf::from(format!("/tmp/lvs-e2e-{prefix}.lvsd.log")),
            bins,
            lvsd: None,
            lvsd_args: Vec::new(),
            lvsd_env: Vec::new(),
            decaps: Vec::new(),
            lab: Some(lab),
            _lock: lock,
        };
        d.lab()
            .start_servers(&d.bins.lab)
            .unwrap_or_else(|e| panic!("{test}: starting the lab servers: {e:#}"));
        d.prepare_real_servers();
        d
    }

    fn prepare_real_servers(&mut self) {
        let vip = VIP.to_string();
        let rs = self
            .bins
            .realserver
            .to_str()
            .expect("UTF-8 path")
            .to_string();
        match self.method {
            Method::Nat => {}
            Method::Dr => {
                for i in 0..3 {
                    let ns = self.lab().rs_ns(i);
                    self.lab()
                        .exec_ok(&ns, &[&rs, "setup", "--vip", &vip, "--method", "dr"])
                        .unwrap_or_else(|e| {
                            panic!("{}: DR setup on rs{}: {e:#}", self.test, i + 1)
                        });
                }
            }
            Method::Tun => {
                for i in 0..3 {
                    let ns = self.lab().rs_ns(i);
                    let child =
                        lvs_lab::start_tun_decapsulator(&ns, &rs, &vip).unwrap_or_else(|e| {
                            panic!("{}: Tun setup on rs{}: {e:#}", self.test, i + 1)
                        });
                    if let Some((c, _)) = child {
                        self.decaps.push(c);
                    }
                }
            }
        }
    }

    /// lvsd in the director namespace with control socket `socket` and the datapath under
    /// test (unless the next start's extra arguments name one); add arguments and I/O.
    pub fn lvsd_command(&self, socket: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.lab().director_ns()])
            .arg(&self.bins.lvsd)
            .arg("--socket")
            .arg(socket)
            .args(
                // A test that needs one datapath names it itself.
                (!self.lvsd_args.iter().any(|a| a.starts_with("--datapath")))
                    .then(|| format!("--datapath={}", datapath())),
            );
        c
    }

    /// Starts lvsd in the director namespace and waits until its control socket answers.
    pub fn start_lvsd(&mut self) {
        assert!(self.lvsd.is_none(), "lvsd already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("lvsd log file");
        let child = self
            .lvsd_command(&self.socket)
            .args(&self.lvsd_args)
            .envs(self.lvsd_env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("cannot start lvsd");
        self.lvsd = Some(child);
        let start = Instant::now();
        loop {
            if self.socket.exists() && self.lvsadm(&["-L", "-n"]).status.success() {
                return;
            }
            if let Some(st) = self.lvsd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.lvsd = None;
                panic!(
                    "{}: lvsd exited during start-up ({st}):\n{}",
                    self.test,
                    self.lvsd_log()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{}: lvsd's socket {} did not answer within 10 s:\n{}",
                self.test,
                self.socket.display(),
                self.lvsd_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// lvsd's director-wide counters (the control API's `counters`).
    pub fn counters(&self) -> lvs_api::CountersInfo {
        let mut c = lvs_api::Client::connect(&self.socket).expect("control socket");
        match c.call(lvs_api::Request::Counters) {
            Ok(lvs_api::Reply::Counters(info)) => info,
            other => panic!("counters: unexpected answer {other:?}"),
        }
    }

    /// One of the kernel fast path's counters (0 if lvsd runs without it).
    pub fn kernel_counter(&self, name: &str) -> u64 {
        self.counters()
            .kernel
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// With `--datapath tc`: lvsd says so, and the kernel forwarded at least `at_least`
    /// packets by `counter` (e.g. `nat_in`). Nothing to check on `afpacket`.
    pub fn assert_kernel_forwarded(&self, counter: &str, at_least: u64) {
        if !kernel_datapath() {
            return;
        }
        let c = self.counters();
        assert_eq!(c.datapath, "tc", "lvsd should run the kernel fast path");
        let n = self.kernel_counter(counter);
        eprintln!(
            "{}: kernel fast path {counter} = {n}; user space saw {} frames; kernel counters {:?}",
            self.method(),
            c.rx_frames,
            c.kernel
        );
        assert!(
            n >= at_least,
            "the kernel fast path forwarded {n} packets by {counter}, expected at least {at_least}: {:?}",
            c.kernel
        );
    }

    /// Extra arguments for the next [`Director::start_lvsd`] (e.g. `--metrics-listen ADDR`).
    pub fn set_lvsd_args(&mut self, args: &[&str]) {
        self.lvsd_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Extra environment variables for the next [`Director::start_lvsd`] (e.g.
    /// `NOTIFY_SOCKET`).
    pub fn set_lvsd_env(&mut self, vars: &[(&str, &str)]) {
        self.lvsd_env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Sends SIGTERM to lvsd and waits for it (SIGKILL after 5 s); returns its exit status.
    pub fn stop_lvsd(&mut self) -> ExitStatus {
        let mut c = self.lvsd.take().expect("lvsd is not running");
        terminate(&mut c, Duration::from_secs(5))
    }

    /// The running lvsd's process id (`ip netns exec` executes lvsd in its own process).
    pub fn lvsd_pid(&self) -> u32 {
        self.lvsd.as_ref().expect("lvsd is not running").id()
    }

    /// CPU time (user + system, in clock ticks of 1/100 s) lvsd used so far.
    pub fn lvsd_cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.lvsd_pid()))
            .expect("/proc/PID/stat of lvsd");
        // Fields after the command name (which may hold spaces, in parentheses).
        let rest = stat.rsplit_once(')').expect("(comm)").1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }

    /// Kills lvsd with SIGKILL (a crash: nothing is cleaned up) and reaps it.
    pub fn kill_lvsd(&mut self) {
        let mut c = self.lvsd.take().expect("lvsd is not running");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// The lab.
    pub fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("lab exists until drop")
    }
    /// The forwarding method.
    pub fn method(&self) -> Method {
        self.method
    }
    /// The control socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
    /// lvsd's output so far.
    pub fn lvsd_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `lvsadm ARGS` against this director's socket.
    pub fn lvsadm(&self, args: &[&str]) -> Output {
        Command::new(&self.bins.lvsadm)
            .args(args)
            .env("LVSD_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run lvsadm")
    }

    /// Runs `lvsadm ARGS`, panics unless it succeeds, returns stdout.
    pub fn lvsadm_ok(&self, args: &[&str]) -> String {
        let out = self.lvsadm(args);
        assert!(
            out.status.success(),
            "{}: `lvsadm {}` failed ({}): {}{}",
            self.test,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds `-t VIP:80` and `-u VIP:5353` with `sched`, each with the real servers `servers`
    /// (0-based) forwarded with the lab's method, weight 1.
    pub fn add_services(&self, sched: &str, servers: &[usize]) {
        for (p, port) in [("-t", HTTP_PORT), ("-u", UDP_PORT)] {
            let vp = vip_port(port);
            self.lvsadm_ok(&["-A", p, &vp, "-s", sched]);
            for &i in servers {
                self.add_real(p, port, i, 1);
            }
        }
    }

    /// `lvsadm -a PROTO VIP:port -r RIP:port <method> -w W`.
    pub fn add_real(&self, proto_flag: &str, port: u16, i: usize, weight: u32) {
        let (vp, rp, w) = (vip_port(port), rip_port(i, port), weight.to_string());
        self.lvsadm_ok(&[
            "-a",
            proto_flag,
            &vp,
            "-r",
            &rp,
            forward_flag(self.method),
            "-w",
            &w,
        ]);
    }

    /// Starts trafgen on the router's link to the director, on one CPU and as fast as it
    /// goes, for at most `secs`: `packet` is what follows the Ethernet header in trafgen's
    /// language (`ipv4(...), udp(...)`), sent from the router's MAC to the director's.
    pub fn trafgen(&self, packet: &str, secs: u64) -> Trafgen {
        let router = self.lab().router_ns();
        let mac = |ns: &str, dev: &str| {
            self.lab()
                .exec_ok(ns, &["cat", &format!("/sys/class/net/{dev}/address")])
                .unwrap_or_else(|e| panic!("{}: MAC of {dev}: {e:#}", self.test))
                .trim()
                .to_string()
        };
        let (dmac, smac) = (mac(&self.lab().director_ns(), "eth0"), mac(&router, "eth1"));
        let conf = std::env::temp_dir().join(format!(
            "lvs-e2e-{}-{}.trafgen",
            prefix_for(&self.test),
            std::process::id()
        ));
        std::fs::write(
            &conf,
            format!("{{ eth(da={dmac}, sa={smac}), {packet} }}\n"),
        )
        .expect("trafgen configuration");
        let (secs, conf_s) = (secs.to_string(), conf.to_str().expect("UTF-8 path"));
        let child = self
            .lab()
            .spawn(
                &router,
                &[
                    "timeout",
                    "-s",
                    "INT",
                    &secs,
                    "trafgen",
                    "--dev",
                    "eth1",
                    "--conf",
                    conf_s,
                    "--cpus",
                    "1",
                    "--no-sock-mem",
                    "-q",
                ],
            )
            .expect("trafgen");
        Trafgen { child, conf }
    }

    /// Whether an XDP program is attached to the director's interface `dev` (`ip -d link`
    /// shows `prog/xdp id N`).
    pub fn xdp_attached(&self, dev: &str) -> bool {
        let out = self.in_director(&["ip", "-d", "link", "show", "dev", dev]);
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }

    /// Runs `args` in the director namespace.
    pub fn in_director(&self, args: &[&str]) -> Output {
        self.lab()
            .exec(&self.lab().director_ns(), args)
            .expect("ip netns exec")
    }

    /// `curl URL` from the client namespace: the body, or curl's error.
    pub fn try_curl(&self, url: &str) -> Result<String, String> {
        let out = self
            .lab()
            .exec(&self.lab().client_ns(), &["curl", "-sS", "-m", "10", url])
            .map_err(|e| format!("{e:#}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(format!(
                "curl {url}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `curl URL` from the client namespace; panics on failure.
    pub fn curl(&self, url: &str) -> String {
        self.try_curl(url)
            .unwrap_or_else(|e| panic!("{}: {e}\nlvsd log:\n{}", self.test, self.lvsd_log()))
    }

    /// `GET http://VIP/` from the client.
    pub fn curl_vip(&self) -> String {
        self.curl(&format!("http://{VIP}/"))
    }

    /// Downloads `/blob?size=N` through the VIP from the client; returns curl's exit,
    /// the SHA-256 of what arrived and the time it took.
    pub fn download_sha256(&self, size: u64) -> (String, Duration) {
        let script =
            format!("set -o pipefail; curl -sS -m 120 'http://{VIP}/blob?size={size}' | sha256sum");
        let t = Instant::now();
        let out = self
            .lab()
            .exec(&self.lab().client_ns(), &["bash", "-c", &script])
            .expect("bash");
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "{}: download of {size} bytes failed after {took:?}: {}\nlvsd log:\n{}",
            self.test,
            String::from_utf8_lossy(&out.stderr).trim(),
            self.lvsd_log()
        );
        let sum = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        (sum, took)
    }

    /// Sends one UDP datagram with `payload` to VIP:5353 from the client and returns the
    /// answer (retries twice on the same socket if nothing comes back within 2 s).
    pub fn udp(&self, payload: &str) -> String {
        const PY: &str = "import socket,sys\n\
            s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
            s.settimeout(2)\n\
            for _ in range(3):\n\
            \x20   s.sendto(sys.argv[3].encode(),(sys.argv[1],int(sys.argv[2])))\n\
            \x20   try:\n\
            \x20       print(s.recvfrom(4096)[0].decode()); sys.exit(0)\n\
            \x20   except socket.timeout:\n\
            \x20       pass\n\
            sys.exit('no UDP answer')\n";
        let out = self
            .lab()
            .exec(
                &self.lab().client_ns(),
                &[
                    "python3",
                    "-c",
                    PY,
                    &VIP.to_string(),
                    &UDP_PORT.to_string(),
                    payload,
                ],
            )
            .expect("python3");
        assert!(
            out.status.success(),
            "{}: UDP request to {VIP}:{UDP_PORT} failed: {}\nlvsd log:\n{}",
            self.test,
            String::from_utf8_lossy(&out.stderr).trim(),
            self.lvsd_log()
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// The parsed `lvsadm -L -n --stats --exact`.
    pub fn stats(&self) -> Vec<ServiceStats> {
        parse_stats(&self.lvsadm_ok(&["-L", "-n", "--stats", "--exact"]))
    }

    /// The stats of service `PROTO VIP:port`.
    pub fn service_stats(&self, proto: &str, port: u16) -> ServiceStats {
        let addr = vip_port(port);
        let all = self.stats();
        all.iter()
            .find(|s| s.proto == proto && s.addr == addr)
            .cloned()
            .unwrap_or_else(|| panic!("no {proto} {addr} in the stats: {all:?}"))
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        if let Some(mut c) = self.lvsd.take() {
            terminate(&mut c, Duration::from_secs(5));
        }
        for mut c in std::mem::take(&mut self.decaps) {
            terminate(&mut c, Duration::from_secs(3));
        }
        if std::thread::panicking() {
            eprintln!(
                "---- lvsd log of {} ({}) ----\n{}----",
                self.test,
                self.log.display(),
                self.lvsd_log()
            );
        }
        drop(self.lab.take());
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A running trafgen ([`Director::trafgen`]); stopped, and its configuration removed, when
/// dropped.
#[derive(Debug)]
pub struct Trafgen {
    child: Child,
    conf: PathBuf,
}

impl Trafgen {
    /// Waits until its time is up.
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }

    /// Stops it now (`timeout` passes the signal on to trafgen's worker, a child of its own).
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Trafgen {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.conf);
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
pub fn terminate(c: &mut Child, grace: Duration) -> ExitStatus {
    if let Ok(Some(st)) = c.try_wait() {
        return st;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(st)) = c.try_wait() {
            return st;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    c.wait().expect("wait")
}

// ---------------------------------------------------------------------------------------------
// Scenarios shared by the NAT, DR and Tun test binaries.
// ---------------------------------------------------------------------------------------------

/// rr over three real servers: 12 curl requests are answered 4/4/4, every answer names the
/// client's own address; then the director's counters: in NAT both directions, in DR and Tun
/// no reply packet (OutPkts 0) but client packets (InPkts > 0).
pub fn rr_spread_and_counters(method: Method, test: &str) {
    let d = Director::start(method, test);
    d.add_services("rr", &[0, 1, 2]);
    let mut per = [0usize; 3];
    for n in 0..12 {
        let body = d.curl_vip();
        let rs = answered_by(&body).unwrap_or_else(|| panic!("request {n}: odd answer {body:?}"));
        assert_eq!(
            client_seen(&body),
            Some(CLIENT_IP),
            "request {n}: the real server must see the client's own address: {body:?}"
        );
        per[rs] += 1;
    }
    assert_eq!(per, [4, 4, 4], "rr over three real servers, 12 requests");
    // On the kernel fast path the kernel scheduled those connections itself, and the core
    // took each into its table (the counts below are the core's).
    d.assert_kernel_forwarded("new_flows", 12);

    let svc = d.service_stats("TCP", HTTP_PORT);
    eprintln!(
        "{method}: TCP service counters after 12 requests: {:?}",
        svc.counters
    );
    assert_eq!(svc.counters.conns, 12, "{svc:?}");
    assert!(svc.counters.in_pkts > 0, "{svc:?}");
    for (rip, c) in &svc.dests {
        assert_eq!(c.conns, 4, "{rip}: {svc:?}");
    }
    match method {
        Method::Nat => {
            // Each request: at least SYN, ACK, GET, FIN, ACK in and SYN-ACK, data, FIN out.
            assert!(svc.counters.in_pkts >= 12 * 4, "{svc:?}");
            assert!(
                svc.counters.out_pkts >= 12 * 3,
                "NAT replies go through the director: {svc:?}"
            );
            assert!(svc.counters.out_bytes > 0, "{svc:?}");
        }
        Method::Dr | Method::Tun => {
            assert!(svc.counters.in_pkts >= 12 * 4, "{svc:?}");
            assert_eq!(
                (svc.counters.out_pkts, svc.counters.out_bytes),
                (0, 0),
                "{method}: replies must not pass through the director: {svc:?}"
            );
        }
    }
}

/// The kernel counter of a method's client → real server packets.
pub fn kernel_in_counter(method: Method) -> &'static str {
    match method {
        Method::Nat => "nat_in",
        Method::Dr => "direct_route",
        Method::Tun => "tunnel",
    }
}

/// A 50 MB download through the VIP arrives intact and a UDP request/reply works; in NAT the
/// download's data is counted as OutBytes, in DR/Tun it bypasses the director.
pub fn download_and_udp(method: Method, test: &str) {
    const SIZE: u64 = 50_000_000;
    let d = Director::start(method, test);
    d.add_services("rr", &[0, 1, 2]);
    let (sum, took) = d.download_sha256(SIZE);
    let expect = lvs_lab::blob::blob_sha256(SIZE);
    assert_eq!(
        sum, expect,
        "50 MB through the {method} VIP arrived corrupted"
    );
    eprintln!(
        "{method}: 50 MB in {:.2} s ({:.0} Mbit/s)",
        took.as_secs_f64(),
        SIZE as f64 * 8.0 / took.as_secs_f64() / 1e6
    );

    let reply = d.udp("hello-e2e");
    assert!(
        answered_by(&reply).is_some()
            && client_seen(&reply) == Some(CLIENT_IP)
            && reply.ends_with(" hello-e2e"),
        "UDP echo through the VIP: {reply:?}"
    );
    let tcp = d.service_stats("TCP", HTTP_PORT).counters;
    let udp = d.service_stats("UDP", UDP_PORT).counters;
    // A 50 MB download is ~35k segments of 1448 bytes, fewer packets where GRO merges them
    // (~1,500 measured): the client's ACKs and, in NAT, the data are the kernel's to forward.
    d.assert_kernel_forwarded(kernel_in_counter(method), 100);
    if method == Method::Nat {
        d.assert_kernel_forwarded("nat_out", 100);
    }
    assert_eq!(udp.conns, 1, "{udp:?}");
    assert!(udp.in_pkts >= 1, "{udp:?}");
    match method {
        Method::Nat => {
            assert!(tcp.out_bytes >= SIZE, "{tcp:?}");
            assert!(udp.out_pkts >= 1, "{udp:?}");
        }
        Method::Dr | Method::Tun => {
            assert_eq!(tcp.out_pkts, 0, "{tcp:?}");
            assert_eq!(udp.out_pkts, 0, "{udp:?}");
        }
    }
}

/// One request of the load loop.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When curl was started.
    pub start: Instant,
    /// When it returned.
    pub end: Instant,
    /// The real server that answered (0-based), or curl's error.
    pub result: Result<usize, String>,
}

/// One configuration change during the load.
#[derive(Debug, Clone)]
struct Change {
    start: Instant,
    end: Instant,
    /// Real server and whether it can take new connections afterwards.
    server: usize,
    eligible: bool,
    what: String,
}

/// Adds, re-weights and removes real servers while a bounded load (150 sequential curl
/// requests, each a new connection) runs against `wrr` on VIP:80:
///
/// - start: rs1, rs2 (weight 1);
/// - after 25 requests: add rs3;
/// - after 55: rs1 weight 3 (checked: rs1 then gets more requests than rs2 and rs3);
/// - after 90: remove rs2 (connections already scheduled to it continue);
/// - after 120: rs1 weight 0 (quiescent: no new connection, existing ones continue).
///
/// Asserts every request succeeded and was answered by a real server that could take new
/// connections at some moment while the request ran (a change counts from the start of its
/// `lvsadm` call when it adds capacity, until its end when it takes capacity away).
pub fn reconfigure_under_load(method: Method, test: &str) {
    const TOTAL: usize = 150;
    let d = Arc::new(Director::start(method, test));
    let vp = vip_port(HTTP_PORT);
    d.lvsadm_ok(&["-A", "-t", &vp, "-s", "wrr"]);
    d.add_real("-t", HTTP_PORT, 0, 1);
    d.add_real("-t", HTTP_PORT, 1, 1);

    let done = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(TOTAL)));
    let t0 = Instant::now();
    let loader = {
        let (d, done, samples) = (Arc::clone(&d), Arc::clone(&done), Arc::clone(&samples));
        std::thread::spawn(move || {
            for _ in 0..TOTAL {
                let start = Instant::now();
                let r = d.try_curl(&format!("http://{VIP}/"));
                let end = Instant::now();
                let result = r.and_then(|b| {
                    if client_seen(&b) != Some(CLIENT_IP) {
                        return Err(format!("wrong client address in {b:?}"));
                    }
                    answered_by(&b).ok_or_else(|| format!("odd answer {b:?}"))
                });
                samples.lock().unwrap().push(Sample { start, end, result });
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let wait_for = |n: usize| {
        while done.load(Ordering::SeqCst) < n {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "the load loop stalled"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let m = forward_flag(method);
    let plan: [(usize, Vec<String>, usize, bool); 4] = [
        (
            25,
            args(&["-a", "-t", &vp, "-r", &rip_port(2, 80), m, "-w", "1"]),
            2,
            true,
        ),
        (
            55,
            args(&["-e", "-t", &vp, "-r", &rip_port(0, 80), m, "-w", "3"]),
            0,
            true,
        ),
        (
            90,
            args(&["-d", "-t", &vp, "-r", &rip_port(1, 80)]),
            1,
            false,
        ),
        (
            120,
            args(&["-e", "-t", &vp, "-r", &rip_port(0, 80), m, "-w", "0"]),
            0,
            false,
        ),
    ];
    let mut changes = Vec::new();
    for (after, argv, server, eligible) in plan {
        wait_for(after);
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let start = Instant::now();
        d.lvsadm_ok(&a);
        let end = Instant::now();
        changes.push(Change {
            start,
            end,
            server,
            eligible,
            what: format!("lvsadm {}", argv.join(" ")),
        });
    }
    loader.join().expect("load thread panicked");
    let elapsed = t0.elapsed();
    let samples = samples.lock().unwrap().clone();
    eprintln!(
        "{method}: {TOTAL} requests in {:.1} s while changing the table",
        elapsed.as_secs_f64()
    );

    // Every request succeeded.
    let failed: Vec<(usize, &String)> = samples
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.result.as_ref().err().map(|e| (i, e)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {TOTAL} requests failed while the table changed: {failed:?}\nlvsd log:\n{}",
        failed.len(),
        d.lvsd_log()
    );

    // Windows in which each server may take new connections.
    let far = t0 + Duration::from_secs(3600);
    let mut windows: [Vec<(Instant, Instant)>; 3] = Default::default();
    let mut open: [Option<Instant>; 3] = [Some(t0), Some(t0), None];
    for c in &changes {
        match (c.eligible, open[c.server]) {
            (true, None) => open[c.server] = Some(c.start),
            (false, Some(from)) => {
                windows[c.server].push((from, c.end));
                open[c.server] = None;
            }
            _ => {}
        }
    }
    for (i, o) in open.iter().enumerate() {
        if let Some(from) = o {
            windows[i].push((*from, far));
        }
    }
    for (n, s) in samples.iter().enumerate() {
        let rs = *s.result.as_ref().expect("checked above");
        assert!(
            windows[rs].iter().any(|&(a, b)| a <= s.end && s.start <= b),
            "request {n} (at {:?}..{:?}) was answered by rs{} which could not take new \
             connections then; changes: {:?}",
            s.start - t0,
            s.end - t0,
            rs + 1,
            changes
                .iter()
                .map(|c| (c.start - t0, c.end - t0, &c.what))
                .collect::<Vec<_>>()
        );
    }

    // Requests entirely inside the phase between change k's end and change k+1's start.
    let phase = |from: Instant, to: Instant| -> [usize; 3] {
        let mut per = [0; 3];
        for s in samples.iter().filter(|s| s.start >= from && s.end <= to) {
            per[*s.result.as_ref().expect("checked")] += 1;
        }
        per
    };
    let after_add = phase(changes[0].end, changes[1].start);
    assert!(
        after_add[2] > 0,
        "rs3 got nothing after being added: {after_add:?}"
    );
    let weighted = phase(changes[1].end, changes[2].start);
    if weighted.iter().sum::<usize>() >= 10 {
        assert!(
            weighted[0] > weighted[1] && weighted[0] > weighted[2],
            "rs1 at weight 3 must get more than rs2/rs3 at weight 1: {weighted:?}"
        );
    }
    let last = phase(changes[3].end, far);
    assert!(
        last[0] == 0 && last[1] == 0 && last[2] > 0,
        "after rs2's removal and rs1's weight 0 only rs3 may answer: {last:?}"
    );
    eprintln!(
        "{method}: per phase (rs1, rs2, rs3): initial {:?}, +rs3 {after_add:?}, rs1 w3 \
         {weighted:?}, -rs2 {:?}, rs1 w0 {last:?}",
        phase(t0, changes[0].start),
        phase(changes[2].end, changes[3].start)
    );
    let out = d.lvsadm_ok(&["-L", "-n"]);
    assert!(!out.contains(&rip_port(1, 80)), "rs2 removed:\n{out}");
    drop(d);
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_escaped_paths() {
        let dep = "/t/debug/lvsd: /s/a.rs /s/with\\ space.rs /s/b.c\n\n/s/a.rs:\n";
        assert_eq!(
            dep_info_sources(dep),
            ["/s/a.rs", "/s/with space.rs", "/s/b.c"]
        );
    }

    #[test]
    fn a_binary_older_than_a_source_is_stale() {
        let dir = std::env::temp_dir().join(format!("lvs-e2e-fresh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, bin) = (dir.join("src.rs"), dir.join("prog"));
        std::fs::write(&src, "fn main() {}").unwrap();
        std::fs::write(&bin, "binary").unwrap();
        std::fs::write(
            dir.join("prog.d"),
            format!("{}: {}\n", bin.display(), src.display()),
        )
        .unwrap();
        let at = |p: &Path, secs: u64| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        at(&src, 1_000_000);
        at(&bin, 2_000_000);
        let ok = fresh(&bin);
        at(&src, 3_000_000);
        let stale = fresh(&bin);
        std::fs::remove_file(&src).unwrap();
        let gone = fresh(&bin);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(ok, Ok(()));
        assert!(stale.unwrap_err().contains("changed after it was built"));
        assert!(gone.unwrap_err().contains("is gone"));
    }

    #[test]
    fn parses_stats_and_answers() {
        let text = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
  -> RemoteAddress:Port\n\
TCP  10.201.2.100:80                     4       27       16     1764     1320\n\
  -> 10.201.3.11:80                      2       13        8      852      660\n\
UDP  10.201.2.100:5353                   0        0        0        0        0\n";
        let s = parse_stats(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].proto, "TCP");
        assert_eq!(s[0].counters.out_pkts, 16);
        assert_eq!(s[0].dests["10.201.3.11:80"].in_bytes, 852);
        assert!(s[1].dests.is_empty());
        assert_eq!(answered_by("rs3 saw 10.201.1.2:4000 hi"), Some(2));
        assert_eq!(answered_by("nope"), None);
        assert_eq!(
            client_seen("rs1 saw 10.201.1.2:4000"),
            Some(Ipv4Addr::new(10, 201, 1, 2))
        );
    }
}

/// The connections the last lvsd took over from a handover, as its log says.
fn handed_over(log: &str) -> u64 {
    log.lines()
        .rev()
        .find(|l| l.contains("handed-over connection"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("adopted="))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Prepare the lab for `--datapath xdp` as a NIC-fed director would see its traffic: complete
/// checksums from the senders (transmit checksum offload off on the client and the real
/// servers), NAPI (GRO) on the director's veth peers that XDP redirects into (design.md).
pub fn prepare_for_xdp(d: &Director) {
    let lab = d.lab();
    let ethtool = |ns: &str, dev: &str, what: &[&str]| {
        let mut args = vec!["ethtool", "-K", dev];
        args.extend_from_slice(what);
        lab.exec_ok(ns, &args).unwrap_or_else(|e| {
            panic!("ethtool in {ns}: {e:#} (scripts/install-deps.sh installs ethtool)")
        });
    };
    ethtool(&lab.client_ns(), lvs_lab::CLIENT_IF, &["tx", "off"]);
    for i in 0..3 {
        ethtool(&lab.rs_ns(i), lvs_lab::RS_IF, &["tx", "off"]);
    }
    ethtool(&lab.router_ns(), lvs_lab::ROUTER_FRONT_IF, &["gro", "on"]);
    ethtool(&lab.switch_ns(), "p-dir", &["gro", "on"]);
}

/// How a restart happens in [`restart_keeps_downloads`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// SIGTERM with `--keep-forwarding-on-exit`, then a new lvsd (systemctl restart).
    Term,
    /// SIGKILL (a crash), then a new lvsd.
    Kill,
}

/// `EstabResets` of `/proc/net/snmp` in namespace `ns`: TCP connections reset from
/// ESTABLISHED or CLOSE_WAIT (a RST received, mostly).
pub fn estab_resets(lab: &Lab, ns: &str) -> u64 {
    let snmp = lab
        .exec_ok(ns, &["cat", "/proc/net/snmp"])
        .expect("/proc/net/snmp");
    let tcp: Vec<Vec<&str>> = snmp
        .lines()
        .filter(|l| l.starts_with("Tcp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let [names, values] = &tcp[..] else {
        panic!("no Tcp lines in /proc/net/snmp:\n{snmp}");
    };
    let i = names
        .iter()
        .position(|n| *n == "EstabResets")
        .expect("EstabResets");
    values[i].parse().expect("a number")
}

/// 20 downloads of 50 MB run while lvsd on `datapath` (`tc`, `xdp` or `afpacket`) is stopped and
/// started again, as in `restarts`, reconfigured each time (as a configuration file would):
/// every download completes with its SHA-256 intact, no client connection is reset, and the
/// new lvsd adopted connections of the old one (on `afpacket` they are handed over in a file
/// at SIGTERM: a `kill -9` cannot hand over, so only `Restart::Term` applies there).
pub fn restart_keeps_downloads(method: Method, test: &str, datapath: &str, restarts: &[Restart]) {
    const SIZE: u64 = 50_000_000;
    const N: usize = 20;
    let dp = format!("--datapath={datapath}");
    let mut d = Director::without_lvsd(method, test);
    if datapath == "xdp" {
        prepare_for_xdp(&d);
    }
    d.set_lvsd_args(&[&dp, "--keep-forwarding-on-exit"]);
    d.start_lvsd();
    let resets_before = estab_resets(d.lab(), &d.lab().client_ns());
    d.add_services("rr", &[0, 1, 2]);
    let script = format!(
        "set -o pipefail; curl -sS --limit-rate 3M -m 90 'http://{VIP}/blob?size={SIZE}' | sha256sum"
    );
    let downloads: Vec<Child> = (0..N)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", &d.lab().client_ns(), "bash", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("curl")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let mut adopted = 0;
    for (n, how) in restarts.iter().enumerate() {
        match how {
            Restart::Term => {
                let st = d.stop_lvsd();
                assert!(st.success(), "lvsd must exit 0 on SIGTERM: {st}");
                // lvs_xdp's neighbours would freeze with nobody to keep them: tc alone
                // carries the flows until the next lvsd.
                if datapath == "xdp" {
                    assert!(
                        !d.xdp_attached(lvs_lab::DIRECTOR_FRONT_IF),
                        "{method}: lvs_xdp left in front after a --keep-forwarding-on-exit stop"
                    );
                }
            }
            Restart::Kill => d.kill_lvsd(),
        }
        // The last lvsd cleans up after itself at the end of the test.
        if n + 1 == restarts.len() {
            d.set_lvsd_args(&[&dp]);
        }
        std::thread::sleep(Duration::from_millis(500));
        d.start_lvsd();
        d.add_services("rr", &[0, 1, 2]);
        std::thread::sleep(Duration::from_secs(1));
        if datapath == "xdp" {
            assert!(
                d.xdp_attached(lvs_lab::DIRECTOR_FRONT_IF),
                "{method}: no lvs_xdp after the start that followed {how:?}"
            );
        }
        adopted = if datapath != "afpacket" {
            d.kernel_counter("adopted")
        } else {
            handed_over(&d.lvsd_log())
        };
        eprintln!(
            "{method}: after {how:?} + start: kernel counters {:?}",
            d.counters().kernel
        );
        assert!(
            adopted > 0,
            "{method}: the new lvsd adopted no connection of the old one after {how:?}: {:?}\n{}",
            d.counters().kernel,
            d.lvsd_log()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let expect = lvs_lab::blob::blob_sha256(SIZE);
    let mut broken = Vec::new();
    for (i, c) in downloads.into_iter().enumerate() {
        let out = c.wait_with_output().expect("wait");
        let sum = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if !out.status.success() || sum != expect {
            broken.push(format!(
                "download {i}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "{method}: {} of {N} downloads broken across {restarts:?}:\n{}\nlvsd log:\n{}",
        broken.len(),
        broken.join("\n"),
        d.lvsd_log()
    );
    let resets = estab_resets(d.lab(), &d.lab().client_ns()) - resets_before;
    assert_eq!(
        resets, 0,
        "{method} on {datapath}: the client saw {resets} connections reset across {restarts:?}"
    );
    // The adopted connections are the core's again: listed, and real-server counts back.
    let list = d.lvsadm_ok(&["-L", "-n", "-c"]);
    let tcp = list.lines().filter(|l| l.starts_with("TCP")).count();
    eprintln!(
        "{method} on {datapath}: {N} downloads intact and 0 client connections reset across {restarts:?}; last lvsd adopted {adopted}, lists {tcp} TCP connections"
    );
    assert!(
        tcp >= N,
        "{method}: the adopted downloads must be listed by lvsadm -L -c:\n{list}"
    );
}

/// The first connection from each of 50 client addresses the director has never seen
/// completes without a SYN retransmission: the director holds the frame that needs the new
/// neighbour's MAC while the kernel resolves it, instead of dropping it. The clients are
/// addresses added to the router's interface on the director's front network, so that in
/// NAT every reply needs a fresh resolution on the director; before every tenth request the
/// director's neighbour entries of the real servers are flushed too (all methods need those).
/// Asserts each connection completes within 50 ms and `neighbour_unresolved` stays 0.
pub fn new_neighbours_cost_no_retransmit(method: Method, test: &str) {
    const CLIENTS: u8 = 50;
    let d = Director::start(method, test);
    d.add_services("rr", &[0, 1, 2]);
    let router = d.lab().router_ns();
    // The router has resolved the VIP once: new source addresses do not make it ARP again,
    // so the director cannot learn them from an ARP request.
    d.lab()
        .exec_ok(
            &router,
            &["curl", "-sS", "-m", "5", &format!("http://{VIP}/")],
        )
        .unwrap_or_else(|e| panic!("{test}: warm-up request: {e:#}"));
    let before = d.counters();
    let mut times = Vec::new();
    for n in 0..CLIENTS {
        let addr = Ipv4Addr::new(10, 201, 2, 150 + n);
        d.lab()
            .exec_ok(
                &router,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    lvs_lab::ROUTER_FRONT_IF,
                ],
            )
            .unwrap_or_else(|e| panic!("{test}: adding {addr}: {e:#}"));
        if n % 10 == 0 {
            d.in_director(&["ip", "neigh", "flush", "dev", lvs_lab::DIRECTOR_BACK_IF]);
        }
        let out = d
            .lab()
            .exec_ok(
                &router,
                &[
                    "curl",
                    "-sS",
                    "-m",
                    "5",
                    "--interface",
                    &addr.to_string(),
                    "-w",
                    "\n%{time_connect}",
                    &format!("http://{VIP}/"),
                ],
            )
            .unwrap_or_else(|e| panic!("{test}: request from {addr}: {e:#}\n{}", d.lvsd_log()));
        let connect: f64 = out
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no time in {out:?}"));
        assert_eq!(
            client_seen(&out),
            Some(addr),
            "the real server saw the new client address: {out}"
        );
        times.push((addr, connect));
    }
    let after = d.counters();
    let drop_of = |c: &lvs_api::CountersInfo| {
        c.drops
            .iter()
            .find(|(r, _)| r == "neighbour_unresolved")
            .map_or(0, |(_, n)| *n)
    };
    let mut sorted: Vec<f64> = times.iter().map(|t| t.1).collect();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "{method}: first connections from {CLIENTS} new client addresses: median {:.1} ms, max {:.1} ms; \
         neighbour_unresolved {} -> {}, held now {}, frames that waited {}",
        sorted[sorted.len() / 2] * 1e3,
        sorted[sorted.len() - 1] * 1e3,
        drop_of(&before),
        drop_of(&after),
        after.held,
        after.held_total - before.held_total
    );
    let slow: Vec<_> = times.iter().filter(|t| t.1 >= 0.05).collect();
    assert!(
        slow.is_empty(),
        "{method}: connections that took 50 ms or more (a retransmitted SYN takes 1 s): {slow:?}\n{}",
        d.lvsd_log()
    );
    assert_eq!(
        drop_of(&after),
        drop_of(&before),
        "{method}: frames dropped for an unresolved neighbour"
    );
    assert_eq!(after.held, 0, "{method}: every held frame left");
    // In NAT every new client's SYN-ACK leaves the director towards an address it has never
    // resolved: each one waited in lvsd (DR and Tun replies do not pass the director; on
    // the kernel fast path the program forwards the replies, and bpf_redirect_neigh waits).
    if method == Method::Nat && !kernel_datapath() {
        let waited = after.held_total - before.held_total;
        assert!(
            waited >= u64::from(CLIENTS),
            "{method}: only {waited} frames waited for a neighbour, expected one per new client"
        );
    }
}
