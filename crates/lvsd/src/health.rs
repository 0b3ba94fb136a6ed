//! Health checks in the daemon: runs the [`lvs_health::Engine`] and turns what it sees into
//! changes of the service table, through [`Control::call`] like any other client.
//!
//! * A real server that goes **down** is removed (`DeleteDest`), or with
//!   `inhibit_on_failure` kept with weight 0 (`EditDest`). Its connections then follow the
//!   director's `expire_nodest_conn` (off by default, as in IPVS: they continue until they
//!   time out; on: dropped at their next packet so the client retries elsewhere) and
//!   persistence templates pointing at it follow `expire_quiescent_template`.
//! * A server that comes back **up** gets its configured weight again (or the weight a dynamic
//!   `exec` check asks for), by `EditDest` or `AddDest`.
//! * Per service, keepalived's **quorum**: the sum of the weights of the up checked servers.
//!   When it falls below `quorum - hysteresis` the quorum is lost; with a sorry server, the
//!   up servers are taken out (weight 0 when inhibited) and the sorry server put in, in one
//!   atomic batch. At `quorum + hysteresis` it is regained and that is reversed.
//!
//! Each change is logged once (`real server … DOWN: reason, …`, `… quorum LOST …`). The
//! desired table is always computed from the checks' states and compared to the live table,
//! so an operator's change in between (`lvsadm -a/-e/-d`, a reload) is reconciled rather
//! than fought blindly: a checked server that is down stays out, whatever is re-added.
//!
//! Servers without a check count towards the quorum with their listed weight (keepalived
//! treats a real server without checker as always alive). A server with several checks is
//! up while all of them pass, as with keepalived's checkers of one real server: the first
//! that fails takes it down, the last that recovers brings it back.
//!
//! **Configuration files.** `--config` at start and every reload go through
//! [`Health::apply_config`], which owns the whole step: it takes the live table, undoes the
//! health overrides ([`configured_view`]: servers taken out or set to weight 0 are put back as
//! configured, the sorry server it added is dropped), so the file is compared with what the
//! operator configured; it then moves its own state to the file's checks and health settings,
//! re-applies its overrides to the file's table ([`desired`]) and sends the difference from
//! the live table as **one** batch. A reload therefore neither re-adds a server a check took
//! out, nor restores a weight it set to 0, nor deletes the sorry server in use; and a check
//! removed from the file puts its server back as configured.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use lvs_api::{DestConfig, HealthInfo, Reply, Request, ServiceHealthInfo, ServiceInfo, ServiceKey};
use lvs_config::Config;
use lvs_health::{Change, Check, CheckConfig, Engine, Event, Quorum, QuorumChange, ServiceHealth};
use tracing::{info, warn};

use crate::config::Reloader;
use crate::control::{Control, Hooks, Origin};

/// A checked real server: service, address, port.
type Key = (ServiceKey, IpAddr, u16);

/// One check of a real server: the server, and the check's place among its checks.
type CheckKey = (ServiceKey, IpAddr, u16, u8);

/// Most checks one real server may have.
const MAX_CHECKS: usize = lvs_config::MAX_CHECKS;

fn check_key(k: Key, i: usize) -> CheckKey {
    (k.0, k.1, k.2, i as u8)
}

/// Where the health module sends its changes: the daemon's control path ([`Control`]), or a
/// stand-in in tests.
pub trait Table: Send + Sync {
    /// Apply or answer a request.
    fn call(&self, req: Request) -> Reply;
}

/// The health checks' own requests: past the hooks (they are the hooks), not logged as an
/// operator's change.
impl Table for Control {
    fn call(&self, req: Request) -> Reply {
        self.call_as(Origin::Health, req)
    }
}

#[derive(Clone)]
struct Server {
    /// The configuration to restore when it is up (weight = configured weight).
    dest: DestConfig,
    /// Which of its checks are down: it is up while none is.
    down: BTreeSet<u8>,
    dyn_weight: Option<u32>,
    /// The checks as configured.
    checks: Vec<CheckConfig>,
}

impl Server {
    /// A server whose checks start (those with `alpha` down, the others up).
    fn new(dest: DestConfig, checks: Vec<CheckConfig>, compiled: &[Check]) -> Server {
        Server {
            dest,
            down: alpha_down(compiled),
            dyn_weight: None,
            checks,
        }
    }

    fn up(&self) -> bool {
        self.down.is_empty()
    }

    /// Out with weight 0 rather than removed: when down, a failing check has
    /// `inhibit_on_failure`; when up (taken out because the quorum is lost), one of its
    /// checks has.
    fn inhibit(&self) -> bool {
        if self.down.is_empty() {
            return self.checks.iter().any(|c| c.inhibit_on_failure);
        }
        self.down.iter().any(|&i| {
            self.checks
                .get(usize::from(i))
                .is_some_and(|c| c.inhibit_on_failure)
        })
    }

    fn weight(&self) -> u32 {
        self.dyn_weight.unwrap_or(self.dest.weight)
    }

    /// New checks replace the old. A place that had a check keeps whether it is down (the
    /// engine keeps the state of a check it already runs); a new place starts as its
    /// `alpha` says. A dynamic weight goes when no check is dynamic any more.
    fn replace_checks(&mut self, checks: Vec<CheckConfig>, compiled: &[Check]) {
        let (old, n) = (self.checks.len(), checks.len());
        self.down.retain(|&i| usize::from(i) < n);
        for (i, c) in compiled.iter().enumerate().skip(old) {
            if c.timing.alpha {
                self.down.insert(i as u8);
            }
        }
        if !checks.iter().any(|c| c.dynamic) {
            self.dyn_weight = None;
        }
        self.checks = checks;
    }
}

fn alpha_down(compiled: &[Check]) -> BTreeSet<u8> {
    compiled
        .iter()
        .enumerate()
        .filter(|(_, c)| c.timing.alpha)
        .map(|(i, _)| i as u8)
        .collect()
}

/// `check` of a `set_check` request or a configuration: one check (an object) or several
/// (an array), each compiled for the real server at `rs`.
fn parse_checks(
    value: serde_json::Value,
    rs: SocketAddr,
) -> Result<(Vec<CheckConfig>, Vec<Check>), String> {
    let values = match value {
        serde_json::Value::Array(a) => a,
        one => vec![one],
    };
    if values.is_empty() || values.len() > MAX_CHECKS {
        return Err(format!(
            "give 1 to {MAX_CHECKS} checks, not {}",
            values.len()
        ));
    }
    let mut cfgs = Vec::new();
    let mut checks = Vec::new();
    for v in values {
        let cfg: CheckConfig =
            serde_json::from_value(v).map_err(|e| format!("bad health check: {e}"))?;
        checks.push(
            cfg.compile(rs)
                .map_err(|e| format!("bad health check: {e}"))?,
        );
        cfgs.push(cfg);
    }
    Ok((cfgs, checks))
}

#[derive(Clone)]
struct Svc {
    health: ServiceHealth,
    quorum: Quorum,
    /// The sorry server last put in the table (to remove it when the setting changes).
    sorry_in_table: Option<(IpAddr, u16)>,
}

#[derive(Clone, Default)]
struct State {
    servers: BTreeMap<Key, Server>,
    services: BTreeMap<ServiceKey, Svc>,
}

/// The health checks of a running lvsd.
pub struct Health {
    engine: Engine<CheckKey>,
    control: Arc<dyn Table>,
    state: Mutex<State>,
    /// Re-applies the `--config` file; none without `--config`.
    reloader: Option<Reloader>,
}

/// Start the checker engine and the thread that applies its changes, and put the health
/// checks in front of `control` (they answer their requests and the reload, and follow the
/// operator's changes). `reloader` re-applies the `--config` file, if there is one.
pub fn start(control: Arc<Control>, reloader: Option<Reloader>) -> anyhow::Result<Arc<Health>> {
    let (tx, rx) = std::sync::mpsc::channel::<Event<CheckKey>>();
    let mut health = Health::new(Arc::clone(&control) as Arc<dyn Table>, Engine::start(tx)?);
    health.reloader = reloader;
    let health = Arc::new(health);
    control.set_hooks(Arc::clone(&health) as Arc<dyn Hooks>)?;
    let h = Arc::clone(&health);
    std::thread::Builder::new()
        .name("lvsd-health-apply".into())
        .spawn(move || {
            for ev in rx {
                h.on_event(ev);
            }
        })?;
    Ok(health)
}

impl Hooks for Health {
    /// The health requests ([`Request::SetCheck`], [`Request::SetServiceHealth`],
    /// [`Request::Health`]) and the reload are answered here.
    fn intercept(&self, req: &Request) -> Option<Reply> {
        Some(match req.clone() {
            Request::SetCheck {
                key,
                addr,
                port,
                check,
            } => self.set_check(key, addr, port, check),
            Request::SetServiceHealth { key, health } => self.set_service_health(key, health),
            Request::Health => self.report(),
            Request::Reload => self.reload(),
            _ => return None,
        })
    }

    fn observe(&self, req: &Request) -> Option<Request> {
        matches!(
            req,
            Request::AddDest { .. }
                | Request::EditDest { .. }
                | Request::DeleteDest { .. }
                | Request::DeleteService { .. }
                | Request::Clear
                | Request::Batch { .. }
        )
        .then(|| req.clone())
    }

    fn applied(&self, observed: Request) {
        self.follow(observed);
    }
}

fn sock(addr: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr, port)
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Health {
    fn new(control: Arc<dyn Table>, engine: Engine<CheckKey>) -> Health {
        Health {
            engine,
            control,
            state: Mutex::new(State::default()),
            reloader: None,
        }
    }

    /// Call the control path as this module.
    fn call(&self, req: Request) -> Reply {
        self.control.call(req)
    }

    /// Re-apply the `--config` file (SIGHUP, [`Request::Reload`]).
    pub fn reload(&self) -> Reply {
        match &self.reloader {
            Some(r) => r.reload(|cfg| self.apply_config(cfg)),
            None => Reply::Error {
                message: "lvsd was started without --config: there is no file to reload \
                          (start lvsd with --config FILE)"
                    .into(),
            },
        }
    }

    /// Whether lvsd has a `--config` file to reload.
    pub fn can_reload(&self) -> bool {
        self.reloader.is_some()
    }

    fn table(&self) -> Result<Vec<ServiceInfo>, String> {
        match self.call(Request::List) {
            Reply::Services { services, .. } => Ok(services),
            Reply::Error { message } => Err(message),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    fn set_check(
        &self,
        key: ServiceKey,
        addr: IpAddr,
        port: u16,
        check: Option<serde_json::Value>,
    ) -> Reply {
        let Ok(mut st) = self.state.lock() else {
            return poisoned();
        };
        let k = (key, addr, port);
        let Some(value) = check else {
            if let Some(s) = st.servers.remove(&k) {
                self.stop_checks(k, 0..s.checks.len());
                info!(service = %key, server = %sock(addr, port), "health check removed from real server {} of {key}", sock(addr, port));
                // Without a check the server is simply configured: put it back as such.
                self.restore(&s, &key);
            }
            self.reconcile(&mut st, &key);
            return Reply::Ok;
        };
        let (cfgs, checks) = match parse_checks(value, sock(addr, port)) {
            Ok(c) => c,
            Err(message) => return Reply::Error { message },
        };
        let services = match self.table() {
            Ok(s) => s,
            Err(e) => return Reply::Error { message: e },
        };
        let Some(svc) = services.iter().find(|s| s.config.key == key) else {
            return Reply::Error {
                message: format!("No such service ({key}): add the service first (-A)"),
            };
        };
        let listed = svc
            .dests
            .iter()
            .find(|d| d.config.addr == addr && d.config.port == port)
            .map(|d| d.config);
        match st.servers.get_mut(&k) {
            Some(s) => {
                let old = s.checks.len();
                s.replace_checks(cfgs, &checks);
                self.stop_checks(k, checks.len()..old);
            }
            None => {
                let Some(dest) = listed else {
                    return Reply::Error {
                        message: format!(
                            "No such destination ({}) in {key}: add the real server first (-a)",
                            sock(addr, port)
                        ),
                    };
                };
                st.servers.insert(k, Server::new(dest, cfgs, &checks));
            }
        }
        self.start_checks(k, checks);
        st.services.entry(key).or_insert_with(|| Svc {
            health: ServiceHealth::default(),
            quorum: Quorum::new(1, 0, 0),
            sorry_in_table: None,
        });
        // A new service entry starts from the current sum (keepalived's set_quorum_states).
        self.update_quorum(&mut st, &key, true);
        self.reconcile(&mut st, &key);
        Reply::Ok
    }

    /// Start (or replace) the checks of real server `k`, logging each.
    fn start_checks(&self, k: Key, checks: Vec<Check>) {
        let n = checks.len();
        for (i, check) in checks.into_iter().enumerate() {
            let which = if n > 1 {
                format!(" (check {} of {n})", i + 1)
            } else {
                String::new()
            };
            info!(service = %k.0, server = %sock(k.1, k.2), check = %check.probe.describe(),
                "health check set on real server {} of {}{which}: {}{}", sock(k.1, k.2), k.0, check.probe.describe(),
                if check.timing.alpha { " (alpha: down until a check passes)" } else { "" });
            self.engine.set(check_key(k, i), check);
        }
    }

    /// Stop the checks of real server `k` at places `range`.
    fn stop_checks(&self, k: Key, range: std::ops::Range<usize>) {
        for i in range {
            self.engine.remove(&check_key(k, i));
        }
    }

    /// Put a server that loses its check back as configured.
    fn restore(&self, s: &Server, key: &ServiceKey) {
        let reply = self.call(Request::EditDest {
            key: *key,
            dest: s.dest,
        });
        if matches!(reply, Reply::Error { .. }) {
            let _ = self.call(Request::AddDest {
                key: *key,
                dest: s.dest,
            });
        }
    }

    fn set_service_health(&self, key: ServiceKey, health: Option<serde_json::Value>) -> Reply {
        let health = match health.map(lvs_health::parse_service_health).transpose() {
            Ok(h) => h.unwrap_or_default(),
            Err(e) => return Reply::Error { message: e },
        };
        match self.table() {
            Ok(services) if services.iter().any(|s| s.config.key == key) => {}
            Ok(_) => {
                return Reply::Error {
                    message: format!("No such service ({key}): add the service first (-A)"),
                };
            }
            Err(e) => return Reply::Error { message: e },
        }
        let Ok(mut st) = self.state.lock() else {
            return poisoned();
        };
        let sum = self.live_sum(&st, &key);
        let quorum = Quorum::new(u64::from(health.quorum), u64::from(health.hysteresis), sum);
        let prev = st.services.insert(
            key,
            Svc {
                health,
                quorum,
                sorry_in_table: None,
            },
        );
        let sorry_in_table = prev.and_then(|p| p.sorry_in_table);
        if let Some(s) = st.services.get_mut(&key) {
            s.sorry_in_table = sorry_in_table;
        }
        let svc = &st.services[&key];
        info!(service = %key, quorum = svc.health.quorum, hysteresis = svc.health.hysteresis,
            "health settings of {key}: quorum {}, hysteresis {}{}; weight {sum}, quorum {}",
            svc.health.quorum, svc.health.hysteresis,
            svc.health.sorry_server.as_ref().map(|s| format!(", sorry server {}", sock(s.addr, s.port))).unwrap_or_default(),
            if svc.quorum.is_up() { "up" } else { "DOWN" });
        if !svc.quorum.is_up()
            && let Some(cmd) = svc.health.quorum_down.clone()
        {
            self.engine.notify(cmd, quorum_env(&key, false, sum));
        }
        self.reconcile(&mut st, &key);
        Reply::Ok
    }

    fn report(&self) -> Reply {
        let table = self.table().unwrap_or_default();
        let mut now: HashMap<(ServiceKey, IpAddr, u16), u32> = HashMap::new();
        for s in &table {
            for d in &s.dests {
                now.insert(
                    (s.config.key, d.config.addr, d.config.port),
                    d.config.weight,
                );
            }
        }
        let Ok(st) = self.state.lock() else {
            return poisoned();
        };
        let servers = st
            .servers
            .iter()
            .map(|(k, s)| {
                // A server's checks as one line: all their descriptions, the last result of
                // the first failing one (else of the first), counts summed.
                let statuses: Vec<_> = (0..s.checks.len())
                    .filter_map(|i| self.engine.status(&check_key(*k, i)))
                    .collect();
                // Checks that have not reported yet are named by their configuration.
                let names: Vec<String> = s
                    .checks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        self.engine
                            .status(&check_key(*k, i))
                            .map(|x| x.check)
                            .unwrap_or_else(|| format!("{} {}", c.kind.name(), sock(k.1, k.2)))
                    })
                    .collect();
                let failing = statuses
                    .iter()
                    .find(|x| x.last_ok == Some(false))
                    .or(statuses.first());
                let w = now.get(k).copied();
                HealthInfo {
                    key: k.0,
                    addr: k.1,
                    port: k.2,
                    check: names.join(" + "),
                    up: s.up(),
                    since: statuses.iter().map(|x| epoch(x.since)).max().unwrap_or(0),
                    last_ok: statuses
                        .iter()
                        .map(|x| x.last_ok)
                        .try_fold(true, |all, ok| ok.map(|ok| all && ok)),
                    last: failing.map(|x| x.last.clone()).unwrap_or_default(),
                    last_at: statuses.iter().filter_map(|x| x.last_at.map(epoch)).max(),
                    checks: statuses.iter().map(|x| x.checks).sum(),
                    failures: statuses.iter().map(|x| x.failures).sum(),
                    weight: w.unwrap_or(0),
                    listed: w.is_some(),
                }
            })
            .collect();
        let services = st
            .services
            .iter()
            .map(|(k, s)| ServiceHealthInfo {
                key: *k,
                quorum: s.health.quorum,
                hysteresis: s.health.hysteresis,
                quorum_up: s.quorum.is_up(),
                weight_sum: self.live_sum(&st, k),
                sorry_server: s
                    .health
                    .sorry_server
                    .as_ref()
                    .map(|x| sock(x.addr, x.port).to_string()),
                sorry_active: !s.quorum.is_up() && s.health.sorry_server.is_some(),
            })
            .collect();
        Reply::Health { servers, services }
    }

    fn on_event(&self, ev: Event<CheckKey>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let (key, addr, port, i) = ev.key;
        let Some(s) = st.servers.get_mut(&(key, addr, port)) else {
            return; // removed meanwhile
        };
        let Some(cfg) = s.checks.get(usize::from(i)) else {
            return; // a check replaced meanwhile
        };
        let dynamic = cfg.dynamic;
        let rs = sock(addr, port);
        let n = s.checks.len();
        let which = if n > 1 {
            format!(" (check {} of {n})", i + 1)
        } else {
            String::new()
        };
        let was_up = s.up();
        match ev.change {
            Change::Down => {
                s.down.insert(i);
                if !was_up {
                    warn!(service = %key, server = %rs, reason = %ev.reason,
                        "real server {rs} of {key}: another check failing{which}: {}", ev.reason);
                } else {
                    let what = if s.inhibit() {
                        "weight 0 (inhibit_on_failure)".to_string()
                    } else {
                        "removed from the service".to_string()
                    };
                    warn!(service = %key, server = %rs, state = "DOWN", reason = %ev.reason,
                        "real server {rs} of {key} DOWN{which}: {}, {what}", ev.reason);
                }
            }
            Change::Up { weight } => {
                s.down.remove(&i);
                // Only a dynamic check sets the weight (or gives it back).
                if dynamic {
                    s.dyn_weight = weight;
                }
                let w = s.weight();
                if s.up() {
                    info!(service = %key, server = %rs, state = "UP", weight = w,
                        "real server {rs} of {key} UP{which}: {}, weight {w}", ev.reason);
                } else {
                    info!(service = %key, server = %rs, reason = %ev.reason,
                        "real server {rs} of {key}: check passing again{which}, still down ({} failing): {}",
                        s.down.len(), ev.reason);
                }
            }
            Change::Weight(w) => {
                s.dyn_weight = Some(w);
                info!(service = %key, server = %rs, state = "UP", weight = w,
                    "real server {rs} of {key} weight {w}{which}: {}", ev.reason);
            }
        }
        self.update_quorum(&mut st, &key, false);
        self.reconcile(&mut st, &key);
    }

    /// Sum of the weights of a service's up servers: the up checked ones, plus the listed
    /// servers without a check (always up, as in keepalived), the sorry server excluded.
    fn live_sum(&self, st: &State, key: &ServiceKey) -> u64 {
        let table = self.table().unwrap_or_default();
        let dests: Vec<DestConfig> = table
            .iter()
            .filter(|s| s.config.key == *key)
            .flat_map(|s| s.dests.iter().map(|d| d.config))
            .collect();
        total(st, key, &dests)
    }

    /// Re-evaluate a service's quorum; log and notify a change.
    fn update_quorum(&self, st: &mut State, key: &ServiceKey, quiet: bool) {
        let sum = self.live_sum(st, key);
        if let Some(change) = st.services.get_mut(key).and_then(|s| s.quorum.update(sum)) {
            self.announce(st, key, change, sum, quiet);
        }
    }

    /// Log and notify a quorum change.
    fn announce(&self, st: &State, key: &ServiceKey, change: QuorumChange, sum: u64, quiet: bool) {
        let Some(svc) = st.services.get(key) else {
            return;
        };
        let sorry = svc
            .health
            .sorry_server
            .as_ref()
            .map(|s| sock(s.addr, s.port));
        match change {
            QuorumChange::Lost => {
                warn!(service = %key, state = "QUORUM_LOST", weight = sum,
                    "{key} quorum LOST: weight {sum} < {} (quorum {} - hysteresis {}){}",
                    svc.quorum.lose_below().max(1), svc.health.quorum, svc.health.hysteresis,
                    sorry.map(|s| format!(", sorry server {s} in, real servers out")).unwrap_or_default());
                if let Some(cmd) = svc.health.quorum_down.clone() {
                    self.engine.notify(cmd, quorum_env(key, false, sum));
                }
            }
            QuorumChange::Gained => {
                if !quiet || sorry.is_some() {
                    info!(service = %key, state = "QUORUM_GAINED", weight = sum,
                        "{key} quorum regained: weight {sum} >= {} (quorum {} + hysteresis {}){}",
                        svc.quorum.gain_at(), svc.health.quorum, svc.health.hysteresis,
                        sorry.map(|s| format!(", sorry server {s} out, real servers in")).unwrap_or_default());
                }
                if let Some(cmd) = svc.health.quorum_up.clone() {
                    self.engine.notify(cmd, quorum_env(key, true, sum));
                }
            }
        }
    }

    /// The live table as a configuration (with the running timeouts).
    fn live(&self) -> Result<Config, String> {
        let services = self.table()?;
        let timeouts = match self.call(Request::Timeouts) {
            Reply::Timeouts { tcp, tcpfin, udp } => lvs_config::Timeouts { tcp, tcpfin, udp },
            Reply::Error { message } => return Err(message),
            other => return Err(format!("unexpected answer {other:?}")),
        };
        Ok(lvs_config::from_listing(&services, Some(timeouts)))
    }

    /// Bring the live table of one service in line with the checks' states.
    fn reconcile(&self, st: &mut State, key: &ServiceKey) {
        let live = match self.table() {
            Ok(t) => lvs_config::from_listing(&t, None),
            Err(e) => {
                warn!(service = %key, error = %e, "cannot read the service table for health changes");
                return;
            }
        };
        let only = |c: Config| Config {
            services: c
                .services
                .into_iter()
                .filter(|e| e.config.key == (*key).into())
                .collect(),
            ..Config::default()
        };
        let live = only(live);
        if live.services.is_empty() {
            return; // the service is gone; `follow` forgets it
        }
        let want = desired(st, &configured_view(st, &live));
        let requests = lvs_config::diff(&live, &want);
        if !requests.is_empty() {
            let mut requests = requests;
            let req = if requests.len() == 1 {
                requests.remove(0)
            } else {
                Request::Batch { requests }
            };
            if let Reply::Error { message } = self.call(req) {
                warn!(service = %key, error = %message, "health change not applied");
                return;
            }
        }
        note_sorry(st, key);
    }

    /// Apply a configuration file (at start and on reload): the file's table, checks and
    /// health settings, with this module's overrides kept, as one batch. Returns a summary
    /// of what the file changed, compared with the operator-configured table (the live one
    /// with the health overrides undone). On error nothing changed.
    pub fn apply_config(&self, wanted: &Config) -> Result<String, String> {
        let Ok(mut st) = self.state.lock() else {
            return Err("health state poisoned (a bug); restart lvsd".into());
        };
        let live = self.live()?;
        let configured = configured_view(&st, &live);
        let table_summary = lvs_config::Summary::of(&lvs_config::diff(&configured, wanted));
        let saved = st.clone();
        let plan = match plan(&mut st, wanted) {
            Ok(p) => p,
            Err(e) => {
                *st = saved;
                return Err(e);
            }
        };
        let want = desired(&st, wanted);
        let requests = lvs_config::diff(&live, &want);
        if !requests.is_empty() {
            match self.call(Request::Batch { requests }) {
                Reply::Ok => {}
                other => {
                    *st = saved;
                    return Err(match other {
                        Reply::Error { message } => message,
                        other => format!("unexpected answer: {other:?}"),
                    });
                }
            }
        }
        // Applied: start / stop the checks, tell what changed.
        for (k, n) in &plan.removed {
            self.stop_checks(*k, 0..*n);
            info!(service = %k.0, server = %sock(k.1, k.2), "health check removed from real server {} of {}", sock(k.1, k.2), k.0);
        }
        for (k, range) in plan.stopped {
            self.stop_checks(k, range);
        }
        for (k, checks) in plan.set {
            self.start_checks(k, checks);
        }
        for (key, change, sum) in plan.quorum {
            self.announce(&st, &key, change, sum, true);
        }
        let keys: Vec<ServiceKey> = st.services.keys().copied().collect();
        for key in keys {
            note_sorry(&mut st, &key);
        }
        let mut summary = table_summary.to_string();
        if plan.checks_set + plan.removed.len() + plan.settings > 0 {
            summary.push_str(&format!(
                ", health checks set {} removed {}, service health settings {}",
                plan.checks_set,
                plan.removed.len(),
                plan.settings
            ));
        }
        Ok(summary)
    }
    /// Follow an operator's change to the table.
    fn follow(&self, req: Request) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let mut touched = Vec::new();
        self.follow_one(&mut st, req, &mut touched);
        touched.sort();
        touched.dedup();
        for key in touched {
            if st.services.contains_key(&key) {
                self.reconcile(&mut st, &key);
            }
        }
    }

    fn follow_one(&self, st: &mut State, req: Request, touched: &mut Vec<ServiceKey>) {
        match req {
            Request::Batch { requests } => {
                for r in requests {
                    self.follow_one(st, r, touched);
                }
            }
            Request::Clear => {
                for (k, s) in std::mem::take(&mut st.servers) {
                    self.stop_checks(k, 0..s.checks.len());
                }
                st.services.clear();
            }
            Request::DeleteService { key } => {
                let gone: Vec<Key> = st.servers.keys().filter(|k| k.0 == key).copied().collect();
                for k in gone {
                    if let Some(s) = st.servers.remove(&k) {
                        self.stop_checks(k, 0..s.checks.len());
                    }
                }
                st.services.remove(&key);
            }
            Request::DeleteDest { key, addr, port } => {
                let k = (key, addr, port);
                if let Some(s) = st.servers.remove(&k) {
                    self.stop_checks(k, 0..s.checks.len());
                    info!(service = %key, server = %sock(addr, port), "health check of real server {} of {key} dropped with the server", sock(addr, port));
                    self.update_quorum(st, &key, false);
                    touched.push(key);
                }
            }
            Request::AddDest { key, dest } | Request::EditDest { key, dest } => {
                if let Some(s) = st.servers.get_mut(&(key, dest.addr, dest.port)) {
                    // The operator's configuration is what "up" restores.
                    s.dest = dest;
                    self.update_quorum(st, &key, false);
                    touched.push(key);
                }
            }
            _ => {}
        }
    }
}

/// What [`plan`] changed in the health state, to carry out once the table is applied.
#[derive(Default)]
struct Plan {
    /// Checks to start or replace, per real server.
    set: Vec<(Key, Vec<Check>)>,
    /// How many real servers got new or changed checks (all of `set`).
    checks_set: usize,
    /// Real servers whose checks stop, with how many they had.
    removed: Vec<(Key, usize)>,
    /// Checks to stop of servers that keep others (places past their new number).
    stopped: Vec<(Key, std::ops::Range<usize>)>,
    /// Services whose health settings were set or changed.
    settings: usize,
    /// Quorum changes to announce.
    quorum: Vec<(ServiceKey, QuorumChange, u64)>,
}

/// Move the health state to configuration `wanted`: its checks (unchanged ones keep running
/// and keep their state; new ones start up, or down with `alpha`; removed ones go), the
/// configured real servers of the checked ones, and the services' health settings and
/// quorum states (computed against `wanted`'s table).
fn plan(st: &mut State, wanted: &Config) -> Result<Plan, String> {
    let mut p = Plan::default();
    let mut checks: BTreeMap<Key, (&Vec<CheckConfig>, DestConfig)> = BTreeMap::new();
    for e in &wanted.services {
        for d in &e.dests {
            if let Some(c) = e.checks.get(&(d.addr, d.port)) {
                checks.insert((e.config.key.into(), d.addr, d.port), (c, (*d).into()));
            }
        }
    }
    let gone: Vec<Key> = st
        .servers
        .keys()
        .filter(|k| !checks.contains_key(k))
        .copied()
        .collect();
    for k in gone {
        if let Some(s) = st.servers.remove(&k) {
            p.removed.push((k, s.checks.len()));
        }
    }
    for (k, (cfgs, dest)) in checks {
        let changed = st.servers.get(&k).is_none_or(|s| s.checks != *cfgs);
        if changed {
            let compiled = cfgs
                .iter()
                .map(|c| c.compile(sock(k.1, k.2)))
                .collect::<Result<Vec<Check>, String>>()
                .map_err(|e| format!("health check of {} in {}: {e}", sock(k.1, k.2), k.0))?;
            match st.servers.get_mut(&k) {
                Some(s) => {
                    let old = s.checks.len();
                    s.replace_checks(cfgs.clone(), &compiled);
                    if old > cfgs.len() {
                        p.stopped.push((k, cfgs.len()..old));
                    }
                }
                None => {
                    st.servers
                        .insert(k, Server::new(dest, cfgs.clone(), &compiled));
                }
            }
            p.set.push((k, compiled));
            p.checks_set += 1;
        }
        if let Some(s) = st.servers.get_mut(&k) {
            s.dest = dest;
        }
    }
    let keep: Vec<ServiceKey> = wanted
        .services
        .iter()
        .filter(|e| e.health.is_some() || !e.checks.is_empty())
        .map(|e| e.config.key.into())
        .collect();
    st.services.retain(|k, _| keep.contains(k));
    for e in wanted
        .services
        .iter()
        .filter(|e| keep.contains(&e.config.key.into()))
    {
        let key: ServiceKey = e.config.key.into();
        let dests: Vec<DestConfig> = e.dests.iter().map(|&d| d.into()).collect();
        let health = e.health.clone().unwrap_or_default();
        let sum = total(st, &key, &dests);
        match st.services.get_mut(&key) {
            Some(svc) if svc.health == health => {
                if let Some(change) = svc.quorum.update(sum) {
                    p.quorum.push((key, change, sum));
                }
            }
            existing => {
                let quorum =
                    Quorum::new(u64::from(health.quorum), u64::from(health.hysteresis), sum);
                info!(service = %key, quorum = health.quorum, hysteresis = health.hysteresis,
                    "health settings of {key}: quorum {}, hysteresis {}{}; weight {sum}, quorum {}",
                    health.quorum, health.hysteresis,
                    health.sorry_server.as_ref().map(|s| format!(", sorry server {}", sock(s.addr, s.port))).unwrap_or_default(),
                    if quorum.is_up() { "up" } else { "DOWN" });
                if e.health.is_some() {
                    p.settings += 1;
                }
                let sorry_in_table = existing.and_then(|s| s.sorry_in_table);
                if !quorum.is_up() {
                    p.quorum.push((key, QuorumChange::Lost, sum));
                }
                st.services.insert(
                    key,
                    Svc {
                        health,
                        quorum,
                        sorry_in_table,
                    },
                );
            }
        }
    }
    Ok(p)
}

/// The operator-configured table behind a live one: the checked real servers as configured
/// (put back when a check took them out, their configured weight when a check set it to 0
/// or a dynamic weight), without the sorry server this module put in, and with the checks
/// and health settings in force.
fn configured_view(st: &State, live: &Config) -> Config {
    let mut cfg = live.clone();
    for e in &mut cfg.services {
        let key: ServiceKey = e.config.key.into();
        let svc = st.services.get(&key);
        if let Some(sorry) = svc.and_then(|s| s.sorry_in_table)
            && !st.servers.contains_key(&(key, sorry.0, sorry.1))
        {
            e.dests.retain(|d| (d.addr, d.port) != sorry);
        }
        for ((_, addr, port), s) in servers_of(st, &key) {
            match e
                .dests
                .iter_mut()
                .find(|d| (d.addr, d.port) == (addr, port))
            {
                Some(d) => *d = s.dest.into(),
                None => e.dests.push(s.dest.into()),
            }
            e.checks.insert((addr, port), s.checks.clone());
        }
        e.health = svc.map(|s| s.health.clone());
    }
    cfg
}

/// The live table this module wants for configured table `cfg`: checked servers that are
/// down out (weight 0 with `inhibit_on_failure`), up ones with their dynamic weight; while a
/// service's quorum is lost, its up servers out and its sorry server in.
fn desired(st: &State, cfg: &Config) -> Config {
    let mut out = cfg.clone();
    for e in &mut out.services {
        let key: ServiceKey = e.config.key.into();
        let svc = st.services.get(&key);
        let sorry_active =
            svc.is_some_and(|s| !s.quorum.is_up() && s.health.sorry_server.is_some());
        e.dests = e
            .dests
            .iter()
            .filter_map(|d| match st.servers.get(&(key, d.addr, d.port)) {
                None => Some(*d),
                Some(s) if s.up() && !sorry_active => {
                    Some(d.with_weight(s.dyn_weight.unwrap_or(d.weight)))
                }
                Some(s) if s.inhibit() => Some(d.with_weight(0)),
                Some(_) => None,
            })
            .collect();
        if let Some(s) = svc.and_then(|s| s.health.sorry_server.as_ref()) {
            // Into the configuration, in the core's vocabulary.
            let dest = |weight| {
                lvs_core::service::DestConfig::new(s.addr, s.port, s.method.into())
                    .with_weight(weight)
            };
            let want = if sorry_active {
                Some(dest(s.weight))
            } else if s.inhibit {
                Some(dest(0))
            } else {
                None
            };
            e.dests.retain(|d| (d.addr, d.port) != (s.addr, s.port));
            e.dests.extend(want);
        }
    }
    out
}

/// Remember whether a service's sorry server is in the table now.
fn note_sorry(st: &mut State, key: &ServiceKey) {
    if let Some(svc) = st.services.get_mut(key) {
        let active = !svc.quorum.is_up();
        svc.sorry_in_table = svc
            .health
            .sorry_server
            .as_ref()
            .filter(|s| active || s.inhibit)
            .map(|s| (s.addr, s.port));
    }
}

fn servers_of<'a>(st: &'a State, key: &ServiceKey) -> impl Iterator<Item = (Key, &'a Server)> {
    let key = *key;
    st.servers
        .range((key, IpAddr::from([0u8; 4]), 0)..)
        .take_while(move |(k, _)| k.0 == key)
        .map(|(k, s)| (*k, s))
}

/// Weight sum of a service whose real servers are `dests`: the up checked servers (their
/// configured or dynamic weight) plus the servers without a check, the sorry server excluded.
fn total(st: &State, key: &ServiceKey, dests: &[DestConfig]) -> u64 {
    let sorry = st
        .services
        .get(key)
        .and_then(|s| s.health.sorry_server.as_ref())
        .map(|s| (s.addr, s.port));
    let unchecked: u64 = dests
        .iter()
        .filter(|d| {
            let a = (d.addr, d.port);
            Some(a) != sorry && !st.servers.contains_key(&(*key, a.0, a.1))
        })
        .map(|d| u64::from(d.weight))
        .sum();
    weight_sum(st, key) + unchecked
}

fn weight_sum(st: &State, key: &ServiceKey) -> u64 {
    st.servers
        .iter()
        .filter(|((k, _, _), s)| k == key && s.up())
        .map(|(_, s)| u64::from(s.weight()))
        .sum()
}

fn quorum_env(key: &ServiceKey, up: bool, sum: u64) -> Vec<(String, String)> {
    vec![
        ("LVS_SERVICE".into(), key.to_string()),
        ("LVS_STATE".into(), if up { "UP" } else { "DOWN" }.into()),
        ("LVS_WEIGHT".into(), sum.to_string()),
    ]
}

fn poisoned() -> Reply {
    Reply::Error {
        message: "health state poisoned (a bug); restart lvsd".into(),
    }
}

#[cfg(test)]
mod tests {
    //! The health glue against a fake control path: a bare [`Director`] that applies what it
    //! is sent and records it, so a test sees every request (a flap would show as a request).

    use super::*;
    use lvs_core::director::Settings;
    use lvs_core::{Director, Time};

    struct Fake {
        director: Mutex<Director>,
        sent: Mutex<Vec<Request>>,
    }

    impl Table for Fake {
        fn call(&self, req: Request) -> Reply {
            let mut d = self.director.lock().unwrap();
            match req {
                Request::List => Reply::Services {
                    table_size: 1,
                    services: crate::dataplane::list(&d),
                },
                Request::Timeouts => {
                    let (tcp, fin, udp) = d.timeouts().get();
                    Reply::Timeouts {
                        tcp: tcp.as_secs(),
                        tcpfin: fin.as_secs(),
                        udp: udp.as_secs(),
                    }
                }
                Request::Batch { requests } => {
                    match lvs_config::table::apply_batch(&mut d, requests.clone()) {
                        Ok(()) => {
                            self.sent.lock().unwrap().extend(requests);
                            Reply::Ok
                        }
                        Err(message) => Reply::Error { message },
                    }
                }
                r => {
                    self.sent.lock().unwrap().push(r.clone());
                    match crate::dataplane::apply_change(&mut d, r) {
                        Ok(()) => Reply::Ok,
                        Err(message) => Reply::Error { message },
                    }
                }
            }
        }
    }

    struct Lab {
        fake: Arc<Fake>,
        health: Health,
        /// Kept so the engine can report (nobody reads it: the tests drive the states).
        _events: std::sync::mpsc::Receiver<Event<CheckKey>>,
    }

    fn lab() -> Lab {
        let fake = Arc::new(Fake {
            director: Mutex::new(Director::new(Settings::default(), Time::ZERO)),
            sent: Mutex::new(Vec::new()),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let health = Health::new(fake.clone(), Engine::start(tx).unwrap());
        Lab {
            fake,
            health,
            _events: rx,
        }
    }

    /// A NAT service with real servers `.11` (checked), `.12` (checked, inhibit), `.13`
    /// (no check), weights as given, and `extra` service keys. The checks never run on their
    /// own (warmup of a day): the tests say when a server goes down or up.
    fn file(w: [u32; 3], extra: &str) -> Config {
        let check = |inhibit: bool| {
            format!(
                "\n    [service.real_server.check]\n    type = \"tcp\"\n    warmup = 86400\n    inhibit_on_failure = {inhibit}\n"
            )
        };
        let text = format!(
            "[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1:80\"\n{extra}\n\
             [[service.real_server]]\naddress = \"10.0.1.11:80\"\nmethod = \"nat\"\nweight = {}\n{}\n\
             [[service.real_server]]\naddress = \"10.0.1.12:80\"\nmethod = \"nat\"\nweight = {}\n{}\n\
             [[service.real_server]]\naddress = \"10.0.1.13:80\"\nmethod = \"nat\"\nweight = {}\n",
            w[0],
            check(false),
            w[1],
            check(true),
            w[2]
        );
        lvs_config::parse(&text).unwrap_or_else(|d| panic!("{}", lvs_config::render("t", &d)))
    }

    fn key() -> ServiceKey {
        lvs_config::parse("[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1:80\"\n")
            .unwrap()
            .services[0]
            .config
            .key
            .into()
    }

    fn rs(last: u8) -> Key {
        (key(), IpAddr::from([10, 0, 1, last]), 80)
    }

    /// The live table: real server last octet → weight.
    fn table(l: &Lab) -> BTreeMap<u8, u32> {
        let d = l.fake.director.lock().unwrap();
        crate::dataplane::list(&d)
            .iter()
            .flat_map(|s| s.dests.iter())
            .map(|d| match d.config.addr {
                IpAddr::V4(a) => (a.octets()[3], d.config.weight),
                IpAddr::V6(_) => panic!(),
            })
            .collect()
    }

    fn event(l: &Lab, last: u8, change: Change) {
        check_event(l, last, 0, change);
    }

    /// Check `i` of real server `.last` changed.
    fn check_event(l: &Lab, last: u8, i: u8, change: Change) {
        l.health.on_event(Event {
            key: check_key(rs(last), usize::from(i)),
            change,
            reason: "test".into(),
        });
    }

    /// Requests sent since the last call, as text.
    fn sent(l: &Lab) -> Vec<String> {
        std::mem::take(&mut *l.fake.sent.lock().unwrap())
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect()
    }

    fn touches(sent: &[String], last: u8) -> bool {
        let needle = format!("10.0.1.{last},");
        sent.iter().any(|r| r.contains(&needle))
    }

    #[test]
    fn reload_keeps_a_down_server_out_and_an_inhibited_one_at_zero() {
        let l = lab();
        l.health.apply_config(&file([1, 2, 3], "")).unwrap();
        assert_eq!(table(&l), BTreeMap::from([(11, 1), (12, 2), (13, 3)]));
        event(&l, 11, Change::Down);
        event(&l, 12, Change::Down);
        assert_eq!(table(&l), BTreeMap::from([(12, 0), (13, 3)]));
        sent(&l);

        // An unrelated weight changes: only that server is touched; no flap of the others.
        let summary = l.health.apply_config(&file([1, 2, 5], "")).unwrap();
        let s = sent(&l);
        assert_eq!(table(&l), BTreeMap::from([(12, 0), (13, 5)]), "{s:?}");
        assert_eq!(s.len(), 1, "one EditDest of .13 only: {s:?}");
        assert!(
            touches(&s, 13) && !touches(&s, 11) && !touches(&s, 12),
            "{s:?}"
        );
        assert!(
            summary.starts_with("+0 services, -0, ~0, real servers +0 -0 ~1"),
            "{summary}"
        );

        // The same file again: nothing at all (the down servers are configured as they are).
        assert_eq!(
            l.health.apply_config(&file([1, 2, 5], "")).unwrap(),
            "+0 services, -0, ~0, real servers +0 -0 ~0"
        );
        assert!(sent(&l).is_empty());

        // The file changes the down servers' weights: they stay out / at 0 ...
        l.health.apply_config(&file([4, 6, 5], "")).unwrap();
        assert_eq!(table(&l), BTreeMap::from([(12, 0), (13, 5)]));
        assert!(sent(&l).is_empty());
        // ... and come back with the new weights when they are up again.
        event(&l, 11, Change::Up { weight: None });
        event(&l, 12, Change::Up { weight: None });
        assert_eq!(table(&l), BTreeMap::from([(11, 4), (12, 6), (13, 5)]));
    }

    #[test]
    fn reload_keeps_a_dynamic_weight() {
        let l = lab();
        l.health.apply_config(&file([1, 2, 3], "")).unwrap();
        event(&l, 11, Change::Weight(9));
        assert_eq!(table(&l)[&11], 9);
        sent(&l);
        l.health.apply_config(&file([1, 2, 4], "")).unwrap();
        assert_eq!(table(&l), BTreeMap::from([(11, 9), (12, 2), (13, 4)]));
        assert!(!touches(&sent(&l), 11));
    }

    #[test]
    fn reload_keeps_the_sorry_server_in_use() {
        let l = lab();
        let extra = "quorum = 3\nsorry_server = { address = \"10.0.9.9:80\", method = \"nat\" }\n";
        l.health.apply_config(&file([1, 2, 0], extra)).unwrap();
        assert_eq!(table(&l), BTreeMap::from([(11, 1), (12, 2), (13, 0)]));
        event(&l, 11, Change::Down);
        // Quorum lost (2 < 3): the sorry server in, the up servers out (.12 inhibited: 0).
        let with_sorry = BTreeMap::from([(9, 1), (12, 0), (13, 0)]);
        assert_eq!(table(&l), with_sorry);
        sent(&l);
        // A reload that changes nothing relevant keeps all of that.
        l.health.apply_config(&file([1, 2, 0], extra)).unwrap();
        assert_eq!(table(&l), with_sorry);
        assert!(sent(&l).is_empty());
        // A reload that raises the unchecked server's weight from 0 to 1 brings the up
        // weight to 3: the quorum is back.
        l.health.apply_config(&file([1, 2, 1], extra)).unwrap();
        assert_eq!(
            table(&l),
            BTreeMap::from([(12, 2), (13, 1)]),
            "quorum regained by the new weights: sorry server out, real servers in, in the same batch"
        );
        let s = sent(&l);
        assert!(!touches(&s, 11), "the down server stays out: {s:?}");
    }

    #[test]
    fn reload_removing_a_check_puts_the_server_back_and_new_alpha_checks_start_out() {
        let l = lab();
        l.health.apply_config(&file([1, 2, 3], "")).unwrap();
        event(&l, 11, Change::Down);
        assert!(!table(&l).contains_key(&11));
        // The file drops every check: .11 back as configured, its check gone.
        let mut plain = file([1, 2, 3], "");
        plain.services[0].checks.clear();
        l.health.apply_config(&plain).unwrap();
        assert_eq!(table(&l), BTreeMap::from([(11, 1), (12, 2), (13, 3)]));
        assert!(l.health.state.lock().unwrap().servers.is_empty());
        // A new server with an alpha check is not put in until a check passes.
        let mut alpha = plain.clone();
        let d = lvs_core::service::DestConfig::new(
            IpAddr::from([10, 0, 1, 14]),
            80,
            lvs_core::types::ForwardMethod::Masq,
        );
        alpha.services[0].dests.push(d);
        let mut c = CheckConfig::new(lvs_health::CheckKind::Tcp);
        c.alpha = true;
        c.warmup = Some(86400.0);
        alpha.services[0].checks.insert((d.addr, d.port), vec![c]);
        sent(&l);
        l.health.apply_config(&alpha).unwrap();
        assert!(!touches(&sent(&l), 14), "never listed before it is up");
        assert!(!table(&l).contains_key(&14));
        event(&l, 14, Change::Up { weight: None });
        assert_eq!(table(&l)[&14], 1);
    }

    #[test]
    fn a_refused_batch_keeps_the_health_state() {
        let l = lab();
        l.health.apply_config(&file([1, 2, 3], "")).unwrap();
        event(&l, 11, Change::Down);
        // A table the director refuses (a weight the parser would have caught), with a
        // check removed and the down server's weight changed: nothing of it may stick.
        let mut bad = file([7, 2, 3], "");
        bad.services[0].dests[2].weight = 70_000;
        bad.services[0]
            .checks
            .remove(&(IpAddr::from([10, 0, 1, 12]), 80));
        assert!(l.health.apply_config(&bad).is_err());
        let st = l.health.state.lock().unwrap();
        assert!(!st.servers[&rs(11)].up(), "state unchanged");
        assert_eq!(st.servers[&rs(11)].dest.weight, 1);
        assert!(st.servers.contains_key(&rs(12)), "the check is still there");
        drop(st);
        assert_eq!(table(&l), BTreeMap::from([(12, 2), (13, 3)]));
    }

    /// A real server with two checks is up while both pass: the first failure takes it out,
    /// it comes back only when the last failing one passes again.
    #[test]
    fn two_checks_must_both_pass() {
        let l = lab();
        let check = "\n    [[service.real_server.check]]\n    type = \"tcp\"\n    warmup = 86400\n";
        let text = format!(
            "[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1:80\"\n\
             [[service.real_server]]\naddress = \"10.0.1.11:80\"\nmethod = \"nat\"\nweight = 2\n{check}{check}\n\
             [[service.real_server]]\naddress = \"10.0.1.12:80\"\nmethod = \"nat\"\nweight = 1\n"
        );
        let cfg =
            lvs_config::parse(&text).unwrap_or_else(|d| panic!("{}", lvs_config::render("t", &d)));
        assert_eq!(
            cfg.services[0].checks[&("10.0.1.11".parse().unwrap(), 80)].len(),
            2
        );
        l.health.apply_config(&cfg).unwrap();
        assert_eq!(table(&l), BTreeMap::from([(11, 2), (12, 1)]));
        check_event(&l, 11, 1, Change::Down);
        assert_eq!(
            table(&l),
            BTreeMap::from([(12, 1)]),
            "one failing check takes it out"
        );
        check_event(&l, 11, 0, Change::Down);
        check_event(&l, 11, 1, Change::Up { weight: None });
        assert_eq!(
            table(&l),
            BTreeMap::from([(12, 1)]),
            "still out: check 1 of 2 fails"
        );
        check_event(&l, 11, 0, Change::Up { weight: None });
        assert_eq!(
            table(&l),
            BTreeMap::from([(11, 2), (12, 1)]),
            "both pass: back"
        );
        // The health report shows the server once, with both checks.
        let Reply::Health { servers, .. } = l.health.report() else {
            panic!("a health report");
        };
        let h = servers
            .iter()
            .find(|h| h.addr == "10.0.1.11".parse::<IpAddr>().unwrap())
            .unwrap();
        assert_eq!(h.check.matches("tcp ").count(), 2, "{}", h.check);
        assert!(h.up);
        // The same through the control API: an array of checks; one object is one check.
        let key = cfg.services[0].config.key.into();
        let two = serde_json::json!([
            {"type": "tcp", "warmup": 86400},
            {"type": "exec", "command": "true", "warmup": 86400}
        ]);
        let r = l
            .health
            .set_check(key, "10.0.1.12".parse().unwrap(), 80, Some(two));
        assert_eq!(r, Reply::Ok);
        check_event(&l, 12, 1, Change::Down);
        assert_eq!(table(&l), BTreeMap::from([(11, 2)]));
        let none = serde_json::json!([]);
        let r = l
            .health
            .set_check(key, "10.0.1.12".parse().unwrap(), 80, Some(none));
        assert!(matches!(r, Reply::Error { message } if message.contains("1 to 16 checks")));
    }
}
