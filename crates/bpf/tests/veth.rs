//! The tc program on real veths, with real sockets: client ns → director ns (the program at
//! tc ingress of both its veths) → server ns, and back. The connection entries come from the
//! core (a `Director` scheduling the first datagram, as lvsd's slow path does); after that
//! the kernel alone forwards. Checks what only a real data path shows: frames from a local
//! stack (partial checksums) arrive intact, the first packet to a neighbour nobody resolved
//! yet is not lost (`bpf_redirect_neigh` queues it), the reply is rewritten back to the VIP,
//! the entry's state and the per-CPU counters move, lvsd's AF_PACKET tap (with the socket
//! filter) gets no copy of what the kernel forwarded but does get the unknown flow's frame,
//! and detaching leaves no qdisc behind.
//!
//! Needs root (namespaces, BPF). Fails under CI (`CI=true`) without it, else reports a skip.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use lvs_bpf::maps::{Counter, Flow};
use lvs_bpf::{Datapath, Options, compile};
use lvs_core::director::{RxMeta, Settings, Verdict};
use lvs_core::net::{Interface, Route};
use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::types::{ForwardMethod, Protocol, ServiceKey};
use lvs_core::{Director, Time};
use lvs_wire::ethernet::EthernetAddress;

mod common;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 9, 9);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
const FRONT: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
const BACK: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Three namespaces joined by two veth pairs; removed on drop (also on panic).
struct Lab {
    client: String,
    director: String,
    server: String,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            client: format!("lvsbpf-{pid}-c"),
            director: format!("lvsbpf-{pid}-d"),
            server: format!("lvsbpf-{pid}-s"),
        };
        for ns in [&lab.client, &lab.director, &lab.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
        }
        let (c, d, s) = (&lab.client, &lab.director, &lab.server);
        ip(&[
            "-n", c, "link", "add", "eth0", "type", "veth", "peer", "front", "netns", d,
        ]);
        ip(&[
            "-n", s, "link", "add", "eth0", "type", "veth", "peer", "back", "netns", d,
        ]);
        ip(&["-n", c, "addr", "add", "10.77.1.2/24", "dev", "eth0"]);
        ip(&["-n", d, "addr", "add", "10.77.1.1/24", "dev", "front"]);
        ip(&["-n", d, "addr", "add", "10.77.9.9/32", "dev", "front"]);
        ip(&["-n", d, "addr", "add", "10.77.2.1/24", "dev", "back"]);
        ip(&["-n", s, "addr", "add", "10.77.2.2/24", "dev", "eth0"]);
        for (ns, dev) in [(c, "eth0"), (d, "front"), (d, "back"), (s, "eth0")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", c, "route", "add", "default", "via", "10.77.1.1"]);
        ip(&["-n", s, "route", "add", "default", "via", "10.77.2.1"]);
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.client, &self.director, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn ifindex(ns: &str, dev: &str) -> u32 {
    let out = ip_out(&["-n", ns, "-o", "link", "show", dev]);
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {dev} in {ns}: {out}"))
}

fn mac(ns: &str, dev: &str) -> EthernetAddress {
    let out = ip_out(&["-n", ns, "-o", "link", "show", dev]);
    let m = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC for {dev}: {out}"));
    let b: Vec<u8> = m
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    EthernetAddress([b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// Run `f` on a thread inside network namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    thread::spawn(move || {
        lvs_io::netns::enter(&ns).expect("enter netns");
        f()
    })
    .join()
    .expect("namespace thread")
}

#[test]
fn nat_udp_through_the_kernel_on_veth() {
    if !common::root_or_skip("the veth tests") {
        return;
    }
    let lab = Lab::new();
    let (front, back) = (
        ifindex(&lab.director, "front"),
        ifindex(&lab.director, "back"),
    );

    // The core, wired like the director namespace, schedules the flow.
    let mut d = Director::new(Settings::default(), Time::ZERO);
    d.net.set_interface(Interface {
        ifindex: front,
        name: "front".into(),
        mac: mac(&lab.director, "front"),
        mtu: 1500,
        addrs: vec![IpAddr::V4(FRONT), IpAddr::V4(VIP)],
    });
    d.net.set_interface(Interface {
        ifindex: back,
        name: "back".into(),
        mac: mac(&lab.director, "back"),
        mtu: 1500,
        addrs: vec![IpAddr::V4(BACK)],
    });
    for (prefix, ifindex, src) in [
        (Ipv4Addr::new(10, 77, 1, 0), front, FRONT),
        (Ipv4Addr::new(10, 77, 2, 0), back, BACK),
    ] {
        d.net.add_route(Route {
            prefix: IpAddr::V4(prefix),
            len: 24,
            ifindex,
            gateway: None,
            src: Some(IpAddr::V4(src)),
        });
    }
    let key = ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: IpAddr::V4(VIP),
        port: 53,
    };
    d.add_service(ServiceConfig::new(key)).unwrap();
    d.add_dest(
        &key,
        DestConfig::new(IpAddr::V4(SERVER), 5353, ForwardMethod::Masq),
    )
    .unwrap();
    // The first datagram as the slow path sees it: the core makes the connection (and holds
    // the frame for want of a neighbour: the kernel program will not have that problem).
    let first = lvs_core::sim::PacketSpec::udp((CLIENT, 5000), (VIP, 53), b"hello")
        .macs([2, 0, 0, 0, 0, 1], mac(&lab.director, "front").0);
    let (mut buf, len) = first.frame();
    let meta = RxMeta {
        ifindex: front,
        ..RxMeta::default()
    };
    let v = d.process(
        Time::from_secs(1),
        &meta,
        &mut buf,
        lvs_core::sim::HEADROOM,
        len,
    );
    assert!(matches!(v, Verdict::Held), "{v:?}");
    assert_eq!(d.conns().len(), 1);

    // The kernel side, in the director namespace.
    let dir_ns = lab.director.clone();
    let routes = compile::routes(&d.net);
    let entries: Vec<_> = d
        .conns()
        .iter()
        .flat_map(|(_, c)| compile::conn_entries(c, 0, 0).unwrap_or_default())
        .collect();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let director = thread::spawn(move || {
        lvs_io::netns::enter(&dir_ns).expect("enter director netns");
        let mut dp = Datapath::load(&Options {
            conn_entries: 1024,
            stats_slots: 4,
            sched_slots: 16,
            test_mode: false,
            adopt_from: &[],
        })
        .unwrap_or_else(|e| panic!("{e}"));
        dp.set_routes(&routes).unwrap();
        for (f, e) in &entries {
            dp.insert(f, e).unwrap();
        }
        let a = dp.attach_tc(front).unwrap_or_else(|e| panic!("{e}"));
        let b = dp.attach_tc(back).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.created_qdisc && b.created_qdisc);
        // lvsd's tap on the front interface, filtered as in `--datapath tc`.
        let mut tap = lvs_io::AfPacket::open(front, &lvs_io::AfPacketConfig::default())
            .expect("AF_PACKET socket");
        dp.with_program_fd(lvs_bpf::Prog::SockFilter, |fd| tap.attach_bpf_filter(fd))
            .unwrap()
            .expect("attach the socket filter");
        ready_tx.send(()).unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(20));
        // Which client ports' datagrams to the VIP the tap saw.
        let mut tapped = Vec::new();
        while let Ok(n) = tap.rx_batch_tx(Duration::from_millis(50), |f, _| {
            let b = f.frame();
            if b.len() >= 14 + 28
                && b[12..14] == [8, 0]
                && b[14 + 9] == 17
                && b[30..34] == VIP.octets()
            {
                tapped.push(u16::from_be_bytes([b[34], b[35]]));
            }
        }) {
            if n == 0 {
                break;
            }
        }
        let counts: Vec<(Counter, u64)> = Counter::ALL
            .iter()
            .map(|c| (*c, dp.counter(*c).unwrap()))
            .collect();
        let stats = dp.stats(0).unwrap();
        let entry = dp
            .entry(&Flow::new(Protocol::Udp, CLIENT, 5000, VIP, 53))
            .unwrap();
        a.detach().unwrap();
        b.detach().unwrap();
        (counts, stats, entry, tapped)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director ready");

    // An echo server on the real server.
    let srv_ns = lab.server.clone();
    let server = thread::spawn(move || {
        lvs_io::netns::enter(&srv_ns).expect("enter server netns");
        let s = UdpSocket::bind("0.0.0.0:5353").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut seen = Vec::new();
        let mut b = [0u8; 2048];
        for _ in 0..3 {
            let Ok((n, from)) = s.recv_from(&mut b) else {
                break;
            };
            seen.push(from);
            s.send_to(&b[..n], from).unwrap();
        }
        seen
    });
    thread::sleep(Duration::from_millis(200));

    // The client: three datagrams, three echoes from the VIP. No neighbour was resolved
    // anywhere beforehand: the first datagram must not be lost on the way.
    let replies = in_ns(&lab.client, || {
        let s = UdpSocket::bind("10.77.1.2:5000").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 2048];
        for i in 0..3u8 {
            let msg = [b'x', i];
            s.send_to(&msg, SocketAddr::from((VIP, 53))).unwrap();
            match s.recv_from(&mut b) {
                Ok((n, from)) => got.push((b[..n].to_vec(), from)),
                Err(e) => panic!("datagram {i}: no echo ({e})"),
            }
        }
        // A flow the kernel knows nothing about: left to user space (and the tap).
        let other = UdpSocket::bind("10.77.1.2:5001").unwrap();
        other.send_to(b"new", SocketAddr::from((VIP, 53))).unwrap();
        thread::sleep(Duration::from_millis(200));
        got
    });
    done_tx.send(()).unwrap();
    let seen = server.join().unwrap();
    let (counts, stats, entry, tapped) = director.join().unwrap();
    let count = |c: Counter| counts.iter().find(|(k, _)| *k == c).map_or(0, |(_, v)| *v);

    for (i, (payload, from)) in replies.iter().enumerate() {
        assert_eq!(payload, &[b'x', i as u8]);
        assert_eq!(
            *from,
            SocketAddr::from((VIP, 53)),
            "reply source is the VIP"
        );
    }
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|a| *a == SocketAddr::from((CLIENT, 5000))),
        "the real server sees the client itself: {seen:?}"
    );
    assert_eq!(count(Counter::NatIn), 3, "{counts:?}");
    assert_eq!(count(Counter::NatOut), 3, "{counts:?}");
    assert_eq!(count(Counter::Error), 0, "{counts:?}");
    assert_eq!((stats.pkts_in, stats.pkts_out), (3, 3), "{stats:?}");
    assert_eq!(
        tapped,
        vec![5001],
        "the tap sees only the flow the kernel did not forward"
    );
    assert!(count(Counter::ToUser) >= 1, "{counts:?}");
    let entry = entry.expect("the in entry");
    assert!(
        entry.seen_ns > 0 && entry.route.ifindex == back,
        "{entry:?}"
    );
    // Detached: no clsact qdisc left on the director's veths.
    let qdiscs = Command::new("ip")
        .args(["netns", "exec", &lab.director, "tc", "qdisc", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(!qdiscs.contains("clsact"), "{qdiscs}");
}
