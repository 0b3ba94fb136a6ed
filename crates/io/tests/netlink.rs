//! rtnetlink tests (`lvs_io::netlink`) in a pair of fresh network namespaces
//! joined by a veth pair (need root; skipped with a message otherwise).

use std::net::IpAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{ip, skip};
use lvs_io::iface;
use lvs_io::netlink::{self, Monitor, NUD_USABLE, RT_TABLE_MAIN, Snapshot};

/// `RTN_UNICAST` (the tests have no libc dependency).
const RTN_UNICAST: u8 = 1;

fn sysctl(ns: &str, key: &str, val: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw"])
        .arg(format!("{key}={val}"))
        .output()
        .expect("run sysctl");
    assert!(
        out.status.success(),
        "sysctl {key}={val} in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces `lvsnl-<pid>-<tag>-a` / `-b` joined by veth `va` (in a, MTU
/// 1400, 10.251.N.1/24 and 2001:db8:N::1/64) and `vb` (in b, .2 / ::2), with
/// gateway routes in a: 10.252.0.0/16 via 10.251.N.2 and 2001:db8:ff::/48
/// via 2001:db8:N::2. Removed on drop, also when a test panics.
struct NsPair {
    a: String,
    b: String,
    net: u8,
}

impl NsPair {
    fn new(tag: &str, net: u8) -> Self {
        let pid = std::process::id();
        let a = format!("lvsnl-{pid}-{tag}-a");
        let b = format!("lvsnl-{pid}-{tag}-b");
        for ns in [&a, &b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        ip(&["netns", "add", &a]);
        // From here on the guard exists, so a failing step still cleans up.
        let pair = NsPair {
            a: a.clone(),
            b: b.clone(),
            net,
        };
        ip(&["netns", "add", &b]);
        ip(&[
            "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
        ]);
        ip(&["-n", &a, "link", "set", "va", "mtu", "1400"]);
        ip(&["-n", &b, "link", "set", "vb", "mtu", "1400"]);
        for (ns, dev, host) in [(&a, "va", 1), (&b, "vb", 2)] {
            sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "0");
            sysctl(ns, &format!("net.ipv6.conf.{dev}.disable_ipv6"), "0");
            // No DAD: the link-local address must not be tentative, or the
            // kernel has no source address for neighbour solicitations.
            sysctl(ns, &format!("net.ipv6.conf.{dev}.accept_dad"), "0");
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.251.{net}.{host}/24"),
                "dev",
                dev,
            ]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("2001:db8:{net}::{host}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &a,
            "route",
            "add",
            "10.252.0.0/16",
            "via",
            &format!("10.251.{net}.2"),
        ]);
        ip(&[
            "-n",
            &a,
            "-6",
            "route",
            "add",
            "2001:db8:ff::/48",
            "via",
            &format!("2001:db8:{net}::2"),
        ]);
        // Until linkwatch has seen the carrier (operstate UP) the veth's
        // qdisc is still noop and drops what we send; wait for it (bounded).
        for (ns, dev) in [(&a, "va"), (&b, "vb")] {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let out = Command::new("ip")
                    .args(["-n", ns, "link", "show", "dev", dev])
                    .output()
                    .expect("run ip");
                if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                    break;
                }
                assert!(Instant::now() < deadline, "{dev} in {ns} never came up");
                thread::sleep(Duration::from_millis(20));
            }
        }
        pair
    }

    fn v4(&self, host: u8) -> IpAddr {
        format!("10.251.{}.{host}", self.net).parse().unwrap()
    }

    fn v6(&self, host: u8) -> IpAddr {
        format!("2001:db8:{}::{host}", self.net).parse().unwrap()
    }
}

impl Drop for NsPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).output();
    }
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result
/// (re-raising its panic).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    thread::spawn(move || {
        lvs_io::netns::enter(&ns).expect("enter netns");
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn neighbour_mac(s: &Snapshot, ifindex: u32, addr: IpAddr) -> Option<[u8; 6]> {
    s.neighbours
        .iter()
        .find(|n| n.ifindex == ifindex && n.addr == addr)
        .and_then(|n| n.mac)
}

#[test]
fn dump_lists_veth_with_mac_mtu_addresses_and_routes() {
    if skip() {
        return;
    }
    let ns = NsPair::new("dump", 1);
    let (a1, a2, b1, b2) = (ns.v4(1), ns.v4(2), ns.v6(1), ns.v6(2));
    let (snap, idx, mac) = in_ns(&ns.a, || {
        let snap = netlink::dump().expect("dump");
        (
            snap,
            iface::ifindex("va").unwrap(),
            iface::mac("va").unwrap(),
        )
    });

    let lo = snap.link_by_name("lo").expect("lo listed");
    assert!(lo.loopback && lo.up);
    let va = snap.link_by_name("va").expect("va listed");
    assert_eq!(va.ifindex, idx);
    assert_eq!(va.mac, Some(mac));
    assert_eq!(va.mtu, 1400);
    assert!(va.up && !va.loopback);
    assert_eq!(snap.link(idx), Some(va));

    for (addr, len) in [(a1, 24), (b1, 64)] {
        assert!(
            snap.addrs
                .iter()
                .any(|a| a.ifindex == idx && a.addr == addr && a.prefix_len == len),
            "address {addr}/{len} on va missing: {:?}",
            snap.addrs
        );
    }

    let find = |dst: &str, len: u8| {
        let dst: IpAddr = dst.parse().unwrap();
        snap.routes
            .iter()
            .find(|r| r.dst == dst && r.dst_len == len)
            .unwrap_or_else(|| panic!("route {dst}/{len} missing: {:#?}", snap.routes))
    };
    let connected = find("10.251.1.0", 24);
    assert_eq!(connected.ifindex, idx);
    assert_eq!(connected.gateway, None);
    assert_eq!(connected.prefsrc, Some(a1));
    let via = find("10.252.0.0", 16);
    assert_eq!(via.ifindex, idx);
    assert_eq!(via.gateway, Some(a2));
    let connected6 = find("2001:db8:1::", 64);
    assert_eq!(connected6.ifindex, idx);
    assert_eq!(connected6.gateway, None);
    let via6 = find("2001:db8:ff::", 48);
    assert_eq!(via6.ifindex, idx);
    assert_eq!(via6.gateway, Some(b2));

    for r in &snap.routes {
        assert_eq!(r.table, RT_TABLE_MAIN);
        assert_eq!(r.kind, RTN_UNICAST);
        assert_ne!(r.ifindex, 0);
    }
    // Local-table routes (our own address as a /32 host route) are not listed.
    assert!(!snap.routes.iter().any(|r| r.dst == a1 && r.dst_len == 32));
    for n in &snap.neighbours {
        assert!(n.mac.is_some() && n.state & NUD_USABLE != 0, "{n:?}");
    }
}

#[test]
fn resolve_makes_peer_mac_appear_within_one_second() {
    if skip() {
        return;
    }
    let ns = NsPair::new("resolve", 2);
    let peer_mac = in_ns(&ns.b, || iface::mac("vb").unwrap());
    for peer in [ns.v4(2), ns.v6(2)] {
        let (before, after, waited) = in_ns(&ns.a, move || {
            let idx = iface::ifindex("va").unwrap();
            let before = neighbour_mac(&netlink::dump().unwrap(), idx, peer);
            let t0 = Instant::now();
            netlink::resolve(idx, peer).expect("resolve");
            loop {
                let mac = neighbour_mac(&netlink::dump().unwrap(), idx, peer);
                if mac.is_some() || t0.elapsed() > Duration::from_secs(1) {
                    return (before, mac, t0.elapsed());
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        assert_eq!(before, None, "{peer} was already resolved before resolve()");
        assert_eq!(
            after,
            Some(peer_mac),
            "{peer} not resolved after {waited:?}"
        );
        eprintln!("{peer} resolved in {waited:?}");
    }
}

#[test]
fn resolve_on_unknown_interface_fails() {
    if skip() {
        return;
    }
    let ns = NsPair::new("resolvebad", 3);
    let peer = ns.v4(2);
    let r = in_ns(&ns.a, move || netlink::resolve(999_999, peer));
    let e = r.expect_err("resolve on a missing interface must fail");
    // ENODEV, with the request in the message.
    assert_eq!(
        e.kind(),
        std::io::Error::from_raw_os_error(19).kind(),
        "{e}"
    );
    assert!(e.to_string().contains("resolve 10.251.3.2"), "{e}");
}

#[test]
fn monitor_reports_address_added_in_namespace() {
    if skip() {
        return;
    }
    let ns = NsPair::new("monitor", 4);
    let a = ns.a.clone();
    let new_addr: IpAddr = "10.251.4.77".parse().unwrap();
    let (quiet, changed, took, snap) = in_ns(&ns.a, move || {
        let mut mon = Monitor::open().expect("monitor");
        // Consume whatever the setup still produces (bounded).
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && mon.wait(Duration::from_millis(300)).unwrap() {}
        let quiet = mon.wait(Duration::from_millis(100)).unwrap();
        ip(&["-n", &a, "addr", "add", "10.251.4.77/32", "dev", "va"]);
        let t0 = Instant::now();
        let changed = mon.wait(Duration::from_secs(2)).unwrap();
        (quiet, changed, t0.elapsed(), netlink::dump().unwrap())
    });
    assert!(!quiet, "monitor reported a change while nothing happened");
    assert!(
        changed,
        "no change reported within {took:?} after ip addr add"
    );
    assert!(
        took < Duration::from_secs(1),
        "change reported late: {took:?}"
    );
    assert!(
        snap.addrs
            .iter()
            .any(|x| x.addr == new_addr && x.prefix_len == 32),
        "new address not in the dump after the change"
    );
}
