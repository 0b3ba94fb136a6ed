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
//! treats a real server without checker as always alive).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use lvs_api::{HealthInfo, Reply, Request, ServiceHealthInfo, ServiceInfo};
use lvs_core::service::DestConfig;
use lvs_core::types::ServiceKey;
use lvs_health::{Change, CheckConfig, Engine, Event, Quorum, QuorumChange, ServiceHealth};
use tracing::{info, warn};

use crate::control::Control;

/// A checked real server: service, address, port.
type Key = (ServiceKey, IpAddr, u16);

struct Server {
    inhibit: bool,
    /// The configuration to restore when it is up (weight = configured weight).
    dest: DestConfig,
    up: bool,
    dyn_weight: Option<u32>,
}

impl Server {
    fn weight(&self) -> u32 {
        self.dyn_weight.unwrap_or(self.dest.weight)
    }
}

struct Svc {
    health: ServiceHealth,
    quorum: Quorum,
    /// The sorry server last put in the table (to remove it when the setting changes).
    sorry_in_table: Option<(IpAddr, u16)>,
}

#[derive(Default)]
struct State {
    servers: BTreeMap<Key, Server>,
    services: BTreeMap<ServiceKey, Svc>,
}

/// The health checks of a running lvsd.
pub struct Health {
    engine: Engine<Key>,
    control: Arc<Control>,
    state: Mutex<State>,
}

static HEALTH: OnceLock<Arc<Health>> = OnceLock::new();

thread_local! {
    /// Set while this module itself calls the control path.
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is applying a health change (so the change is neither logged
/// a second time as "configuration applied" nor observed as an operator's change).
pub fn internal() -> bool {
    INTERNAL.with(Cell::get)
}

/// Start the checker engine and the thread that applies its changes.
pub fn start(control: Arc<Control>) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<Event<Key>>();
    let engine = Engine::start(tx)?;
    let health = Arc::new(Health {
        engine,
        control,
        state: Mutex::new(State::default()),
    });
    if HEALTH.set(Arc::clone(&health)).is_err() {
        anyhow::bail!("health checks started twice");
    }
    std::thread::Builder::new()
        .name("lvsd-health-apply".into())
        .spawn(move || {
            for ev in rx {
                health.on_event(ev);
            }
        })?;
    Ok(())
}

/// Answer the health requests ([`Request::SetCheck`], [`Request::SetServiceHealth`],
/// [`Request::Health`]); `None` for every other request.
pub fn intercept(req: &Request) -> Option<Reply> {
    if !matches!(
        req,
        Request::SetCheck { .. } | Request::SetServiceHealth { .. } | Request::Health
    ) {
        return None;
    }
    let Some(h) = HEALTH.get() else {
        return Some(Reply::Error {
            message: "health checks are not running in this lvsd".into(),
        });
    };
    Some(match req.clone() {
        Request::SetCheck {
            key,
            addr,
            port,
            check,
        } => h.set_check(key, addr, port, check),
        Request::SetServiceHealth { key, health } => h.set_service_health(key, health),
        _ => h.report(),
    })
}

/// What of an operator's change matters here, taken before it is applied.
pub fn observe(req: &Request) -> Option<Request> {
    if internal() || HEALTH.get().is_none() {
        return None;
    }
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

/// An operator's change (from [`observe`]) was applied: follow it.
pub fn applied(observed: Option<Request>) {
    if let (Some(req), Some(h)) = (observed, HEALTH.get()) {
        h.follow(req);
    }
}

fn sock(addr: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr, port)
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Health {
    /// Call the control path as this module.
    fn call(&self, req: Request) -> Reply {
        INTERNAL.with(|c| c.set(true));
        let r = self.control.call(req);
        INTERNAL.with(|c| c.set(false));
        r
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
            self.engine.remove(&k);
            if let Some(s) = st.servers.remove(&k) {
                info!(service = %key, server = %sock(addr, port), "health check removed from real server {} of {key}", sock(addr, port));
                // Without a check the server is simply configured: put it back as such.
                self.restore(&s, &key);
            }
            self.reconcile(&mut st, &key);
            return Reply::Ok;
        };
        let cfg: CheckConfig = match serde_json::from_value(value) {
            Ok(c) => c,
            Err(e) => {
                return Reply::Error {
                    message: format!("bad health check: {e}"),
                };
            }
        };
        let check = match cfg.compile(sock(addr, port)) {
            Ok(c) => c,
            Err(e) => {
                return Reply::Error {
                    message: format!("bad health check: {e}"),
                };
            }
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
                s.inhibit = check.inhibit_on_failure;
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
                st.servers.insert(
                    k,
                    Server {
                        inhibit: check.inhibit_on_failure,
                        dest,
                        up: !check.timing.alpha,
                        dyn_weight: None,
                    },
                );
            }
        }
        info!(service = %key, server = %sock(addr, port), check = %check.probe.describe(),
            "health check set on real server {} of {key}: {}{}", sock(addr, port), check.probe.describe(),
            if check.timing.alpha { " (alpha: down until a check passes)" } else { "" });
        self.engine.set(k, check);
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
                let status = self.engine.status(k);
                let w = now.get(k).copied();
                HealthInfo {
                    key: k.0,
                    addr: k.1,
                    port: k.2,
                    check: status.as_ref().map(|x| x.check.clone()).unwrap_or_default(),
                    up: s.up,
                    since: status.as_ref().map_or(0, |x| epoch(x.since)),
                    last_ok: status.as_ref().and_then(|x| x.last_ok),
                    last: status.as_ref().map(|x| x.last.clone()).unwrap_or_default(),
                    last_at: status.as_ref().and_then(|x| x.last_at.map(epoch)),
                    checks: status.as_ref().map_or(0, |x| x.checks),
                    failures: status.as_ref().map_or(0, |x| x.failures),
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

    fn on_event(&self, ev: Event<Key>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let (key, addr, port) = ev.key;
        let Some(s) = st.servers.get_mut(&ev.key) else {
            return; // removed meanwhile
        };
        let rs = sock(addr, port);
        match ev.change {
            Change::Down => {
                s.up = false;
                let what = if s.inhibit {
                    "weight 0 (inhibit_on_failure)".to_string()
                } else {
                    "removed from the service".to_string()
                };
                warn!(service = %key, server = %rs, state = "DOWN", reason = %ev.reason,
                    "real server {rs} of {key} DOWN: {}, {what}", ev.reason);
            }
            Change::Up { weight } => {
                s.up = true;
                s.dyn_weight = weight;
                let w = s.weight();
                info!(service = %key, server = %rs, state = "UP", weight = w,
                    "real server {rs} of {key} UP: {}, weight {w}", ev.reason);
            }
            Change::Weight(w) => {
                s.dyn_weight = Some(w);
                info!(service = %key, server = %rs, state = "UP", weight = w,
                    "real server {rs} of {key} weight {w}: {}", ev.reason);
            }
        }
        self.update_quorum(&mut st, &key, false);
        self.reconcile(&mut st, &key);
    }

    /// Sum of the weights of a service's up servers: the up checked ones, plus the listed
    /// servers without a check (always up, as in keepalived), the sorry server excluded.
    fn live_sum(&self, st: &State, key: &ServiceKey) -> u64 {
        let sorry = st
            .services
            .get(key)
            .and_then(|s| s.health.sorry_server.as_ref())
            .map(|s| (s.addr, s.port));
        let unchecked: u64 = self
            .table()
            .unwrap_or_default()
            .iter()
            .filter(|s| s.config.key == *key)
            .flat_map(|s| s.dests.iter())
            .filter(|d| {
                let a = (d.config.addr, d.config.port);
                Some(a) != sorry && !st.servers.contains_key(&(*key, a.0, a.1))
            })
            .map(|d| u64::from(d.config.weight))
            .sum();
        weight_sum(st, key) + unchecked
    }

    /// Re-evaluate a service's quorum; log and notify a change.
    fn update_quorum(&self, st: &mut State, key: &ServiceKey, quiet: bool) {
        let sum = self.live_sum(st, key);
        let Some(svc) = st.services.get_mut(key) else {
            return;
        };
        let Some(change) = svc.quorum.update(sum) else {
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

    /// Bring the live table of one service in line with the checks' states.
    fn reconcile(&self, st: &mut State, key: &ServiceKey) {
        let table = match self.table() {
            Ok(t) => t,
            Err(e) => {
                warn!(service = %key, error = %e, "cannot read the service table for health changes");
                return;
            }
        };
        let Some(svc_info) = table.iter().find(|s| s.config.key == *key) else {
            return; // the service is gone; `follow` forgets it
        };
        let live: HashMap<(IpAddr, u16), DestConfig> = svc_info
            .dests
            .iter()
            .map(|d| ((d.config.addr, d.config.port), d.config))
            .collect();
        let svc = st.services.get(key);
        let sorry_active =
            svc.is_some_and(|s| !s.quorum.is_up() && s.health.sorry_server.is_some());
        let mut wanted: Vec<((IpAddr, u16), Option<DestConfig>)> = Vec::new();
        for ((k, addr, port), s) in st.servers.range((*key, IpAddr::from([0u8; 4]), 0)..) {
            if k != key {
                continue;
            }
            let want = if s.up && !sorry_active {
                Some(DestConfig {
                    weight: s.weight(),
                    ..s.dest
                })
            } else if s.inhibit {
                Some(DestConfig {
                    weight: 0,
                    ..s.dest
                })
            } else {
                None
            };
            wanted.push(((*addr, *port), want));
        }
        if let Some(svc) = svc {
            let sorry = svc.health.sorry_server.as_ref();
            if let Some(old) = svc.sorry_in_table
                && sorry.is_none_or(|s| (s.addr, s.port) != old)
                && !wanted.iter().any(|(a, _)| *a == old)
            {
                wanted.push((old, None));
            }
            if let Some(s) = sorry {
                let dest = DestConfig::new(s.addr, s.port, s.method.into());
                let want = if sorry_active {
                    Some(dest.with_weight(s.weight))
                } else if s.inhibit {
                    Some(dest.with_weight(0))
                } else {
                    None
                };
                wanted.push(((s.addr, s.port), want));
            }
        }
        let mut requests = Vec::new();
        for ((addr, port), want) in &wanted {
            match (live.get(&(*addr, *port)), want) {
                (None, Some(d)) => requests.push(Request::AddDest {
                    key: *key,
                    dest: *d,
                }),
                (Some(cur), Some(d)) if cur != d => requests.push(Request::EditDest {
                    key: *key,
                    dest: *d,
                }),
                (Some(_), None) => requests.push(Request::DeleteDest {
                    key: *key,
                    addr: *addr,
                    port: *port,
                }),
                _ => {}
            }
        }
        // Removals last: a sorry server goes in before the real servers go out.
        requests.sort_by_key(|r| matches!(r, Request::DeleteDest { .. }));
        if !requests.is_empty() {
            let n = requests.len();
            let req = if n == 1 {
                requests.remove(0)
            } else {
                Request::Batch { requests }
            };
            if let Reply::Error { message } = self.call(req) {
                warn!(service = %key, error = %message, "health change not applied");
                return;
            }
        }
        if let Some(svc) = st.services.get_mut(key) {
            svc.sorry_in_table = svc
                .health
                .sorry_server
                .as_ref()
                .filter(|s| sorry_active || s.inhibit)
                .map(|s| (s.addr, s.port));
        }
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
                for k in std::mem::take(&mut st.servers).into_keys() {
                    self.engine.remove(&k);
                }
                st.services.clear();
            }
            Request::DeleteService { key } => {
                let gone: Vec<Key> = st.servers.keys().filter(|k| k.0 == key).copied().collect();
                for k in gone {
                    st.servers.remove(&k);
                    self.engine.remove(&k);
                }
                st.services.remove(&key);
            }
            Request::DeleteDest { key, addr, port } => {
                let k = (key, addr, port);
                if st.servers.remove(&k).is_some() {
                    self.engine.remove(&k);
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

fn weight_sum(st: &State, key: &ServiceKey) -> u64 {
    st.servers
        .iter()
        .filter(|((k, _, _), s)| k == key && s.up)
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
