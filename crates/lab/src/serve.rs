//! The lab's built-in real-server workload: a small threaded HTTP/1.1 server and a UDP echo.
//!
//! HTTP: `GET /` answers `<name> saw <client-ip>:<client-port>\n`; `GET /blob?size=N` streams N
//! bytes of [`crate::blob::BlobGen`]; `HEAD` is supported; keep-alive by default in HTTP/1.1,
//! `Connection: close` honoured. UDP: each datagram is answered with
//! `<name> saw <ip>:<port> <payload>`, sent from the address it was received on (one socket per
//! local IPv4 address, rescanned every second, so a VIP added later on `lo` answers from the VIP).

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::blob::BlobGen;

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body that is read and discarded.
pub const MAX_BODY: u64 = 1024 * 1024;
/// Idle time after which a keep-alive connection is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Name put in every answer (e.g. `rs1`).
    pub name: String,
    /// TCP port of the HTTP server (0 = no HTTP server).
    pub http_port: u16,
    /// UDP port of the echo server (0 = no UDP server).
    pub udp_port: u16,
    /// Address to bind; `None` binds all addresses.
    pub bind: Option<IpAddr>,
    /// Maximum number of concurrent HTTP connections; more are answered 503 and closed.
    pub max_conns: usize,
}

/// Binds the sockets and starts the server threads; returns once everything listens.
pub fn start(cfg: ServeConfig) -> io::Result<()> {
    let cfg = Arc::new(cfg);
    if cfg.http_port != 0 {
        let addr = SocketAddr::new(
            cfg.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            cfg.http_port,
        );
        let listener = TcpListener::bind(addr)?;
        let cfg = Arc::clone(&cfg);
        thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept_loop(listener, &cfg))?;
    }
    if cfg.udp_port != 0 {
        let first = bind_udp(
            cfg.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            cfg.udp_port,
        )?;
        spawn_udp(first, Arc::clone(&cfg))?;
        if cfg.bind.is_none() {
            let cfg = Arc::clone(&cfg);
            thread::Builder::new()
                .name("udp-scan".into())
                .spawn(move || udp_rescan(&cfg))?;
        }
    }
    Ok(())
}

fn accept_loop(listener: TcpListener, cfg: &Arc<ServeConfig>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= cfg.max_conns {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            continue;
        }
        let cfg = Arc::clone(cfg);
        let active2 = Arc::clone(&active);
        let spawned = thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _ = handle_conn(stream, &cfg.name);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads one line of at most `limit` bytes; `Ok(None)` at EOF before any byte.
fn read_line(r: &mut impl BufRead, limit: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.take(limit as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > limit || !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request line too long or truncated",
        ));
    }
    Ok(Some(String::from_utf8_lossy(&line).trim_end().to_string()))
}

struct Request {
    method: String,
    target: String,
    keep_alive: bool,
    content_length: u64,
}

/// Parses a request head; `Ok(None)` on clean EOF, `Err` on malformed input.
fn read_request(r: &mut impl BufRead) -> io::Result<Option<Request>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut budget = MAX_HEAD;
    let Some(line) = read_line(r, budget)? else {
        return Ok(None);
    };
    budget = budget.saturating_sub(line.len() + 2);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(bad("unsupported HTTP version")),
    };
    let mut keep_alive = http11;
    let mut content_length = 0u64;
    loop {
        let Some(h) = read_line(r, budget)? else {
            return Err(bad("EOF in headers"));
        };
        budget = budget.saturating_sub(h.len() + 2);
        if budget == 0 {
            return Err(bad("request head too large"));
        }
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').ok_or_else(|| bad("malformed header"))?;
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "connection" => {
                let v = v.to_ascii_lowercase();
                if v.split(',').any(|t| t.trim() == "close") {
                    keep_alive = false;
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    keep_alive = true;
                }
            }
            "content-length" => {
                content_length = v.parse().map_err(|_| bad("bad Content-Length"))?
            }
            "transfer-encoding" => {
                return Err(bad(
                    "request bodies with Transfer-Encoding are not supported",
                ));
            }
            _ => {}
        }
    }
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        keep_alive,
        content_length,
    }))
}

fn respond_simple(
    w: &mut impl Write,
    status: &str,
    body: &str,
    keep: bool,
    head: bool,
) -> io::Result<()> {
    let conn = if keep { "keep-alive" } else { "close" };
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
        body.len()
    )?;
    if !head {
        w.write_all(body.as_bytes())?;
    }
    w.flush()
}

fn blob_size(target: &str) -> Option<Option<u64>> {
    let query = target.strip_prefix("/blob")?;
    if query.is_empty() {
        return Some(None);
    }
    let query = query.strip_prefix('?')?;
    Some(
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("size="))
            .and_then(|n| n.parse().ok()),
    )
}

fn handle_conn(stream: TcpStream, name: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut w = io::BufWriter::new(stream);
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return respond_simple(&mut w, "400 Bad Request", &format!("{e}\n"), false, false);
            }
            Err(e) => return Err(e),
        };
        if req.content_length > MAX_BODY {
            return respond_simple(
                &mut w,
                "413 Content Too Large",
                "body too large\n",
                false,
                false,
            );
        }
        io::copy(&mut (&mut reader).take(req.content_length), &mut io::sink())?;
        let head = req.method == "HEAD";
        let keep = req.keep_alive;
        if req.method != "GET" && !head {
            respond_simple(
                &mut w,
                "405 Method Not Allowed",
                "only GET and HEAD\n",
                keep,
                false,
            )?;
        } else if req.target == "/" {
            let body = format!("{name} saw {}:{}\n", peer.ip(), peer.port());
            respond_simple(&mut w, "200 OK", &body, keep, head)?;
        } else if let Some(size) = blob_size(&req.target) {
            let Some(size) = size else {
                respond_simple(&mut w, "400 Bad Request", "use /blob?size=N\n", keep, head)?;
                if !keep {
                    return Ok(());
                }
                continue;
            };
            let conn = if keep { "keep-alive" } else { "close" };
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: {conn}\r\n\r\n"
            )?;
            if !head {
                let mut gen_ = BlobGen::default();
                let mut buf = vec![0u8; 64 * 1024];
                let mut left = size;
                while left > 0 {
                    let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                    gen_.fill(&mut buf[..n]);
                    w.write_all(&buf[..n])?;
                    left -= n as u64;
                }
            }
            w.flush()?;
        } else {
            respond_simple(
                &mut w,
                "404 Not Found",
                "try / or /blob?size=N\n",
                keep,
                head,
            )?;
        }
        if !keep {
            return Ok(());
        }
    }
}

fn bind_udp(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddr::new(ip, port);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn spawn_udp(sock: UdpSocket, cfg: Arc<ServeConfig>) -> io::Result<()> {
    thread::Builder::new()
        .name("udp-echo".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let mut reply =
                    format!("{} saw {}:{} ", cfg.name, from.ip(), from.port()).into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = sock.send_to(&reply, from);
            }
        })?;
    Ok(())
}

/// Local IPv4 addresses of this namespace (via `ip -o -4 addr show`).
pub fn local_ipv4_addrs() -> Vec<Ipv4Addr> {
    let Ok(out) = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.find(|t| *t == "inet")?;
            it.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

fn udp_rescan(cfg: &Arc<ServeConfig>) {
    let mut bound: HashSet<Ipv4Addr> = HashSet::new();
    loop {
        for a in local_ipv4_addrs() {
            if a.is_loopback() || bound.contains(&a) {
                continue;
            }
            if let Ok(s) = bind_udp(IpAddr::V4(a), cfg.udp_port)
                && spawn_udp(s, Arc::clone(cfg)).is_ok()
            {
                bound.insert(a);
            }
        }
        thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> io::Result<Option<Request>> {
        read_request(&mut io::Cursor::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn requests() {
        let r = parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert!(r.keep_alive && r.method == "GET" && r.target == "/");
        let r = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
        let r = parse("HEAD /blob?size=3 HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
        assert!(parse("").unwrap().is_none());
        for bad in [
            "GET /\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET / HTTP/1.1\r\nnocolon\r\n\r\n",
            "GET / HTTP/1.1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn blob_targets() {
        assert_eq!(blob_size("/blob?size=10"), Some(Some(10)));
        assert_eq!(blob_size("/blob?x=1&size=7"), Some(Some(7)));
        assert_eq!(blob_size("/blob?size=-1"), Some(None));
        assert_eq!(blob_size("/blob"), Some(None));
        assert_eq!(blob_size("/blobby"), None);
        assert_eq!(blob_size("/"), None);
    }
}
