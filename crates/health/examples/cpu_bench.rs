//! CPU cost of the checker: N real servers with 1 s `tcp` checks against local listeners.
//!
//! `cargo run --release -p lvs-health --example cpu_bench -- [servers] [seconds]`
//! (defaults 1000 and 30). The listeners (one per server, 127.0.0.1, distinct ports) run on
//! their own thread; the number reported is the CPU time (utime + stime from
//! `/proc/self/task/TID/stat`) of the engine thread `lvsd-health` over the run, as a share of
//! one core, plus the whole process for comparison.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lvs_health::{CheckConfig, CheckKind, Engine};

/// utime + stime, in clock ticks, of a `/proc/.../stat` file.
fn ticks(path: &str) -> u64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm field: state is field 3, utime 14, stime 15 (1-based over the line).
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

fn engine_thread() -> Option<String> {
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let p = e.path();
        if std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == "lvsd-health") {
            return Some(p.join("stat").display().to_string());
        }
    }
    None
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);

    // Listeners on their own runtime and thread.
    let (ptx, prx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("listeners".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                for _ in 0..n {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    ptx.send(l.local_addr().expect("addr")).expect("send");
                    tokio::spawn(async move {
                        while let Ok((s, _)) = l.accept().await {
                            drop(s);
                        }
                    });
                }
                std::future::pending::<()>().await;
            });
        })
        .expect("thread");
    let addrs: Vec<SocketAddr> = (0..n).map(|_| prx.recv().expect("listener")).collect();

    let (etx, erx) = std::sync::mpsc::channel();
    let engine = Engine::start(etx).expect("engine");
    let mut cfg = CheckConfig::new(CheckKind::Tcp);
    cfg.delay_loop = 1.0;
    cfg.connect_timeout = 1.0;
    for (i, a) in addrs.iter().enumerate() {
        engine.set(i, cfg.compile(*a).expect("check"));
    }
    std::thread::sleep(Duration::from_millis(200));
    let stat = engine_thread().expect("engine thread");
    let hz = 100.0; // USER_HZ on Linux
    let (t0, p0, w0) = (ticks(&stat), ticks("/proc/self/stat"), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, p1, wall) = (
        ticks(&stat),
        ticks("/proc/self/stat"),
        w0.elapsed().as_secs_f64(),
    );
    let checks: u64 = engine.statuses().iter().map(|(_, s)| s.checks).sum();
    let downs = engine.statuses().iter().filter(|(_, s)| !s.up).count();
    let events = erx.try_iter().count();
    println!(
        "{n} tcp checks, delay_loop 1 s, {wall:.1} s: {checks} checks run, {downs} down, {events} state changes"
    );
    println!(
        "checker thread CPU: {:.2} s = {:.1} % of one core",
        (t1 - t0) as f64 / hz,
        100.0 * (t1 - t0) as f64 / hz / wall
    );
    println!(
        "whole process (checker + {n} listeners): {:.1} % of one core",
        100.0 * (p1 - p0) as f64 / hz / wall
    );
}
