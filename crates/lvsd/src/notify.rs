//! systemd's service notifications (`Type=notify`, `sd_notify(3)`, through the `sd-notify`
//! crate): `READY=1` once lvsd serves (data path up, configuration applied, control socket
//! bound), `RELOADING=1` … `READY=1` around a SIGHUP reload, `STOPPING=1` when it stops, and
//! `WATCHDOG=1` every half `WATCHDOG_USEC` while the control plane answers ([`spawn_watchdog`]).
//!
//! The watchdog proves more than that lvsd's process runs: before each `WATCHDOG=1` the
//! watchdog thread sends a `version` request through lvsd's own control socket, which the
//! control server hands to worker 0 between two packet batches, under the `Director` lock, and
//! the answer must come back within the ping interval; and every data path worker must have
//! turned its loop within [`beat_limit`]. A hung control server, a worker stuck in a syscall
//! or a deadlocked `Director` stops the pings, and systemd restarts lvsd after `WatchdogSec`.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) nothing is sent and no thread starts.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lvs_api::{Envelope, Reply, Request};
use sd_notify::NotifyState;
use tracing::{debug, info, warn};

use crate::dataplane::Shared;

/// Whether lvsd was started by a service manager that listens (`NOTIFY_SOCKET`).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "cannot notify the service manager");
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` (with the `MONOTONIC_USEC` systemd 253 and later require with it); follow
/// with [`ready`].
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    states.extend(NotifyState::monotonic_usec_now().ok());
    send(&states);
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How old a worker's last loop turn ([`Shared::worker_beat`]) may be for the watchdog to
/// ping: the ping interval, but at least 3 s (workers note a turn about every second).
pub fn beat_limit(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(3))
}

/// Start the watchdog thread when the service manager asks for one (`WATCHDOG_USEC`, for this
/// process): every half of that it checks the control plane ([`check`]) and sends `WATCHDOG=1`
/// only when the check passed. `None` without a watchdog.
pub fn spawn_watchdog(
    socket: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<Option<JoinHandle<()>>> {
    let Some(timeout) = sd_notify::watchdog_enabled().filter(|_| enabled()) else {
        return Ok(None);
    };
    let interval = (timeout / 2).max(Duration::from_millis(100));
    info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog: pinging while the control plane answers"
    );
    let thread = std::thread::Builder::new()
        .name("lvsd-watchdog".into())
        .spawn(move || {
            let mut failing = false;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match check(&socket, &shared, interval) {
                    Ok(()) => {
                        send(&[NotifyState::Watchdog]);
                        if std::mem::take(&mut failing) {
                            info!("systemd watchdog: the control plane answers again");
                        }
                    }
                    // A stop under way closes the control socket: not a failure to report.
                    Err(_) if stop.load(Ordering::Relaxed) => break,
                    Err(why) => {
                        if !std::mem::replace(&mut failing, true) {
                            warn!(reason = %why, "systemd watchdog: not pinging (systemd restarts lvsd when WatchdogSec passes without one)");
                        }
                    }
                }
                let next = started + interval;
                while !stop.load(Ordering::Relaxed) && Instant::now() < next {
                    std::thread::sleep(
                        next.saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(100)),
                    );
                }
            }
        })
        .context("cannot start the watchdog thread")?;
    Ok(Some(thread))
}

/// Whether the control plane is alive: every data path worker turned its loop within
/// [`beat_limit`] of `within`, and a `version` request through the control socket at `socket`
/// is answered within `within`. Says what failed.
pub fn check(socket: &Path, shared: &Shared, within: Duration) -> Result<(), String> {
    let now = shared.now();
    let limit = beat_limit(within);
    for (id, beat) in shared.worker_beat.iter().enumerate() {
        let seen = lvs_core::Time::from_nanos(beat.load(Ordering::Relaxed));
        let age = now.saturating_since(seen);
        if age > limit {
            return Err(format!(
                "data path worker {id} has not turned its loop for {} ms",
                age.as_millis()
            ));
        }
    }
    round_trip(socket, within)
}

/// One `version` request through the control socket, answered within `within`.
fn round_trip(socket: &Path, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let fail = |what: &str, e: std::io::Error| format!("control socket {what}: {e}");
    let stream = UnixStream::connect(socket).map_err(|e| fail("connect", e))?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(left()))
        .map_err(|e| fail("timeout", e))?;
    let mut line = serde_json::to_string(&Envelope {
        v: lvs_api::VERSION,
        request: Request::Version,
    })
    .map_err(|e| format!("cannot write the request: {e}"))?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| fail("write", e))?;
    stream
        .set_read_timeout(Some(left()))
        .map_err(|e| fail("timeout", e))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "the control socket did not answer within {} ms",
                within.as_millis()
            ),
            _ => fail("read", e),
        })?;
    if Instant::now() > deadline {
        return Err(format!(
            "control socket answered after more than {} ms",
            within.as_millis()
        ));
    }
    match serde_json::from_str::<Reply>(&answer) {
        Ok(Reply::Version { .. }) => Ok(()),
        // The server is there but turned this client away (every slot taken by other
        // clients): it answered, so the control server runs; the data path is checked by
        // the workers' loop turns.
        Ok(Reply::Error { message }) if message.starts_with("too many control connections") => {
            Ok(())
        }
        Ok(other) => Err(format!("control socket answered {other:?}")),
        Err(e) if answer.is_empty() => {
            Err(format!("control socket closed without an answer ({e})"))
        }
        Err(e) => Err(format!("control socket answered {answer:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::AtomicU64;

    fn shared(beats: &[u64]) -> Shared {
        Shared {
            director: std::sync::Mutex::new(lvs_core::Director::new(
                Default::default(),
                lvs_core::Time::ZERO,
            )),
            worker_packets: Vec::new(),
            losses: Default::default(),
            worker_beat: beats.iter().map(|b| AtomicU64::new(*b)).collect(),
            start: Instant::now() - Duration::from_secs(100),
            stop: Arc::new(AtomicBool::new(false)),
            busy_poll: Duration::ZERO,
        }
    }

    /// A control socket that answers each connection's first line with `answer` after
    /// `delay` (`None`: reads and never answers).
    fn server(name: &str, answer: Option<&'static str>, delay: Duration) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("lvsd-notify-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut line = String::new();
                let _ = BufReader::new(&s).read_line(&mut line);
                assert!(line.contains(r#""op":"version""#), "{line}");
                std::thread::sleep(delay);
                match answer {
                    Some(a) => {
                        let _ = (&s).write_all(a.as_bytes());
                    }
                    None => std::thread::sleep(Duration::from_secs(5)),
                }
            }
        });
        path
    }

    const VERSION: &str = "{\"result\":\"version\",\"protocol\":1,\"daemon\":\"0.1.0\"}\n";
    const SECOND: Duration = Duration::from_secs(1);
    /// 99.5 s: the fixture's clock is 100 s old, so these beats are 0.5 s ago.
    const FRESH: u64 = 99_500_000_000;

    #[test]
    fn passes_when_every_worker_turns_and_the_socket_answers_in_time() {
        let sock = server("ok", Some(VERSION), Duration::ZERO);
        assert_eq!(check(&sock, &shared(&[FRESH, FRESH]), SECOND), Ok(()));
        // A control server that turned the probe away still answered.
        let busy = server(
            "busy",
            Some(
                "{\"result\":\"error\",\"message\":\"too many control connections at once (32): try again\"}\n",
            ),
            Duration::ZERO,
        );
        assert_eq!(check(&busy, &shared(&[FRESH]), SECOND), Ok(()));
    }

    #[test]
    fn fails_when_a_worker_stopped_turning() {
        let sock = server("stale", Some(VERSION), Duration::ZERO);
        // Worker 1 last turned 10 s ago; the limit is 3 s.
        let err = check(&sock, &shared(&[FRESH, 90_000_000_000]), SECOND).unwrap_err();
        assert!(err.contains("worker 1"), "{err}");
    }

    #[test]
    fn fails_when_the_socket_is_slow_silent_wrong_or_absent() {
        let within = Duration::from_millis(300);
        let slow = server("slow", Some(VERSION), Duration::from_millis(600));
        let t = Instant::now();
        assert!(check(&slow, &shared(&[FRESH]), within).is_err());
        assert!(
            t.elapsed() < Duration::from_millis(550),
            "{:?}",
            t.elapsed()
        );
        let silent = server("silent", None, Duration::ZERO);
        let err = check(&silent, &shared(&[FRESH]), within).unwrap_err();
        assert!(err.contains("did not answer within 300 ms"), "{err}");
        let wrong = server("wrong", Some("{\"result\":\"ok\"}\n"), Duration::ZERO);
        assert!(check(&wrong, &shared(&[FRESH]), within).is_err());
        let garbage = server("garbage", Some("hello\n"), Duration::ZERO);
        assert!(check(&garbage, &shared(&[FRESH]), within).is_err());
        let absent = std::env::temp_dir().join("lvsd-notify-absent.sock");
        let err = check(&absent, &shared(&[FRESH]), within).unwrap_err();
        assert!(err.contains("connect"), "{err}");
    }

    #[test]
    fn beat_limit_is_the_interval_but_at_least_three_seconds() {
        assert_eq!(
            beat_limit(Duration::from_millis(500)),
            Duration::from_secs(3)
        );
        assert_eq!(beat_limit(Duration::from_secs(5)), Duration::from_secs(5));
    }
}
