//! `lvs-config`: lvsd's declarative configuration.
//!
//! A TOML file describes the whole service table: virtual services, their real servers and,
//! optionally, the connection timeouts and the connection-handling settings. `lvsd --config
//! FILE` loads it at start, `lvsd --check-config FILE` validates it without running, and
//! `SIGHUP` / `lvsadm --reload` apply a changed file as one atomic diff.
//!
//! * [`parse`] validates a file and reports **every** error with its line and column.
//! * [`to_toml`] writes a configuration back in canonical, commented form (it round-trips
//!   through [`parse`]).
//! * [`requests`] turns a configuration into the control requests that build it from scratch;
//!   [`diff`] into the smallest set of requests that turns a running table into it, so real
//!   servers that did not change keep their connections.
//! * [`import::keepalived`] translates the `virtual_server` blocks of a keepalived.conf.
//!
//! # Schema
//!
//! Every key is optional unless marked *required*. Unknown keys are errors (nothing is
//! silently ignored).
//!
//! ```toml
//! [timeouts]                 # optional, seconds (ipvsadm --set tcp tcpfin udp); all three
//! tcp = 900                  # are required when the table is present
//! tcpfin = 120
//! udp = 300
//!
//! [settings]                 # optional; IPVS's sysctls of the same names
//! expire_nodest_conn = false
//! expire_quiescent_template = false
//! conn_reuse_mode = 1        # 0..=3
//! sloppy_tcp = false         # schedule non-SYN packets of unknown flows (mh, sh, dh only)
//!
//! [[service]]
//! protocol = "tcp"           # tcp | udp | sctp (required with address)
//! address = "192.0.2.100:80" # VIP:port; [2001:db8::1]:80 for IPv6
//! # or, instead of protocol + address:
//! # fwmark = 1               # firewall mark 1..=4294967295
//! # family = "inet"          # inet | inet6, only with fwmark (default inet)
//! scheduler = "wlc"          # rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos (default wlc)
//! flags = ["sh-port"]        # sh-fallback sh-port mh-fallback mh-port flag-1 flag-2 flag-3
//! persistent = 300           # seconds, or true for ipvsadm's 300; absent or false: none
//! netmask = "255.255.255.0"  # persistence granularity: a dotted IPv4 mask or a prefix length
//! one_packet = false         # UDP (and fwmark) services only
//! quorum = 1                 # health settings (lvs_health::ServiceHealth): least up weight,
//! hysteresis = 0             # flap damper, the server that takes over while the quorum is
//! sorry_server = { address = "10.0.9.9:80", method = "nat" }   # lost, and commands run
//! quorum_up = "logger up"    # when it is gained / lost
//! quorum_down = "logger down"
//!
//!   [[service.real_server]]
//!   address = "10.0.1.11:80" # RIP:port; the port defaults to the virtual port
//!   method = "nat"           # nat | dr | tun (default dr, as ipvsadm)
//!   weight = 1               # 0..=65535 (default 1; 0 = quiescent)
//!   upper_threshold = 0      # -x, 0 = none
//!   lower_threshold = 0      # -y, 0 = none; not above upper_threshold
//!
//!     [service.real_server.check]  # one health check (lvs_health::CheckConfig), with
//!     type = "http"                # keepalived's names: tcp | http | https | udp | exec | smtp | dns | ping
//!     path = "/health"
//!     delay_loop = 2
//! ```
//!
//! Checks and health settings are validated by `lvs-health` itself
//! ([`lvs_health::validate_check`], [`lvs_health::validate_service_health`]); an error points
//! at the key at fault (or at the check table when a required key is missing).
//!
//! Direct routing and tunnelling deliver to the real server on the virtual port, so a `dr` or
//! `tun` real server of a service with a port may only name that port (or none). A port of 0
//! is only allowed on a persistent service ("all ports", as ipvsadm).
//!
//! ## One example per method
//!
//! NAT (the director rewrites addresses; real servers route their replies through it):
//!
//! ```toml
//! [[service]]
//! protocol = "tcp"
//! address = "192.0.2.100:80"
//! scheduler = "wlc"
//!
//!   [[service.real_server]]
//!   address = "10.0.1.11:8080"
//!   method = "nat"
//!   weight = 2
//!
//!   [[service.real_server]]
//!   address = "10.0.1.12:8080"
//!   method = "nat"
//! ```
//!
//! Direct routing (real servers on the same segment, VIP on their `lo`), persistent:
//!
//! ```toml
//! [[service]]
//! protocol = "tcp"
//! address = "192.0.2.100:443"
//! scheduler = "sh"
//! flags = ["sh-port", "sh-fallback"]
//! persistent = 600
//! netmask = "255.255.255.0"
//!
//!   [[service.real_server]]
//!   address = "10.0.1.11"
//!   method = "dr"
//! ```
//!
//! IP tunnelling, on a firewall-mark service of IPv6:
//!
//! ```toml
//! [[service]]
//! fwmark = 7
//! family = "inet6"
//! scheduler = "mh"
//!
//!   [[service.real_server]]
//!   address = "[2001:db8:1::11]"
//!   method = "tun"
//!   weight = 5
//!   upper_threshold = 1000
//!   lower_threshold = 800
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use lvs_api::{Request, ServiceInfo};
use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::types::{
    DEFAULT_PERSISTENCE_TIMEOUT, Family, ForwardMethod, Netmask, Protocol, SchedFlags, ServiceKey,
};
use lvs_health::{CheckConfig, ServiceHealth};

pub mod import;
mod parse;
pub mod rules;
pub mod table;

pub use parse::parse;

/// A whole configuration file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Virtual services in file order.
    pub services: Vec<ServiceEntry>,
    /// Connection timeouts; absent means IPVS's defaults ([`Timeouts::default`]).
    pub timeouts: Option<Timeouts>,
    /// Connection-handling settings; absent means "leave them as they are" (lvsd starts with
    /// IPVS's defaults).
    pub settings: Option<Settings>,
}

impl Config {
    /// Number of real servers over all services.
    pub fn real_server_count(&self) -> usize {
        self.services.iter().map(|s| s.dests.len()).sum()
    }
}

/// Most health checks one real server may have (lvsd's health module takes no more).
pub const MAX_CHECKS: usize = 16;

/// Health checks of real servers by address and port (see [`ServiceEntry::checks`]).
pub type Checks = BTreeMap<(IpAddr, u16), Vec<CheckConfig>>;

/// One virtual service with its real servers.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceEntry {
    /// The service.
    pub config: ServiceConfig,
    /// Its real servers in file order.
    pub dests: Vec<DestConfig>,
    /// Health checks of its real servers (`[service.real_server.check]`, or
    /// `[[service.real_server.check]]` for several, which must all pass, as keepalived's
    /// checkers of one real server), by real server address and port; real servers without
    /// a check are not in the map.
    pub checks: Checks,
    /// Health settings (`quorum`, `hysteresis`, `sorry_server`, `quorum_up`,
    /// `quorum_down`); `None` when the service has none of these keys (keepalived's
    /// defaults apply to its checks).
    pub health: Option<ServiceHealth>,
}

impl ServiceEntry {
    /// A service with these real servers, no health check and no health settings.
    pub fn new(config: ServiceConfig, dests: Vec<DestConfig>) -> ServiceEntry {
        ServiceEntry {
            config,
            dests,
            checks: BTreeMap::new(),
            health: None,
        }
    }
}

/// Connection timeouts in seconds (`ipvsadm --set tcp tcpfin udp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP ESTABLISHED.
    pub tcp: u64,
    /// TCP FIN_WAIT.
    pub tcpfin: u64,
    /// UDP.
    pub udp: u64,
}

impl Default for Timeouts {
    /// IPVS's defaults: 900, 120, 300 s.
    fn default() -> Timeouts {
        Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

/// Connection-handling settings (IPVS's sysctls of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Expire a connection once its real server is removed.
    pub expire_nodest_conn: bool,
    /// Do not use persistence templates of quiescent (weight 0) real servers.
    pub expire_quiescent_template: bool,
    /// Bit 0: reschedule a SYN hitting TIME_WAIT; bit 1: also FIN_WAIT of DR/Tun.
    pub conn_reuse_mode: u8,
    /// Schedule a non-SYN TCP packet of an unknown flow to an mh, sh or dh service (a flow
    /// another director had); see `lvs_core::director::Settings::sloppy_tcp`.
    pub sloppy_tcp: bool,
}

impl Default for Settings {
    /// IPVS's defaults: off, off, 1.
    fn default() -> Settings {
        Settings {
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            conn_reuse_mode: 1,
            sloppy_tcp: false,
        }
    }
}

/// An error in a configuration file, with its 1-based position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Line, from 1.
    pub line: usize,
    /// Column (in characters), from 1.
    pub column: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl Diagnostic {
    /// `FILE:LINE:COL: message`, the form compilers use (editors can jump to it).
    pub fn with_file<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        struct W<'a>(&'a Diagnostic, &'a str);
        impl fmt::Display for W<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}:{}", self.1, self.0)
            }
        }
        W(self, file)
    }
}

impl fmt::Display for Diagnostic {
    /// `LINE:COL: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// All diagnostics as `FILE:LINE:COL: message` lines (newline-separated, no trailing newline).
pub fn render(file: &str, diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.with_file(file).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// Writing

fn sock(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// The configuration-file name of a forwarding method.
pub fn method_name(m: ForwardMethod) -> &'static str {
    match m {
        ForwardMethod::Masq => "nat",
        ForwardMethod::DirectRoute => "dr",
        ForwardMethod::Tunnel => "tun",
    }
}

/// Names of the scheduler flags set in `flags`, for the service's scheduler (`sh-*` for sh,
/// `mh-*` for mh, `flag-N` otherwise).
fn flag_names(flags: SchedFlags, sched: lvs_core::types::SchedulerKind) -> Vec<String> {
    use lvs_core::types::SchedulerKind as K;
    let prefix = match sched {
        K::Sh => Some("sh"),
        K::Mh => Some("mh"),
        _ => None,
    };
    let mut out = Vec::new();
    for (bit, n) in [
        (SchedFlags::FLAG1, 1),
        (SchedFlags::FLAG2, 2),
        (SchedFlags::FLAG3, 3),
    ] {
        if !flags.contains(bit) {
            continue;
        }
        out.push(match (prefix, n) {
            (Some(p), 1) => format!("{p}-fallback"),
            (Some(p), 2) => format!("{p}-port"),
            _ => format!("flag-{n}"),
        });
    }
    out
}

fn netmask_text(m: Netmask) -> String {
    match m {
        Netmask::V4(p) => {
            let bits = if p == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(p.min(32)))
            };
            format!("\"{}\"", std::net::Ipv4Addr::from(bits))
        }
        Netmask::V6(p) => p.to_string(),
    }
}

fn default_netmask(f: Family) -> Netmask {
    match f {
        Family::V4 => Netmask::V4(32),
        Family::V6 => Netmask::V6(128),
    }
}

/// The configuration in canonical form: fixed key order, every service and real server key
/// written out (thresholds and defaults-only keys only when set), with comments. The text
/// parses back to an equal [`Config`].
pub fn to_toml(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    s.push_str(
        "# lvsd configuration. Validate with `lvsd --check-config FILE`; apply a change with\n\
         # `lvsadm --reload` or SIGHUP (only what changed is touched).\n",
    );
    if let Some(t) = cfg.timeouts {
        s.push_str("\n# Connection timeouts in seconds (ipvsadm --set tcp tcpfin udp).\n");
        let _ = writeln!(
            s,
            "[timeouts]\ntcp = {}\ntcpfin = {}\nudp = {}",
            t.tcp, t.tcpfin, t.udp
        );
    }
    if let Some(st) = cfg.settings {
        s.push_str("\n# Connection handling (IPVS's sysctls of the same names).\n");
        let _ = writeln!(
            s,
            "[settings]\nexpire_nodest_conn = {}\nexpire_quiescent_template = {}\nconn_reuse_mode = {}",
            st.expire_nodest_conn, st.expire_quiescent_template, st.conn_reuse_mode
        );
        if st.sloppy_tcp {
            s.push_str("sloppy_tcp = true\n");
        }
    }
    for e in &cfg.services {
        let c = &e.config;
        let _ = writeln!(s, "\n# {}", c.key);
        s.push_str("[[service]]\n");
        match c.key {
            ServiceKey::Addr { proto, addr, port } => {
                let _ = writeln!(s, "protocol = \"{}\"", proto_name(proto));
                let _ = writeln!(s, "address = \"{}\"", sock(addr, port));
            }
            ServiceKey::Fwmark { mark, family } => {
                let _ = writeln!(s, "fwmark = {mark}");
                let fam = match family {
                    Family::V4 => "inet",
                    Family::V6 => "inet6",
                };
                let _ = writeln!(s, "family = \"{fam}\"");
            }
        }
        let _ = writeln!(s, "scheduler = \"{}\"", c.scheduler.name());
        let flags = flag_names(c.flags, c.scheduler);
        if !flags.is_empty() {
            let list: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
            let _ = writeln!(s, "flags = [{}]", list.join(", "));
        }
        if let Some(p) = c.persistence {
            let _ = writeln!(s, "persistent = {}", p.timeout.as_secs().max(1));
            if p.netmask != default_netmask(c.key.family()) {
                let _ = writeln!(s, "netmask = {}", netmask_text(p.netmask));
            }
        }
        if c.one_packet {
            s.push_str("one_packet = true\n");
        }
        if let Some(h) = &e.health {
            write_service_health(&mut s, h);
        }
        for d in &e.dests {
            s.push_str("\n  [[service.real_server]]\n");
            let _ = writeln!(s, "  address = \"{}\"", sock(d.addr, d.port));
            let _ = writeln!(s, "  method = \"{}\"", method_name(d.method));
            let _ = writeln!(s, "  weight = {}", d.weight);
            if d.upper_threshold != 0 {
                let _ = writeln!(s, "  upper_threshold = {}", d.upper_threshold);
            }
            if d.lower_threshold != 0 {
                let _ = writeln!(s, "  lower_threshold = {}", d.lower_threshold);
            }
            if let Some(checks) = e.checks.get(&(d.addr, d.port)) {
                for check in checks {
                    write_check(&mut s, check, checks.len() > 1);
                }
            }
        }
    }
    s
}

/// A TOML basic string.
fn toml_str(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON scalar (or array of scalars) as a TOML value; `None` for what TOML cannot hold.
fn toml_value(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => b.to_string(),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            (_, _, Some(f)) => format!("{f:?}"),
            _ => return None,
        },
        J::String(t) => toml_str(t),
        J::Array(a) => {
            let items: Option<Vec<String>> = a.iter().map(toml_value).collect();
            format!("[{}]", items?.join(", "))
        }
        J::Object(m) => {
            let items: Option<Vec<String>> = m
                .iter()
                .map(|(k, v)| toml_value(v).map(|v| format!("{k} = {v}")))
                .collect();
            format!("{{ {} }}", items?.join(", "))
        }
    })
}

/// The keys of `v` whose values differ from those of `default` (both serialized objects).
fn non_default(
    v: serde_json::Value,
    default: serde_json::Value,
) -> Vec<(String, serde_json::Value)> {
    let (serde_json::Value::Object(m), serde_json::Value::Object(d)) = (v, default) else {
        return Vec::new();
    };
    m.into_iter().filter(|(k, v)| d.get(k) != Some(v)).collect()
}

/// `[service.real_server.check]`: `type` and the keys that are not at their default.
/// One check table; `several`: one of an array (`[[...]]`).
fn write_check(s: &mut String, check: &CheckConfig, several: bool) {
    use std::fmt::Write as _;
    s.push_str(if several {
        "\n    [[service.real_server.check]]\n"
    } else {
        "\n    [service.real_server.check]\n"
    });
    let _ = writeln!(s, "    type = \"{}\"", check.kind.name());
    let v = serde_json::to_value(check).unwrap_or_default();
    let d = serde_json::to_value(CheckConfig::new(check.kind)).unwrap_or_default();
    for (k, v) in non_default(v, d) {
        if k == "type" {
            continue;
        }
        if let Some(t) = toml_value(&v) {
            let _ = writeln!(s, "    {k} = {t}");
        }
    }
}

/// The health keys of a `[[service]]`: those not at their default (`quorum` always).
fn write_service_health(s: &mut String, h: &ServiceHealth) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "quorum = {}", h.quorum);
    if h.hysteresis != 0 {
        let _ = writeln!(s, "hysteresis = {}", h.hysteresis);
    }
    if let Some(sorry) = &h.sorry_server {
        let mut parts = vec![format!("address = \"{}\"", sock(sorry.addr, sorry.port))];
        let method = match sorry.method {
            lvs_health::SorryMethod::Nat => "nat",
            lvs_health::SorryMethod::Dr => "dr",
            lvs_health::SorryMethod::Tun => "tun",
        };
        parts.push(format!("method = \"{method}\""));
        if sorry.weight != 1 {
            parts.push(format!("weight = {}", sorry.weight));
        }
        if sorry.inhibit {
            parts.push("inhibit = true".into());
        }
        let _ = writeln!(s, "sorry_server = {{ {} }}", parts.join(", "));
    }
    if let Some(c) = &h.quorum_up {
        let _ = writeln!(s, "quorum_up = {}", toml_str(c));
    }
    if let Some(c) = &h.quorum_down {
        let _ = writeln!(s, "quorum_down = {}", toml_str(c));
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// The requests that build `cfg` from any table: [`Request::Clear`], then
/// [`Request::SetTimeouts`] (IPVS's defaults when the file has no `[timeouts]`), then each
/// service followed by its real servers. Send them as one [`Request::Batch`].
///
/// [`Config::settings`] has no control request; lvsd applies it itself.
pub fn requests(cfg: &Config) -> Vec<Request> {
    let t = cfg.timeouts.unwrap_or_default();
    let mut out = vec![
        Request::Clear,
        Request::SetTimeouts {
            tcp: t.tcp,
            tcpfin: t.tcpfin,
            udp: t.udp,
        },
    ];
    for e in &cfg.services {
        out.push(Request::AddService {
            service: e.config.into(),
        });
        for d in &e.dests {
            out.push(Request::AddDest {
                key: e.config.key.into(),
                dest: (*d).into(),
            });
        }
    }
    out
}

/// The health requests that give a table built by [`requests`] the configuration's checks
/// and health settings: a [`Request::SetServiceHealth`] per service with health keys, then a
/// [`Request::SetCheck`] per checked real server. For control-socket clients; lvsd applies
/// a configuration's health part itself, together with the table (see its `health` module).
pub fn health_requests(cfg: &Config) -> Vec<Request> {
    let mut out = Vec::new();
    for e in &cfg.services {
        if let Some(h) = &e.health {
            out.push(Request::SetServiceHealth {
                key: e.config.key.into(),
                health: serde_json::to_value(h).ok(),
            });
        }
        for d in &e.dests {
            if let Some(c) = e.checks.get(&(d.addr, d.port)) {
                // One check as an object, several as an array (the control API takes both).
                let check = match c.as_slice() {
                    [one] => serde_json::to_value(one).ok(),
                    many => serde_json::to_value(many).ok(),
                };
                out.push(Request::SetCheck {
                    key: e.config.key.into(),
                    addr: d.addr,
                    port: d.port,
                    check,
                });
            }
        }
    }
    out
}

/// The smallest list of requests that turns the `running` table into `wanted`, to be sent as
/// one [`Request::Batch`]:
///
/// 1. `DeleteService` for services no longer wanted;
/// 2. `EditService` for services whose scheduler, flags, persistence or one-packet setting
///    changed (their real servers and connections stay);
/// 3. per kept service, `DeleteDest` / `EditDest` for real servers removed / changed (weight,
///    method, thresholds); unchanged real servers get no request and keep their connections;
/// 4. `AddService` + `AddDest` for new services, `AddDest` for new real servers of kept ones;
/// 5. `SetTimeouts` when the effective timeouts differ (a file without `[timeouts]` wants
///    IPVS's defaults).
///
/// Services are matched by [`ServiceKey`], real servers by address and port. An identical
/// configuration yields no request.
pub fn diff(running: &Config, wanted: &Config) -> Vec<Request> {
    let run: BTreeMap<ServiceKey, &ServiceEntry> =
        running.services.iter().map(|e| (e.config.key, e)).collect();
    let want: BTreeMap<ServiceKey, &ServiceEntry> =
        wanted.services.iter().map(|e| (e.config.key, e)).collect();
    let mut deletes = Vec::new();
    let mut edits = Vec::new();
    let mut adds = Vec::new();
    for e in &running.services {
        if !want.contains_key(&e.config.key) {
            deletes.push(Request::DeleteService {
                key: e.config.key.into(),
            });
        }
    }
    for e in &wanted.services {
        let key = e.config.key;
        let Some(old) = run.get(&key) else {
            adds.push(Request::AddService {
                service: e.config.into(),
            });
            for d in &e.dests {
                adds.push(Request::AddDest {
                    key: key.into(),
                    dest: (*d).into(),
                });
            }
            continue;
        };
        if old.config != e.config {
            edits.push(Request::EditService {
                service: e.config.into(),
            });
        }
        let old_dests: BTreeMap<(IpAddr, u16), &DestConfig> =
            old.dests.iter().map(|d| ((d.addr, d.port), d)).collect();
        let new_ids: BTreeSet<(IpAddr, u16)> = e.dests.iter().map(|d| (d.addr, d.port)).collect();
        for d in &old.dests {
            if !new_ids.contains(&(d.addr, d.port)) {
                edits.push(Request::DeleteDest {
                    key: key.into(),
                    addr: d.addr,
                    port: d.port,
                });
            }
        }
        for d in &e.dests {
            match old_dests.get(&(d.addr, d.port)) {
                Some(o) if **o == *d => {}
                Some(_) => edits.push(Request::EditDest {
                    key: key.into(),
                    dest: (*d).into(),
                }),
                None => adds.push(Request::AddDest {
                    key: key.into(),
                    dest: (*d).into(),
                }),
            }
        }
    }
    let mut out = deletes;
    out.append(&mut edits);
    out.append(&mut adds);
    let (rt, wt) = (
        running.timeouts.unwrap_or_default(),
        wanted.timeouts.unwrap_or_default(),
    );
    if rt != wt {
        out.push(Request::SetTimeouts {
            tcp: wt.tcp,
            tcpfin: wt.tcpfin,
            udp: wt.udp,
        });
    }
    out
}

/// What a list of change requests does, counted for a log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Services added.
    pub services_added: usize,
    /// Services deleted.
    pub services_deleted: usize,
    /// Services edited.
    pub services_edited: usize,
    /// Real servers added.
    pub dests_added: usize,
    /// Real servers deleted.
    pub dests_deleted: usize,
    /// Real servers edited.
    pub dests_edited: usize,
    /// Whether the timeouts are set.
    pub timeouts: bool,
}

impl Summary {
    /// Count the requests (a [`Request::Batch`] is looked into).
    pub fn of(requests: &[Request]) -> Summary {
        let mut s = Summary::default();
        for r in requests {
            match r {
                Request::AddService { .. } => s.services_added += 1,
                Request::DeleteService { .. } => s.services_deleted += 1,
                Request::EditService { .. } => s.services_edited += 1,
                Request::AddDest { .. } => s.dests_added += 1,
                Request::DeleteDest { .. } => s.dests_deleted += 1,
                Request::EditDest { .. } => s.dests_edited += 1,
                Request::SetTimeouts { .. } => s.timeouts = true,
                Request::Batch { requests } => {
                    let b = Summary::of(requests);
                    s.services_added += b.services_added;
                    s.services_deleted += b.services_deleted;
                    s.services_edited += b.services_edited;
                    s.dests_added += b.dests_added;
                    s.dests_deleted += b.dests_deleted;
                    s.dests_edited += b.dests_edited;
                    s.timeouts |= b.timeouts;
                }
                _ => {}
            }
        }
        s
    }
}

impl fmt::Display for Summary {
    /// `+A services, -B, ~C, real servers +D -E ~F` (and `, timeouts set` when they are).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+{} services, -{}, ~{}, real servers +{} -{} ~{}",
            self.services_added,
            self.services_deleted,
            self.services_edited,
            self.dests_added,
            self.dests_deleted,
            self.dests_edited
        )?;
        if self.timeouts {
            f.write_str(", timeouts set")?;
        }
        Ok(())
    }
}

/// The configuration of a running table, from lvsd's [`lvs_api::Reply::Services`] listing
/// and [`lvs_api::Reply::Timeouts`] (seconds). Counters are dropped; settings are unknown
/// (`None`).
pub fn from_listing(services: &[ServiceInfo], timeouts: Option<Timeouts>) -> Config {
    Config {
        services: services
            .iter()
            .map(|s| {
                ServiceEntry::new(
                    s.config.into(),
                    s.dests.iter().map(|d| d.config.into()).collect(),
                )
            })
            .collect(),
        timeouts,
        settings: None,
    }
}

/// Default persistence, as `-p` without a value: 300 s, full-address granularity.
pub(crate) fn default_persistence(f: Family) -> lvs_core::types::Persistence {
    lvs_core::types::Persistence {
        timeout: DEFAULT_PERSISTENCE_TIMEOUT,
        netmask: default_netmask(f),
    }
}

pub(crate) fn secs(d: u64) -> Duration {
    Duration::from_secs(d)
}

#[cfg(test)]
mod tests;
