//! The control protocol of `lvsd`.
//!
//! One JSON object per line over a Unix stream socket (default [`DEFAULT_SOCKET`], mode 0600,
//! so only root can talk to it). The client writes a [`Envelope`] line and reads one
//! [`Reply`] line back; a connection may carry many requests. Every envelope names the
//! protocol version it speaks ([`VERSION`]); the daemon refuses other versions with a clear
//! error. [`Request::Batch`] applies a list of changes atomically: all or none.
//!
//! The protocol's types are defined in this crate ([`types`] and the requests and replies
//! here), not borrowed from the core; `core_map` converts them to and from the core's, in one
//! place. See `docs/control-api.md` for examples.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod core_map;
pub mod types;

pub use types::{
    DestConfig, Family, ForwardMethod, Netmask, Persistence, Protocol, Rates, SchedFlags,
    SchedulerKind, ServiceConfig, ServiceKey, Stats,
};

/// Protocol version spoken by this crate.
pub const VERSION: u32 = 1;

/// The most connection entries lvsd puts in one page of [`Request::Connections`], whatever
/// the `limit` asked.
pub const CONNECTIONS_PAGE_MAX: u32 = 16_384;

/// How lvsd's `error` reply starts when it refuses a new connection because every one it
/// serves has a request under way. It has read nothing: connect again.
pub const REFUSED_BUSY: &str = "too many control connections at once";

/// How lvsd's `error` reply starts when it closes an idle connection to make room for a new
/// one. It has read nothing from this connection since its last reply: connect again.
pub const CLOSED_FOR_ROOM: &str = "closed to make room for a new control connection";

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
    /// Connection entries (`-L -c`): the whole table in one reply, or one page of it.
    ///
    /// With `limit`, the reply holds at most that many entries (and never more than
    /// [`CONNECTIONS_PAGE_MAX`]) and, when more may follow, a `next` cursor: send the request
    /// again with `cursor` set to it for the next page. lvsd reads each page from its table
    /// in one short step, so forwarding goes on between pages; an entry that exists from the
    /// first page to the last is listed exactly once, one created or removed meanwhile may or
    /// may not be. Without `limit` lvsd answers with every entry (from `cursor`, if given) in
    /// one reply line, which it writes a page at a time.
    Connections {
        /// Where to resume: the `next` of the previous page (absent: from the start).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<u64>,
        /// At most this many entries in the reply (absent: all of them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
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
    /// Re-read the configuration file lvsd was started with (`lvsd --config FILE`) and apply
    /// the difference to the running table as one atomic batch, as SIGHUP does
    /// (`lvsadm --reload`). Real servers that did not change keep their connections.
    /// Answers [`Reply::Ok`], or [`Reply::Error`] when lvsd runs without `--config` or the
    /// file is invalid; then the message holds the diagnostics, one `FILE:LINE:COL: message`
    /// per line, and the running table is kept.
    Reload,
    /// Attach a health check to a real server (replacing its check), or remove it (`check`
    /// absent or null). The check is a JSON object with keepalived's names, e.g.
    /// `{"type":"http","path":"/health","delay_loop":2,"inhibit_on_failure":true}`; see
    /// `docs/health-checks.md` for every field and default.
    SetCheck {
        /// Service.
        key: ServiceKey,
        /// Real server address.
        addr: IpAddr,
        /// Real server port.
        port: u16,
        /// The check; absent or null removes it.
        #[serde(default)]
        check: Option<serde_json::Value>,
    },
    /// Set a service's quorum, hysteresis and sorry server (`health` absent or null: back
    /// to the defaults, no sorry server). E.g.
    /// `{"quorum":2,"hysteresis":0,"sorry_server":{"addr":"10.0.9.9","port":80,"method":"nat"}}`.
    SetServiceHealth {
        /// Service.
        key: ServiceKey,
        /// The settings.
        #[serde(default)]
        health: Option<serde_json::Value>,
    },
    /// Health state of every checked real server and every service with health settings.
    Health,
    /// Every place lvsd loses frames, with its count (`lvsadm --drops`): the core's drop
    /// reasons, the capture rings, the sends and the kernel fast path.
    Drops,
}

impl Request {
    /// Whether this request changes the service table or the timeouts: a batch of changes,
    /// or one that may sit in a [`Request::Batch`]. lvsd rehearses these before it applies
    /// them, logs them, and brings the health checks and the kernel's maps up to date after.
    /// The one list of table-changing requests: the match is exhaustive, so a new request
    /// must be placed on one side.
    pub fn is_change(&self) -> bool {
        match self {
            Request::AddService { .. }
            | Request::EditService { .. }
            | Request::DeleteService { .. }
            | Request::Clear
            | Request::AddDest { .. }
            | Request::EditDest { .. }
            | Request::DeleteDest { .. }
            | Request::SetTimeouts { .. }
            | Request::Batch { .. } => true,
            Request::Version
            | Request::List
            | Request::Connections { .. }
            | Request::Counters
            | Request::Timeouts
            | Request::Zero { .. }
            | Request::Reload
            | Request::SetCheck { .. }
            | Request::SetServiceHealth { .. }
            | Request::Health
            | Request::Drops => false,
        }
    }
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
        /// More entries may follow: ask for them with this `cursor` (left out on the last
        /// page, and in a reply to a request without `limit`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<u64>,
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
    /// Health state (answer to [`Request::Health`]).
    Health {
        /// Checked real servers.
        servers: Vec<HealthInfo>,
        /// Services with health settings.
        services: Vec<ServiceHealthInfo>,
    },
    /// Where frames were lost (answer to [`Request::Drops`]).
    Drops(DropsInfo),
}

/// Every place lvsd loses frames, since it started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DropsInfo {
    /// The data path forwarding established flows: `afpacket` or `tc`.
    pub datapath: String,
    /// One row per counter, zeros included: every drop reason of the core, then every
    /// socket's capture ring, every worker's sends, and (datapath `tc`) the kernel program's
    /// losses.
    pub rows: Vec<DropRow>,
}

/// One loss counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropRow {
    /// Where: `core` (the forwarding decision), `ring` (a socket's capture ring, filled by the
    /// kernel), `send` (frames handed to the io layer to send), `kernel` (the fast path's
    /// program).
    pub layer: String,
    /// Why, in the layer's words: a drop reason of the core, `full`, `freezes`,
    /// `malformed_slot`, `not_queued`, `enobufs`, `eagain`, `error`, or a counter of the
    /// kernel program.
    pub reason: String,
    /// The interface of a capture ring (left out elsewhere).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// The data path worker of a ring or of sends (left out elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// Frames lost (events, for ring `freezes`).
    pub count: u64,
}

/// Health of one checked real server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthInfo {
    /// Service.
    pub key: ServiceKey,
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// What is checked, e.g. `http GET 10.0.1.11:80/health`.
    pub check: String,
    /// `true` up, `false` down.
    pub up: bool,
    /// Seconds since the Unix epoch at which it entered this state.
    pub since: u64,
    /// Result of the last check: `true` passed, `false` failed, absent before the first.
    #[serde(default)]
    pub last_ok: Option<bool>,
    /// Detail or failure reason of the last check.
    pub last: String,
    /// Seconds since the Unix epoch of the last check, absent before the first.
    #[serde(default)]
    pub last_at: Option<u64>,
    /// Checks run.
    pub checks: u64,
    /// Checks failed.
    pub failures: u64,
    /// Weight the health module gives it in the table now (0 when inhibited).
    pub weight: u32,
    /// Whether the health module keeps it in the service table now.
    pub listed: bool,
}

/// Health of one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceHealthInfo {
    /// Service.
    pub key: ServiceKey,
    /// Configured quorum.
    pub quorum: u32,
    /// Configured hysteresis.
    pub hysteresis: u32,
    /// Whether the quorum is up.
    pub quorum_up: bool,
    /// Sum of the weights of the up checked servers.
    pub weight_sum: u64,
    /// The sorry server `addr:port`, when configured.
    #[serde(default)]
    pub sorry_server: Option<String>,
    /// Whether the sorry server is in use.
    pub sorry_active: bool,
}

/// A service as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Configuration.
    pub config: ServiceConfig,
    /// Counters (left out of the JSON when all zero).
    #[serde(default, skip_serializing_if = "is_default")]
    pub stats: Stats,
    /// Rates (IPVS estimator; left out when all zero).
    #[serde(default, skip_serializing_if = "is_default")]
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
    /// Persistence templates (left out when 0).
    #[serde(default, skip_serializing_if = "is_default")]
    pub persistent: u32,
    /// Over its upper threshold (left out when false).
    #[serde(default, skip_serializing_if = "is_default")]
    pub overloaded: bool,
    /// Counters (left out when all zero).
    #[serde(default, skip_serializing_if = "is_default")]
    pub stats: Stats,
    /// Rates (IPVS estimator; left out when all zero).
    #[serde(default, skip_serializing_if = "is_default")]
    pub rates: Rates,
}

/// Keeps listings of large, idle tables small: zero counters are not sent.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
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
    /// Frames waiting now for their next hop's MAC address.
    #[serde(default)]
    pub held: u64,
    /// Frames that had to wait for their next hop's MAC address, since the start.
    #[serde(default)]
    pub held_total: u64,
    /// Half-open TCP entries (never past SYN_RECV) removed to make room for new
    /// connections: the table full, or the embryonic limit reached (a SYN flood).
    #[serde(default)]
    pub embryonic_evicted: u64,
    /// The data path forwarding established flows: `afpacket` (user space) or `tc` (the
    /// kernel fast path).
    #[serde(default)]
    pub datapath: String,
    /// The kernel fast path's counters by name (empty on `afpacket`).
    #[serde(default)]
    pub kernel: Vec<(String, u64)>,
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
///
/// When lvsd answers that it did not read a request ([`REFUSED_BUSY`], [`CLOSED_FOR_ROOM`]:
/// other clients crowd the socket), [`Client::call`] connects again and sends it again, up
/// to [`Client::RETRIES`] times with a growing pause (0.3 s in all).
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Times a request lvsd did not read is sent again.
    pub const RETRIES: u32 = 6;

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
        let mut pause = Duration::from_millis(5);
        for _ in 0..Self::RETRIES {
            match self.exchange(&line)? {
                Reply::Error { message }
                    if message.starts_with(REFUSED_BUSY)
                        || message.starts_with(CLOSED_FOR_ROOM) =>
                {
                    std::thread::sleep(pause);
                    pause *= 2;
                    *self = Client::connect(&self.path)?;
                }
                reply => return Ok(reply),
            }
        }
        self.exchange(&line)
    }

    /// Write `line`, read one reply. A refusal may already wait in place of the reply
    /// (lvsd closed the connection before the request came): it is read even when the write
    /// failed.
    fn exchange(&mut self, line: &str) -> Result<Reply, ClientError> {
        let io = |e| ClientError::Io(self.path.clone(), e);
        let written = self.writer.write_all(line.as_bytes());
        let mut answer = String::new();
        let n = match self.reader.read_line(&mut answer) {
            Ok(n) => n,
            Err(e) => return Err(io(written.err().unwrap_or(e))),
        };
        if n == 0 {
            return Err(match written {
                Err(e) => io(e),
                Ok(()) => ClientError::Protocol("connection closed without an answer".into()),
            });
        }
        serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(format!("{e}: {answer}")))
    }
}

/// Parse one request line as the daemon does, with a message fit for the client on error.
pub fn parse_request(line: &str) -> Result<Request, String> {
    /// Only the version; serde skips everything else without building a tree (a restore
    /// of 100,000 real servers is one 20 MB line).
    #[derive(Deserialize)]
    struct Version {
        v: Option<serde_json::Value>,
    }
    let version: Version =
        serde_json::from_str(line).map_err(|e| format!("request is not valid JSON: {e}"))?;
    match version.v.as_ref().and_then(serde_json::Value::as_u64) {
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
    // The request's own fields sit beside "v", which the request types ignore.
    serde_json::from_str::<Request>(line).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
        let req = Request::AddService {
            service: ServiceConfig {
                key,
                scheduler: SchedulerKind::Rr,
                flags: SchedFlags::default(),
                persistence: None,
                one_packet: false,
            },
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

    #[test]
    fn connection_pages_are_compatible_both_ways() {
        // An old client's request is the whole listing, and reads as it did.
        let all = Request::Connections {
            cursor: None,
            limit: None,
        };
        assert_eq!(
            parse_request(r#"{"v":1,"op":"connections"}"#),
            Ok(all.clone())
        );
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"{"op":"connections"}"#
        );
        let page = Request::Connections {
            cursor: Some(16384),
            limit: Some(100),
        };
        let line = r#"{"v":1,"op":"connections","cursor":16384,"limit":100}"#;
        assert_eq!(parse_request(line), Ok(page));
        assert!(
            parse_request(r#"{"v":1,"op":"connections","limit":-1}"#)
                .unwrap_err()
                .starts_with("bad request")
        );
        // An old lvsd (a unit variant) takes a page request as the whole listing...
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(tag = "op", rename_all = "snake_case")]
        enum OldRequest {
            Connections,
        }
        assert_eq!(
            serde_json::from_str::<OldRequest>(line).unwrap(),
            OldRequest::Connections
        );
        // ...and its reply, without `next`, is the last page.
        let old = r#"{"result":"connections","conns":[]}"#;
        let reply: Reply = serde_json::from_str(old).unwrap();
        assert_eq!(
            reply,
            Reply::Connections {
                conns: Vec::new(),
                next: None
            }
        );
        assert_eq!(serde_json::to_string(&reply).unwrap(), old);
    }

    #[test]
    fn a_request_lvsd_did_not_read_is_sent_again_on_a_new_connection() {
        use std::io::Read;
        let dir = std::env::temp_dir().join(format!("lvs-api-retry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let refusals = [
                format!("{REFUSED_BUSY} (32, each with a request under way): try again"),
                format!("{CLOSED_FOR_ROOM}: more than 32 at once"),
            ];
            // Refused before the request comes, as lvsd does; then answered.
            for message in refusals {
                let (mut s, _) = listener.accept().unwrap();
                let mut line = serde_json::to_string(&Reply::Error { message }).unwrap();
                line.push('\n');
                s.write_all(line.as_bytes()).unwrap();
            }
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
                got.push(b[0]);
            }
            s.write_all(b"{\"result\":\"version\",\"protocol\":1,\"daemon\":\"t\"}\n")
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let mut c = Client::connect(&path).unwrap();
        let reply = c.call(Request::Version).unwrap();
        assert!(
            matches!(reply, Reply::Version { protocol: 1, .. }),
            "{reply:?}"
        );
        assert_eq!(server.join().unwrap(), r#"{"v":1,"op":"version"}"#);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn health_requests_round_trip() {
        let req = parse_request(
            r#"{"v":1,"op":"set_check","key":{"Addr":{"proto":"Tcp","addr":"10.0.0.1","port":80}},"addr":"10.0.1.11","port":80,"check":{"type":"tcp","delay_loop":1}}"#,
        )
        .unwrap();
        let Request::SetCheck { port, check, .. } = &req else {
            panic!("{req:?}")
        };
        assert_eq!(*port, 80);
        assert_eq!(check.as_ref().unwrap()["type"], "tcp");
        let removal = parse_request(
            r#"{"v":1,"op":"set_check","key":{"Addr":{"proto":"Tcp","addr":"10.0.0.1","port":80}},"addr":"10.0.1.11","port":80}"#,
        )
        .unwrap();
        assert!(matches!(removal, Request::SetCheck { check: None, .. }));
        assert_eq!(
            parse_request(r#"{"v":1,"op":"health"}"#),
            Ok(Request::Health)
        );
        let reply = Reply::Health {
            servers: Vec::new(),
            services: Vec::new(),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
    }
}
