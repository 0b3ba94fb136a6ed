//! Health checkers for the LVS director: what keepalived's checker process does, built in.
//!
//! * [`config`]: what an operator writes — [`CheckConfig`] (one check per real server, with
//!   keepalived's parameter names and defaults) and [`ServiceHealth`] (quorum, hysteresis,
//!   sorry server). Both are plain serde types, so the TOML configuration and the control
//!   API share them; [`CheckConfig::compile`] validates one and turns it into a [`Check`].
//! * [`probe`]: the checkers themselves — `tcp`, `http`, `https`, `udp`, `exec` — each one an
//!   `async` function bounded by its timeout.
//! * [`engine`]: runs every check on one tokio runtime on one thread (a task per check, no
//!   thread per check), applies keepalived's `retry` / `delay_before_retry` / `alpha` /
//!   `warmup` rules, keeps the last result of each check, and reports state changes.
//! * [`quorum`]: keepalived's quorum and hysteresis arithmetic.
//!
//! The crate knows nothing about the director: the daemon turns [`Event`]s into changes of
//! its service table.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod probe;
pub mod probe_more;
pub mod quorum;

pub use config::{
    Check, CheckConfig, CheckKind, ServiceHealth, SorryMethod, SorryServer, StatusRange, Timing,
};
pub use engine::{Change, Engine, Event, Status};
pub use probe::{Outcome, Probe};
pub use quorum::{Quorum, QuorumChange};

/// Parse and validate a check given as JSON (the control API form) for the real server at
/// `target`. Returns the configuration (for display) and the compiled check.
///
/// The TOML configuration can use this too: convert a `[service.real_server.check]` table to
/// a `serde_json::Value` (or deserialize [`CheckConfig`] directly and call
/// [`CheckConfig::compile`]).
pub fn parse_check(
    value: serde_json::Value,
    target: std::net::SocketAddr,
) -> Result<(CheckConfig, Check), String> {
    let cfg: CheckConfig =
        serde_json::from_value(value).map_err(|e| format!("bad health check: {e}"))?;
    let check = cfg.compile(target)?;
    Ok((cfg, check))
}

/// Parse and validate a service's health settings given as JSON.
pub fn parse_service_health(value: serde_json::Value) -> Result<ServiceHealth, String> {
    let s: ServiceHealth =
        serde_json::from_value(value).map_err(|e| format!("bad service health settings: {e}"))?;
    s.validate()?;
    Ok(s)
}

/// A configuration error, with the key of the input object it is about when that is known
/// (spelled as in the input: `misc_path` if the input used that alias of `command`).
/// Configuration files use the key to point at the line of the mistake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The key of the input object at fault; `None` for the object as a whole (e.g. a
    /// required key is missing).
    pub key: Option<String>,
    /// What is wrong, without a "bad health check" prefix.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Validate a check given as a JSON object, as [`parse_check`] does, but say which key of
/// the object is wrong. For configuration files.
pub fn validate_check(
    value: serde_json::Value,
    target: std::net::SocketAddr,
) -> Result<(CheckConfig, Check), FieldError> {
    let obj = value.as_object().cloned().unwrap_or_default();
    let cfg: CheckConfig = serde_json::from_value(value).map_err(|e| {
        // Try each key alone (with the type, which every check needs) to find the culprit.
        let kind = obj
            .get("type")
            .filter(|t| serde_json::from_value::<CheckKind>((*t).clone()).is_ok())
            .cloned()
            .unwrap_or_else(|| "tcp".into());
        serde_error::<CheckConfig>(&e, &obj, |k, v| {
            let mut m = serde_json::Map::new();
            m.insert(
                "type".into(),
                if k == "type" { v.clone() } else { kind.clone() },
            );
            m.insert(k.into(), v.clone());
            m
        })
    })?;
    let check = cfg.compile(target).map_err(|message| FieldError {
        key: key_in_message(&message, &obj),
        message,
    })?;
    Ok((cfg, check))
}

/// Validate a service's health settings given as a JSON object, as [`parse_service_health`]
/// does, but say which key of the object is wrong.
pub fn validate_service_health(value: serde_json::Value) -> Result<ServiceHealth, FieldError> {
    let obj = value.as_object().cloned().unwrap_or_default();
    let s: ServiceHealth = serde_json::from_value(value).map_err(|e| {
        serde_error::<ServiceHealth>(&e, &obj, |k, v| {
            let mut m = serde_json::Map::new();
            m.insert(k.into(), v.clone());
            m
        })
    })?;
    s.validate().map_err(|message| FieldError {
        key: key_in_message(&message, &obj),
        message,
    })?;
    Ok(s)
}

/// Aliases of the check keys: (alias, key).
const ALIASES: &[(&str, &str)] = &[
    ("nb_get_retry", "retry"),
    ("host", "virtualhost"),
    ("misc_path", "command"),
    ("misc_timeout", "timeout"),
    ("misc_dynamic", "dynamic"),
];

fn canonical(k: &str) -> &str {
    ALIASES.iter().find(|(a, _)| *a == k).map_or(k, |(_, c)| c)
}

/// Locate a deserialization error: an unknown key names itself; otherwise the first key that
/// fails on its own (`alone` builds the object to try it in).
fn serde_error<T: serde::de::DeserializeOwned>(
    e: &serde_json::Error,
    obj: &serde_json::Map<String, serde_json::Value>,
    alone: impl Fn(&str, &serde_json::Value) -> serde_json::Map<String, serde_json::Value>,
) -> FieldError {
    let text = e.to_string();
    // serde_json appends " at line L column C" only when parsing text; values have none.
    let quoted = |prefix: &str| {
        text.split_once(prefix)
            .and_then(|(_, r)| r.split('`').next())
            .map(str::to_string)
    };
    if let Some(k) = quoted("unknown field `") {
        return FieldError {
            key: obj.contains_key(&k).then_some(k.clone()),
            message: format!("unknown key '{k}' ({})", expected_list(&text)),
        };
    }
    if let Some(k) = quoted("missing field `") {
        return FieldError {
            key: None,
            message: format!("'{k}' is required"),
        };
    }
    for (k, v) in obj {
        if let Err(e) = serde_json::from_value::<T>(serde_json::Value::Object(alone(k, v))) {
            return FieldError {
                key: Some(k.clone()),
                message: format!("'{k}': {e}"),
            };
        }
    }
    FieldError {
        key: None,
        message: text,
    }
}

/// serde's "expected one of `a`, `b`" as "expected one of: a, b".
fn expected_list(text: &str) -> String {
    match text.split_once("expected ") {
        Some((_, rest)) => format!(
            "expected {}",
            rest.replace("one of ", "one of: ").replace('`', "")
        ),
        None => "not a known key".into(),
    }
}

/// The key a validation message is about: the earliest mention of a key of `obj` in the
/// message (`'path' does not apply…`, `delay_loop = 0: …`, `method 'x' is not…`), or the key
/// whose text the message quotes (a bad regular expression).
fn key_in_message(
    message: &str,
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for k in obj.keys() {
        let c = canonical(k);
        let found = [format!("'{c}'"), format!("{c} = "), format!("{c} '")]
            .iter()
            .filter_map(|p| message.find(p.as_str()))
            .min();
        if let Some(pos) = found
            && best.is_none_or(|(b, _)| pos < b)
        {
            best = Some((pos, k));
        }
    }
    if let Some((_, k)) = best {
        return Some(k.clone());
    }
    obj.iter()
        .find(|(_, v)| {
            v.as_str()
                .is_some_and(|s| !s.is_empty() && message.contains(&format!("'{s}'")))
        })
        .map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key_of(v: serde_json::Value) -> (Option<String>, String) {
        let e = validate_check(v, "10.0.1.11:80".parse().unwrap()).unwrap_err();
        (e.key, e.message)
    }

    #[test]
    fn validation_errors_name_the_key_at_fault() {
        for (v, key, words) in [
            (
                json!({"type": "tcp", "bogus": 1}),
                Some("bogus"),
                "unknown key 'bogus'",
            ),
            (json!({"type": "icmp"}), Some("type"), "unknown variant"),
            (json!({"delay_loop": 1}), None, "'type' is required"),
            (
                json!({"type": "tcp", "delay_loop": "x"}),
                Some("delay_loop"),
                "invalid type",
            ),
            (
                json!({"type": "tcp", "delay_loop": 0}),
                Some("delay_loop"),
                "delay_loop = 0",
            ),
            (
                json!({"type": "tcp", "path": "/"}),
                Some("path"),
                "does not apply",
            ),
            (
                json!({"type": "http", "method": "get"}),
                Some("method"),
                "HTTP method",
            ),
            (
                json!({"type": "http", "regex": "("}),
                Some("regex"),
                "regular expression",
            ),
            (
                json!({"type": "udp", "expect": "("}),
                Some("expect"),
                "regular expression",
            ),
            (
                json!({"type": "http", "digest": "ab"}),
                Some("digest"),
                "MD5",
            ),
            (json!({"type": "exec"}), None, "needs 'command'"),
            (
                json!({"type": "exec", "misc_path": " "}),
                Some("misc_path"),
                "needs 'command'",
            ),
            (
                json!({"type": "http", "status_code": "600"}),
                Some("status_code"),
                "status_code",
            ),
            (
                json!({"type": "udp", "payload": "a", "payload_hex": "61"}),
                Some("payload"),
                "not both",
            ),
        ] {
            let (k, m) = key_of(v.clone());
            assert_eq!(k.as_deref(), key, "{v}: {m}");
            assert!(m.contains(words), "{v}: {m}");
        }
    }

    #[test]
    fn service_health_errors_name_the_key_at_fault() {
        let e = validate_service_health(json!({"quorum": -1})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("quorum"));
        let e = validate_service_health(
            json!({"sorry_server": {"addr": "10.0.9.9", "port": 80, "weight": 70000}}),
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sorry_server"), "{}", e.message);
        let e = validate_service_health(json!({"quorom": 1})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("quorom"));
        assert!(validate_service_health(json!({"quorum": 2})).is_ok());
    }
}
