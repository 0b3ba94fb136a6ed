//! The checkers. Each runs once per call, bounded by its timeout, and says up or down with a
//! reason an operator can act on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;
use tokio_rustls::rustls;

use crate::config::StatusRange;

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Passed.
    Up {
        /// A weight the check asks for (`exec` with `dynamic`); `None` keeps the configured.
        weight: Option<u32>,
        /// What was seen, e.g. `http GET / returned 200`.
        detail: String,
    },
    /// Failed, and why: e.g. `http GET / returned 503 (expected 200-299)`.
    Down(String),
}

impl Outcome {
    /// Whether it passed.
    pub fn is_up(&self) -> bool {
        matches!(self, Outcome::Up { .. })
    }

    /// The detail or reason.
    pub fn text(&self) -> &str {
        match self {
            Outcome::Up { detail, .. } => detail,
            Outcome::Down(r) => r,
        }
    }
}

/// One checker with its parameters.
#[derive(Debug)]
pub enum Probe {
    /// TCP connect.
    Tcp(TcpProbe),
    /// HTTP or HTTPS request.
    Http(Box<HttpProbe>),
    /// UDP datagram.
    Udp(UdpProbe),
    /// A command.
    Exec(ExecProbe),
    /// SMTP greeting and HELO.
    Smtp(crate::probe_more::SmtpProbe),
    /// A DNS query.
    Dns(crate::probe_more::DnsProbe),
    /// An ICMP echo.
    Ping(crate::probe_more::PingProbe),
}

impl Probe {
    /// Run once.
    pub async fn run(&self) -> Outcome {
        match self {
            Probe::Tcp(p) => p.run().await,
            Probe::Http(p) => p.run().await,
            Probe::Udp(p) => p.run().await,
            Probe::Exec(p) => p.run().await,
            Probe::Smtp(p) => p.run().await,
            Probe::Dns(p) => p.run().await,
            Probe::Ping(p) => p.run().await,
        }
    }

    /// Short description, e.g. `tcp 10.0.1.11:80`.
    pub fn describe(&self) -> String {
        match self {
            Probe::Tcp(p) => format!("tcp {}", p.target),
            Probe::Http(p) => format!(
                "{} {} {}{}",
                if p.tls.is_some() { "https" } else { "http" },
                p.method,
                p.target,
                p.path
            ),
            Probe::Udp(p) => format!("udp {}", p.target),
            Probe::Exec(p) => format!("exec '{}'", p.command),
            Probe::Smtp(p) => format!("smtp {}", p.target),
            Probe::Dns(p) => format!("dns {} {}", p.target, p.question),
            Probe::Ping(p) => format!("ping {}", p.target),
        }
    }
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    }
}

/// keepalived's `TCP_CHECK`: a connection is made within the timeout, then closed.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    /// Where.
    pub target: SocketAddr,
    /// `connect_timeout`.
    pub timeout: Duration,
}

impl TcpProbe {
    async fn run(&self) -> Outcome {
        match timeout(self.timeout, TcpStream::connect(self.target)).await {
            Ok(Ok(s)) => {
                drop(s);
                Outcome::Up {
                    weight: None,
                    detail: format!("tcp connect to {} succeeded", self.target),
                }
            }
            Ok(Err(e)) => Outcome::Down(format!("tcp connect to {} failed: {e}", self.target)),
            Err(_) => Outcome::Down(format!(
                "tcp connect to {} timed out after {}",
                self.target,
                fmt_secs(self.timeout)
            )),
        }
    }
}

/// TLS parameters of an `https` check.
#[derive(Clone)]
pub struct TlsSettings {
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// TLS towards `target`, with `host` as server name when it is one, verifying the
    /// certificate only when `verify`.
    pub fn new(
        verify: bool,
        host: Option<&str>,
        target: SocketAddr,
    ) -> Result<TlsSettings, String> {
        let name = match host {
            Some(h) => rustls::pki_types::ServerName::try_from(h.to_string())
                .map_err(|e| format!("virtualhost '{h}' is not a TLS server name: {e}"))?,
            None => rustls::pki_types::ServerName::IpAddress(target.ip().into()),
        };
        Ok(TlsSettings {
            connector: tokio_rustls::TlsConnector::from(client_config(verify)?),
            name,
        })
    }
}

fn client_config(verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    use std::sync::OnceLock;
    static VERIFY: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static NO_VERIFY: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let cell = if verify { &VERIFY } else { &NO_VERIFY };
    if let Some(c) = cell.get() {
        return Ok(Arc::clone(c));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let config = if verify {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::clone(cell.get_or_init(|| Arc::new(config))))
}

/// Accepts any certificate (keepalived's `SSL_GET` default): the handshake signatures are
/// still checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Most body bytes read for `regex` / `digest`.
const MAX_BODY: usize = 1 << 20;
/// Most header bytes read.
const MAX_HEAD: usize = 64 << 10;

/// keepalived's `HTTP_GET` / `SSL_GET`: one HTTP/1.1 request (`Connection: close`), status
/// in range, and optionally the body matching a regex or an MD5 digest.
#[derive(Debug)]
pub struct HttpProbe {
    /// Where.
    pub target: SocketAddr,
    /// Whole-check deadline (`connect_timeout`).
    pub timeout: Duration,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Accepted status codes.
    pub status: StatusRange,
    regex: Option<regex::bytes::Regex>,
    digest: Option<[u8; 16]>,
    tls: Option<TlsSettings>,
    request: Vec<u8>,
}

impl HttpProbe {
    /// Build the probe and its request bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        target: SocketAddr,
        timeout: Duration,
        method: String,
        path: String,
        host: Option<String>,
        status: StatusRange,
        regex: Option<regex::bytes::Regex>,
        digest: Option<[u8; 16]>,
        tls: Option<TlsSettings>,
    ) -> HttpProbe {
        let default_port = if tls.is_some() { 443 } else { 80 };
        let host = host.unwrap_or_else(|| {
            let ip = match target.ip() {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            if target.port() == default_port {
                ip
            } else {
                format!("{ip}:{}", target.port())
            }
        });
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lvsd-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        HttpProbe {
            target,
            timeout,
            method,
            path,
            status,
            regex,
            digest,
            tls,
            request,
        }
    }

    fn what(&self) -> String {
        format!(
            "{} {} {}",
            if self.tls.is_some() { "https" } else { "http" },
            self.method,
            self.path
        )
    }

    async fn run(&self) -> Outcome {
        match timeout(self.timeout, self.exchange()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::Down(format!("{} to {} failed: {e}", self.what(), self.target)),
            Err(_) => Outcome::Down(format!(
                "{} to {} timed out after {}",
                self.what(),
                self.target,
                fmt_secs(self.timeout)
            )),
        }
    }

    async fn exchange(&self) -> std::io::Result<Outcome> {
        let tcp = TcpStream::connect(self.target).await?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.over(tcp).await,
            Some(t) => {
                let s = t.connector.connect(t.name.clone(), tcp).await?;
                self.over(s).await
            }
        }
    }

    async fn over<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) -> std::io::Result<Outcome> {
        s.write_all(&self.request).await?;
        s.flush().await?;
        let mut buf = Vec::with_capacity(4096);
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Ok(Outcome::Down(format!(
                    "{} returned a header over {MAX_HEAD} bytes",
                    self.what()
                )));
            }
            if read_some(&mut s, &mut buf).await? == 0 {
                return Ok(Outcome::Down(if buf.is_empty() {
                    format!("{} got no answer (connection closed)", self.what())
                } else {
                    format!("{} got a truncated HTTP header", self.what())
                }));
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let code = parse_status_line(status_line);
        let Some(code) = code else {
            return Ok(Outcome::Down(format!(
                "{} got no HTTP status line: '{}'",
                self.what(),
                status_line.chars().take(60).collect::<String>()
            )));
        };
        if !self.status.contains(code) {
            return Ok(Outcome::Down(format!(
                "{} returned {code} (expected {})",
                self.what(),
                self.status
            )));
        }
        if self.regex.is_none() && self.digest.is_none() {
            return Ok(Outcome::Up {
                weight: None,
                detail: format!("{} returned {code}", self.what()),
            });
        }
        let mut length = None;
        let mut chunked = false;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut raw = buf.split_off(head_end);
        // Read the rest: to Content-Length, to the last chunk, or to EOF (Connection: close).
        loop {
            let done = if self.method == "HEAD" || code == 204 || code == 304 {
                true
            } else if chunked {
                dechunk(&raw).is_some()
            } else if let Some(n) = length {
                raw.len() >= n
            } else {
                false
            };
            if done || raw.len() > MAX_BODY {
                break;
            }
            if read_some(&mut s, &mut raw).await? == 0 {
                break;
            }
        }
        let body = if chunked {
            dechunk(&raw).unwrap_or(raw)
        } else {
            if let Some(n) = length {
                raw.truncate(n);
            }
            raw
        };
        if let Some(d) = &self.digest {
            let got: [u8; 16] = Md5::digest(&body).into();
            if &got != d {
                return Ok(Outcome::Down(format!(
                    "{} returned {code} but the body's MD5 is {} (expected {})",
                    self.what(),
                    hex(&got),
                    hex(d)
                )));
            }
        }
        if let Some(r) = &self.regex
            && !r.is_match(&body)
        {
            return Ok(Outcome::Down(format!(
                "{} returned {code} but the body does not match /{}/",
                self.what(),
                r.as_str()
            )));
        }
        Ok(Outcome::Up {
            weight: None,
            detail: format!("{} returned {code}, body as expected", self.what()),
        })
    }
}

async fn read_some<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = match s.read(&mut chunk).await {
        Ok(n) => n,
        // A peer closing TLS without close_notify after a complete answer is common.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
        Err(e) => return Err(e),
    };
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `HTTP/1.x NNN reason` → NNN.
fn parse_status_line(l: &str) -> Option<u16> {
    let mut parts = l.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Decode a complete chunked body; `None` while incomplete.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(raw, b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if raw.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// keepalived's `UDP_CHECK`: send a datagram on a connected socket. An ICMP error (seen as
/// "connection refused") fails; with `require_reply` a reply must come, matching `expect`
/// when set; without it, silence until the timeout passes.
#[derive(Debug)]
pub struct UdpProbe {
    /// Where.
    pub target: SocketAddr,
    /// How long to wait.
    pub timeout: Duration,
    /// What to send.
    pub payload: Vec<u8>,
    /// A reply must arrive.
    pub require_reply: bool,
    /// The reply must match.
    pub expect: Option<regex::bytes::Regex>,
}

impl UdpProbe {
    async fn run(&self) -> Outcome {
        let bind: SocketAddr = if self.target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let what = format!("udp {}", self.target);
        let sock = match UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => return Outcome::Down(format!("{what}: cannot open a socket: {e}")),
        };
        if let Err(e) = sock.connect(self.target).await {
            return Outcome::Down(format!("{what}: {e}"));
        }
        if let Err(e) = sock.send(&self.payload).await {
            return Outcome::Down(format!("{what}: send failed: {e}"));
        }
        let mut buf = vec![0u8; 65536];
        match timeout(self.timeout, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                if let Some(r) = &self.expect
                    && !r.is_match(&buf[..n])
                {
                    return Outcome::Down(format!(
                        "{what}: reply of {n} bytes does not match /{}/",
                        r.as_str()
                    ));
                }
                Outcome::Up {
                    weight: None,
                    detail: format!("{what}: reply of {n} bytes"),
                }
            }
            Ok(Err(e)) => Outcome::Down(format!("{what}: {e}")),
            Err(_) if self.require_reply => Outcome::Down(format!(
                "{what}: no reply within {}",
                fmt_secs(self.timeout)
            )),
            Err(_) => Outcome::Up {
                weight: None,
                detail: format!("{what}: no error within {}", fmt_secs(self.timeout)),
            },
        }
    }
}

/// keepalived's `MISC_CHECK`: run `sh -c command`; exit 0 passes, anything else fails, or
/// with `dynamic` (`misc_dynamic`) 2..=255 pass with weight `code - 2`. Killed at the timeout.
#[derive(Debug, Clone)]
pub struct ExecProbe {
    /// The shell command.
    pub command: String,
    /// `misc_timeout`.
    pub timeout: Duration,
    /// `misc_dynamic`.
    pub dynamic: bool,
    /// Real server address (`$LVS_RIP`).
    pub rip: IpAddr,
    /// Real server port (`$LVS_RPORT`).
    pub rport: u16,
}

impl ExecProbe {
    async fn run(&self) -> Outcome {
        let what = format!("exec '{}'", self.command);
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .env("LVS_RIP", self.rip.to_string())
            .env("LVS_RPORT", self.rport.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return Outcome::Down(format!("{what} could not start: {e}")),
        };
        let status = match timeout(self.timeout, child.wait()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Outcome::Down(format!("{what} failed: {e}")),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Outcome::Down(format!(
                    "{what} timed out after {} and was killed",
                    fmt_secs(self.timeout)
                ));
            }
        };
        exit_outcome(&what, status.code(), self.dynamic)
    }
}

/// keepalived's mapping of a `MISC_CHECK` exit code.
pub fn exit_outcome(what: &str, code: Option<i32>, dynamic: bool) -> Outcome {
    match code {
        Some(0) => Outcome::Up {
            weight: None,
            detail: format!("{what} exited with 0"),
        },
        Some(c @ 2..=255) if dynamic => Outcome::Up {
            weight: Some((c - 2) as u32),
            detail: format!("{what} exited with {c}: weight {}", c - 2),
        },
        Some(c) => Outcome::Down(format!("{what} exited with {c}")),
        None => Outcome::Down(format!("{what} was killed by a signal")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 2000 x"), None);
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(dechunk(b"5\r\nhello\r\n0\r\n\r\n"), Some(b"hello".to_vec()));
        assert_eq!(
            dechunk(b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            Some(b"abcde".to_vec())
        );
        assert_eq!(dechunk(b"5\r\nhel"), None);
    }

    #[test]
    fn misc_dynamic_mapping() {
        assert_eq!(
            exit_outcome("x", Some(0), true),
            Outcome::Up {
                weight: None,
                detail: "x exited with 0".into()
            }
        );
        assert!(!exit_outcome("x", Some(1), true).is_up());
        assert!(matches!(
            exit_outcome("x", Some(2), true),
            Outcome::Up {
                weight: Some(0),
                ..
            }
        ));
        assert!(matches!(
            exit_outcome("x", Some(255), true),
            Outcome::Up {
                weight: Some(253),
                ..
            }
        ));
        assert!(
            !exit_outcome("x", Some(7), false).is_up(),
            "only with dynamic"
        );
        assert!(!exit_outcome("x", None, true).is_up());
    }
}
