//! The control protocol of `lvsd`.
//!
//! One JSON object per line over a Unix stream socket (default [`DEFAULT_SOCKET`], mode 0600,
//! so only root can talk to it). The client writes a [`Envelope`] line and reads one
//! [`Reply`] line back; a connection may carry many requests. Every envelope names the
//! protocol version it speaks ([`VERSION`]); the daemon refuses other versions with a clear
//! error. [`Request::Batch`] applies a list of changes atomically: all or none.
//!
//! See `docs/control-api.md` for examples.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::stats::{Rates, Stats};
use lvs_core::types::{ForwardMethod, Protocol, ServiceKey};
use serde::{Deserialize, Serialize};

/// Protocol version spoken by this crate.
pub const VERSION: u32 = 1;

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/lvsd/lvsd.sock";

/// Environment variable that overrides the socket path.
pub const SOCKET_ENV: &str = "LVSD_SOCKET";

/// The socket path to use: an explicit one, else `$LVSD_SOCKET`, else the default.
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// A request with its protocol version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// What a client can ask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Daemon and protocol version.
    Version,
    /// `-A`.
    AddService {
        /// The service.
        service: ServiceConfig,
    },
    /// `-E`.
    EditService {
        /// The service (found by its key).
        service: ServiceConfig,
    },
    /// `-D`.
    DeleteService {
        /// Which.
        key: ServiceKey,
    },
    /// `-C`.
    Clear,
    /// `-a`.
    AddDest {
        /// Service.
        key: ServiceKey,
        /// Real server.
        dest: DestConfig,
    },
    /// `-e`.
    EditDest {
        /// Service.
        key: ServiceKey,
        /// Real server (found by address and port).
        dest: DestConfig,
    },
    /// `-d`.
    DeleteDest {
        /// Service.
        key: ServiceKey,
        /// Real server address.
        addr: IpAddr,
        /// Real server port.
        port: u16,
    },
    /// The service table with counters (`-L`).
    List,
    /// Connection entries (`-L -c`).
    Connections,
    /// Director-wide counters and drop reasons.
    Counters,
    /// `--set tcp tcpfin udp` (seconds; 0 keeps a value).
    SetTimeouts {
        /// TCP established.
        tcp: u64,
        /// TCP FIN_WAIT.
        tcpfin: u64,
        /// UDP.
        udp: u64,
    },
    /// Current timeouts (`-L --timeout`).
    Timeouts,
    /// `-Z`: zero counters of one service, or of all.
    Zero {
        /// The service; all when absent.
        #[serde(default)]
        key: Option<ServiceKey>,
    },
    /// Apply all of these or none.
    Batch {
        /// The changes, applied in order.
        requests: Vec<Request>,
    },
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    /// Done.
    Ok,
    /// Refused; nothing changed.
    Error {
        /// What was wrong and what to do.
        message: String,
    },
    /// Version information.
    Version {
        /// Protocol version.
        protocol: u32,
        /// Daemon version.
        daemon: String,
    },
    /// The service table.
    Services {
        /// Connection-table capacity (ipvsadm's "size").
        table_size: usize,
        /// Services in the order they were added.
        services: Vec<ServiceInfo>,
    },
    /// Connection entries.
    Connections {
        /// Entries.
        conns: Vec<ConnInfo>,
    },
    /// Director counters.
    Counters(CountersInfo),
    /// Timeouts in seconds.
    Timeouts {
        /// TCP established.
        tcp: u64,
        /// TCP FIN_WAIT.
        tcpfin: u64,
        /// UDP.
        udp: u64,
    },
}

/// A service as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Configuration.
    pub config: ServiceConfig,
    /// Counters.
    pub stats: Stats,
    /// Rates (IPVS estimator).
    #[serde(default)]
    pub rates: Rates,
    /// Real servers.
    pub dests: Vec<DestInfo>,
}

/// A real server as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestInfo {
    /// Configuration.
    pub config: DestConfig,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// Persistence templates.
    pub persistent: u32,
    /// Over its upper threshold.
    pub overloaded: bool,
    /// Counters.
    pub stats: Stats,
    /// Rates (IPVS estimator).
    #[serde(default)]
    pub rates: Rates,
}

/// A connection entry as listed (`ipvsadm -L -c`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// Protocol.
    pub proto: Protocol,
    /// Client address.
    pub caddr: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
    /// State name (`ESTABLISHED`, ..., `NONE` for templates and UDP).
    pub state: String,
    /// Seconds until expiry.
    pub expires_secs: u64,
    /// Forwarding method.
    pub method: ForwardMethod,
    /// A persistence template.
    pub template: bool,
}

/// Director-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountersInfo {
    /// Frames seen.
    pub rx_frames: u64,
    /// Frames forwarded.
    pub forwarded: u64,
    /// Frames left to the kernel.
    pub passed: u64,
    /// ICMP errors generated.
    pub icmp_sent: u64,
    /// Connections in the table.
    pub conns: usize,
    /// Table capacity.
    pub conn_limit: usize,
    /// Drops by reason name.
    pub drops: Vec<(String, u64)>,
    /// Frames the io layer failed to send.
    pub tx_errors: u64,
}

/// Talking to the daemon failed.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect or exchange.
    Io(PathBuf, std::io::Error),
    /// The daemon's answer was not understood.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(p, e) => write!(
                f,
                "cannot talk to lvsd at {}: {e} (is lvsd running? set --socket or {SOCKET_ENV})",
                p.display()
            ),
            ClientError::Protocol(m) => write!(f, "unexpected answer from lvsd: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A connection to the daemon.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connect to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let io = |e| ClientError::Io(path.to_path_buf(), e);
        let stream = UnixStream::connect(path).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Send one request, wait for its reply.
    pub fn call(&mut self, request: Request) -> Result<Reply, ClientError> {
        let env = Envelope {
            v: VERSION,
            request,
        };
        let mut line =
            serde_json::to_string(&env).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push('\n');
        let io = |e| ClientError::Io(self.path.clone(), e);
        self.writer.write_all(line.as_bytes()).map_err(io)?;
        let mut answer = String::new();
        let n = self
            .reader
            .read_line(&mut answer)
            .map_err(|e| ClientError::Io(self.path.clone(), e))?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "connection closed without an answer".into(),
            ));
        }
        serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(format!("{e}: {answer}")))
    }
}

/// Parse one request line as the daemon does, with a message fit for the client on error.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("request is not valid JSON: {e}"))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "protocol version {v} is not supported (this lvsd speaks {VERSION})"
            ));
        }
        None => {
            return Err(format!(
                "request has no protocol version field \"v\" (this lvsd speaks {VERSION})"
            ));
        }
    }
    serde_json::from_value::<Envelope>(value)
        .map(|e| e.request)
        .map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_core::types::SchedulerKind;

    #[test]
    fn round_trip_and_version_check() {
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
        let req = Request::AddService {
            service: ServiceConfig::new(key).with_scheduler(SchedulerKind::Rr),
        };
        let line = serde_json::to_string(&Envelope {
            v: VERSION,
            request: req.clone(),
        })
        .unwrap();
        assert_eq!(parse_request(&line), Ok(req));
        assert!(
            parse_request(r#"{"v":2,"op":"list"}"#)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(
            parse_request(r#"{"op":"list"}"#)
                .unwrap_err()
                .contains("no protocol version")
        );
        assert!(
            parse_request("nonsense")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            parse_request(r#"{"v":1,"op":"fly"}"#)
                .unwrap_err()
                .starts_with("bad request")
        );
        assert_eq!(parse_request(r#"{"v":1,"op":"list"}"#), Ok(Request::List));
    }
}
