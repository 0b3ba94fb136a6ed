//! lvsd under a service manager's `NOTIFY_SOCKET` (`Type=notify`): the test binds the unix
//! datagram socket systemd would, and starts lvsd with `WATCHDOG_USEC=2000000` (a ping every
//! second). lvsd says `READY=1` once it serves, then `WATCHDOG=1` every second; when its worker
//! 0 (which answers the control socket's requests, under the `Director` lock) is wedged, the
//! pings stop, and they come back when it runs again; a stop says `STOPPING=1`.
//!
//! The wedge is honest: one thread of lvsd, `lvsd-worker0`, is stopped with ptrace
//! (`PTRACE_SEIZE` + `PTRACE_INTERRUPT` on that thread alone, from Python's ctypes) while
//! every other thread, the watchdog's included, runs on; SIGSTOP would stop the whole
//! process and prove nothing. See `lib.rs` for the fixture.
#![forbid(unsafe_code)]

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use lvs_e2e::{Director, Method, skip};

/// Stops thread `argv[1]` for `argv[2]` seconds: prints `frozen` once it is stopped and
/// `thawed` when it runs again (the kernel also lets it go if this script dies).
const FREEZE: &str = "import ctypes,os,sys,time\n\
    libc=ctypes.CDLL(None,use_errno=True)\n\
    libc.ptrace.argtypes=[ctypes.c_long,ctypes.c_int,ctypes.c_void_p,ctypes.c_void_p]\n\
    libc.ptrace.restype=ctypes.c_long\n\
    tid=int(sys.argv[1])\n\
    def pt(req):\n\
    \x20   if libc.ptrace(req,tid,None,None)!=0:\n\
    \x20       sys.exit('ptrace %d: %s'%(req,os.strerror(ctypes.get_errno())))\n\
    pt(0x4206)\n\
    pt(0x4207)\n\
    os.waitpid(tid,0x40000000)\n\
    print('frozen',flush=True)\n\
    time.sleep(float(sys.argv[2]))\n\
    pt(17)\n\
    print('thawed',flush=True)\n";

/// The notifications lvsd sent, each with when it arrived.
fn listen(path: &std::path::Path) -> Receiver<(Instant, String)> {
    let _ = std::fs::remove_file(path);
    let sock = UnixDatagram::bind(path).expect("bind the notify socket");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if tx.send((Instant::now(), msg)).is_err() {
                return;
            }
        }
    });
    rx
}

/// The messages that arrive within `within`.
fn collect(rx: &Receiver<(Instant, String)>, within: Duration) -> Vec<(Instant, String)> {
    let end = Instant::now() + within;
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(m) => out.push(m),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return out,
        }
    }
}

fn pings(msgs: &[(Instant, String)]) -> Vec<Instant> {
    msgs.iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

/// The thread id of lvsd's thread named `name`.
fn thread_id(pid: u32, name: &str) -> u32 {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .and_then(|t| t.file_name().to_str()?.parse().ok())
        .unwrap_or_else(|| panic!("lvsd (pid {pid}) has no thread named {name}"))
}

#[test]
fn ready_then_watchdog_pings_that_stop_while_the_control_plane_is_wedged() {
    const TEST: &str = "ready_then_watchdog_pings_that_stop_while_the_control_plane_is_wedged";
    if skip(TEST) {
        return;
    }
    let path = std::env::temp_dir().join(format!("lvs-e2e-notify-{}.sock", std::process::id()));
    let rx = listen(&path);
    let mut d = Director::without_lvsd(Method::Nat, TEST);
    let notify = path.to_str().expect("UTF-8 path").to_string();
    d.set_lvsd_env(&[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "2000000")]);
    d.start_lvsd();

    // READY=1 first (with a status line), then a ping every second.
    let first = collect(&rx, Duration::from_millis(4500));
    let texts: Vec<&str> = first.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        texts
            .first()
            .is_some_and(|m| m.lines().any(|l| l == "READY=1")
                && m.lines().any(|l| l.starts_with("STATUS=serving"))),
        "the first notification must be READY=1 with a status: {texts:?}"
    );
    let ok = pings(&first);
    assert!(ok.len() >= 3, "at least 3 pings in 4.5 s: {texts:?}");
    for w in ok.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap < Duration::from_millis(1600),
            "{gap:?} between pings: {texts:?}"
        );
    }

    // What the unit's LimitNOFILE and TasksMax are sized against, as one worker uses it.
    let pid = d.lvsd_pid();
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, |e| e.count());
    eprintln!(
        "lvsd: {} open files, {} threads",
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task"))
    );

    // Wedge worker 0 for 6 s: the control socket's requests go unanswered.
    let tid = thread_id(pid, "lvsd-worker0");
    let mut freezer = Command::new("python3")
        .args(["-c", FREEZE, &tid.to_string(), "6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = std::io::BufReader::new(freezer.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("freezer output");
    if line.trim() != "frozen" {
        let status = freezer.wait().expect("freezer exit");
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut freezer.stderr.take().expect("piped"), &mut err);
        panic!("cannot stop lvsd's worker 0 with ptrace ({status}): {err}");
    }
    let frozen = Instant::now();
    // A round trip that began before the stop may still end in a ping.
    let _ = collect(&rx, Duration::from_millis(1500));
    let during = collect(&rx, Duration::from_millis(4000));
    assert!(
        pings(&during).is_empty(),
        "pings went on while worker 0 was stopped: {during:?}"
    );
    line.clear();
    out.read_line(&mut line).expect("freezer output");
    assert_eq!(line.trim(), "thawed");
    assert!(freezer.wait().expect("freezer exit").success());
    eprintln!("no ping for {:?} of the wedge", frozen.elapsed());

    // Running again: the pings come back.
    let after = collect(&rx, Duration::from_millis(4000));
    assert!(
        pings(&after).len() >= 2,
        "the pings did not come back after worker 0 ran again: {after:?}\n{}",
        d.lvsd_log()
    );
    let log = d.lvsd_log();
    for l in log.lines().filter(|l| l.contains("systemd watchdog")) {
        eprintln!("lvsd: {l}");
    }
    assert!(log.contains("systemd watchdog: not pinging"), "{log}");
    assert!(log.contains("the control plane answers again"), "{log}");

    // A stop says so.
    assert!(d.stop_lvsd().success());
    let last = collect(&rx, Duration::from_millis(500));
    assert!(
        last.iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1 at the stop: {last:?}"
    );
    let _ = std::fs::remove_file(&path);
}
