//! The control plane cannot be starved (issue 11), end to end: lvsd in the NAT lab while a
//! prober runs `lvsadm -L -n` every 20 ms and times each call, through these phases:
//!
//! 1. 2,000 idle clients connect one after another and stay connected (lvsd serves 32 at
//!    once; each newcomer closes the one idle longest, so they cost it nothing lasting);
//! 2. one client sends a 100 MiB request line (told it is too long at 32 MiB, and closed);
//! 3. 1,000 garbage requests on four connections, each answered with an `error`;
//! 4. the same three again with lvsd in a pids cgroup whose limit is what it already uses,
//!    so it cannot start a thread or a process (a change, which runs `nft`, shows the limit
//!    biting); then the limit is lifted.
//!
//! Every `lvsadm -L -n`, during the phases and after, must succeed within 100 ms (process
//! start included); the distribution of each phase is printed. lvsd's open descriptors and
//! threads stay bounded.
//!
//! The second test fills lvsd's table with 1,000,000 entries by a flood of UDP flows (trafgen
//! on the router, a random source address and port per datagram, as `benches/list-conns.sh`
//! does), lists it with `lvsadm -L -n -c`, and checks that every entry is listed once and
//! that lvsadm's peak memory and lvsd's growth during the listing stay within a bound that
//! does not depend on the table's size ([`LIST_BOUND_MIB`]).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lvs_e2e::{Director, Method, VIP, skip, skip_without_trafgen, status_kib};

/// The longest an `lvsadm -L -n` may take, process start included.
const BOUND: Duration = Duration::from_millis(100);
/// Idle clients opened in each idle phase.
const IDLE_CLIENTS: usize = 2000;
/// Garbage requests in each garbage phase.
const GARBAGE: usize = 1000;
/// Entries of the listed table (filled in 6–13 s, listed in about 21 s by the debug build).
const TABLE: usize = 1_000_000;
/// lvsadm's peak RSS and lvsd's growth during the listing, in MiB: one page of 16,384
/// entries, whatever the table's size (before paging, 1,000,000 entries took lvsadm
/// 1,294 MiB and lvsd 324 MiB more).
const LIST_BOUND_MIB: u64 = 48;

/// `lvsadm -L -n` every 20 ms, each call timed and labelled with the phase it ran in.
struct Prober {
    phase: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
}

struct Sample {
    phase: String,
    took: Duration,
    failure: Option<String>,
}

impl Prober {
    fn start(lvsadm: PathBuf, socket: PathBuf) -> Prober {
        let phase = Arc::new(Mutex::new("baseline".to_string()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&phase), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let phase = p.lock().map(|p| p.clone()).unwrap_or_default();
                let t = Instant::now();
                let out = Command::new(&lvsadm)
                    .args(["-L", "-n"])
                    .env("LVSD_SOCKET", &socket)
                    .stdin(Stdio::null())
                    .output();
                let took = t.elapsed();
                let failure = match out {
                    Ok(o) if o.status.success() && o.stdout.starts_with(b"IP Virtual Server") => {
                        None
                    }
                    Ok(o) => Some(format!(
                        "{}: {}{}",
                        o.status,
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )),
                    Err(e) => Some(e.to_string()),
                };
                samples.push(Sample {
                    phase,
                    took,
                    failure,
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        Prober {
            phase,
            stop,
            thread: Some(thread),
        }
    }

    fn phase(&self, name: &str) {
        eprintln!("phase: {name}");
        if let Ok(mut p) = self.phase.lock() {
            *p = name.to_string();
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Per phase, in order: calls, failures, min / median / p90 / p99 / max in ms.
fn distribution(samples: &[Sample]) -> String {
    let mut phases: Vec<&str> = Vec::new();
    for s in samples {
        if !phases.contains(&s.phase.as_str()) {
            phases.push(&s.phase);
        }
    }
    let mut out = String::new();
    for phase in phases {
        let mut t: Vec<Duration> = samples
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| s.took)
            .collect();
        let failed = samples
            .iter()
            .filter(|s| s.phase == phase && s.failure.is_some())
            .count();
        t.sort();
        let q = |f: f64| t[((t.len() - 1) as f64 * f).round() as usize];
        out.push_str(&format!(
            "  {phase:<34} {:>4} calls {failed} failed  min {} p50 {} p90 {} p99 {} max {} ms\n",
            t.len(),
            ms(q(0.0)),
            ms(q(0.5)),
            ms(q(0.9)),
            ms(q(0.99)),
            ms(q(1.0)),
        ));
    }
    out
}

fn count_dir(dir: String) -> usize {
    std::fs::read_dir(dir).map_or(0, |e| e.count())
}

/// Room for 2,000 sockets in this process, whatever the soft limit it was started with.
fn raise_nofile() {
    let soft: u64 = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0);
    if soft < 8192 {
        let pid = std::process::id().to_string();
        let ok = Command::new("prlimit")
            .args(["--pid", &pid, "--nofile=8192:8192"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot raise this test's open-file limit with prlimit");
    }
}

/// `n` connections, opened one after another and left idle.
fn idle_clients(socket: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .map(|i| {
            UnixStream::connect(socket)
                .unwrap_or_else(|e| panic!("idle client {i} of {n} cannot connect: {e}"))
        })
        .collect()
}

/// How many of `held` lvsd told they were closed (to make room).
fn told_closed(held: &mut [UnixStream]) -> usize {
    let mut told = 0;
    for s in held {
        let _ = s.set_nonblocking(true);
        let mut buf = [0u8; 512];
        if let Ok(k) = s.read(&mut buf)
            && k > 0
        {
            let text = String::from_utf8_lossy(&buf[..k]);
            assert!(
                text.contains(lvs_api::CLOSED_FOR_ROOM) || text.contains(lvs_api::REFUSED_BUSY),
                "an idle client was told something else: {text}"
            );
            told += 1;
        }
    }
    told
}

/// A 100 MiB line without a newline: lvsd must say it is too long and close.
fn long_line(socket: &Path) -> String {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    for _ in 0..100 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let mut reply = String::new();
    let _ = BufReader::new(&s).read_line(&mut reply);
    assert!(
        reply.contains("longer than 33554432 bytes"),
        "after {sent} bytes of one line lvsd answered {reply:?}"
    );
    let mut rest = Vec::new();
    let _ = (&s).read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the connection stays open after an over-long line"
    );
    format!("{} MiB sent before lvsd closed", sent >> 20)
}

/// Garbage of every kind: each must get an `error` reply on a connection that stays open.
fn garbage_lines() -> Vec<Vec<u8>> {
    let mut deep = "[".repeat(10_000);
    deep.push_str(&"]".repeat(10_000));
    let texts = [
        "not json",
        "{",
        "[]",
        "42",
        "{\"v\":1}",
        "{\"v\":1,\"op\":\"fly\"}",
        "{\"v\":99,\"op\":\"list\"}",
        "{\"v\":\"1\",\"op\":\"list\"}",
        "{\"v\":1,\"op\":\"add_service\",\"service\":{}}",
        "{\"v\":1,\"op\":\"set_timeouts\",\"tcp\":-1,\"tcpfin\":0,\"udp\":0}",
        "{\"v\":1,\"op\":\"set_timeouts\",\"tcp\":18446744073709551615,\"tcpfin\":0,\"udp\":0}",
        "{\"v\":1,\"op\":\"connections\",\"limit\":\"all\"}",
        "{\"v\":1,\"op\":\"delete_service\",\"key\":{\"Addr\":{\"proto\":\"Tcp\",\"addr\":\"10.9.9.9\",\"port\":1}}}",
        "{\"v\":1,\"op\":\"zero\",\"key\":{\"Fwmark\":{\"mark\":4294967295,\"family\":\"V4\"}}}",
        &deep,
    ];
    let mut lines: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
    lines.push(b"\xff\xfe{\"v\":1}".to_vec());
    lines.push(b"\0\0\0\0".to_vec());
    lines.push(b"{\"v\":1,\"op\":\"list\"\xc0}".to_vec());
    lines
}

/// `n` garbage requests over four connections, sent at once; every reply is an `error`.
fn garbage(socket: &Path, n: usize) {
    let kinds = garbage_lines();
    let per = n / 4;
    let threads: Vec<_> = (0..4)
        .map(|c| {
            let socket = socket.to_path_buf();
            let kinds = kinds.clone();
            std::thread::spawn(move || {
                let s = UnixStream::connect(&socket).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let writer = s.try_clone().unwrap();
                let sent = kinds.clone();
                let sender = std::thread::spawn(move || {
                    let kinds = sent;
                    let mut w = std::io::BufWriter::new(writer);
                    for i in 0..per {
                        w.write_all(&kinds[(i + c) % kinds.len()]).unwrap();
                        w.write_all(b"\n").unwrap();
                    }
                    w.flush().unwrap();
                });
                let mut r = BufReader::new(s);
                for i in 0..per {
                    let mut line = String::new();
                    r.read_line(&mut line).expect("reply");
                    assert!(
                        line.starts_with("{\"result\":\"error\""),
                        "garbage {:?} answered {line:?}",
                        String::from_utf8_lossy(&kinds[(i + c) % kinds.len()])
                    );
                }
                sender.join().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("garbage client");
    }
}

/// lvsd in a pids cgroup limited to the tasks it has: no thread or process can start until
/// dropped (lvsd goes back to the root cgroup).
struct PidsLimit {
    dir: PathBuf,
    root: PathBuf,
    pid: u32,
}

impl PidsLimit {
    fn new(pid: u32, name: &str) -> Result<PidsLimit, String> {
        // cgroup v1's pids hierarchy, else the unified one with the pids controller.
        let v1 = PathBuf::from("/sys/fs/cgroup/pids");
        let root = if v1.join("cgroup.procs").exists() {
            v1
        } else {
            let unified = PathBuf::from("/sys/fs/cgroup");
            let controllers =
                std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
            if !controllers.split_whitespace().any(|c| c == "pids") {
                return Err("no pids cgroup controller (v1 or v2)".into());
            }
            let _ = std::fs::write(unified.join("cgroup.subtree_control"), "+pids");
            unified
        };
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |file: &str, what: String| {
            std::fs::write(dir.join(file), &what)
                .map_err(|e| format!("writing {what} to {}: {e}", dir.join(file).display()))
        };
        write("cgroup.procs", pid.to_string())?;
        let current = std::fs::read_to_string(dir.join("pids.current"))
            .map_err(|e| format!("pids.current: {e}"))?;
        write("pids.max", current.trim().to_string())?;
        Ok(PidsLimit { dir, root, pid })
    }

    /// Forks refused by the limit so far.
    fn refused(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("pids.events"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("max "))
                    .and_then(|l| l[4..].trim().parse().ok())
            })
            .unwrap_or(0)
    }

    fn limit(&self) -> String {
        std::fs::read_to_string(self.dir.join("pids.max"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

impl Drop for PidsLimit {
    fn drop(&mut self) {
        let _ = std::fs::write(self.root.join("cgroup.procs"), self.pid.to_string());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn lvsadm_answers_within_100_ms_through_idle_clients_long_lines_garbage_and_a_task_limit() {
    const TEST: &str =
        "lvsadm_answers_within_100_ms_through_idle_clients_long_lines_garbage_and_a_task_limit";
    if skip(TEST) {
        return;
    }
    raise_nofile();
    let d = Director::start(Method::Nat, TEST);
    d.add_services("rr", &[0, 1, 2]);
    let pid = d.lvsd_pid();
    let socket = d.socket().to_path_buf();
    let (fds0, tasks0) = (
        count_dir(format!("/proc/{pid}/fd")),
        count_dir(format!("/proc/{pid}/task")),
    );
    let rss0 = status_kib(pid, "VmRSS:");
    let prober = Prober::start(lvs_e2e::bins().lvsadm, socket.clone());
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));

    let mut notes = Vec::new();
    let mut fds_max = fds0;
    let mut rounds = |label: &str, notes: &mut Vec<String>| {
        prober.phase(&format!("{label}{IDLE_CLIENTS} idle clients"));
        let mut held = idle_clients(&socket, IDLE_CLIENTS);
        std::thread::sleep(Duration::from_secs(1));
        let told = told_closed(&mut held);
        let fds = count_dir(format!("/proc/{pid}/fd"));
        fds_max = fds_max.max(fds);
        notes.push(format!(
            "{label}{IDLE_CLIENTS} idle clients: {told} told they were closed, lvsd holds {fds} \
             descriptors ({fds0} before)"
        ));
        drop(held);
        prober.phase(&format!("{label}a 100 MiB line"));
        notes.push(format!("{label}100 MiB line: {}", long_line(&socket)));
        prober.phase(&format!("{label}{GARBAGE} garbage requests"));
        let t = Instant::now();
        garbage(&socket, GARBAGE);
        notes.push(format!(
            "{label}{GARBAGE} garbage requests: all answered with an error in {} ms",
            ms(t.elapsed())
        ));
    };
    rounds("", &mut notes);

    prober.phase("task limit");
    let limit = match PidsLimit::new(pid, &format!("lvs-e2e-{}", std::process::id())) {
        Ok(l) => l,
        Err(why) => {
            assert!(
                !lvs_testkit::under_ci(),
                "{TEST}: cannot limit lvsd's tasks: {why}"
            );
            lvs_testkit::skip(TEST, &format!("cannot limit lvsd's tasks: {why}"));
            return;
        }
    };
    // A change runs nft: refused by the limit, which shows it bites.
    let change = d.lvsadm(&["-A", "-t", &format!("{VIP}:8080"), "-s", "rr"]);
    let refused = limit.refused();
    notes.push(format!(
        "task limit pids.max={}: a change needing nft answered {} ({}), forks refused so far {refused}",
        limit.limit(),
        change.status,
        String::from_utf8_lossy(&change.stderr).trim()
    ));
    assert!(
        refused > 0,
        "{TEST}: the task limit did not refuse anything: {notes:?}"
    );
    rounds("task limit: ", &mut notes);
    drop(limit);
    prober.phase("after");
    let _ = d.lvsadm(&["-D", "-t", &format!("{VIP}:8080")]);
    std::thread::sleep(Duration::from_secs(1));
    let samples = prober.finish();
    let tasks = count_dir(format!("/proc/{pid}/task"));
    let rss = status_kib(pid, "VmRSS:");

    eprintln!(
        "{TEST} ({:.1} s):\n  {}",
        started.elapsed().as_secs_f64(),
        notes.join("\n  ")
    );
    eprintln!(
        "lvsd: {tasks0} threads before, {tasks} after; descriptors {fds0} before, at most \
         {fds_max} with {IDLE_CLIENTS} clients; RSS {} MiB before, {} MiB after",
        rss0 >> 10,
        rss >> 10
    );
    eprintln!(
        "lvsadm -L -n, each call (process start included):\n{}",
        distribution(&samples)
    );
    let failures: Vec<String> = samples
        .iter()
        .filter_map(|s| s.failure.as_ref().map(|f| format!("[{}] {f}", s.phase)))
        .collect();
    assert!(
        failures.is_empty(),
        "{TEST}: lvsadm -L -n failed: {failures:?}"
    );
    let slow: Vec<String> = samples
        .iter()
        .filter(|s| s.took > BOUND)
        .map(|s| format!("[{}] {} ms", s.phase, ms(s.took)))
        .collect();
    assert!(
        slow.is_empty(),
        "{TEST}: lvsadm -L -n took more than {} ms: {slow:?}",
        BOUND.as_millis()
    );
    for phase in ["baseline", "task limit: 2000 idle clients", "after"] {
        assert!(
            samples.iter().any(|s| s.phase == phase),
            "{TEST}: no call in phase {phase}"
        );
    }
    assert!(
        fds_max <= fds0 + 40,
        "{TEST}: lvsd held {fds_max} descriptors with {IDLE_CLIENTS} clients ({fds0} before)"
    );
    assert!(
        tasks <= tasks0 + 2,
        "{TEST}: lvsd has {tasks} threads, {tasks0} before"
    );
}

/// lvsadm's exit status, stdout's line count and peak RSS (KiB) for `lvsadm ARGS`, measured
/// by python's `getrusage(RUSAGE_CHILDREN)`.
fn lvsadm_rusage(lvsadm: &Path, socket: &Path, args: &[&str]) -> (i32, usize, u64) {
    const PY: &str = "import resource, subprocess, sys\n\
        p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)\n\
        n = sum(1 for _ in p.stdout)\n\
        print(p.wait(), n, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
    let out = Command::new("python3")
        .args(["-c", PY])
        .arg(lvsadm)
        .args(args)
        .env("LVSD_SOCKET", socket)
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(f.len(), 3, "python said {text:?} {:?}", out.stderr);
    (f[0] as i32, f[1] as usize, f[2])
}

#[test]
fn a_large_connection_listing_stays_within_a_memory_bound() {
    const TEST: &str = "a_large_connection_listing_stays_within_a_memory_bound";
    if skip(TEST) || skip_without_trafgen(TEST) {
        return;
    }
    let begun = Instant::now();
    let mut d = Director::without_lvsd(Method::Nat, TEST);
    // The table holds TABLE entries: the flood fills it exactly.
    d.set_lvsd_args(&["--conn-limit", &TABLE.to_string()]);
    d.start_lvsd();
    let vp = format!("{VIP}:9");
    d.lvsadm_ok(&["-A", "-u", &vp, "-s", "rr"]);
    for i in 0..3 {
        let rp = format!("{}:9", lvs_lab::RIPS[i]);
        d.lvsadm_ok(&["-a", "-u", &vp, "-r", &rp, "-m"]);
        // The real servers drop the flood at once.
        d.lab()
            .exec_ok(
                &d.lab().rs_ns(i),
                &[
                    "nft",
                    "add table netdev lvsflood; add chain netdev lvsflood in { type filter hook \
                     ingress device eth0 priority -500; }; add rule netdev lvsflood in udp dport 9 drop",
                ],
            )
            .expect("nft on a real server");
    }
    let router = d.lab().router_ns();
    d.lab()
        .exec_ok(
            &router,
            &["ip", "route", "add", "blackhole", "10.250.0.0/16"],
        )
        .expect("blackhole route");
    let ready = begun.elapsed();
    let mut generator = d.trafgen(
        &format!(
            "ipv4(da={VIP}, sa=drnd({}, {}), ttl=64), udp(sp=drnd(1024, 65535), dp=9), \
             fill(0x42, 18)",
            0x0afa_0000u32, 0x0afa_ffffu32
        ),
        120,
    );
    let t0 = Instant::now();
    let mut conns = 0;
    while t0.elapsed() < Duration::from_secs(110) {
        std::thread::sleep(Duration::from_millis(250));
        conns = d.counters().conns;
        if conns >= TABLE {
            break;
        }
    }
    generator.stop();
    let fill = t0.elapsed();
    assert!(
        conns >= TABLE,
        "{TEST}: the flood made only {conns} entries in {fill:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let conns = d.counters().conns;

    let pid = d.lvsd_pid();
    let before = status_kib(pid, "VmRSS:");
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset lvsd's peak RSS");
    let t = Instant::now();
    let (code, lines, adm_kib) =
        lvsadm_rusage(&lvs_e2e::bins().lvsadm, d.socket(), &["-L", "-n", "-c"]);
    let took = t.elapsed();
    let peak = status_kib(pid, "VmHWM:");
    let grew = peak.saturating_sub(before);
    eprintln!(
        "{TEST}: lab ready in {:.1} s; {conns} entries (filled in {:.1} s); lvsadm -L -n -c: \
         {} lines in {:.2} s, lvsadm peak RSS {} MiB; lvsd RSS {} MiB before, peak {} MiB \
         during (+{} MiB); bound {LIST_BOUND_MIB} MiB each",
        ready.as_secs_f64(),
        fill.as_secs_f64(),
        lines,
        took.as_secs_f64(),
        adm_kib >> 10,
        before >> 10,
        peak >> 10,
        grew >> 10
    );
    assert_eq!(code, 0, "{TEST}: lvsadm -L -n -c failed");
    assert_eq!(
        lines,
        conns + 2,
        "{TEST}: every entry once, under the two heading lines"
    );
    assert!(
        adm_kib <= LIST_BOUND_MIB << 10,
        "{TEST}: lvsadm took {} MiB to list {conns} entries",
        adm_kib >> 10
    );
    assert!(
        grew <= LIST_BOUND_MIB << 10,
        "{TEST}: lvsd grew by {} MiB listing {conns} entries",
        grew >> 10
    );
}
