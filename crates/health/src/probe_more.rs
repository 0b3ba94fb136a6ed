//! keepalived's `SMTP_CHECK`, `DNS_CHECK` and `PING_CHECK`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::probe::Outcome;

fn fmt_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// keepalived's `SMTP_CHECK`: connect, read the `220` greeting, say `HELO helo_name`, expect
/// `250`, say `QUIT`; all within `connect_timeout`.
#[derive(Debug, Clone)]
pub struct SmtpProbe {
    /// Where (port 25 unless `connect_port`).
    pub target: SocketAddr,
    /// `connect_timeout`, for the whole exchange.
    pub timeout: Duration,
    /// The name said in `HELO`.
    pub helo: String,
}

/// The default `helo_name`, keepalived's.
pub const SMTP_DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// Reads one SMTP reply (all its `NNN-` lines up to the `NNN ` one), at most 4096 bytes in
/// all whatever the server sends; returns the code.
async fn smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<u16, String> {
    use tokio::io::AsyncReadExt;
    let mut total = 0usize;
    loop {
        let mut raw = Vec::new();
        let left = 4096u64.saturating_sub(total as u64) + 1;
        let n = r
            .take(left)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        total += n;
        if total > 4096 {
            return Err("reply longer than 4096 bytes".into());
        }
        let line = String::from_utf8_lossy(&raw);
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: {:?}", line.trim_end()))?;
        match line.as_bytes().get(3) {
            Some(b'-') => continue,
            _ => return Ok(code),
        }
    }
}

impl SmtpProbe {
    /// Run once.
    pub async fn run(&self) -> Outcome {
        let what = format!("smtp {}", self.target);
        match timeout(self.timeout, self.exchange()).await {
            Ok(Ok(())) => Outcome::Up {
                weight: None,
                detail: format!("{what}: 220 greeting, HELO answered 250"),
            },
            Ok(Err(e)) => Outcome::Down(format!("{what}: {e}")),
            Err(_) => Outcome::Down(format!(
                "{what}: no complete exchange within {}",
                fmt_secs(self.timeout)
            )),
        }
    }

    async fn exchange(&self) -> Result<(), String> {
        let s = TcpStream::connect(self.target)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        match smtp_reply(&mut r).await? {
            220 => {}
            c => return Err(format!("greeting {c}, expected 220")),
        }
        w.write_all(format!("HELO {}\r\n", self.helo).as_bytes())
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        match smtp_reply(&mut r).await? {
            250 => {}
            c => return Err(format!("HELO answered {c}, expected 250")),
        }
        // A polite end; its answer does not matter.
        let _ = w.write_all(b"QUIT\r\n").await;
        Ok(())
    }
}

/// keepalived's `DNS_CHECK`: one query over UDP (recursion desired, class IN) for
/// `query_name` of `query_type`; a reply with the query's id, the response bit and RCODE
/// NOERROR passes (the answer section is not looked at, as in keepalived).
#[derive(Debug, Clone)]
pub struct DnsProbe {
    /// Where (port 53 unless `connect_port`).
    pub target: SocketAddr,
    /// `connect_timeout`.
    pub timeout: Duration,
    /// The query, built once (its id is rewritten per run).
    pub query: Vec<u8>,
    /// For messages: `SOA .`.
    pub question: String,
}

/// The query types keepalived's `DNS_CHECK` accepts, with their numbers.
pub const DNS_TYPES: [(&str, simple_dns::TYPE); 9] = [
    ("A", simple_dns::TYPE::A),
    ("NS", simple_dns::TYPE::NS),
    ("CNAME", simple_dns::TYPE::CNAME),
    ("SOA", simple_dns::TYPE::SOA),
    ("MX", simple_dns::TYPE::MX),
    ("TXT", simple_dns::TYPE::TXT),
    ("AAAA", simple_dns::TYPE::AAAA),
    ("RRSIG", simple_dns::TYPE::RRSIG),
    ("DNSKEY", simple_dns::TYPE::DNSKEY),
];

/// The wire form of a query for `name` (`.` is the root) of type `qtype` (one of
/// [`DNS_TYPES`], case-insensitive).
pub fn dns_query(name: &str, qtype: &str) -> Result<Vec<u8>, String> {
    let t = DNS_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(qtype))
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = DNS_TYPES.iter().map(|(n, _)| *n).collect();
            format!("query_type '{qtype}' is not one of {}", names.join(", "))
        })?;
    let labels = if name == "." {
        ""
    } else {
        name.trim_end_matches('.')
    };
    if labels.split('.').any(str::is_empty) && !labels.is_empty() {
        return Err(format!("query_name '{name}' has an empty label"));
    }
    let qname = simple_dns::Name::new(labels).map_err(|e| format!("query_name '{name}': {e}"))?;
    let mut p = simple_dns::Packet::new_query(0);
    p.set_flags(simple_dns::PacketFlag::RECURSION_DESIRED);
    p.questions.push(simple_dns::Question::new(
        qname,
        t.into(),
        simple_dns::CLASS::IN.into(),
        false,
    ));
    p.build_bytes_vec().map_err(|e| format!("query: {e}"))
}

impl DnsProbe {
    /// Run once.
    pub async fn run(&self) -> Outcome {
        let what = format!("dns {} {}", self.target, self.question);
        match timeout(self.timeout, self.exchange()).await {
            Ok(Ok(())) => Outcome::Up {
                weight: None,
                detail: format!("{what}: NOERROR"),
            },
            Ok(Err(e)) => Outcome::Down(format!("{what}: {e}")),
            Err(_) => Outcome::Down(format!(
                "{what}: no reply within {}",
                fmt_secs(self.timeout)
            )),
        }
    }

    async fn exchange(&self) -> Result<(), String> {
        let bind: SocketAddr = if self.target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("cannot open a socket: {e}"))?;
        sock.connect(self.target).await.map_err(|e| e.to_string())?;
        let id = fresh_id();
        let mut q = self.query.clone();
        q[..2].copy_from_slice(&id.to_be_bytes());
        sock.send(&q)
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
            // Too short, another id, or not a response: keep waiting (as keepalived does).
            if n < 12 || buf[..2] != id.to_be_bytes() || buf[2] & 0x80 == 0 {
                continue;
            }
            return match buf[3] & 0x0f {
                0 => Ok(()),
                rcode => Err(format!("answered RCODE {rcode}")),
            };
        }
    }
}

/// A query id that differs from run to run (not a secret: the reply must only match it).
fn fresh_id() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (t ^ (t >> 16)) as u16
}

/// keepalived's `PING_CHECK`: one ICMP (or ICMPv6) echo request, answered within
/// `connect_timeout`. The socket is an unprivileged ICMP one where the kernel allows it
/// (`net.ipv4.ping_group_range`), else a raw one (CAP_NET_RAW, which lvsd has).
#[derive(Debug, Clone)]
pub struct PingProbe {
    /// Whom (`connect_ip`, else the real server).
    pub target: IpAddr,
    /// `connect_timeout`.
    pub timeout: Duration,
}

impl PingProbe {
    /// Run once.
    pub async fn run(&self) -> Outcome {
        let what = format!("ping {}", self.target);
        let config = match self.target {
            IpAddr::V4(_) => surge_ping::Config::default(),
            IpAddr::V6(_) => surge_ping::Config::builder()
                .kind(surge_ping::ICMP::V6)
                .build(),
        };
        let client = match surge_ping::Client::new(&config) {
            Ok(c) => c,
            Err(e) => return Outcome::Down(format!("{what}: cannot open an ICMP socket: {e}")),
        };
        let mut pinger = client
            .pinger(self.target, surge_ping::PingIdentifier(fresh_id()))
            .await;
        pinger.timeout(self.timeout);
        match pinger
            .ping(surge_ping::PingSequence(0), b"lvsd health check")
            .await
        {
            Ok((_, rtt)) => Outcome::Up {
                weight: None,
                detail: format!("{what}: echo reply in {:.1} ms", rtt.as_secs_f64() * 1e3),
            },
            Err(surge_ping::SurgeError::Timeout { .. }) => Outcome::Down(format!(
                "{what}: no echo reply within {}",
                fmt_secs(self.timeout)
            )),
            Err(e) => Outcome::Down(format!("{what}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A one-connection SMTP server that greets with `greet` and answers HELO with `helo`.
    async fn smtp_server(greet: &'static str, helo: &'static str) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(greet.as_bytes()).await.unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HELO smtpchecker.keepalived.org\r\n"));
            s.write_all(helo.as_bytes()).await.unwrap();
            let _ = s.read(&mut buf).await;
        });
        addr
    }

    fn smtp(target: SocketAddr) -> SmtpProbe {
        SmtpProbe {
            target,
            timeout: Duration::from_secs(2),
            helo: SMTP_DEFAULT_HELO.into(),
        }
    }

    #[test]
    fn smtp_passes_on_220_and_250_and_fails_otherwise() {
        rt().block_on(async {
            let a = smtp_server("220-mx.example ESMTP\r\n220 ready\r\n", "250 hello\r\n").await;
            let o = smtp(a).run().await;
            assert!(o.is_up(), "{o:?}");
            let a = smtp_server("554 go away\r\n", "250 hello\r\n").await;
            let o = smtp(a).run().await;
            assert!(o.text().contains("greeting 554"), "{o:?}");
            let a = smtp_server("220 ready\r\n", "501 bad\r\n").await;
            let o = smtp(a).run().await;
            assert!(o.text().contains("HELO answered 501"), "{o:?}");
            // Nobody listening.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let closed = l.local_addr().unwrap();
            drop(l);
            assert!(!smtp(closed).run().await.is_up());
        });
    }

    /// A one-query DNS server answering with `rcode` (and, first, a reply of another id).
    async fn dns_server(rcode: u8) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = s.recv_from(&mut buf).await.unwrap();
            let q = simple_dns::Packet::parse(&buf[..n]).unwrap();
            assert!(q.has_flags(simple_dns::PacketFlag::RECURSION_DESIRED));
            assert_eq!(q.questions.len(), 1);
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80;
            reply[3] = (reply[3] & 0xf0) | rcode;
            let mut wrong = reply.clone();
            wrong[0] ^= 0xff;
            s.send_to(&wrong, peer).await.unwrap();
            s.send_to(&reply, peer).await.unwrap();
        });
        addr
    }

    #[test]
    fn dns_passes_on_noerror_with_the_right_id() {
        rt().block_on(async {
            let probe = |target| DnsProbe {
                target,
                timeout: Duration::from_secs(2),
                query: dns_query(".", "soa").unwrap(),
                question: "SOA .".into(),
            };
            let o = probe(dns_server(0).await).run().await;
            assert!(o.is_up(), "{o:?}");
            let o = probe(dns_server(3).await).run().await;
            assert!(o.text().contains("RCODE 3"), "{o:?}");
            // Nobody answering: refused (ICMP) or silence, a failure either way.
            let l = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let quiet = l.local_addr().unwrap();
            let o = DnsProbe {
                timeout: Duration::from_millis(300),
                ..probe(quiet)
            }
            .run()
            .await;
            assert!(!o.is_up(), "{o:?}");
        });
        let q = dns_query("www.example.org", "A").unwrap();
        let p = simple_dns::Packet::parse(&q).unwrap();
        assert_eq!(p.questions[0].qname.to_string(), "www.example.org");
        assert!(dns_query("a..b", "A").is_err());
        assert!(dns_query("x", "BOGUS").unwrap_err().contains("SOA"));
    }

    #[test]
    fn ping_answers_on_loopback() {
        if !can_ping() {
            lvs_testkit::skip(
                "ping_answers_on_loopback",
                "no ICMP socket here (needs CAP_NET_RAW or net.ipv4.ping_group_range)",
            );
            return;
        }
        rt().block_on(async {
            let o = PingProbe {
                target: "127.0.0.1".parse().unwrap(),
                timeout: Duration::from_secs(2),
            }
            .run()
            .await;
            assert!(o.is_up(), "{o:?}");
            assert!(o.text().contains("echo reply"), "{o:?}");
        });
    }

    fn can_ping() -> bool {
        let r = rt();
        r.block_on(async { surge_ping::Client::new(&surge_ping::Config::default()).is_ok() })
    }
}
