//! Shared helpers for the namespace tests: a veth pair between two fresh
//! network namespaces, removed on drop (also on panic).
#![allow(dead_code)]

use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// True when the test cannot run here (not root): a failure under CI (`CI=true`), a counted
/// skip elsewhere ([`lvs_testkit::skip`]).
pub fn skip() -> bool {
    !lvs_testkit::root_or_skip("the io namespace tests (AF_PACKET, netlink)")
}

/// Run `ip` with `args`; panic with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces `a`, `b` joined by veth `va` (in a, 10.250.N.1/24) and
/// `vb` (in b, 10.250.N.2/24).
pub struct NsPair {
    pub a: String,
    pub b: String,
    pub net: u8,
}

impl NsPair {
    pub fn new(tag: &str, net: u8) -> Self {
        let pid = std::process::id();
        let a = format!("lvsio-{pid}-{tag}-a");
        let b = format!("lvsio-{pid}-{tag}-b");
        // Remove leftovers of a crashed earlier run with the same pid.
        let _ = Command::new("ip").args(["netns", "del", &a]).output();
        let _ = Command::new("ip").args(["netns", "del", &b]).output();
        ip(&["netns", "add", &a]);
        let pair = NsPair {
            a: a.clone(),
            b: b.clone(),
            net,
        };
        ip(&["netns", "add", &b]);
        ip(&[
            "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
        ]);
        for (ns, dev, host) in [(&a, "va", 1), (&b, "vb", 2)] {
            for sysctl in ["all", "default", dev] {
                let _ = Command::new("ip")
                    .args(["netns", "exec", ns, "sh", "-c"])
                    .arg(format!(
                        "echo 1 > /proc/sys/net/ipv6/conf/{sysctl}/disable_ipv6"
                    ))
                    .output();
            }
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.250.{net}.{host}/24"),
                "dev",
                dev,
            ]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    pub fn ip_a(&self) -> String {
        format!("10.250.{}.1", self.net)
    }

    pub fn ip_b(&self) -> String {
        format!("10.250.{}.2", self.net)
    }
}

impl Drop for NsPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).output();
    }
}

/// Runs `f` on a new thread that first enters namespace `ns`.
pub fn in_ns<T, F>(ns: &str, f: F) -> thread::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_string();
    thread::spawn(move || {
        lvs_io::netns::enter(&ns).expect("enter netns");
        f()
    })
}

/// Receives from `rx` with a timeout, panicking with `what` on timeout.
pub fn recv<T>(rx: &mpsc::Receiver<T>, what: &str) -> T {
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Minimal IPv4/UDP/TCP parsing of an Ethernet frame for assertions.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub ethertype: u16,
    pub proto: u8,
    pub ip_total_len: usize,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

pub fn parse(frame: &[u8]) -> Option<Parsed> {
    if frame.len() < 14 {
        return None;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype != 0x0800 || frame.len() < 34 {
        return Some(Parsed {
            ethertype,
            proto: 0,
            ip_total_len: 0,
            src_port: 0,
            dst_port: 0,
            payload: vec![],
        });
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let proto = ip[9];
    let l4 = ip.get(ihl..total.min(ip.len()))?;
    let (sp, dp, off) = match proto {
        17 if l4.len() >= 8 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
            8,
        ),
        6 if l4.len() >= 20 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
            usize::from(l4[12] >> 4) * 4,
        ),
        _ => (0, 0, 0),
    };
    Some(Parsed {
        ethertype,
        proto,
        ip_total_len: total,
        src_port: sp,
        dst_port: dp,
        payload: l4.get(off..).unwrap_or(&[]).to_vec(),
    })
}
