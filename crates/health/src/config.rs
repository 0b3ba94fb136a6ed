//! What an operator configures: a check per real server and health settings per service.
//!
//! Names and defaults follow keepalived's `keepalived.conf(5)` so that a keepalived
//! configuration translates one to one:
//!
//! | here | keepalived | default |
//! |---|---|---|
//! | `type = "tcp"` | `TCP_CHECK` | |
//! | `type = "http"` / `"https"` | `HTTP_GET` / `SSL_GET` | |
//! | `type = "udp"` | `UDP_CHECK` | |
//! | `type = "exec"` | `MISC_CHECK` | |
//! | `delay_loop` | `delay_loop` | 60 s |
//! | `connect_timeout` | `connect_timeout` | 5 s |
//! | `retry` (alias `nb_get_retry`) | `retry` | 1; 0 for `exec` (keepalived: "The retry default is 0" for `MISC_CHECK`) |
//! | `delay_before_retry` | `delay_before_retry` | 1 s |
//! | `warmup` | `warmup` | `delay_loop`: the first check starts after a random delay in `[0, warmup)`; 0 disables |
//! | `alpha` | `alpha` | false: a server starts up; with `alpha` it starts down until a check passes |
//! | `inhibit_on_failure` | `inhibit_on_failure` | false: a failed server is removed; with it, it stays with weight 0 |
//! | `connect_ip`, `connect_port` | same | the real server's address and port |
//! | `notify_up`, `notify_down` | same (on `real_server`) | none |
//! | `method`, `path` | `url { path }` | `GET`, `/` |
//! | `status_code` | `status_code` | any 2xx (`200-299`); a number or a `"lo-hi"` range |
//! | `digest` | `digest` | none: MD5 of the body, 32 hex digits (keepalived's `genhash`) |
//! | `regex` | `regex` | none: must match the body |
//! | `virtualhost` (alias `host`) | `virtualhost` | the address checked |
//! | `tls_verify` | (none: `SSL_GET` does not verify) | false |
//! | `payload` / `payload_hex`, `require_reply`, `expect` | `payload`, `require_reply` | empty, false (no ICMP error within the timeout is a pass), none |
//! | `command` (alias `misc_path`) | `misc_path` | |
//! | `timeout` (alias `misc_timeout`) | `misc_timeout` | `delay_loop` |
//! | `dynamic` (alias `misc_dynamic`) | `misc_dynamic` | false: exit 2..=255 is a pass with weight `code - 2` |
//!
//! Per service ([`ServiceHealth`]): `quorum` (1), `hysteresis` (0), `sorry_server`,
//! `quorum_up`, `quorum_down`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lvs_core::types::ForwardMethod;
use serde::{Deserialize, Serialize};

use crate::probe::{ExecProbe, HttpProbe, Probe, TcpProbe, TlsSettings, UdpProbe};

/// Which checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Connect within `connect_timeout` (keepalived `TCP_CHECK`).
    Tcp,
    /// An HTTP/1.1 request (keepalived `HTTP_GET`).
    Http,
    /// An HTTP/1.1 request over TLS (keepalived `SSL_GET`).
    Https,
    /// Send a datagram, optionally expect an answer (keepalived `UDP_CHECK`).
    Udp,
    /// Run a command (keepalived `MISC_CHECK`).
    Exec,
    /// SMTP greeting and `HELO` (keepalived `SMTP_CHECK`).
    Smtp,
    /// A DNS query answered NOERROR (keepalived `DNS_CHECK`).
    Dns,
    /// An ICMP echo answered (keepalived `PING_CHECK`).
    Ping,
}

impl CheckKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Https => "https",
            CheckKind::Udp => "udp",
            CheckKind::Exec => "exec",
            CheckKind::Smtp => "smtp",
            CheckKind::Dns => "dns",
            CheckKind::Ping => "ping",
        }
    }
}

/// An inclusive range of HTTP status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest accepted.
    pub lo: u16,
    /// Highest accepted.
    pub hi: u16,
}

impl Default for StatusRange {
    /// keepalived's default: any 2xx.
    fn default() -> StatusRange {
        StatusRange { lo: 200, hi: 299 }
    }
}

impl StatusRange {
    /// Whether `code` is in the range.
    pub fn contains(self, code: u16) -> bool {
        (self.lo..=self.hi).contains(&code)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl std::str::FromStr for StatusRange {
    type Err = String;
    fn from_str(s: &str) -> Result<StatusRange, String> {
        let bad = || format!("status_code '{s}' is not a code (200) or a range (200-299)");
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad());
        }
        Ok(StatusRange { lo, hi })
    }
}

impl Serialize for StatusRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StatusRange, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Code(u16),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Code(c) => format!("{c}").parse(),
            Raw::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

fn d_delay_loop() -> f64 {
    60.0
}
fn d_connect_timeout() -> f64 {
    5.0
}
fn d_delay_before_retry() -> f64 {
    1.0
}

/// One health check of a real server, as configured (TOML table or control API JSON).
///
/// Times are seconds and may be fractional (`delay_loop = 0.5`), as keepalived allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Which checker: `tcp`, `http`, `https`, `udp` or `exec`.
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// Seconds between checks (default 60).
    #[serde(default = "d_delay_loop")]
    pub delay_loop: f64,
    /// Seconds a `tcp`/`http`/`https`/`udp` check may take in all (default 5).
    #[serde(default = "d_connect_timeout")]
    pub connect_timeout: f64,
    /// Failed checks of an up server retried before it is marked down (default 1, `exec` 0).
    #[serde(
        default,
        alias = "nb_get_retry",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry: Option<u32>,
    /// Seconds between a failed check and its retry (default 1).
    #[serde(default = "d_delay_before_retry")]
    pub delay_before_retry: f64,
    /// The first check starts after a random delay up to this many seconds (default
    /// `delay_loop`; 0 starts at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<f64>,
    /// Start down until a check passes (default: start up).
    #[serde(default)]
    pub alpha: bool,
    /// On failure set weight 0 and keep the server listed, rather than removing it.
    #[serde(default)]
    pub inhibit_on_failure: bool,
    /// Address to check instead of the real server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ip: Option<IpAddr>,
    /// Port to check instead of the real server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_port: Option<u16>,
    /// Shell command run (fire and forget) when the server goes up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_up: Option<String>,
    /// Shell command run (fire and forget) when the server goes down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_down: Option<String>,
    /// HTTP method (default `GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Accepted status codes (default any 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<StatusRange>,
    /// Regular expression the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// MD5 of the body, 32 hex digits (as keepalived's `genhash` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `Host` header (and TLS server name) to send.
    #[serde(default, alias = "host", skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    /// Verify the server's certificate against the Mozilla roots (`https`). keepalived's
    /// `SSL_GET` does not verify, and neither do we by default: a health check asks "does
    /// it answer", and real servers usually carry certificates for the public name.
    #[serde(default)]
    pub tls_verify: bool,
    /// UDP payload as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// UDP payload as hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
    /// UDP: a reply must arrive (default false: no ICMP error within the timeout passes, as
    /// keepalived's `UDP_CHECK` without `require_reply`). Implied by `expect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_reply: Option<bool>,
    /// UDP: regular expression the reply must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// `exec`: shell command (run with `sh -c`; `$LVS_RIP`/`$LVS_RPORT` are set).
    #[serde(default, alias = "misc_path", skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `exec`: seconds the command may run (default `delay_loop`); then it is killed and the
    /// check fails.
    #[serde(
        default,
        alias = "misc_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<f64>,
    /// `exec`: exit codes 2..=255 pass with weight `code - 2` (keepalived `misc_dynamic`).
    #[serde(default, alias = "misc_dynamic")]
    pub dynamic: bool,
    /// `smtp`: the name said in `HELO` (default keepalived's, `smtpchecker.keepalived.org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo_name: Option<String>,
    /// `dns`: the query type (A, NS, CNAME, SOA, MX, TXT, AAAA, RRSIG, DNSKEY; default SOA;
    /// keepalived's `type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_type: Option<String>,
    /// `dns`: the name asked for (default `.`, the root; keepalived's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_name: Option<String>,
}

impl CheckConfig {
    /// A check of this kind with every other field at its default.
    pub fn new(kind: CheckKind) -> CheckConfig {
        CheckConfig {
            kind,
            delay_loop: d_delay_loop(),
            connect_timeout: d_connect_timeout(),
            retry: None,
            delay_before_retry: d_delay_before_retry(),
            warmup: None,
            alpha: false,
            inhibit_on_failure: false,
            connect_ip: None,
            connect_port: None,
            notify_up: None,
            notify_down: None,
            method: None,
            path: None,
            status_code: None,
            regex: None,
            digest: None,
            virtualhost: None,
            tls_verify: false,
            payload: None,
            payload_hex: None,
            require_reply: None,
            expect: None,
            command: None,
            timeout: None,
            dynamic: false,
            helo_name: None,
            query_type: None,
            query_name: None,
        }
    }

    /// The effective `retry`: as set, else keepalived's default: 1, 0 for `exec`
    /// (`MISC_CHECK`), 3 for `dns` (`DNS_CHECK`).
    pub fn retry(&self) -> u32 {
        self.retry.unwrap_or(match self.kind {
            CheckKind::Exec => 0,
            CheckKind::Dns => 3,
            _ => 1,
        })
    }

    /// The timing rules.
    pub fn timing(&self) -> Result<Timing, String> {
        let delay_loop = secs("delay_loop", self.delay_loop, false)?;
        Ok(Timing {
            delay_loop,
            retry: self.retry(),
            delay_before_retry: secs("delay_before_retry", self.delay_before_retry, true)?,
            warmup: match self.warmup {
                Some(w) => secs("warmup", w, true)?,
                None => delay_loop,
            },
            alpha: self.alpha,
        })
    }

    /// Validate and build the check of the real server at `rs` (its own address and port;
    /// `connect_ip`/`connect_port` override them).
    pub fn compile(&self, rs: SocketAddr) -> Result<Check, String> {
        let timing = self.timing()?;
        let timeout = secs("connect_timeout", self.connect_timeout, false)?;
        // SMTP and DNS checks knock on their service's port unless told otherwise, as
        // keepalived's do.
        let default_port = match self.kind {
            CheckKind::Smtp => 25,
            CheckKind::Dns => 53,
            _ => rs.port(),
        };
        let target = SocketAddr::new(
            self.connect_ip.unwrap_or(rs.ip()),
            self.connect_port.unwrap_or(default_port),
        );
        let kind = self.kind;
        let only = |field: &str, set: bool, kinds: &str| -> Result<(), String> {
            if set {
                Err(format!(
                    "'{field}' does not apply to a {} check (only to {kinds})",
                    kind.name()
                ))
            } else {
                Ok(())
            }
        };
        let http = matches!(kind, CheckKind::Http | CheckKind::Https);
        for (f, set) in [
            ("method", self.method.is_some()),
            ("path", self.path.is_some()),
            ("status_code", self.status_code.is_some()),
            ("regex", self.regex.is_some()),
            ("digest", self.digest.is_some()),
            ("virtualhost", self.virtualhost.is_some()),
        ] {
            if !http {
                only(f, set, "http and https")?;
            }
        }
        if kind != CheckKind::Https {
            only("tls_verify", self.tls_verify, "https")?;
        }
        if kind != CheckKind::Udp {
            for (f, set) in [
                ("payload", self.payload.is_some()),
                ("payload_hex", self.payload_hex.is_some()),
                ("require_reply", self.require_reply.is_some()),
                ("expect", self.expect.is_some()),
            ] {
                only(f, set, "udp")?;
            }
        }
        if kind != CheckKind::Smtp {
            only("helo_name", self.helo_name.is_some(), "smtp")?;
        }
        if kind != CheckKind::Dns {
            only("query_type", self.query_type.is_some(), "dns")?;
            only("query_name", self.query_name.is_some(), "dns")?;
        }
        if kind == CheckKind::Ping {
            only(
                "connect_port",
                self.connect_port.is_some(),
                "tcp, http, https, udp, smtp and dns",
            )?;
        }
        if kind != CheckKind::Exec {
            for (f, set) in [
                ("command", self.command.is_some()),
                ("timeout", self.timeout.is_some()),
                ("dynamic", self.dynamic),
            ] {
                only(f, set, "exec")?;
            }
        } else {
            for (f, set) in [
                ("connect_ip", self.connect_ip.is_some()),
                ("connect_port", self.connect_port.is_some()),
            ] {
                only(f, set, "tcp, http, https, udp, smtp, dns and ping")?;
            }
        }
        let probe = match kind {
            CheckKind::Tcp => Probe::Tcp(TcpProbe { target, timeout }),
            CheckKind::Http | CheckKind::Https => {
                let method = self.method.clone().unwrap_or_else(|| "GET".into());
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(format!(
                        "method '{method}' is not an HTTP method (GET, HEAD, ...)"
                    ));
                }
                let path = self.path.clone().unwrap_or_else(|| "/".into());
                if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(format!(
                        "path '{path}' must start with '/' and have no spaces or control characters"
                    ));
                }
                if let Some(h) = &self.virtualhost
                    && (h.is_empty() || h.bytes().any(|b| b <= b' ' || b == 0x7f))
                {
                    return Err(format!("virtualhost '{h}' is not a host name"));
                }
                let regex = self.regex.as_deref().map(compile_regex).transpose()?;
                let digest = self.digest.as_deref().map(parse_md5).transpose()?;
                let tls = (kind == CheckKind::Https)
                    .then(|| TlsSettings::new(self.tls_verify, self.virtualhost.as_deref(), target))
                    .transpose()?;
                Probe::Http(Box::new(HttpProbe::new(
                    target,
                    timeout,
                    method,
                    path,
                    self.virtualhost.clone(),
                    self.status_code.unwrap_or_default(),
                    regex,
                    digest,
                    tls,
                )))
            }
            CheckKind::Udp => {
                let payload = match (&self.payload, &self.payload_hex) {
                    (Some(_), Some(_)) => {
                        return Err("set either 'payload' or 'payload_hex', not both".into());
                    }
                    (Some(p), None) => p.as_bytes().to_vec(),
                    (None, Some(h)) => parse_hex(h).ok_or_else(|| {
                        format!("payload_hex '{h}' is not an even number of hex digits")
                    })?,
                    (None, None) => Vec::new(),
                };
                let expect = self.expect.as_deref().map(compile_regex).transpose()?;
                Probe::Udp(UdpProbe {
                    target,
                    timeout,
                    payload,
                    require_reply: self.require_reply.unwrap_or(false) || expect.is_some(),
                    expect,
                })
            }
            CheckKind::Exec => {
                let command = self
                    .command
                    .clone()
                    .filter(|c| !c.trim().is_empty())
                    .ok_or("an exec check needs 'command' (the shell command to run)")?;
                let timeout = match self.timeout {
                    Some(t) => secs("timeout", t, false)?,
                    None => timing.delay_loop,
                };
                Probe::Exec(ExecProbe {
                    command,
                    timeout,
                    dynamic: self.dynamic,
                    rip: rs.ip(),
                    rport: rs.port(),
                })
            }
            CheckKind::Smtp => {
                let helo = self
                    .helo_name
                    .clone()
                    .unwrap_or_else(|| crate::probe_more::SMTP_DEFAULT_HELO.into());
                if helo.is_empty() || helo.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(format!("helo_name '{helo}' is not a host name"));
                }
                Probe::Smtp(crate::probe_more::SmtpProbe {
                    target,
                    timeout,
                    helo,
                })
            }
            CheckKind::Dns => {
                let qtype = self.query_type.clone().unwrap_or_else(|| "SOA".into());
                let name = self.query_name.clone().unwrap_or_else(|| ".".into());
                let query = crate::probe_more::dns_query(&name, &qtype)?;
                Probe::Dns(crate::probe_more::DnsProbe {
                    target,
                    timeout,
                    query,
                    question: format!("{} {name}", qtype.to_ascii_uppercase()),
                })
            }
            CheckKind::Ping => Probe::Ping(crate::probe_more::PingProbe {
                target: target.ip(),
                timeout,
            }),
        };
        Ok(Check {
            probe: Arc::new(probe),
            timing,
            inhibit_on_failure: self.inhibit_on_failure,
            notify_up: self.notify_up.clone().filter(|c| !c.trim().is_empty()),
            notify_down: self.notify_down.clone().filter(|c| !c.trim().is_empty()),
        })
    }
}

fn secs(field: &str, v: f64, zero_ok: bool) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) || v > 86_400.0 {
        return Err(format!(
            "{field} = {v}: give seconds {} 86400",
            if zero_ok {
                "from 0 to"
            } else {
                "above 0, at most"
            }
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn compile_regex(r: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(r)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad regular expression '{r}': {e}"))
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn parse_md5(s: &str) -> Result<[u8; 16], String> {
    parse_hex(s)
        .and_then(|v| <[u8; 16]>::try_from(v).ok())
        .ok_or_else(|| format!("digest '{s}' is not an MD5 sum (32 hex digits)"))
}

/// When checks run, and how results become states (keepalived's rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Between checks.
    pub delay_loop: Duration,
    /// Failed checks of an up server retried before it goes down.
    pub retry: u32,
    /// Between a failure and its retry.
    pub delay_before_retry: Duration,
    /// Upper bound of the random delay before the first check.
    pub warmup: Duration,
    /// Start down.
    pub alpha: bool,
}

/// A validated check, ready for the [`Engine`](crate::Engine).
#[derive(Clone, Debug)]
pub struct Check {
    /// What to do each time.
    pub probe: Arc<Probe>,
    /// When.
    pub timing: Timing,
    /// Down means weight 0 (kept listed) rather than removal.
    pub inhibit_on_failure: bool,
    /// Run when the server goes up.
    pub notify_up: Option<String>,
    /// Run when the server goes down.
    pub notify_down: Option<String>,
}

fn d_quorum() -> u32 {
    1
}
fn d_one() -> u32 {
    1
}

/// Forwarding method of a sorry server, in keepalived's words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SorryMethod {
    /// NAT (keepalived's default `lvs_method`).
    #[default]
    #[serde(alias = "NAT", alias = "masq")]
    Nat,
    /// Direct routing.
    #[serde(alias = "DR", alias = "route")]
    Dr,
    /// IP-in-IP tunnelling.
    #[serde(alias = "TUN", alias = "tunnel")]
    Tun,
}

impl From<SorryMethod> for ForwardMethod {
    fn from(m: SorryMethod) -> ForwardMethod {
        match m {
            SorryMethod::Nat => ForwardMethod::Masq,
            SorryMethod::Dr => ForwardMethod::DirectRoute,
            SorryMethod::Tun => ForwardMethod::Tunnel,
        }
    }
}

/// The server that takes a service's traffic while its quorum is lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Forwarding method (keepalived `sorry_server_lvs_method`; default `nat`).
    #[serde(default)]
    pub method: SorryMethod,
    /// Weight while in use (default 1).
    #[serde(default = "d_one")]
    pub weight: u32,
    /// Keep it listed with weight 0 while not in use (keepalived `sorry_server_inhibit`).
    #[serde(default)]
    pub inhibit: bool,
}

/// Health settings of a virtual service (keepalived's `virtual_server` level).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceHealth {
    /// Least total weight of up real servers for the service to run normally (default 1).
    #[serde(default = "d_quorum")]
    pub quorum: u32,
    /// Flap damper: quorum is lost below `quorum - hysteresis` and regained at
    /// `quorum + hysteresis` (default 0).
    #[serde(default)]
    pub hysteresis: u32,
    /// Put in the pool, alone, while the quorum is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<SorryServer>,
    /// Shell command run when the quorum is gained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_up: Option<String>,
    /// Shell command run when the quorum is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_down: Option<String>,
}

impl Default for ServiceHealth {
    fn default() -> ServiceHealth {
        ServiceHealth {
            quorum: d_quorum(),
            hysteresis: 0,
            sorry_server: None,
            quorum_up: None,
            quorum_down: None,
        }
    }
}

impl ServiceHealth {
    /// Check the values.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = &self.sorry_server
            && s.weight > lvs_core::service::MAX_WEIGHT
        {
            return Err(format!(
                "'sorry_server' weight {} is above {}",
                s.weight,
                lvs_core::service::MAX_WEIGHT
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> SocketAddr {
        "10.0.1.11:80".parse().unwrap()
    }

    #[test]
    fn defaults_are_keepalived_defaults() {
        let c: CheckConfig = serde_json::from_str(r#"{"type":"tcp"}"#).unwrap();
        let t = c.timing().unwrap();
        assert_eq!(t.delay_loop, Duration::from_secs(60));
        assert_eq!(t.retry, 1);
        assert_eq!(t.delay_before_retry, Duration::from_secs(1));
        assert_eq!(
            t.warmup,
            Duration::from_secs(60),
            "warmup defaults to delay_loop"
        );
        assert!(!t.alpha);
        assert_eq!(c.connect_timeout, 5.0);
        let e: CheckConfig =
            serde_json::from_str(r#"{"type":"exec","misc_path":"true","misc_dynamic":true}"#)
                .unwrap();
        assert_eq!(e.retry(), 0, "MISC_CHECK retries 0 times by default");
        assert!(e.dynamic);
        let Probe::Exec(x) = &*e.compile(rs()).unwrap().probe else {
            panic!()
        };
        assert_eq!(
            x.timeout,
            Duration::from_secs(60),
            "misc_timeout defaults to delay_loop"
        );
        let h: CheckConfig = serde_json::from_str(r#"{"type":"http","nb_get_retry":3}"#).unwrap();
        assert_eq!(h.retry(), 3);
        let Probe::Http(p) = &*h.compile(rs()).unwrap().probe else {
            panic!()
        };
        assert_eq!(p.status, StatusRange { lo: 200, hi: 299 });
        assert_eq!(p.target, rs());
    }

    #[test]
    fn status_code_forms() {
        for (j, lo, hi) in [
            (r#"200"#, 200, 200),
            (r#""200""#, 200, 200),
            (r#""200-399""#, 200, 399),
        ] {
            let r: StatusRange = serde_json::from_str(j).unwrap();
            assert_eq!((r.lo, r.hi), (lo, hi));
        }
        assert!(serde_json::from_str::<StatusRange>(r#""300-200""#).is_err());
        assert!(serde_json::from_str::<StatusRange>(r#"42"#).is_err());
    }

    #[test]
    fn connect_ip_and_port_override_the_target() {
        let mut c = CheckConfig::new(CheckKind::Tcp);
        c.connect_ip = Some("192.0.2.9".parse().unwrap());
        c.connect_port = Some(8080);
        let Probe::Tcp(t) = &*c.compile(rs()).unwrap().probe else {
            panic!()
        };
        assert_eq!(t.target, "192.0.2.9:8080".parse().unwrap());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |j: &str| crate::parse_check(serde_json::from_str(j).unwrap(), rs()).unwrap_err();
        assert!(e(r#"{"type":"tcp","path":"/"}"#).contains("'path' does not apply to a tcp check"));
        assert!(e(r#"{"type":"exec"}"#).contains("needs 'command'"));
        assert!(e(r#"{"type":"http","digest":"abc"}"#).contains("MD5"));
        assert!(e(r#"{"type":"http","regex":"("}"#).contains("regular expression"));
        assert!(e(r#"{"type":"tcp","delay_loop":0}"#).contains("delay_loop"));
        assert!(e(r#"{"type":"tcp","bogus":1}"#).contains("unknown field"));
        assert!(e(r#"{"type":"icmp"}"#).contains("unknown variant"));
        assert!(e(r#"{"type":"udp","payload":"a","payload_hex":"61"}"#).contains("not both"));
    }

    #[test]
    fn service_health_defaults() {
        let s = crate::parse_service_health(serde_json::json!({})).unwrap();
        assert_eq!(s.quorum, 1);
        assert_eq!(s.hysteresis, 0);
        let s = crate::parse_service_health(serde_json::json!({
            "quorum": 3, "hysteresis": 1,
            "sorry_server": {"addr": "10.0.9.9", "port": 80, "method": "DR"}
        }))
        .unwrap();
        let sorry = s.sorry_server.unwrap();
        assert_eq!(sorry.weight, 1);
        assert_eq!(
            ForwardMethod::from(sorry.method),
            ForwardMethod::DirectRoute
        );
    }
}
