//! The checkers against servers started here on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lvs_health::{Change, CheckConfig, CheckKind, Engine, Outcome, parse_check};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// An HTTP server answering every request with `status` and `body`.
async fn http_server(status: u16, body: &'static str, chunked: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = if chunked {
                    let (a, b) = body.split_at(body.len() / 2);
                    format!(
                        "HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = s.write_all(resp.as_bytes()).await;
                // Keep the connection open a while: the checker must not wait for EOF.
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    addr
}

/// Accepts connections and never answers.
async fn hung_server() -> (SocketAddr, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    (l.local_addr().unwrap(), l)
}

async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

fn check(json: serde_json::Value, rs: SocketAddr) -> lvs_health::Check {
    parse_check(json, rs).unwrap().1
}

async fn run(json: serde_json::Value, rs: SocketAddr) -> Outcome {
    check(json, rs).probe.run().await
}

#[tokio::test]
async fn tcp_up_refused_and_timeout() {
    let (addr, _keep) = hung_server().await;
    let o = run(serde_json::json!({"type": "tcp"}), addr).await;
    assert!(o.is_up(), "{o:?}");
    let closed = closed_port().await;
    let o = run(serde_json::json!({"type": "tcp"}), closed).await;
    assert!(o.text().contains("refused"), "{o:?}");
    // connect_ip/connect_port send the check elsewhere than the real server's address.
    let t = Instant::now();
    let o = run(
        serde_json::json!({"type": "tcp", "connect_timeout": 0.3, "connect_ip": "127.0.0.1", "connect_port": closed.port()}),
        "10.0.0.1:80".parse().unwrap(),
    )
    .await;
    assert!(!o.is_up());
    assert!(
        o.text().contains(&format!("127.0.0.1:{}", closed.port())),
        "{o:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn http_status_ranges() {
    let ok = http_server(200, "hello world", false).await;
    let bad = http_server(503, "busy", false).await;
    let o = run(serde_json::json!({"type": "http"}), ok).await;
    assert!(o.is_up(), "{o:?}");
    let o = run(serde_json::json!({"type": "http", "path": "/health"}), bad).await;
    assert_eq!(
        o,
        Outcome::Down("http GET /health returned 503 (expected 200-299)".into())
    );
    let o = run(
        serde_json::json!({"type": "http", "status_code": "500-503"}),
        bad,
    )
    .await;
    assert!(o.is_up(), "{o:?}");
    let o = run(serde_json::json!({"type": "http", "status_code": 201}), ok).await;
    assert!(o.text().contains("expected 201"), "{o:?}");
}

#[tokio::test]
async fn http_body_regex_and_md5_digest() {
    let ok = http_server(200, "status: ready", false).await;
    let chunked = http_server(200, "status: ready", true).await;
    for a in [ok, chunked] {
        let o = run(serde_json::json!({"type": "http", "regex": "ready$"}), a).await;
        assert!(o.is_up(), "{o:?}");
        let o = run(serde_json::json!({"type": "http", "regex": "^down"}), a).await;
        assert!(o.text().contains("does not match"), "{o:?}");
        // md5("status: ready")
        let digest = "0795c30b156d178af33f2cf216c192f3";
        let o = run(serde_json::json!({"type": "http", "digest": digest}), a).await;
        assert!(o.is_up(), "{o:?}");
        let o = run(
            serde_json::json!({"type": "http", "digest": "00000000000000000000000000000000"}),
            a,
        )
        .await;
        assert!(o.text().contains("MD5"), "{o:?}");
    }
}

#[tokio::test]
async fn http_hung_server_times_out() {
    let (addr, _keep) = hung_server().await;
    let t = Instant::now();
    let o = run(
        serde_json::json!({"type": "http", "connect_timeout": 0.3}),
        addr,
    )
    .await;
    assert_eq!(
        o,
        Outcome::Down(format!("http GET / to {addr} timed out after 0.3s"))
    );
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn https_against_a_plain_server_fails() {
    let ok = http_server(200, "x", false).await;
    let o = run(
        serde_json::json!({"type": "https", "connect_timeout": 1}),
        ok,
    )
    .await;
    assert!(!o.is_up(), "{o:?}");
    assert!(o.text().starts_with("https GET /"), "{o:?}");
}

#[tokio::test]
async fn http_host_header_is_sent() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let o = run(
        serde_json::json!({"type": "http", "virtualhost": "www.example.org", "method": "HEAD", "path": "/ping"}),
        addr,
    )
    .await;
    assert!(o.is_up(), "{o:?}");
    let req = seen.await.unwrap();
    assert!(req.starts_with("HEAD /ping HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nHost: www.example.org\r\n"), "{req}");
}

#[tokio::test]
async fn udp_echo_silence_and_refused() {
    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let eaddr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let o = run(
        serde_json::json!({"type": "udp", "payload": "ping", "expect": "^ping$"}),
        eaddr,
    )
    .await;
    assert!(o.is_up(), "{o:?}");
    let o = run(
        serde_json::json!({"type": "udp", "payload_hex": "70 6f", "expect": "^pong"}),
        eaddr,
    )
    .await;
    assert!(o.text().contains("does not match"), "{o:?}");

    // A socket that reads nothing: silent.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let saddr = silent.local_addr().unwrap();
    let o = run(
        serde_json::json!({"type": "udp", "connect_timeout": 0.2, "require_reply": true}),
        saddr,
    )
    .await;
    assert!(o.text().contains("no reply within 0.2s"), "{o:?}");
    let o = run(
        serde_json::json!({"type": "udp", "connect_timeout": 0.2}),
        saddr,
    )
    .await;
    assert!(o.is_up(), "silence passes without require_reply: {o:?}");

    // Nobody on the port: ICMP port unreachable.
    drop(silent);
    let o = run(
        serde_json::json!({"type": "udp", "connect_timeout": 1}),
        saddr,
    )
    .await;
    assert!(o.text().contains("refused"), "{o:?}");
}

#[tokio::test]
async fn exec_exit_codes_dynamic_weights_and_timeout() {
    let rs: SocketAddr = "10.0.1.11:80".parse().unwrap();
    let o = run(serde_json::json!({"type": "exec", "command": "exit 0"}), rs).await;
    assert!(o.is_up(), "{o:?}");
    let o = run(serde_json::json!({"type": "exec", "command": "exit 1"}), rs).await;
    assert_eq!(o, Outcome::Down("exec 'exit 1' exited with 1".into()));
    let o = run(serde_json::json!({"type": "exec", "command": "exit 7"}), rs).await;
    assert!(!o.is_up(), "exit 7 fails without misc_dynamic");
    let o = run(
        serde_json::json!({"type": "exec", "command": "exit 7", "misc_dynamic": true}),
        rs,
    )
    .await;
    assert!(
        matches!(
            o,
            Outcome::Up {
                weight: Some(5),
                ..
            }
        ),
        "{o:?}"
    );
    let o = run(
        serde_json::json!({"type": "exec", "command": "test \"$LVS_RIP:$LVS_RPORT\" = 10.0.1.11:80"}),
        rs,
    )
    .await;
    assert!(o.is_up(), "environment: {o:?}");
    let t = Instant::now();
    let o = run(
        serde_json::json!({"type": "exec", "command": "sleep 5", "timeout": 0.3}),
        rs,
    )
    .await;
    assert!(o.text().contains("timed out after 0.3s"), "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// The engine in real (short) time: a server that stops answering goes down after
/// `retry` retries; a hung one does not stall the others; it comes back at the first pass.
#[test]
fn engine_marks_down_and_up_in_bounded_time() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (etx, erx) = std::sync::mpsc::channel();
    let engine = Engine::start(etx).unwrap();
    let (good, stop_good) = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (a, l)
    });
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // never accepts
    let hung_addr = hung.local_addr().unwrap();
    let hung_http = {
        let mut c = CheckConfig::new(CheckKind::Http);
        c.delay_loop = 0.2;
        c.connect_timeout = 0.3;
        c.retry = Some(0);
        c.warmup = Some(0.0);
        c.compile(hung_addr).unwrap()
    };
    let mut tcp = CheckConfig::new(CheckKind::Tcp);
    tcp.delay_loop = 0.1;
    tcp.connect_timeout = 0.3;
    tcp.retry = Some(2);
    tcp.delay_before_retry = 0.05;
    tcp.warmup = Some(0.05);
    engine.set(1, tcp.compile(good).unwrap());
    engine.set(2, hung_http);
    std::thread::sleep(Duration::from_millis(400));
    assert!(engine.status(&1).unwrap().up);
    assert!(engine.status(&1).unwrap().checks >= 2);
    // The hung server went down (http timed out) while the tcp check kept running.
    let e = erx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!((e.key, e.change.clone()), (2, Change::Down), "{e:?}");
    assert!(e.reason.contains("timed out"), "{e:?}");
    // Stop the good server: down after 1 + 2 retries.
    drop(stop_good);
    let t = Instant::now();
    let e = loop {
        let e = erx.recv_timeout(Duration::from_secs(2)).unwrap();
        if e.key == 1 {
            break e;
        }
    };
    assert_eq!(e.change, Change::Down);
    assert!(e.reason.contains("refused"), "{e:?}");
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    let st = engine.status(&1).unwrap();
    assert!(!st.up);
    assert_eq!(st.last_ok, Some(false));
    // Listen again on the same port: up at the next check.
    let again = std::net::TcpListener::bind(good).unwrap();
    let e = loop {
        let e = erx.recv_timeout(Duration::from_secs(2)).unwrap();
        if e.key == 1 {
            break e;
        }
    };
    assert_eq!(e.change, Change::Up { weight: None });
    drop(again);
    engine.remove(&2);
    std::thread::sleep(Duration::from_millis(50));
    assert!(engine.status(&2).is_none());
    drop(hung);
}

#[test]
fn notify_commands_run() {
    let dir = std::env::temp_dir().join(format!("lvs-health-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (etx, erx) = std::sync::mpsc::channel();
    let engine = Engine::start(etx).unwrap();
    let mut c = CheckConfig::new(CheckKind::Exec);
    c.command = Some("exit 1".into());
    c.delay_loop = 0.1;
    c.warmup = Some(0.0);
    c.notify_down = Some(format!(
        "echo \"$LVS_STATE $LVS_REASON\" > {}/down",
        dir.display()
    ));
    engine.set("rs", c.compile("10.0.0.1:80".parse().unwrap()).unwrap());
    let e = erx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(e.change, Change::Down);
    let file = dir.join("down");
    let t = Instant::now();
    while !file.exists() && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.trim(), "DOWN exec 'exit 1' exited with 1");
    let _ = std::fs::remove_dir_all(&dir);
}
