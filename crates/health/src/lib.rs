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
