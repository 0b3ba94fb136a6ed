//! Translation of other tools' configurations into a [`Config`].

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use lvs_core::service::{DestConfig, MAX_WEIGHT, ServiceConfig};
use lvs_core::types::{
    Family, ForwardMethod, Netmask, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceKey,
};

use crate::parse::mask_prefix;

mod checks;
use crate::{Config, ServiceEntry, secs};

/// keepalived's default `persistence_timeout` when the keyword has no value: 6 minutes.
const KEEPALIVED_PERSISTENCE: u64 = 360;

/// Translate the `virtual_server` blocks of a keepalived.conf.
///
/// Maps `virtual_server IP PORT` and `virtual_server fwmark N` (with `ip_family`),
/// `lb_algo`/`lvs_sched`, `lb_kind`/`lvs_method` (`NAT`, `DR`, `TUN`; also per real server),
/// `protocol`, `persistence_timeout`, `persistence_granularity`, `ops`, the scheduler flags
/// (`sh-port`, `sh-fallback`, `mh-port`, `mh-fallback`, `flag-1..3`), and `real_server IP
/// [PORT]` with `weight`, `uthreshold` and `lthreshold`. keepalived's defaults apply: NAT,
/// TCP, weight 1.
///
/// Health checking too (`import/checks.rs`): the checkers lvsd has, with their parameters and
/// the settings keepalived copies down to them, sorry servers, quorum and hysteresis; and
/// `virtual_server group NAME`, one service per entry of the group.
///
/// Returns the configuration and one note per thing that was not translated (a second
/// checker on a real server, checkers lvsd lacks, SMTP alerts, ...),
/// each starting with `line N:`. Other top-level sections (`global_defs`, `vrrp_instance`, ...)
/// get one note each. The configuration is valid: everything that [`crate::parse`] would
/// refuse is left out and noted.
pub fn keepalived(text: &str) -> (Config, Vec<String>) {
    let (cfg, notes) = keepalived_report(text);
    (cfg, notes.iter().map(ToString::to_string).collect())
}

/// One thing [`keepalived_report`] says about the input.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    /// Line of the input it is about.
    pub line: usize,
    /// What was not translated, and why.
    pub message: String,
    /// Whether the traffic differs from keepalived's because of it (a service, real server,
    /// weight, scheduler or check left out or changed). `false` for what lvsd leaves to
    /// other tools or what has no effect (VRRP, alerts, `global_defs`, `hashed`, a port
    /// keepalived itself would replace).
    pub affects_traffic: bool,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// [`keepalived`], with each note saying whether it affects traffic.
pub fn keepalived_report(text: &str) -> (Config, Vec<Note>) {
    let mut cx = Import::default();
    let nodes = parse_tree(text, &mut cx.notes);
    for n in &nodes {
        if n.words.first().map(String::as_str) == Some("virtual_server_group") {
            cx.group(n);
        }
    }
    for n in &nodes {
        cx.top(n);
    }
    // A group's services share their block: say each thing about it once.
    let mut notes: Vec<Note> = cx
        .notes
        .into_iter()
        .map(|(line, message)| Note {
            line,
            message,
            affects_traffic: true,
        })
        .chain(cx.infos.into_iter().map(|(line, message)| Note {
            line,
            message,
            affects_traffic: false,
        }))
        .collect();
    notes.sort();
    notes.dedup();
    (cx.cfg, notes)
}

// ---------------------------------------------------------------------------------------
// keepalived's syntax: statements of words, one per line, `{ ... }` blocks, `#`/`!` comments.

#[derive(Debug)]
struct Node {
    words: Vec<String>,
    line: usize,
    children: Option<Vec<Node>>,
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Newline,
}

fn tokenize(text: &str) -> Vec<(Tok, usize)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        let mut chars = line.chars().peekable();
        let mut word = String::new();
        let flush = |w: &mut String, out: &mut Vec<(Tok, usize)>| {
            if !w.is_empty() {
                out.push((Tok::Word(std::mem::take(w)), ln));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                // keepalived: a comment starts anywhere outside quotes.
                '#' | '!' => break,
                '"' if word.is_empty() => {
                    for c in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        word.push(c);
                    }
                    out.push((Tok::Word(std::mem::take(&mut word)), ln));
                }
                '{' => {
                    flush(&mut word, &mut out);
                    out.push((Tok::Open, ln));
                }
                '}' => {
                    flush(&mut word, &mut out);
                    out.push((Tok::Close, ln));
                }
                c if c.is_whitespace() => flush(&mut word, &mut out),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut out);
        out.push((Tok::Newline, ln));
    }
    out
}

/// The statements of a file; braces that close nothing, or are never closed, are noted
/// with their line (and the stray ones skipped, so that the rest of the file still counts).
fn parse_tree(text: &str, notes: &mut Vec<(usize, String)>) -> Vec<Node> {
    let toks = tokenize(text);
    let mut i = 0;
    let mut nodes = Vec::new();
    loop {
        nodes.extend(block(&toks, &mut i, None, notes));
        // `block` returns at the end, or at a `}` of the top level.
        if let Some((Tok::Close, line)) = i.checked_sub(1).and_then(|j| toks.get(j)) {
            notes.push((
                *line,
                "'}' closes no block: ignored (check the braces above)".into(),
            ));
        }
        if i >= toks.len() {
            return nodes;
        }
    }
}

/// Statements up to the `}` that closes the block opened at line `opened` (`None`: the top
/// level, up to a stray `}` or the end).
fn block(
    toks: &[(Tok, usize)],
    i: &mut usize,
    opened: Option<usize>,
    notes: &mut Vec<(usize, String)>,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut line = 0;
    while *i < toks.len() {
        let (t, ln) = &toks[*i];
        *i += 1;
        match t {
            Tok::Word(w) => {
                if words.is_empty() {
                    line = *ln;
                }
                words.push(w.clone());
            }
            Tok::Open => {
                // A `{` alone on a line opens the block of the previous statement.
                let (w, l) = if words.is_empty() {
                    match nodes.pop() {
                        Some(Node {
                            words,
                            line,
                            children: None,
                        }) => (words, line),
                        Some(other) => {
                            nodes.push(other);
                            (Vec::new(), *ln)
                        }
                        None => (Vec::new(), *ln),
                    }
                } else {
                    (std::mem::take(&mut words), line)
                };
                let children = block(toks, i, Some(*ln), notes);
                nodes.push(Node {
                    words: w,
                    line: l,
                    children: Some(children),
                });
            }
            Tok::Close => {
                if !words.is_empty() {
                    nodes.push(Node {
                        words: std::mem::take(&mut words),
                        line,
                        children: None,
                    });
                }
                return nodes;
            }
            Tok::Newline => {
                if !words.is_empty() {
                    nodes.push(Node {
                        words: std::mem::take(&mut words),
                        line,
                        children: None,
                    });
                }
            }
        }
    }
    if !words.is_empty() {
        nodes.push(Node {
            words,
            line,
            children: None,
        });
    }
    if let Some(l) = opened {
        notes.push((l, "this '{' is never closed: the rest of the file was read as inside its block (check the braces)".into()));
    }
    nodes
}

// ---------------------------------------------------------------------------------------
// Translation

#[derive(Default)]
struct Import {
    cfg: Config,
    /// What was not translated and changes the traffic.
    notes: Vec<(usize, String)>,
    /// What was not translated and does not (see [`Note::affects_traffic`]).
    infos: Vec<(usize, String)>,
    keys: BTreeSet<ServiceKey>,
    groups: std::collections::BTreeMap<String, Vec<Head>>,
}

/// What a virtual service is addressed by.
#[derive(Clone, Copy)]
enum Head {
    Addr(IpAddr, u16),
    Fwmark(u32),
}

/// `10.0.0.1`, or keepalived's range `10.0.0.1-10` (last byte) / `2001:db8::1-a` (last
/// group, hex): the addresses, at most 65,536.
fn address_range(text: &str) -> Option<Vec<IpAddr>> {
    let Some((first, last)) = text.rsplit_once('-') else {
        return text.parse().ok().map(|a| vec![a]);
    };
    match first.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let [w, x, y, lo] = a.octets();
            let hi = last.parse::<u8>().ok().filter(|hi| *hi >= lo)?;
            Some((lo..=hi).map(|b| IpAddr::from([w, x, y, b])).collect())
        }
        IpAddr::V6(a) => {
            let mut g = a.segments();
            let lo = g[7];
            let hi = u16::from_str_radix(last, 16).ok().filter(|hi| *hi >= lo)?;
            Some(
                (lo..=hi)
                    .map(|v| {
                        g[7] = v;
                        IpAddr::from(g)
                    })
                    .collect(),
            )
        }
    }
}

const CHECKERS: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "BFD_CHECK",
    "FILE_CHECK",
];

fn method_of(w: &str) -> Option<ForwardMethod> {
    match w.to_ascii_uppercase().as_str() {
        "NAT" => Some(ForwardMethod::Masq),
        "DR" => Some(ForwardMethod::DirectRoute),
        "TUN" => Some(ForwardMethod::Tunnel),
        _ => None,
    }
}

impl Import {
    fn note(&mut self, line: usize, msg: impl Into<String>) {
        self.notes.push((line, msg.into()));
    }

    fn info(&mut self, line: usize, msg: impl Into<String>) {
        self.infos.push((line, msg.into()));
    }

    fn top(&mut self, n: &Node) {
        let name = n.words.first().map_or("", String::as_str);
        match name {
            "virtual_server" => self.virtual_server(n),
            "virtual_server_group" => {} // read before the services (`group`)
            "include" => self.note(
                n.line,
                format!(
                    "include {} not followed: import that file separately and merge the results",
                    n.words.get(1).map_or("", String::as_str)
                ),
            ),
            w if w.starts_with("vrrp_") => self.info(
                n.line,
                format!(
                    "{} ignored: VRRP (moving the VIPs between directors) is not part of lvsd; keep keepalived or another VRRP daemon for it",
                    n.words.join(" ")
                ),
            ),
            // keepalived's other sections: VRRP helpers, process settings, static
            // addresses and routes. Anything else is unknown (a typo may hide a service).
            w @ ("global_defs" | "static_ipaddress" | "static_routes" | "static_rules"
            | "linkbeat_interfaces" | "track_file" | "track_process" | "garp_group"
            | "net_namespace" | "instance" | "use_pid_dir") => self.info(
                n.line,
                format!("{w} ignored: only virtual_server blocks are translated"),
            ),
            _ => self.note(
                n.line,
                format!(
                    "{} ignored: unknown section (only virtual_server blocks are translated)",
                    n.words.first().map_or("(empty)", String::as_str)
                ),
            ),
        }
    }

    fn virtual_server(&mut self, n: &Node) {
        let w = &n.words;
        let header = w.join(" ");
        let Some(children) = &n.children else {
            self.note(
                n.line,
                format!("'{header}' has no {{ ... }} block: skipped"),
            );
            return;
        };
        let head = match (w.get(1).map(String::as_str), w.get(2)) {
            (Some("group"), Some(name)) => {
                let Some(heads) = self.groups.get(name).cloned() else {
                    self.note(
                        n.line,
                        format!("'{header}': no virtual_server_group {name} is defined; skipped"),
                    );
                    return;
                };
                for head in heads {
                    self.service(n, head, children);
                }
                return;
            }
            (Some("fwmark"), Some(m)) => match m.parse::<u32>() {
                Ok(m) if m > 0 => Head::Fwmark(m),
                _ => {
                    self.note(n.line, format!("'{header}': bad firewall mark; skipped"));
                    return;
                }
            },
            (Some(a), p) => match (a.parse::<IpAddr>(), p.map(|p| p.parse::<u16>())) {
                (Ok(addr), Some(Ok(port))) => Head::Addr(addr, port),
                (Ok(addr), None) => Head::Addr(addr, 0),
                _ => {
                    self.note(n.line, format!("'{header}': bad address or port; skipped"));
                    return;
                }
            },
            (None, _) => {
                self.note(n.line, "virtual_server without an address: skipped");
                return;
            }
        };
        self.service(n, head, children);
    }

    /// A `virtual_server_group NAME { IP PORT | IP-LAST PORT | fwmark N ... }`: its entries,
    /// address ranges expanded (the last IPv4 byte, or the last IPv6 group in hex, as
    /// keepalived reads them).
    fn group(&mut self, n: &Node) {
        let Some(name) = n.words.get(1) else {
            self.note(n.line, "virtual_server_group without a name: ignored");
            return;
        };
        let mut heads = Vec::new();
        for c in n.children.iter().flatten() {
            let entry = c.words.join(" ");
            match (c.words.first().map(String::as_str), c.words.get(1)) {
                (Some("fwmark"), Some(m)) => match m.parse::<u32>() {
                    Ok(m) if m > 0 => heads.push(Head::Fwmark(m)),
                    _ => self.note(c.line, format!("'{entry}': bad firewall mark; ignored")),
                },
                (Some(a), p) => {
                    let port = match p.map(|p| p.parse::<u16>()) {
                        Some(Ok(p)) => p,
                        None => 0,
                        Some(Err(_)) => {
                            self.note(c.line, format!("'{entry}': bad port; ignored"));
                            continue;
                        }
                    };
                    match address_range(a) {
                        Some(addrs) => heads.extend(addrs.into_iter().map(|x| Head::Addr(x, port))),
                        None => self.note(
                            c.line,
                            format!("'{entry}': not an address, a range or fwmark N; ignored"),
                        ),
                    }
                }
                (None, _) => {}
            }
        }
        if heads.is_empty() {
            self.note(
                n.line,
                format!("virtual_server_group {name} has no usable entry"),
            );
        }
        self.groups.insert(name.clone(), heads);
    }

    /// One service: `head` (an address and port, or a mark) with the settings of the
    /// `virtual_server` block `n`.
    fn service(&mut self, n: &Node, head: Head, children: &[Node]) {
        let header = n.words.join(" ");
        let mut proto = None;
        let mut sched = SchedulerKind::Wlc;
        let mut method = ForwardMethod::Masq;
        let mut flags = SchedFlags::default();
        let mut persist: Option<u64> = None;
        let mut granularity: Option<(String, usize)> = None;
        let mut one_packet = None;
        let mut family = None;
        let mut servers = Vec::new();
        let mut weight = 1;
        let mut inherited = serde_json::Map::new();
        let mut health = Vec::new();
        for c in children {
            let key = c.words.first().map_or("", String::as_str);
            let arg = c.words.get(1).map(String::as_str);
            match key {
                "lb_algo" | "lvs_sched" => match arg.map(str::parse::<SchedulerKind>) {
                    Some(Ok(k)) => sched = k,
                    Some(Err(e)) => self.note(c.line, format!("{e}; wlc used instead")),
                    None => self.note(c.line, format!("{key} without a value; wlc used")),
                },
                "lb_kind" | "lvs_method" => match arg.and_then(method_of) {
                    Some(m) => {
                        method = m;
                        if c.words.len() > 2 {
                            self.note(
                                c.line,
                                format!(
                                    "tunnel options '{}' not translated: lvsd tunnels with IP-in-IP only",
                                    c.words[2..].join(" ")
                                ),
                            );
                        }
                    }
                    None => self.note(
                        c.line,
                        format!("{key} '{}' unknown (NAT, DR or TUN); NAT used", arg.unwrap_or("")),
                    ),
                },
                "protocol" => match arg.map(str::to_ascii_uppercase).as_deref() {
                    Some("TCP") => proto = Some(Protocol::Tcp),
                    Some("UDP") => proto = Some(Protocol::Udp),
                    Some("SCTP") => proto = Some(Protocol::Sctp),
                    _ => {
                        proto = Some(Protocol::Tcp);
                        self.note(
                            c.line,
                            format!("protocol '{}' not supported (TCP, UDP, SCTP); TCP used", arg.unwrap_or("")),
                        )
                    }
                },
                "persistence_timeout" => match arg.map(str::parse::<u64>) {
                    None => persist = Some(KEEPALIVED_PERSISTENCE),
                    Some(Ok(0)) => persist = None,
                    Some(Ok(s)) => persist = Some(s.min(u64::from(u32::MAX))),
                    Some(Err(_)) => self.note(
                        c.line,
                        format!("persistence_timeout '{}' is not a number of seconds; no persistence", arg.unwrap_or("")),
                    ),
                },
                "persistence_granularity" => {
                    granularity = arg.map(|a| (a.to_string(), c.line));
                }
                "ops" => one_packet = Some(c.line),
                "ip_family" => match arg {
                    Some("inet") => family = Some(Family::V4),
                    Some("inet6") => family = Some(Family::V6),
                    _ => self.note(c.line, "ip_family must be inet or inet6; ignored"),
                },
                "hashed" => self.info(c.line, "'hashed' not translated: it has no meaning for lvsd"),
                "sh-fallback" | "mh-fallback" | "flag-1" => flags = flags.union(SchedFlags::FLAG1),
                "sh-port" | "mh-port" | "flag-2" => flags = flags.union(SchedFlags::FLAG2),
                "flag-3" => flags = flags.union(SchedFlags::FLAG3),
                "real_server" => servers.push(c),
                // keepalived: the default weight of the service's real servers.
                "weight" => match arg.and_then(|a| a.parse::<u32>().ok()) {
                    Some(w) if w <= MAX_WEIGHT => weight = w,
                    _ => self.note(c.line, format!("weight '{}' is not 0..={MAX_WEIGHT}; 1 used", arg.unwrap_or(""))),
                },
                "sorry_server" | "sorry_server_inhibit" | "sorry_server_lvs_method" | "quorum"
                | "quorum_up" | "quorum_down" | "hysteresis" => health.push(c),
                k if checks::is_inherited(k) => {
                    if let Err(e) = checks::add_setting(&mut inherited, c) {
                        self.note(c.line, format!("{e}: ignored"));
                    }
                }
                "omega" | "ha_suspend" => self.info(
                    c.line,
                    format!("{} not translated: lvsd has no equivalent (checks always run; quorum_down runs on loss, not on a restart)", c.words.join(" ")),
                ),
                k if k.starts_with("notify") || k.starts_with("smtp") => self.info(
                    c.line,
                    format!("{} not translated: notify scripts and alerts are not supported", c.words.join(" ")),
                ),
                _ => self.note(
                    c.line,
                    format!("{} not translated: unknown to the importer", c.words.join(" ")),
                ),
            }
        }
        let key = match head {
            Head::Addr(addr, port) => {
                if let Some(f) = family
                    && f != Family::of(addr)
                {
                    self.note(
                        n.line,
                        "ip_family does not match the virtual address; the address wins",
                    );
                }
                // keepalived (since 2017) sets UDP, the kernel's default, and warns.
                let proto = proto.unwrap_or_else(|| {
                    self.info(
                        n.line,
                        format!("'{header}': no protocol set: UDP, as keepalived defaults to (say `protocol TCP` if that was meant)"),
                    );
                    Protocol::Udp
                });
                ServiceKey::Addr { proto, addr, port }
            }
            Head::Fwmark(mark) => ServiceKey::Fwmark {
                mark,
                family: family.unwrap_or(Family::V4),
            },
        };
        let fam = key.family();
        let mut persistence = persist.map(|s| Persistence {
            timeout: secs(s),
            netmask: crate::default_persistence(fam).netmask,
        });
        if let Some((g, line)) = granularity {
            let mask = match (
                fam,
                g.parse::<std::net::Ipv4Addr>(),
                g.trim_start_matches('/').parse::<u8>(),
            ) {
                (Family::V4, Ok(m), _) => mask_prefix(m).map(Netmask::V4),
                (Family::V4, _, Ok(p)) if p <= 32 => Some(Netmask::V4(p)),
                (Family::V6, _, Ok(p)) if p <= 128 => Some(Netmask::V6(p)),
                _ => None,
            };
            match mask {
                // keepalived: a granularity alone makes the service persistent, 6 minutes.
                Some(m) => {
                    persistence
                        .get_or_insert(Persistence {
                            timeout: secs(KEEPALIVED_PERSISTENCE),
                            netmask: m,
                        })
                        .netmask = m
                }
                None => self.note(
                    line,
                    format!(
                        "persistence_granularity '{g}' does not fit the service's family: ignored"
                    ),
                ),
            }
        }
        let one_packet = match (one_packet, key) {
            (
                Some(line),
                ServiceKey::Addr {
                    proto: Protocol::Tcp | Protocol::Sctp,
                    ..
                },
            ) => {
                self.note(line, "ops applies to UDP services only: ignored");
                false
            }
            (o, _) => o.is_some(),
        };
        if let ServiceKey::Addr { port: 0, .. } = key
            && persistence.is_none()
        {
            // keepalived makes an all-ports service persistent, as IPVS requires.
            self.info(
                n.line,
                format!("'{header}': port 0 needs persistence; {KEEPALIVED_PERSISTENCE} s used, as keepalived does"),
            );
            persistence = Some(Persistence {
                timeout: secs(KEEPALIVED_PERSISTENCE),
                netmask: crate::default_persistence(fam).netmask,
            });
        }
        if !self.keys.insert(key) {
            self.note(
                n.line,
                format!("'{header}': the service {key} is defined twice; the second is skipped"),
            );
            return;
        }
        let config = ServiceConfig {
            key,
            scheduler: sched,
            flags,
            persistence,
            one_packet,
        };
        let vport = match key {
            ServiceKey::Addr { port, .. } => port,
            ServiceKey::Fwmark { .. } => 0,
        };
        let mut entry = ServiceEntry::new(config, Vec::new());
        entry.health = checks::service_health(&health, vport, &mut self.notes);
        let mut dests: Vec<DestConfig> = Vec::new();
        for rs in servers {
            let Some((d, check)) = self.real_server(rs, key, (method, weight), &inherited) else {
                continue;
            };
            if dests.iter().any(|x| x.addr == d.addr && x.port == d.port) {
                self.note(
                    rs.line,
                    format!(
                        "{}: listed twice; the second is skipped",
                        rs.words.join(" ")
                    ),
                );
                continue;
            }
            if !check.is_empty() {
                entry.checks.insert((d.addr, d.port), check);
            }
            dests.push(d);
        }
        entry.dests = dests;
        self.cfg.services.push(entry);
    }

    fn real_server(
        &mut self,
        n: &Node,
        key: ServiceKey,
        (default_method, default_weight): (ForwardMethod, u32),
        inherited: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<(DestConfig, Vec<lvs_health::CheckConfig>)> {
        let header = n.words.join(" ");
        let Some(addr) = n.words.get(1).and_then(|a| a.parse::<IpAddr>().ok()) else {
            self.note(
                n.line,
                format!("'{header}': bad address; real server skipped"),
            );
            return None;
        };
        let vport = match key {
            ServiceKey::Addr { port, .. } => Some(port),
            ServiceKey::Fwmark { .. } => None,
        };
        let port = match n.words.get(2).map(|p| p.parse::<u16>()) {
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                self.note(n.line, format!("'{header}': bad port; real server skipped"));
                return None;
            }
            None => vport.unwrap_or(0),
        };
        // keepalived checks the port as written, whatever forwarding does with it below.
        let written_port = port;
        let mut d = DestConfig::new(addr, port, default_method).with_weight(default_weight);
        // keepalived applies a real server's check settings wherever they stand in its block.
        let mut settings = inherited.clone();
        let mut own_settings = Vec::new();
        let mut checkers = Vec::new();
        for c in n.children.iter().flatten() {
            let k = c.words.first().map_or("", String::as_str);
            let arg = c.words.get(1).map(String::as_str);
            let num = arg.and_then(|a| a.parse::<u64>().ok());
            match k {
                "weight" => match num {
                    Some(w) if w <= u64::from(MAX_WEIGHT) => d.weight = w as u32,
                    _ => self.note(c.line, format!("weight '{}' is not 0..={MAX_WEIGHT}; 1 used", arg.unwrap_or(""))),
                },
                "uthreshold" => match num {
                    Some(v) if v <= u64::from(u32::MAX) => d.upper_threshold = v as u32,
                    _ => self.note(c.line, "bad uthreshold; ignored"),
                },
                "lthreshold" => match num {
                    Some(v) if v <= u64::from(u32::MAX) => d.lower_threshold = v as u32,
                    _ => self.note(c.line, "bad lthreshold; ignored"),
                },
                "lvs_method" | "lb_kind" => match arg.and_then(method_of) {
                    Some(m) => d.method = m,
                    None => self.note(c.line, format!("{k} '{}' unknown; the service's method used", arg.unwrap_or(""))),
                },
                k if checks::checker_type(k).is_some() => checkers.push(c),
                k if CHECKERS.contains(&k) => self.note(
                    c.line,
                    format!("{k} of {header} not translated: lvsd has no {k} checker yet, so this check does not run (TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, MISC_CHECK, SMTP_CHECK, DNS_CHECK and PING_CHECK do: docs/health-checks.md)"),
                ),
                k if checks::is_inherited(k) || k == "notify_up" || k == "notify_down" => {
                    match checks::add_setting(&mut settings, c) {
                        Ok(()) => own_settings.push(c),
                        Err(e) => self.note(c.line, format!("{e}: ignored")),
                    }
                }
                k if k.starts_with("smtp") => self.note(
                    c.line,
                    format!("{} not translated: SMTP alerts are not supported (lvsd logs transitions and runs notify_up, notify_down, quorum_up and quorum_down)", c.words.join(" ")),
                ),
                _ => self.note(c.line, format!("{} not translated: unknown to the importer", c.words.join(" "))),
            }
        }
        if d.upper_threshold != 0 && d.lower_threshold > d.upper_threshold {
            self.note(
                n.line,
                format!("'{header}': lthreshold above uthreshold; thresholds dropped"),
            );
            d.upper_threshold = 0;
            d.lower_threshold = 0;
        }
        if Family::of(addr) != key.family() && d.method != ForwardMethod::Tunnel {
            self.note(n.line, format!("'{header}': address family differs from the service's (only TUN may mix); skipped"));
            return None;
        }
        if vport.is_none() && d.method != ForwardMethod::Masq && d.port != 0 {
            self.info(
                n.line,
                format!("'{header}': a DR/TUN real server of a firewall-mark service receives on the packet's own port; port {} cleared, as keepalived does", d.port),
            );
            d.port = 0;
        }
        if let Some(vp) = vport
            && vp != 0
            && d.method != ForwardMethod::Masq
            && d.port != vp
        {
            self.info(
                n.line,
                format!("'{header}': DR/TUN real servers receive on the virtual port; port {} replaced by {vp}", d.port),
            );
            d.port = vp;
        }
        if checkers.is_empty() {
            for c in own_settings {
                let what = c.words.join(" ");
                self.info(c.line, format!("{what} not translated: {header} has no checker for it to apply to (as in keepalived, it does nothing)"));
            }
        }
        if d.port != written_port && written_port != 0 && !settings.contains_key("connect_port") {
            settings.insert("connect_port".into(), written_port.into());
        }
        let target = SocketAddr::new(d.addr, d.port);
        // Every checker: the real server is up while all of them pass, as in keepalived.
        let mut check = Vec::new();
        for c in checkers {
            let kw = c.words.first().map_or("", String::as_str);
            let kind = checks::checker_type(kw).unwrap_or("tcp");
            check.extend(checks::checker(kind, c, &settings, target, &mut self.notes));
        }
        if check.len() > crate::MAX_CHECKS {
            self.note(n.line, format!("'{header}': {} checks, more than the {} lvsd runs per real server; the first {} kept", check.len(), crate::MAX_CHECKS, crate::MAX_CHECKS));
            check.truncate(crate::MAX_CHECKS);
        }
        Some((d, check))
    }
}
