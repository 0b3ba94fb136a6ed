//! Validation of the TOML file, with the position of every error.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;

use lvs_core::service::{DestConfig, MAX_WEIGHT, ServiceConfig};
use lvs_core::types::{
    Family, ForwardMethod, Netmask, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceKey,
};
use lvs_health::{CheckConfig, ServiceHealth};
use toml_edit::{Document, Item, TableLike, Value};

use crate::{Config, Diagnostic, ServiceEntry, Settings, Timeouts, default_persistence, secs};

type Span = Option<Range<usize>>;

struct Cx<'a> {
    text: &'a str,
    /// Byte offset of the start of each line.
    lines: Vec<usize>,
    diags: Vec<Diagnostic>,
    /// Where errors without a span of their own point (the enclosing table).
    here: Span,
}

impl Cx<'_> {
    fn new(text: &str) -> Cx<'_> {
        let mut lines = vec![0];
        lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Cx {
            text,
            lines,
            diags: Vec::new(),
            here: None,
        }
    }

    fn pos(&self, off: usize) -> (usize, usize) {
        let off = off.min(self.text.len());
        let line = self.lines.partition_point(|&s| s <= off);
        let start = self.lines[line - 1];
        let column = self
            .text
            .get(start..off)
            .map_or(1, |t| t.chars().count() + 1);
        (line, column)
    }

    fn line_of(&self, span: &Span) -> usize {
        self.pos(span.as_ref().or(self.here.as_ref()).map_or(0, |r| r.start))
            .0
    }

    fn err(&mut self, span: Span, message: impl Into<String>) {
        let off = span.or_else(|| self.here.clone()).map_or(0, |r| r.start);
        let (line, column) = self.pos(off);
        self.diags.push(Diagnostic {
            line,
            column,
            message: message.into(),
        });
    }
}

/// Parse and validate a configuration file. On error, every problem found is returned with its
/// line and column (sorted by position), not just the first one.
pub fn parse(text: &str) -> Result<Config, Vec<Diagnostic>> {
    let mut cx = Cx::new(text);
    let doc = match Document::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.message().trim().to_string();
            cx.err(e.span(), format!("TOML syntax error: {msg}"));
            return Err(cx.diags);
        }
    };
    let root = doc.as_table();
    let mut cfg = Config::default();
    let mut seen: HashMap<ServiceKey, usize> = HashMap::new();
    for (k, item) in root.iter() {
        let kspan = root.key(k).and_then(|k| k.span());
        match k {
            "timeouts" => cfg.timeouts = timeouts(&mut cx, item, kspan),
            "settings" => cfg.settings = settings(&mut cx, item, kspan),
            "service" => {
                for (t, span) in tables(&mut cx, item, "service", kspan) {
                    cx.here = span.clone();
                    if let Some((entry, kspan)) = service(&mut cx, t) {
                        let key = entry.config.key;
                        if let Some(first) = seen.get(&key) {
                            cx.err(
                                kspan,
                                format!(
                                    "duplicate service {key}: it is already defined at line {first}; \
                                     merge the two [[service]] tables"
                                ),
                            );
                        } else {
                            seen.insert(key, cx.line_of(&kspan));
                            cfg.services.push(entry);
                        }
                    }
                }
            }
            other => cx.err(
                kspan,
                format!(
                    "unknown key '{other}' at the top level (expected [timeouts], [settings] or [[service]])"
                ),
            ),
        }
    }
    if cx.diags.is_empty() {
        Ok(cfg)
    } else {
        cx.diags.sort_by_key(|d| (d.line, d.column));
        Err(cx.diags)
    }
}

/// The tables of an array of tables (`[[name]]` or `name = [{...}, ...]`).
fn tables<'d>(
    cx: &mut Cx<'_>,
    item: &'d Item,
    name: &str,
    kspan: Span,
) -> Vec<(&'d dyn TableLike, Span)> {
    match item {
        Item::ArrayOfTables(a) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
        Item::Value(Value::Array(arr)) => {
            let mut out = Vec::new();
            for v in arr.iter() {
                match v.as_inline_table() {
                    Some(t) => out.push((t as &dyn TableLike, v.span())),
                    None => cx.err(
                        v.span(),
                        format!("'{name}' must hold tables, found a {}", v.type_name()),
                    ),
                }
            }
            out
        }
        Item::Table(_) => {
            cx.err(
                kspan,
                format!("write [[{name}]] (double brackets): there can be several of them"),
            );
            Vec::new()
        }
        other => {
            cx.err(
                other.span().or(kspan),
                format!(
                    "'{name}' must be an array of tables ([[{name}]]), found a {}",
                    other.type_name()
                ),
            );
            Vec::new()
        }
    }
}

fn table<'d>(
    cx: &mut Cx<'_>,
    item: &'d Item,
    name: &str,
    kspan: Span,
) -> Option<&'d dyn TableLike> {
    match item.as_table_like() {
        Some(t) if !matches!(item, Item::ArrayOfTables(_)) => Some(t),
        _ => {
            cx.err(
                item.span().or(kspan),
                format!(
                    "'{name}' must be a table ([{name}]), found a {}",
                    item.type_name()
                ),
            );
            None
        }
    }
}

/// Check that every key of `t` is allowed; returns false if one is not.
fn known_keys(cx: &mut Cx<'_>, t: &dyn TableLike, allowed: &[&str], what: &str) -> bool {
    let mut ok = true;
    for (k, _) in t.iter() {
        if !allowed.contains(&k) {
            let span = t.key(k).and_then(|k| k.span());
            cx.err(
                span,
                format!(
                    "unknown key '{k}' in {what} (expected one of: {})",
                    allowed.join(", ")
                ),
            );
            ok = false;
        }
    }
    ok
}

fn span_of(t: &dyn TableLike, key: &str) -> Span {
    t.get(key)
        .and_then(|i| i.span())
        .or_else(|| t.key(key).and_then(|k| k.span()))
}

fn get_str<'d>(cx: &mut Cx<'_>, t: &'d dyn TableLike, key: &str) -> Option<(&'d str, Span)> {
    let item = t.get(key)?;
    match item.as_str() {
        Some(s) => Some((s, span_of(t, key))),
        None => {
            cx.err(
                span_of(t, key),
                format!("'{key}' must be a string, found a {}", item.type_name()),
            );
            None
        }
    }
}

fn get_int(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    key: &str,
    min: i64,
    max: i64,
) -> Option<(i64, Span)> {
    let item = t.get(key)?;
    let span = span_of(t, key);
    match item.as_integer() {
        Some(n) if (min..=max).contains(&n) => Some((n, span)),
        Some(n) => {
            cx.err(
                span,
                format!("'{key}' = {n} is out of range: it must be from {min} to {max}"),
            );
            None
        }
        None => {
            cx.err(
                span,
                format!("'{key}' must be an integer, found a {}", item.type_name()),
            );
            None
        }
    }
}

fn get_bool(cx: &mut Cx<'_>, t: &dyn TableLike, key: &str) -> Option<bool> {
    let item = t.get(key)?;
    match item.as_bool() {
        Some(b) => Some(b),
        None => {
            cx.err(
                span_of(t, key),
                format!(
                    "'{key}' must be true or false, found a {}",
                    item.type_name()
                ),
            );
            None
        }
    }
}

fn timeouts(cx: &mut Cx<'_>, item: &Item, kspan: Span) -> Option<Timeouts> {
    let t = table(cx, item, "timeouts", kspan.clone())?;
    cx.here = kspan;
    let ok = known_keys(cx, t, &["tcp", "tcpfin", "udp"], "[timeouts]");
    let max = i64::from(u32::MAX);
    let mut vals = [0u64; 3];
    let mut all = ok;
    for (i, k) in ["tcp", "tcpfin", "udp"].into_iter().enumerate() {
        if t.get(k).is_none() {
            cx.err(
                None,
                format!("[timeouts] needs '{k}' (seconds; IPVS's defaults are tcp = 900, tcpfin = 120, udp = 300)"),
            );
            all = false;
            continue;
        }
        match get_int(cx, t, k, 1, max) {
            Some((n, _)) => vals[i] = n as u64,
            None => all = false,
        }
    }
    all.then_some(Timeouts {
        tcp: vals[0],
        tcpfin: vals[1],
        udp: vals[2],
    })
}

fn settings(cx: &mut Cx<'_>, item: &Item, kspan: Span) -> Option<Settings> {
    let t = table(cx, item, "settings", kspan.clone())?;
    cx.here = kspan;
    let before = cx.diags.len();
    known_keys(
        cx,
        t,
        &[
            "expire_nodest_conn",
            "expire_quiescent_template",
            "conn_reuse_mode",
            "sloppy_tcp",
        ],
        "[settings]",
    );
    let mut s = Settings::default();
    if let Some(b) = get_bool(cx, t, "expire_nodest_conn") {
        s.expire_nodest_conn = b;
    }
    if let Some(b) = get_bool(cx, t, "expire_quiescent_template") {
        s.expire_quiescent_template = b;
    }
    if let Some((n, _)) = get_int(cx, t, "conn_reuse_mode", 0, 3) {
        s.conn_reuse_mode = n as u8;
    }
    if let Some(b) = get_bool(cx, t, "sloppy_tcp") {
        s.sloppy_tcp = b;
    }
    (cx.diags.len() == before).then_some(s)
}

const ADDR_HELP: &str = "write IPv4:port (192.0.2.1:80) or [IPv6]:port ([2001:db8::1]:80)";

/// `IP:port`, `[IPv6]:port`, or a bare address (port `None`).
pub(crate) fn parse_sock(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let s = s.trim();
    let bad = || format!("'{s}' is not an address: {ADDR_HELP}");
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("'{p}' is not a port (0..=65535) in '{s}'"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (a, tail) = rest.split_once(']').ok_or_else(bad)?;
        let addr: std::net::Ipv6Addr = a.parse().map_err(|_| bad())?;
        let p = match tail {
            "" => None,
            t => Some(port(t.strip_prefix(':').ok_or_else(bad)?)?),
        };
        return Ok((IpAddr::V6(addr), p));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((a, None));
    }
    let (a, p) = s.rsplit_once(':').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    Ok((IpAddr::V4(addr), Some(port(p)?)))
}

/// A contiguous IPv4 mask as a prefix length.
pub(crate) fn mask_prefix(m: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(m);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// Parse a service table; returns the entry and the span its identity is reported at.
fn service(cx: &mut Cx<'_>, t: &dyn TableLike) -> Option<(ServiceEntry, Span)> {
    let before = cx.diags.len();
    known_keys(
        cx,
        t,
        &[
            "protocol",
            "address",
            "fwmark",
            "family",
            "scheduler",
            "flags",
            "persistent",
            "netmask",
            "one_packet",
            "quorum",
            "hysteresis",
            "sorry_server",
            "quorum_up",
            "quorum_down",
            "real_server",
        ],
        "[[service]]",
    );
    let (key, key_span) = service_key(cx, t);
    let scheduler = scheduler(cx, t);
    let flags = sched_flags(cx, t, scheduler);
    let fam = key.map(|k| k.family());
    let mut persistence = persistence(cx, t, fam);
    let mask = netmask(cx, t, fam);
    if let (Some(m), Some(p)) = (mask, persistence.as_mut()) {
        p.netmask = m;
    }
    let one_packet = one_packet(cx, t, key);
    check_all_ports(cx, t, key, persistence.is_some());
    let health = service_health(cx, t, key);
    let (dests, checks) = real_servers(cx, t, key);
    if cx.diags.len() != before {
        return None;
    }
    let config = ServiceConfig {
        key: key?,
        scheduler: scheduler?,
        flags,
        persistence,
        one_packet,
    };
    Some((
        ServiceEntry {
            config,
            dests,
            checks,
            health,
        },
        key_span,
    ))
}

/// A service's `protocol`, if given and known (an unknown one is reported).
fn protocol(cx: &mut Cx<'_>, t: &dyn TableLike) -> Option<Protocol> {
    let (p, span) = get_str(cx, t, "protocol")?;
    match p.to_ascii_lowercase().as_str() {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "sctp" => Some(Protocol::Sctp),
        _ => {
            cx.err(
                span,
                format!("unknown protocol '{p}' (one of: tcp, udp, sctp)"),
            );
            None
        }
    }
}

/// A service's `family` with its span, if given and known (an unknown one is reported).
fn fwmark_family(cx: &mut Cx<'_>, t: &dyn TableLike) -> Option<(Family, Span)> {
    let (f, span) = get_str(cx, t, "family")?;
    match f {
        "inet" | "ipv4" => Some((Family::V4, span)),
        "inet6" | "ipv6" => Some((Family::V6, span)),
        _ => {
            cx.err(span, format!("unknown family '{f}' (inet or inet6)"));
            None
        }
    }
}

/// A service's key (`protocol` + `address`, or `fwmark` [+ `family`]) and the span it is
/// reported at; the key is `None` when it is wrong (which is reported).
fn service_key(cx: &mut Cx<'_>, t: &dyn TableLike) -> (Option<ServiceKey>, Span) {
    let proto = protocol(cx, t);
    let address = get_str(cx, t, "address");
    let fwmark = get_int(cx, t, "fwmark", 1, i64::from(u32::MAX));
    let family = fwmark_family(cx, t);
    match (t.contains_key("fwmark"), t.contains_key("address")) {
        (true, true) => {
            cx.err(
                span_of(t, "fwmark"),
                "a service is either 'protocol' + 'address' or 'fwmark', not both",
            );
            (None, None)
        }
        (false, false) => {
            cx.err(
                None,
                "a service needs 'protocol' and 'address' (e.g. protocol = \"tcp\", address = \"192.0.2.1:80\") or 'fwmark'",
            );
            (None, None)
        }
        (true, false) => {
            if t.contains_key("protocol") {
                cx.err(
                    span_of(t, "protocol"),
                    "a firewall-mark service has no 'protocol' (the mark selects the packets): remove it",
                );
            }
            let key = fwmark.map(|(m, _)| ServiceKey::Fwmark {
                mark: m as u32,
                family: family.as_ref().map_or(Family::V4, |f| f.0),
            });
            (key, span_of(t, "fwmark"))
        }
        (false, true) => {
            if let Some((_, span)) = &family {
                cx.err(
                    span.clone(),
                    "'family' is only for fwmark services (the address says it): remove it",
                );
            }
            if !t.contains_key("protocol") {
                cx.err(
                    span_of(t, "address"),
                    "the service needs a 'protocol' (tcp, udp or sctp)",
                );
            }
            (address_key(cx, proto, address), span_of(t, "address"))
        }
    }
}

/// The key of an address service from its protocol and its `address` (which needs a port).
fn address_key(
    cx: &mut Cx<'_>,
    proto: Option<Protocol>,
    address: Option<(&str, Span)>,
) -> Option<ServiceKey> {
    let (a, span) = address?;
    match parse_sock(a) {
        Ok((addr, Some(port))) => proto.map(|proto| ServiceKey::Addr { proto, addr, port }),
        Ok((_, None)) => {
            cx.err(
                span,
                format!("the service address '{a}' needs a port: {ADDR_HELP}"),
            );
            None
        }
        Err(e) => {
            cx.err(span, e);
            None
        }
    }
}

/// A service's `scheduler` (wlc when left out); `None` when it is unknown (which is reported).
fn scheduler(cx: &mut Cx<'_>, t: &dyn TableLike) -> Option<SchedulerKind> {
    match get_str(cx, t, "scheduler") {
        None => Some(SchedulerKind::Wlc),
        Some((s, span)) => match s.parse::<SchedulerKind>() {
            Ok(k) => Some(k),
            Err(e) => {
                cx.err(span, e.to_string());
                None
            }
        },
    }
}

/// A service's `flags` (none when left out), each checked against its scheduler.
fn sched_flags(cx: &mut Cx<'_>, t: &dyn TableLike, scheduler: Option<SchedulerKind>) -> SchedFlags {
    let mut flags = SchedFlags::default();
    let Some(item) = t.get("flags") else {
        return flags;
    };
    match item.as_array() {
        None => cx.err(
            span_of(t, "flags"),
            format!(
                "'flags' must be an array of strings (e.g. [\"sh-port\"]), found a {}",
                item.type_name()
            ),
        ),
        Some(arr) => {
            for v in arr.iter() {
                if let Some(bit) = sched_flag(cx, v, scheduler) {
                    flags = flags.union(bit);
                }
            }
        }
    }
    flags
}

/// One scheduler flag's bit; `None` when it is not a string or not a known flag (reported); a
/// flag of the other hashing scheduler is reported but still counts.
fn sched_flag(cx: &mut Cx<'_>, v: &Value, scheduler: Option<SchedulerKind>) -> Option<SchedFlags> {
    let Some(name) = v.as_str() else {
        cx.err(v.span(), "a flag must be a string such as \"sh-port\"");
        return None;
    };
    let bit = match name {
        "sh-fallback" | "mh-fallback" | "flag-1" => SchedFlags::FLAG1,
        "sh-port" | "mh-port" | "flag-2" => SchedFlags::FLAG2,
        "flag-3" => SchedFlags::FLAG3,
        _ => {
            cx.err(
                v.span(),
                format!(
                    "unknown scheduler flag '{name}' (one of: sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2, flag-3)"
                ),
            );
            return None;
        }
    };
    let wrong = match (name.split('-').next(), scheduler) {
        (Some("sh"), Some(SchedulerKind::Mh)) => Some("mh"),
        (Some("mh"), Some(SchedulerKind::Sh)) => Some("sh"),
        _ => None,
    };
    if let Some(p) = wrong {
        let suffix = name.split_once('-').map_or("", |x| x.1);
        cx.err(
            v.span(),
            format!("flag '{name}' does not belong to the {p} scheduler: write \"{p}-{suffix}\""),
        );
    }
    Some(bit)
}

/// A service's `persistent` timeout with the family's default netmask; `None` when it is
/// absent, false, wrong (which is reported) or the family is unknown.
fn persistence(cx: &mut Cx<'_>, t: &dyn TableLike, fam: Option<Family>) -> Option<Persistence> {
    let item = t.get("persistent")?;
    let span = span_of(t, "persistent");
    let timeout = match (item.as_bool(), item.as_integer()) {
        (Some(true), _) => Some(Some(lvs_core::types::DEFAULT_PERSISTENCE_TIMEOUT)),
        (Some(false), _) => Some(None),
        (_, Some(n)) if (1..=i64::from(u32::MAX)).contains(&n) => Some(Some(secs(n as u64))),
        (_, Some(n)) => {
            cx.err(
                span,
                format!("'persistent' = {n}: give the timeout in seconds (at least 1), true for 300, or false for none"),
            );
            None
        }
        _ => {
            cx.err(
                span,
                format!(
                    "'persistent' must be a number of seconds or true/false, found a {}",
                    item.type_name()
                ),
            );
            None
        }
    };
    if let (Some(Some(timeout)), Some(f)) = (timeout, fam) {
        Some(Persistence {
            timeout,
            netmask: default_persistence(f).netmask,
        })
    } else {
        None
    }
}

/// A service's `netmask` (which needs `persistent`); `None` when it is absent or wrong (which
/// is reported).
fn netmask(cx: &mut Cx<'_>, t: &dyn TableLike, fam: Option<Family>) -> Option<Netmask> {
    let item = t.get("netmask")?;
    let span = span_of(t, "netmask");
    if !t.contains_key("persistent")
        || matches!(t.get("persistent").and_then(Item::as_bool), Some(false))
    {
        cx.err(
            span.clone(),
            "'netmask' is the persistence granularity: it needs 'persistent'",
        );
    }
    match (item.as_str(), item.as_integer()) {
        (Some(s), _) => dotted_netmask(cx, s, span, fam),
        (_, Some(n)) => prefix_netmask(cx, n, span, fam),
        _ => {
            cx.err(
                span,
                format!(
                    "'netmask' must be a dotted mask or a prefix length, found a {}",
                    item.type_name()
                ),
            );
            None
        }
    }
}

/// A netmask written as a string: a contiguous dotted IPv4 mask, not for an IPv6 service.
fn dotted_netmask(cx: &mut Cx<'_>, s: &str, span: Span, fam: Option<Family>) -> Option<Netmask> {
    let Ok(m) = s.parse::<Ipv4Addr>() else {
        cx.err(
            span,
            format!("netmask '{s}' is neither a dotted IPv4 mask nor a prefix length"),
        );
        return None;
    };
    match (mask_prefix(m), fam) {
        (None, _) => {
            cx.err(
                span,
                format!("netmask '{s}' is not contiguous (e.g. 255.255.255.0)"),
            );
            None
        }
        (Some(_), Some(Family::V6)) => {
            cx.err(
                span,
                format!("netmask '{s}' is an IPv4 mask but the service is IPv6: give a prefix length (0..=128), e.g. netmask = 64"),
            );
            None
        }
        (Some(p), _) => Some(Netmask::V4(p)),
    }
}

/// A netmask written as a prefix length, within the service's family (IPv4 when unknown).
fn prefix_netmask(cx: &mut Cx<'_>, n: i64, span: Span, fam: Option<Family>) -> Option<Netmask> {
    let max = if fam == Some(Family::V6) { 128 } else { 32 };
    if (0..=max).contains(&n) {
        Some(if fam == Some(Family::V6) {
            Netmask::V6(n as u8)
        } else {
            Netmask::V4(n as u8)
        })
    } else {
        let fname = if max == 32 { "IPv4" } else { "IPv6" };
        cx.err(
            span,
            format!("netmask prefix {n} does not fit an {fname} service (0..={max})"),
        );
        None
    }
}

/// A service's `one_packet` (false when left out or wrong); true on a TCP or SCTP service is
/// reported.
fn one_packet(cx: &mut Cx<'_>, t: &dyn TableLike, key: Option<ServiceKey>) -> bool {
    let one_packet = get_bool(cx, t, "one_packet").unwrap_or(false);
    if one_packet
        && matches!(
            key,
            Some(ServiceKey::Addr {
                proto: Protocol::Tcp | Protocol::Sctp,
                ..
            })
        )
    {
        cx.err(
            span_of(t, "one_packet"),
            "one_packet applies to UDP (and fwmark) services only",
        );
    }
    one_packet
}

/// Report port 0 (all ports) on an address service that is not persistent.
fn check_all_ports(cx: &mut Cx<'_>, t: &dyn TableLike, key: Option<ServiceKey>, persistent: bool) {
    if let Some(ServiceKey::Addr { port: 0, .. }) = key
        && !persistent
    {
        cx.err(
            span_of(t, "address"),
            "port 0 (all ports) is only allowed on a persistent service: add 'persistent' or give a port",
        );
    }
}

/// A service's `[[service.real_server]]` tables: the valid real servers (a duplicate is
/// reported) and their health checks by address and port.
fn real_servers(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    key: Option<ServiceKey>,
) -> (Vec<DestConfig>, crate::Checks) {
    let mut dests = Vec::new();
    let mut checks = BTreeMap::new();
    let Some(item) = t.get("real_server") else {
        return (dests, checks);
    };
    let here = cx.here.clone();
    let kspan = t.key("real_server").and_then(|k| k.span());
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    for (rt, span) in tables(cx, item, "service.real_server", kspan) {
        cx.here = span.or_else(|| here.clone());
        if let Some((d, dspan, check)) = real_server(cx, rt, key) {
            if let Some(first) = seen.get(&(d.addr, d.port)) {
                cx.err(
                    dspan,
                    format!(
                        "duplicate real server {}: already listed for this service at line {first}",
                        crate::sock(d.addr, d.port)
                    ),
                );
            } else {
                seen.insert((d.addr, d.port), cx.line_of(&dspan));
                if !check.is_empty() {
                    checks.insert((d.addr, d.port), check);
                }
                dests.push(d);
            }
        }
    }
    cx.here = here;
    (dests, checks)
}

fn real_server(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    key: Option<ServiceKey>,
) -> Option<(DestConfig, Span, Vec<CheckConfig>)> {
    let before = cx.diags.len();
    known_keys(
        cx,
        t,
        &[
            "address",
            "method",
            "weight",
            "upper_threshold",
            "lower_threshold",
            "check",
        ],
        "[[service.real_server]]",
    );
    let method = match get_str(cx, t, "method") {
        None => Some(ForwardMethod::DirectRoute),
        Some((m, span)) => match m.to_ascii_lowercase().as_str() {
            "nat" => Some(ForwardMethod::Masq),
            "dr" => Some(ForwardMethod::DirectRoute),
            "tun" => Some(ForwardMethod::Tunnel),
            _ => {
                cx.err(span, format!("unknown method '{m}' (one of: nat, dr, tun)"));
                None
            }
        },
    };
    let weight = get_int(cx, t, "weight", 0, i64::from(MAX_WEIGHT)).map_or(1, |w| w.0 as u32);
    let max = i64::from(u32::MAX);
    let upper = get_int(cx, t, "upper_threshold", 0, max).map_or(0, |v| v.0 as u32);
    let lower = get_int(cx, t, "lower_threshold", 0, max).map_or(0, |v| v.0 as u32);
    if upper != 0 && lower > upper {
        cx.err(
            span_of(t, "lower_threshold"),
            format!(
                "lower_threshold {lower} is above upper_threshold {upper}: lower it (or set upper_threshold = 0 for none)"
            ),
        );
    }
    let aspan = span_of(t, "address");
    let mut dest = None;
    match get_str(cx, t, "address") {
        None if !t.contains_key("address") => cx.err(
            None,
            "a real server needs an 'address' (e.g. address = \"10.0.1.11:80\")",
        ),
        None => {}
        Some((a, span)) => match parse_sock(a) {
            Err(e) => cx.err(span, e),
            Ok((addr, port)) => {
                let vport = match key {
                    Some(ServiceKey::Addr { port, .. }) => Some(port),
                    _ => None,
                };
                let port = port.or(vport).unwrap_or(0);
                if let (Some(m), Some(vp)) = (method, vport)
                    && m != ForwardMethod::Masq
                    && vp != 0
                    && port != vp
                {
                    cx.err(
                        span.clone(),
                        format!(
                            "a {} real server receives on the virtual port {vp}: write '{}' (only nat can change the port)",
                            crate::method_name(m),
                            crate::sock(addr, vp)
                        ),
                    );
                }
                if let (Some(k), Some(m)) = (key, method)
                    && Family::of(addr) != k.family()
                    && m != ForwardMethod::Tunnel
                {
                    cx.err(
                        span,
                        format!(
                            "real server {addr} is of another address family than the service (only method = \"tun\" may mix them)"
                        ),
                    );
                }
                dest = Some((addr, port));
            }
        },
    }
    // One check (a table) or several (an array of tables): all must pass.
    let mut check = Vec::new();
    if let Some(item) = t.get("check") {
        let kspan = t.key("check").and_then(|k| k.span());
        let name = "service.real_server.check";
        let list: Vec<(&dyn TableLike, Span)> = match item {
            Item::ArrayOfTables(_) | Item::Value(Value::Array(_)) => {
                tables(cx, item, name, kspan.clone())
            }
            _ => table(cx, item, name, kspan.clone())
                .map(|ct| (ct, item.span().or(kspan.clone())))
                .into_iter()
                .collect(),
        };
        // Validated against the real server it checks (or, if its address is wrong, any).
        let target = dest.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |(a, p)| {
            SocketAddr::new(a, p)
        });
        if list.len() > crate::MAX_CHECKS {
            cx.err(
                kspan.clone(),
                format!(
                    "{} checks on one real server: at most {}",
                    list.len(),
                    crate::MAX_CHECKS
                ),
            );
        }
        for (ct, span) in list {
            let here = std::mem::replace(&mut cx.here, span.or(kspan.clone()));
            let c = table_json(cx, ct).and_then(|json| {
                match lvs_health::validate_check(serde_json::Value::Object(json), target) {
                    Ok((c, _)) => Some(c),
                    Err(e) => {
                        let span = e.key.as_deref().and_then(|k| key_span(ct, k));
                        cx.err(span, format!("bad health check: {}", e.message));
                        None
                    }
                }
            });
            cx.here = here;
            check.extend(c);
        }
    }
    if cx.diags.len() != before {
        return None;
    }
    let (addr, port) = dest?;
    Some((
        DestConfig {
            addr,
            port,
            weight,
            method: method?,
            upper_threshold: upper,
            lower_threshold: lower,
        },
        aspan,
        check,
    ))
}

/// The span of a key of `t` (the key itself, else its value).
fn key_span(t: &dyn TableLike, key: &str) -> Span {
    t.key(key)
        .and_then(|k| k.span())
        .or_else(|| span_of(t, key))
}

/// The health keys of a service (`quorum`, `hysteresis`, `sorry_server`, `quorum_up`,
/// `quorum_down`), validated by lvs-health; `None` when there are none (or they are wrong,
/// which is reported).
fn service_health(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    key: Option<ServiceKey>,
) -> Option<ServiceHealth> {
    const KEYS: [&str; 5] = [
        "quorum",
        "hysteresis",
        "sorry_server",
        "quorum_up",
        "quorum_down",
    ];
    if !KEYS.iter().any(|k| t.contains_key(k)) {
        return None;
    }
    let before = cx.diags.len();
    let mut json = serde_json::Map::new();
    for k in KEYS {
        let Some(item) = t.get(k) else { continue };
        if k == "sorry_server" {
            if let Some(v) = sorry_server(cx, t, item, key) {
                json.insert(k.into(), v);
            }
        } else if let Some(v) = item_json(cx, item, key_span(t, k)) {
            json.insert(k.into(), v);
        }
    }
    if cx.diags.len() != before {
        return None;
    }
    match lvs_health::validate_service_health(serde_json::Value::Object(json)) {
        Ok(h) => Some(h),
        Err(e) => {
            let span = e.key.as_deref().and_then(|k| key_span(t, k));
            cx.err(span, format!("bad health settings: {}", e.message));
            None
        }
    }
}

/// `sorry_server = { address = "IP:port", method = "nat", weight = 1, inhibit = false }` in
/// lvs-health's form (`addr`, `port`); the port defaults to the virtual port.
fn sorry_server(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    item: &Item,
    key: Option<ServiceKey>,
) -> Option<serde_json::Value> {
    let st = table(cx, item, "sorry_server", key_span(t, "sorry_server"))?;
    let mut json = table_json(cx, st)?;
    for k in ["addr", "port"] {
        if json.remove(k).is_some() {
            cx.err(
                key_span(st, k),
                format!("write the sorry server's address as address = \"IP:port\", not '{k}'"),
            );
        }
    }
    match json.remove("address") {
        None => {
            cx.err(
                key_span(t, "sorry_server"),
                "the sorry server needs an 'address' (e.g. address = \"10.0.9.9:80\")",
            );
            None
        }
        Some(serde_json::Value::String(a)) => match parse_sock(&a) {
            Ok((addr, port)) => {
                let vport = match key {
                    Some(ServiceKey::Addr { port, .. }) => Some(port),
                    _ => None,
                };
                json.insert("addr".into(), addr.to_string().into());
                json.insert("port".into(), port.or(vport).unwrap_or(0).into());
                Some(serde_json::Value::Object(json))
            }
            Err(e) => {
                cx.err(span_of(st, "address"), e);
                None
            }
        },
        Some(other) => {
            cx.err(
                span_of(st, "address"),
                format!("'address' must be a string, found {other}"),
            );
            None
        }
    }
}

/// A table as a JSON object (for lvs-health's serde types).
fn table_json(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let before = cx.diags.len();
    let mut out = serde_json::Map::new();
    for (k, item) in t.iter() {
        if let Some(v) = item_json(cx, item, key_span(t, k)) {
            out.insert(k.to_string(), v);
        }
    }
    (cx.diags.len() == before).then_some(out)
}

fn item_json(cx: &mut Cx<'_>, item: &Item, span: Span) -> Option<serde_json::Value> {
    match item {
        Item::Value(v) => value_json(cx, v),
        Item::Table(t) => table_json(cx, t).map(serde_json::Value::Object),
        _ => {
            cx.err(span, format!("a {} is not allowed here", item.type_name()));
            None
        }
    }
}

fn value_json(cx: &mut Cx<'_>, v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::String(s) => J::String(s.value().clone()),
        Value::Integer(i) => J::from(*i.value()),
        Value::Float(f) => match serde_json::Number::from_f64(*f.value()) {
            Some(n) => J::Number(n),
            None => {
                cx.err(v.span(), "give a finite number");
                return None;
            }
        },
        Value::Boolean(b) => J::Bool(*b.value()),
        Value::Datetime(_) => {
            cx.err(v.span(), "a date is not allowed here");
            return None;
        }
        Value::Array(a) => J::Array(
            a.iter()
                .map(|x| value_json(cx, x))
                .collect::<Option<Vec<_>>>()?,
        ),
        Value::InlineTable(t) => J::Object(table_json(cx, t)?),
    })
}
