//! keepalived's health checking, translated: checkers with their parameters (service-level
//! settings copied down to every checker of the service, as keepalived does), sorry servers,
//! quorum and hysteresis with their scripts.
//!
//! The translation builds the JSON object lvsd's own check tables use (keepalived's names,
//! see `docs/health-checks.md`) and has `lvs-health` validate it, so an imported check obeys
//! exactly the rules of a written one.

use std::net::{IpAddr, SocketAddr};

use serde_json::{Map, Value};

use super::Node;

/// A keepalived keyword that is a health-check setting, and how its value is written.
#[derive(Clone, Copy)]
enum Setting {
    /// A number of seconds (may be fractional).
    Seconds(&'static str),
    /// A count.
    Count(&'static str),
    /// A flag, on by its presence.
    Flag(&'static str),
    /// Text: the rest of the statement.
    Text(&'static str),
}

/// keepalived keyword → lvsd check key, for the settings a checker (and, for the first few,
/// a `virtual_server` or `real_server` block above it) may hold.
fn setting(keyword: &str) -> Option<Setting> {
    use Setting::*;
    Some(match keyword {
        "delay_loop" => Seconds("delay_loop"),
        "connect_timeout" => Seconds("connect_timeout"),
        "delay_before_retry" => Seconds("delay_before_retry"),
        "warmup" => Seconds("warmup"),
        "retry" | "nb_get_retry" => Count("retry"),
        "alpha" => Flag("alpha"),
        "inhibit_on_failure" => Flag("inhibit_on_failure"),
        "virtualhost" => Text("virtualhost"),
        "notify_up" => Text("notify_up"),
        "notify_down" => Text("notify_down"),
        "connect_ip" => Text("connect_ip"),
        "connect_port" => Count("connect_port"),
        "misc_path" => Text("command"),
        "misc_timeout" => Seconds("timeout"),
        "misc_dynamic" => Flag("dynamic"),
        "payload" => Text("payload"),
        "require_reply" => Flag("require_reply"),
        "helo_name" => Text("helo_name"),
        _ => return None,
    })
}

/// Whether a `virtual_server` or `real_server` statement is a check setting that keepalived
/// copies down to the checkers below it.
pub(super) fn is_inherited(keyword: &str) -> bool {
    matches!(
        keyword,
        "delay_loop"
            | "connect_timeout"
            | "delay_before_retry"
            | "warmup"
            | "retry"
            | "nb_get_retry"
            | "alpha"
            | "inhibit_on_failure"
            | "virtualhost"
    )
}

/// The checker keywords lvsd runs, and the check type each becomes.
pub(super) fn checker_type(keyword: &str) -> Option<&'static str> {
    Some(match keyword {
        "TCP_CHECK" => "tcp",
        "HTTP_GET" => "http",
        "SSL_GET" => "https",
        "UDP_CHECK" => "udp",
        "MISC_CHECK" => "exec",
        "SMTP_CHECK" => "smtp",
        "DNS_CHECK" => "dns",
        "PING_CHECK" => "ping",
        _ => return None,
    })
}

/// Add one setting statement to `out`; `Err` says why it cannot be.
pub(super) fn add_setting(out: &mut Map<String, Value>, n: &Node) -> Result<(), String> {
    let keyword = n.words.first().map_or("", String::as_str);
    let Some(s) = setting(keyword) else {
        return Err(format!("'{keyword}' is not a check setting lvsd knows"));
    };
    let arg = n.words.get(1).map(String::as_str);
    let bad = |what: &str| format!("{keyword} '{}' is not {what}", arg.unwrap_or(""));
    let (key, value) = match s {
        Setting::Seconds(k) => {
            let v = arg
                .and_then(|a| a.parse::<f64>().ok())
                .filter(|v| *v >= 0.0);
            (k, Value::from(v.ok_or_else(|| bad("a number of seconds"))?))
        }
        Setting::Count(k) => {
            let v = arg.and_then(|a| a.parse::<u64>().ok());
            (k, Value::from(v.ok_or_else(|| bad("a whole number"))?))
        }
        Setting::Flag(k) => (k, Value::Bool(true)),
        Setting::Text(k) => {
            if n.words.len() < 2 {
                return Err(format!("{keyword} without a value"));
            }
            (k, Value::String(n.words[1..].join(" ")))
        }
    };
    out.insert(key.into(), value);
    Ok(())
}

/// The checks of one checker block: `inherited` settings first, then the block's own; an
/// `HTTP_GET`/`SSL_GET` with several `url` blocks is one check per url (keepalived's checker
/// passes when every url does, and so does a real server whose checks all pass). The notes
/// say what inside the block was not translated.
pub(super) fn checker(
    kind: &'static str,
    block: &Node,
    inherited: &Map<String, Value>,
    target: SocketAddr,
    notes: &mut Vec<(usize, String)>,
) -> Vec<lvs_health::CheckConfig> {
    let mut json = inherited.clone();
    json.insert("type".into(), Value::String(kind.into()));
    let mut urls = Vec::new();
    for c in block.children.iter().flatten() {
        let k = c.words.first().map_or("", String::as_str);
        if k == "url" {
            urls.push(c);
            continue;
        }
        // DNS_CHECK's own `type` and `name`: the query's.
        if kind == "dns" && matches!(k, "type" | "name") {
            match c.words.get(1) {
                Some(v) => {
                    let key = if k == "type" {
                        "query_type"
                    } else {
                        "query_name"
                    };
                    json.insert(key.into(), Value::String(v.clone()));
                }
                None => notes.push((c.line, format!("{k} without a value: ignored"))),
            }
            continue;
        }
        if let Err(e) = add_setting(&mut json, c) {
            notes.push((c.line, format!("{} not translated: {e}", c.words.join(" "))));
        }
    }
    // An echo has no port: the port keepalived would knock on (kept for the other checkers
    // when forwarding moves the real server's port) means nothing to it.
    if kind == "ping" {
        json.remove("connect_port");
    }
    let variants: Vec<Map<String, Value>> = if urls.is_empty() {
        vec![json]
    } else {
        urls.iter()
            .map(|u| {
                let mut j = json.clone();
                url(&mut j, u, notes);
                j
            })
            .collect()
    };
    let mut out = Vec::new();
    for j in variants {
        match lvs_health::validate_check(Value::Object(j), target) {
            Ok((cfg, _)) => out.push(cfg),
            Err(e) => {
                let header = block.words.join(" ");
                notes.push((
                    block.line,
                    format!("{header} not translated: {e}; that check does not run"),
                ));
            }
        }
    }
    out
}

/// An `HTTP_GET`/`SSL_GET` `url { path, digest, status_code, regex }` block.
fn url(json: &mut Map<String, Value>, block: &Node, notes: &mut Vec<(usize, String)>) {
    for c in block.children.iter().flatten() {
        let k = c.words.first().map_or("", String::as_str);
        let arg = c.words.get(1).cloned();
        let key = match k {
            "path" => "path",
            "digest" => "digest",
            "status_code" => "status_code",
            "regex" => "regex",
            _ => {
                notes.push((
                    c.line,
                    format!(
                        "{} not translated: not an url setting lvsd knows",
                        c.words.join(" ")
                    ),
                ));
                continue;
            }
        };
        match arg {
            Some(a) => {
                json.insert(key.into(), Value::String(a));
            }
            None => notes.push((c.line, format!("{k} without a value: ignored"))),
        }
    }
}

/// The health settings of a `virtual_server`, from its `sorry_server*`, `quorum*` and
/// `hysteresis` statements (`None` when it has none).
pub(super) fn service_health(
    statements: &[&Node],
    vport: u16,
    notes: &mut Vec<(usize, String)>,
) -> Option<lvs_health::ServiceHealth> {
    let mut json = Map::new();
    let mut sorry = Map::new();
    for c in statements {
        let k = c.words.first().map_or("", String::as_str);
        let arg = c.words.get(1).map(String::as_str);
        let number = || arg.and_then(|a| a.parse::<u64>().ok());
        match k {
            "sorry_server" => match (arg.map(str::parse::<IpAddr>), c.words.get(2)) {
                (Some(Ok(a)), port) => {
                    // keepalived: without a port, the virtual service's.
                    let p = match port.map(|p| p.parse::<u16>()) {
                        None => vport,
                        Some(Ok(p)) => p,
                        Some(Err(_)) => {
                            let what = c.words.join(" ");
                            notes.push((c.line, format!("{what} not translated: bad port")));
                            continue;
                        }
                    };
                    sorry.insert("addr".into(), Value::String(a.to_string()));
                    sorry.insert("port".into(), Value::from(p));
                }
                _ => notes.push((
                    c.line,
                    format!(
                        "{} not translated: not 'sorry_server IP [PORT]'",
                        c.words.join(" ")
                    ),
                )),
            },
            "sorry_server_inhibit" => {
                sorry.insert("inhibit".into(), Value::Bool(true));
            }
            "sorry_server_lvs_method" => match arg.map(str::to_ascii_uppercase).as_deref() {
                Some(m @ ("NAT" | "DR" | "TUN")) => {
                    sorry.insert("method".into(), Value::String(m.to_ascii_lowercase()));
                }
                _ => notes.push((
                    c.line,
                    format!("{} not translated: NAT, DR or TUN", c.words.join(" ")),
                )),
            },
            "quorum" | "hysteresis" => match number() {
                Some(v) => {
                    json.insert(k.into(), Value::from(v));
                }
                None => notes.push((
                    c.line,
                    format!("{k} '{}' is not a whole number: ignored", arg.unwrap_or("")),
                )),
            },
            "quorum_up" | "quorum_down" if c.words.len() > 1 => {
                json.insert(k.into(), Value::String(c.words[1..].join(" ")));
            }
            _ => notes.push((
                c.line,
                format!("{} without a value: ignored", c.words.join(" ")),
            )),
        }
    }
    if !sorry.is_empty() {
        json.insert("sorry_server".into(), Value::Object(sorry));
    }
    if json.is_empty() {
        return None;
    }
    let line = statements.first().map_or(0, |c| c.line);
    match lvs_health::validate_service_health(Value::Object(json)) {
        Ok(h) => Some(h),
        Err(e) => {
            notes.push((line, format!("health settings not translated: {e}")));
            None
        }
    }
}
