//! The `lvsadm` binary against a stand-in lvsd on a real Unix socket: the wire format of
//! `lvs-api`, `--socket`, and the exit codes as a shell sees them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::JoinHandle;

use lvs_api::{Reply, Request};

/// Serve `replies` in order, one per request line, on a fresh socket; return the requests.
fn serve(dir: &Path, replies: Vec<Reply>) -> (PathBuf, JoinHandle<Vec<Request>>) {
    let path = dir.join("lvsd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut seen = Vec::new();
        for reply in replies {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            seen.push(lvs_api::parse_request(&line).unwrap());
            let mut answer = serde_json::to_string(&reply).unwrap();
            answer.push('\n');
            writer.write_all(answer.as_bytes()).unwrap();
        }
        seen
    });
    (path, handle)
}

fn lvsadm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvsadm"))
        .args(args)
        .env_remove("LVSD_SOCKET")
        .output()
        .unwrap()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lvsadm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn add_then_refusal_over_the_socket() {
    let dir = tempdir("add");
    let (sock, h) = serve(&dir, vec![Reply::Ok]);
    let out = lvsadm(&[
        "-A",
        "-t",
        "10.0.0.1:80",
        "-s",
        "rr",
        "--socket",
        sock.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let seen = h.join().unwrap();
    assert!(
        matches!(&seen[..], [Request::AddService { .. }]),
        "{seen:?}"
    );
    std::fs::remove_file(&sock).unwrap();

    let (sock, h) = serve(
        &dir,
        vec![Reply::Error {
            message: "Service already exists".into(),
        }],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lvsadm"))
        .args(["-A", "-t", "10.0.0.1:80"])
        .env("LVSD_SOCKET", &sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Service already exists\n"
    );
    h.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn list_over_the_socket() {
    let dir = tempdir("list");
    let (sock, h) = serve(
        &dir,
        vec![Reply::Services {
            table_size: 1024,
            services: vec![],
        }],
    );
    let out = lvsadm(&["-Ln", "--socket", sock.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "IP Virtual Server version 1.2.1 (size=1024)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    );
    assert_eq!(h.join().unwrap(), vec![Request::List]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exit_codes_as_the_shell_sees_them() {
    let dir = tempdir("codes");
    let missing = dir.join("none.sock");
    let out = lvsadm(&["-C", "--socket", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is lvsd running?"));
    assert_eq!(
        lvsadm(&["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.2", "-w", "70000"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(lvsadm(&["--frobnicate"]).status.code(), Some(255));
    assert_eq!(lvsadm(&["-h"]).status.code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}
