//! `--datapath xdp` end to end: `lvs_xdp` in front of tc ingress on the director's veths.
//!
//! XDP is meant for NICs, which hand it complete checksums. A veth fed by a local stack hands
//! it partial ones, and a frame XDP redirects out of a veth is dropped unless the peer has
//! NAPI (design.md, "eBPF on these machines"). So the lab is prepared as a NIC-fed director
//! would see its traffic: the client and the real servers send with transmit checksum
//! offload off (complete checksums), and the director's veth peers (the router's and the
//! bridge port's) have GRO on. Then NAT, DR and Tun must spread new flows 4/4/4 (the first
//! packet of each goes up to tc, which schedules it), carry a 50 MB download intact with
//! most of its packets forwarded by `lvs_xdp` itself, and answer UDP.
//!
//! `--datapath auto` on the same veths must not attach XDP (they are virtual links), and a
//! stop must leave no XDP program behind. These tests name their datapath themselves, so
//! `scripts/test.sh` runs them once (`--skip datapath_xdp` in the tc round).
#![forbid(unsafe_code)]

use lvs_e2e::{
    Director, HTTP_PORT, Method, Restart, answered_by, client_seen, kernel_in_counter,
    prepare_for_xdp, restart_keeps_downloads, skip,
};
use lvs_lab::{CLIENT_IP, DIRECTOR_BACK_IF, DIRECTOR_FRONT_IF, ROUTER_FRONT_IF};

fn forwards_on_xdp(method: Method, test: &str) {
    const SIZE: u64 = 50_000_000;
    let mut d = Director::without_lvsd(method, test);
    prepare_for_xdp(&d);
    d.set_lvsd_args(&["--datapath", "xdp"]);
    d.start_lvsd();
    assert_eq!(d.counters().datapath, "xdp", "lvsd should say it runs XDP");
    for dev in [DIRECTOR_FRONT_IF, DIRECTOR_BACK_IF] {
        assert!(d.xdp_attached(dev), "{method}: no XDP program on {dev}");
    }
    d.add_services("rr", &[0, 1, 2]);
    let mut per = [0usize; 3];
    for n in 0..12 {
        let body = d.curl_vip();
        let rs = answered_by(&body).unwrap_or_else(|| panic!("request {n}: odd answer {body:?}"));
        assert_eq!(client_seen(&body), Some(CLIENT_IP), "{body:?}");
        per[rs] += 1;
    }
    assert_eq!(per, [4, 4, 4], "{method}: rr over three real servers");
    assert_eq!(d.kernel_counter("new_flows"), 12, "new flows are tc's");

    let forwarded = |d: &Director| -> u64 {
        ["nat_in", "nat_out", "direct_route", "tunnel"]
            .iter()
            .map(|c| d.kernel_counter(c))
            .sum()
    };
    let before = d.kernel_counter("xdp_forwarded");
    let all_before = forwarded(&d);
    let (sum, took) = d.download_sha256(SIZE);
    assert_eq!(
        sum,
        lvs_lab::blob::blob_sha256(SIZE),
        "{method}: 50 MB through XDP arrived corrupted"
    );
    let by_xdp = d.kernel_counter("xdp_forwarded") - before;
    let all = forwarded(&d) - all_before;
    let c = d.counters();
    eprintln!(
        "{method}: 50 MB in {:.2} s; lvs_xdp forwarded {by_xdp}; kernel {:?}",
        took.as_secs_f64(),
        c.kernel
    );
    // The client's ACKs (and in NAT the data) of an established flow: lvs_xdp's, not tc's
    // (tc sees the first packet of the flow, and any that came while a neighbour was new).
    assert!(by_xdp >= 100, "{method}: lvs_xdp forwarded only {by_xdp}");
    assert!(
        by_xdp * 10 >= all * 9,
        "{method}: of {all} forwarded during the download lvs_xdp sent only {by_xdp}: {:?}",
        c.kernel
    );
    assert!(
        d.kernel_counter(kernel_in_counter(method)) > 0,
        "{:?}",
        c.kernel
    );
    let tcp = d.service_stats("TCP", HTTP_PORT).counters;
    if method == Method::Nat {
        assert!(tcp.out_bytes >= SIZE, "NAT replies counted: {tcp:?}");
    } else {
        assert_eq!(tcp.out_pkts, 0, "{method}: replies bypass the director");
    }
    let reply = d.udp("hello-xdp");
    assert!(
        reply.ends_with(" hello-xdp"),
        "UDP through the VIP: {reply:?}"
    );

    assert!(d.stop_lvsd().success(), "lvsd exit\n{}", d.lvsd_log());
    for dev in [DIRECTOR_FRONT_IF, DIRECTOR_BACK_IF] {
        assert!(
            !d.xdp_attached(dev),
            "{method}: XDP left on {dev} after a stop"
        );
    }
}

#[test]
fn datapath_xdp_nat() {
    if skip("datapath_xdp_nat") {
        return;
    }
    forwards_on_xdp(Method::Nat, "datapath_xdp_nat");
}

#[test]
fn datapath_xdp_dr() {
    if skip("datapath_xdp_dr") {
        return;
    }
    forwards_on_xdp(Method::Dr, "datapath_xdp_dr");
}

#[test]
fn datapath_xdp_tun() {
    if skip("datapath_xdp_tun") {
        return;
    }
    forwards_on_xdp(Method::Tun, "datapath_xdp_tun");
}

/// `auto` leaves a veth to tc, and says so.
#[test]
fn datapath_xdp_auto_keeps_veths_on_tc() {
    if skip("datapath_xdp_auto_keeps_veths_on_tc") {
        return;
    }
    let mut d = Director::without_lvsd(Method::Nat, "datapath_xdp_auto_keeps_veths_on_tc");
    d.set_lvsd_args(&["--datapath", "auto"]);
    d.start_lvsd();
    assert_eq!(d.counters().datapath, "tc");
    for dev in [DIRECTOR_FRONT_IF, DIRECTOR_BACK_IF] {
        assert!(!d.xdp_attached(dev), "auto attached XDP to the veth {dev}");
    }
    assert!(
        d.lvsd_log()
            .contains("a virtual link: forwarding at tc ingress"),
        "{}",
        d.lvsd_log()
    );
    d.add_services("rr", &[0, 1, 2]);
    assert!(answered_by(&d.curl_vip()).is_some());
}

/// A next hop that changes its MAC without telling anyone (no gratuitous ARP, a replaced
/// NIC) is found again. Frames lvs_xdp sends never pass the kernel's neighbour code, so
/// nothing would re-check the entry: lvsd asks the kernel to (`NTF_USE` on a stale entry
/// lvs_xdp uses), its probes to the old MAC fail, the entry goes, and tc resolves anew.
///
/// The director's entry for the router — the next hop of every reply to the client, which
/// lvs_xdp alone forwards — is set to a MAC nobody has, stale. The router's entry for the
/// VIP is made permanent first, so that no ARP request of the router's tells the director
/// the right MAC by the way.
#[test]
fn datapath_xdp_stale_neighbour_is_rechecked() {
    const TEST: &str = "datapath_xdp_stale_neighbour_is_rechecked";
    if skip(TEST) {
        return;
    }
    let mut d = Director::without_lvsd(Method::Nat, TEST);
    prepare_for_xdp(&d);
    d.set_lvsd_args(&["--datapath", "xdp"]);
    d.start_lvsd();
    d.add_services("rr", &[0]);
    d.curl_vip();
    let lab = d.lab();
    let out = d.in_director(&[
        "cat",
        &format!("/sys/class/net/{DIRECTOR_FRONT_IF}/address"),
    ]);
    let front_mac = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(front_mac.len(), 17, "director MAC {front_mac:?}");
    let vip = lvs_lab::VIP.to_string();
    lab.exec_ok(
        &lab.router_ns(),
        &[
            "ip",
            "neigh",
            "replace",
            &vip,
            "lladdr",
            &front_mac,
            "nud",
            "permanent",
            "dev",
            ROUTER_FRONT_IF,
        ],
    )
    .expect("permanent VIP entry on the router");
    let router = lvs_lab::ROUTER_FRONT_IP.to_string();
    lab.exec_ok(
        &lab.director_ns(),
        &[
            "ip",
            "neigh",
            "replace",
            &router,
            "lladdr",
            "02:00:00:de:ad:01",
            "nud",
            "stale",
            "dev",
            DIRECTOR_FRONT_IF,
        ],
    )
    .expect("stale entry with a wrong MAC");
    let curl = || {
        lab.exec(
            &lab.client_ns(),
            &["curl", "-sS", "-m", "2", &format!("http://{vip}/")],
        )
        .is_ok_and(|o| o.status.success())
    };
    // The netlink thread hands the wrong MAC to lvs_xdp at once: replies go nowhere.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !curl(),
        "a request answered through a MAC nobody has: the test changed nothing"
    );
    let t = std::time::Instant::now();
    let mut ok = false;
    while t.elapsed() < std::time::Duration::from_secs(40) {
        if curl() {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let neigh = d.in_director(&["ip", "neigh", "show", "dev", DIRECTOR_FRONT_IF]);
    assert!(
        ok,
        "replies still go to the wrong MAC after 40 s: {}\nlvsd log:\n{}",
        String::from_utf8_lossy(&neigh.stdout),
        d.lvsd_log()
    );
    eprintln!(
        "answered again {:.1} s after the router's MAC went wrong; director neighbours: {}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&neigh.stdout).trim()
    );
    assert!(d.stop_lvsd().success(), "lvsd exit\n{}", d.lvsd_log());
}

/// 20 downloads of 50 MB keep going across a SIGTERM with `--keep-forwarding-on-exit` (lvsd
/// takes `lvs_xdp` away, tc alone carries the flows, the next lvsd puts XDP back) and a
/// `kill -9` (the predecessor's `lvs_xdp` stays in front until the next one replaces it).
#[test]
fn datapath_xdp_restart_and_kill9_keep_20_downloads() {
    const TEST: &str = "datapath_xdp_restart_and_kill9_keep_20_downloads";
    if skip(TEST) {
        return;
    }
    restart_keeps_downloads(Method::Nat, TEST, "xdp", &[Restart::Term, Restart::Kill]);
}
