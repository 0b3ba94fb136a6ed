//! Runs the checks: one thread with a single-threaded tokio runtime, one task per check.
//!
//! Every probe is bounded by its own timeout, so a hung server only delays its own task.
//! State follows keepalived:
//!
//! * A server starts up, or down with `alpha`. Its first check starts after a random delay in
//!   `[0, warmup)` so that many checks do not fire together.
//! * An up server whose check fails is checked again after `delay_before_retry`, up to
//!   `retry` more times; it goes down only when all of them failed. Then the next check is
//!   `delay_loop` later.
//! * A down server goes up at the first check that passes (no retries, no waiting for
//!   `delay_loop`).
//! * An `exec` check with `dynamic` may change the weight of an up server.
//!
//! Each change is sent once as an [`Event`]; `notify_up` / `notify_down` run then.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use crate::config::{Check, Timing};
use crate::probe::Outcome;

/// How long a `notify_up` / `notify_down` / quorum command may run before it is killed.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// A state change of a checked server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// It passed after being down (or at first with `alpha`).
    Up {
        /// The weight asked by a dynamic `exec` check; `None` means the configured weight.
        weight: Option<u32>,
    },
    /// It failed `retry + 1` times in a row.
    Down,
    /// A dynamic `exec` check asked for another weight while up.
    Weight(u32),
}

/// A change reported by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<K> {
    /// Which check.
    pub key: K,
    /// What changed.
    pub change: Change,
    /// The result that caused it (the failing check's reason for `Down`).
    pub reason: String,
}

/// What the engine knows about a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// What is checked, e.g. `tcp 10.0.1.11:80`.
    pub check: String,
    /// Up or down.
    pub up: bool,
    /// Weight asked by a dynamic check.
    pub weight: Option<u32>,
    /// Since when in this state.
    pub since: SystemTime,
    /// Whether the last check passed (`None` before the first).
    pub last_ok: Option<bool>,
    /// The last result's detail or reason.
    pub last: String,
    /// When the last check ended.
    pub last_at: Option<SystemTime>,
    /// Checks run.
    pub checks: u64,
    /// Checks failed.
    pub failures: u64,
}

/// keepalived's state rules for one check, without any clock: feed results, get changes and
/// the delay until the next check.
#[derive(Clone, Debug)]
pub struct Tracker {
    timing: Timing,
    up: bool,
    fails: u32,
    weight: Option<u32>,
}

impl Tracker {
    /// A tracker starting up, or down.
    pub fn new(timing: Timing, up: bool) -> Tracker {
        Tracker {
            timing,
            up,
            fails: 0,
            weight: None,
        }
    }

    /// Whether the server is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Take a result; return the change it makes, if any, and when to check next.
    pub fn on(&mut self, outcome: &Outcome) -> (Option<Change>, Duration) {
        match outcome {
            Outcome::Up { weight, .. } => {
                self.fails = 0;
                let change = if !self.up {
                    self.up = true;
                    Some(Change::Up { weight: *weight })
                } else if *weight != self.weight {
                    weight
                        .map(Change::Weight)
                        .or(Some(Change::Up { weight: None }))
                } else {
                    None
                };
                self.weight = *weight;
                (change, self.timing.delay_loop)
            }
            Outcome::Down(_) if self.up => {
                self.fails += 1;
                if self.fails > self.timing.retry {
                    self.up = false;
                    self.fails = 0;
                    (Some(Change::Down), self.timing.delay_loop)
                } else {
                    (None, self.timing.delay_before_retry)
                }
            }
            Outcome::Down(_) => (None, self.timing.delay_loop),
        }
    }
}

/// A uniformly random duration in `[0, max)`.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    let nanos = max.as_nanos().min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(r % nanos)
}

struct Shared<K> {
    status: Mutex<HashMap<K, Status>>,
    events: Sender<Event<K>>,
}

enum Cmd<K> {
    Set(K, Check),
    Remove(K),
    Notify(String, Vec<(String, String)>),
}

/// The running checks.
pub struct Engine<K: Clone + Eq + Hash + Send + Sync + Debug + 'static> {
    cmds: Option<UnboundedSender<Cmd<K>>>,
    shared: Arc<Shared<K>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<K: Clone + Eq + Hash + Send + Sync + Debug + 'static> Engine<K> {
    /// Start the engine thread; changes go to `events`.
    pub fn start(events: Sender<Event<K>>) -> std::io::Result<Engine<K>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            status: Mutex::new(HashMap::new()),
            events,
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lvsd-health".into())
            .spawn(move || rt.block_on(dispatch(rx, s)))?;
        Ok(Engine {
            cmds: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    fn send(&self, c: Cmd<K>) {
        if let Some(tx) = &self.cmds {
            let _ = tx.send(c);
        }
    }

    /// Start (or replace) a check. A replaced check keeps its up/down state; a new one starts
    /// up, or down with `alpha`.
    pub fn set(&self, key: K, check: Check) {
        self.send(Cmd::Set(key, check));
    }

    /// Stop a check and forget its state.
    pub fn remove(&self, key: &K) {
        self.send(Cmd::Remove(key.clone()));
    }

    /// Run a shell command in the background (killed after [`NOTIFY_TIMEOUT`]).
    pub fn notify(&self, command: String, env: Vec<(String, String)>) {
        self.send(Cmd::Notify(command, env));
    }

    /// The status of one check.
    pub fn status(&self, key: &K) -> Option<Status> {
        self.shared.status.lock().ok()?.get(key).cloned()
    }

    /// The status of every check.
    pub fn statuses(&self) -> Vec<(K, Status)> {
        self.shared
            .status
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + Debug + 'static> Drop for Engine<K> {
    fn drop(&mut self) {
        self.cmds = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn dispatch<K: Clone + Eq + Hash + Send + Sync + Debug + 'static>(
    mut rx: UnboundedReceiver<Cmd<K>>,
    shared: Arc<Shared<K>>,
) {
    let mut tasks: HashMap<K, JoinHandle<()>> = HashMap::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Set(key, check) => {
                if let Some(t) = tasks.remove(&key) {
                    t.abort();
                }
                let up = {
                    let Ok(mut map) = shared.status.lock() else {
                        break;
                    };
                    let described = check.probe.describe();
                    let st = map.entry(key.clone()).or_insert_with(|| Status {
                        check: described.clone(),
                        up: !check.timing.alpha,
                        weight: None,
                        since: SystemTime::now(),
                        last_ok: None,
                        last: "not checked yet".into(),
                        last_at: None,
                        checks: 0,
                        failures: 0,
                    });
                    st.check = described;
                    st.up
                };
                let first = jitter(check.timing.warmup);
                let probe = Arc::clone(&check.probe);
                let task = run_loop(
                    key.clone(),
                    check.timing,
                    up,
                    first,
                    (check.notify_up.clone(), check.notify_down.clone()),
                    move || {
                        let p = Arc::clone(&probe);
                        async move { p.run().await }
                    },
                    Arc::clone(&shared),
                );
                tasks.insert(key, tokio::spawn(task));
            }
            Cmd::Remove(key) => {
                if let Some(t) = tasks.remove(&key) {
                    t.abort();
                }
                if let Ok(mut m) = shared.status.lock() {
                    m.remove(&key);
                }
            }
            Cmd::Notify(command, env) => {
                tokio::spawn(run_notify(command, env));
            }
        }
    }
    for (_, t) in tasks {
        t.abort();
    }
}

/// Run a notify command: `sh -c`, killed after [`NOTIFY_TIMEOUT`]; failures are logged.
async fn run_notify(command: String, env: Vec<(String, String)>) {
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(command = %command, error = %e, "notify command could not start");
            return;
        }
    };
    match tokio::time::timeout(NOTIFY_TIMEOUT, child.wait()).await {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => tracing::warn!(command = %command, status = %s, "notify command failed"),
        Ok(Err(e)) => tracing::warn!(command = %command, error = %e, "notify command failed"),
        Err(_) => {
            let _ = child.start_kill();
            tracing::warn!(command = %command, "notify command killed after {NOTIFY_TIMEOUT:?}");
        }
    }
}

/// The loop of one check: wait `first`, then probe, track, report, sleep, forever.
async fn run_loop<K, F, Fut>(
    key: K,
    timing: Timing,
    up: bool,
    first: Duration,
    notify: (Option<String>, Option<String>),
    mut probe: F,
    shared: Arc<Shared<K>>,
) where
    K: Clone + Eq + Hash + Send + Sync + Debug + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut tracker = Tracker::new(timing, up);
    tokio::time::sleep(first).await;
    loop {
        let outcome = probe().await;
        let (change, next) = tracker.on(&outcome);
        let now = SystemTime::now();
        if let Ok(mut map) = shared.status.lock()
            && let Some(st) = map.get_mut(&key)
        {
            st.checks += 1;
            st.last_ok = Some(outcome.is_up());
            if !outcome.is_up() {
                st.failures += 1;
            }
            if st.last != outcome.text() {
                st.last = outcome.text().to_string();
            }
            st.last_at = Some(now);
            if let Outcome::Up { weight, .. } = &outcome {
                st.weight = *weight;
            }
            if st.up != tracker.is_up() {
                st.up = tracker.is_up();
                st.since = now;
            }
        }
        if let Some(change) = change {
            let cmd = match change {
                Change::Up { .. } => notify.0.clone(),
                Change::Down => notify.1.clone(),
                Change::Weight(_) => None,
            };
            if let Some(cmd) = cmd {
                let env = vec![
                    ("LVS_CHECK".to_string(), format!("{key:?}")),
                    (
                        "LVS_STATE".to_string(),
                        if tracker.is_up() { "UP" } else { "DOWN" }.to_string(),
                    ),
                    ("LVS_REASON".to_string(), outcome.text().to_string()),
                ];
                tokio::spawn(run_notify(cmd, env));
            }
            let _ = shared.events.send(Event {
                key: key.clone(),
                change,
                reason: outcome.text().to_string(),
            });
        }
        tokio::time::sleep(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::time::Instant;

    fn timing(retry: u32, alpha: bool) -> Timing {
        Timing {
            delay_loop: Duration::from_secs(10),
            retry,
            delay_before_retry: Duration::from_secs(2),
            warmup: Duration::from_secs(5),
            alpha,
        }
    }

    fn up() -> Outcome {
        Outcome::Up {
            weight: None,
            detail: "ok".into(),
        }
    }

    fn down() -> Outcome {
        Outcome::Down("refused".into())
    }

    #[test]
    fn tracker_retries_before_going_down() {
        let mut t = Tracker::new(timing(2, false), true);
        let dl = Duration::from_secs(10);
        let dbr = Duration::from_secs(2);
        assert_eq!(t.on(&up()), (None, dl));
        assert_eq!(t.on(&down()), (None, dbr), "retry 1 of 2");
        assert_eq!(t.on(&down()), (None, dbr), "retry 2 of 2");
        assert_eq!(t.on(&down()), (Some(Change::Down), dl));
        assert_eq!(t.on(&down()), (None, dl), "no retries while down");
        assert_eq!(
            t.on(&up()),
            (Some(Change::Up { weight: None }), dl),
            "one pass brings it up"
        );
        // A pass in between resets the count.
        assert_eq!(t.on(&down()), (None, dbr));
        assert_eq!(t.on(&up()), (None, dl));
        assert_eq!(t.on(&down()), (None, dbr));
        assert_eq!(t.on(&down()), (None, dbr));
        assert_eq!(t.on(&down()), (Some(Change::Down), dl));
    }

    #[test]
    fn tracker_retry_zero_goes_down_at_once() {
        let mut t = Tracker::new(timing(0, false), true);
        assert_eq!(t.on(&down()).0, Some(Change::Down));
    }

    #[test]
    fn tracker_dynamic_weights() {
        let mut t = Tracker::new(timing(0, true), false);
        let w = |w| Outcome::Up {
            weight: Some(w),
            detail: String::new(),
        };
        assert_eq!(t.on(&w(5)).0, Some(Change::Up { weight: Some(5) }));
        assert_eq!(t.on(&w(5)).0, None);
        assert_eq!(t.on(&w(7)).0, Some(Change::Weight(7)));
        assert_eq!(
            t.on(&up()).0,
            Some(Change::Up { weight: None }),
            "back to the configured weight"
        );
        assert_eq!(t.on(&up()).0, None);
    }

    /// Drive `run_loop` in virtual time with scripted results; return the (virtual) times of
    /// the probes and the events.
    async fn script(
        timing: Timing,
        start_up: bool,
        first: Duration,
        results: Vec<Outcome>,
        run_for: Duration,
    ) -> (Vec<Duration>, Vec<(Duration, Change)>) {
        let (etx, erx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            status: Mutex::new(HashMap::new()),
            events: etx,
        });
        let t0 = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(results)));
        let (tm, q) = (Arc::clone(&times), Arc::clone(&queue));
        let task = tokio::spawn(run_loop(
            1u32,
            timing,
            start_up,
            first,
            (None, None),
            move || {
                tm.lock().unwrap().push(t0.elapsed());
                let o = q.lock().unwrap().pop_front().unwrap_or_else(up);
                async move { o }
            },
            Arc::clone(&shared),
        ));
        // Record when each event arrives by polling in small virtual steps.
        let mut events = Vec::new();
        while t0.elapsed() < run_for {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while let Ok(e) = erx.try_recv() {
                events.push((t0.elapsed(), e.change));
            }
        }
        task.abort();
        let t = times.lock().unwrap().clone();
        (t, events)
    }

    fn secs(v: &[f64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs_f64(*s)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retry_and_delay_before_retry_in_virtual_time() {
        let (times, events) = script(
            timing(2, false),
            true,
            Duration::from_secs(1),
            vec![up(), down(), down(), down(), down(), up()],
            Duration::from_secs(40),
        )
        .await;
        // 1: up; 11: fail; 13: retry fail; 15: retry fail -> down; 25: fail (no retry while
        // down); 35: pass -> up at once.
        assert_eq!(&times[..6], &secs(&[1.0, 11.0, 13.0, 15.0, 25.0, 35.0])[..]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].1, Change::Down);
        assert!(events[0].0 >= Duration::from_secs(15) && events[0].0 < Duration::from_secs(16));
        assert_eq!(events[1].1, Change::Up { weight: None });
        assert!(events[1].0 >= Duration::from_secs(35) && events[1].0 < Duration::from_secs(36));
    }

    #[tokio::test(start_paused = true)]
    async fn alpha_starts_down_until_a_pass() {
        let (times, events) = script(
            timing(1, true),
            false,
            Duration::ZERO,
            vec![down(), down(), up()],
            Duration::from_secs(25),
        )
        .await;
        assert_eq!(
            &times[..3],
            &secs(&[0.0, 10.0, 20.0])[..],
            "no retries while down"
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1, Change::Up { weight: None });
    }

    #[tokio::test(start_paused = true)]
    async fn warmup_delays_the_first_check_randomly() {
        for _ in 0..20 {
            let j = jitter(Duration::from_secs(5));
            assert!(j < Duration::from_secs(5));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        let (times, _) = script(
            timing(1, false),
            true,
            Duration::from_millis(3700),
            vec![],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(times, secs(&[3.7]));
    }
}
