//! The hostile-frame corpus (issue 11): `tests/corpus/hostile_frames.py` sends, from the
//! router onto the director's front link, frames addressed to the director and to a virtual
//! service that must not be forwarded — bad IPv4 header checksums, source routes, malformed
//! options, bad TCP data offsets and UDP lengths, truncated packets, martian, spoofed and
//! subnet-broadcast sources, TTLs of 1 and 0, a first fragment, VLAN tags, valid frames for
//! another host's MAC (which only the kernel may see, and drop) — three times
//! each. Nothing of it may reach a real server (an nftables ingress counter on each real
//! server's link counts every IPv4 frame), and lvsd must count every frame under the reason
//! the corpus names for it: each drop reason's counter moves by exactly the frames of that
//! reason, time-exceeded answers are sent for the TTL ones, and the VLAN-tagged frames are
//! left to the kernel (`passed`), whose VLAN interface they belong to. Each method, on the
//! datapath under test (the kernel fast path leaves all of these to the core).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use lvs_e2e::{Director, Method, VIP, skip};

const REPEAT: u64 = 3;

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/hostile_frames.py").to_string()
}

/// IPv4 frames that arrived at each real server's link so far.
fn rs_ipv4_frames(d: &Director) -> Vec<u64> {
    (0..3)
        .map(|i| {
            let out = d
                .lab()
                .exec_ok(
                    &d.lab().rs_ns(i),
                    &["nft", "list", "chain", "netdev", "corpus", "in"],
                )
                .expect("nft list");
            out.split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("a packets count")
        })
        .collect()
}

fn drops(c: &lvs_api::CountersInfo) -> BTreeMap<String, u64> {
    c.drops.iter().cloned().collect()
}

fn corpus_through(method: Method, test: &str) {
    if skip(test) {
        return;
    }
    let d = Director::start(method, test);
    d.add_services("rr", &[0, 1, 2]);
    // What the director sends each real server (its back interface's MAC as the source):
    // no other host's frames on the server LAN are counted. No request goes through before
    // the corpus, so no connection's late segment can be counted either.
    let back_mac = String::from_utf8_lossy(
        &d.in_director(&["cat", "/sys/class/net/eth1/address"])
            .stdout,
    )
    .trim()
    .to_string();
    for i in 0..3 {
        let ns = d.lab().rs_ns(i);
        let rules = format!(
            "add table netdev corpus; add chain netdev corpus in {{ type filter hook ingress device eth0 priority -500; }}; add rule netdev corpus in ether saddr {back_mac} meta protocol ip counter"
        );
        d.lab()
            .exec_ok(&ns, &["nft", &rules])
            .expect("ingress counter on the real server");
    }
    let rs_before = rs_ipv4_frames(&d);
    let before = d.counters();

    let router = d.lab().router_ns();
    let dmac = String::from_utf8_lossy(
        &d.in_director(&["cat", "/sys/class/net/eth0/address"])
            .stdout,
    )
    .trim()
    .to_string();
    let smac = d
        .lab()
        .exec_ok(&router, &["cat", "/sys/class/net/eth1/address"])
        .expect("router MAC");
    let front_ip = d.lab().director_front_ip().to_string();
    let (vip, dip, rip) = (
        VIP.to_string(),
        lvs_lab::DIP.to_string(),
        d.lab().rip(0).to_string(),
    );
    let repeat = REPEAT.to_string();
    let py = script();
    let sent = d
        .lab()
        .exec_ok(
            &router,
            &[
                "python3",
                &py,
                "--dev",
                "eth1",
                "--dst-mac",
                &dmac,
                "--src-mac",
                smac.trim(),
                "--vip",
                &vip,
                "--dip",
                &dip,
                "--front-ip",
                &front_ip,
                "--rip",
                &rip,
                "--front-net",
                "10.201.2.0/24",
                "--back-net",
                "10.201.3.0/24",
                "--repeat",
                &repeat,
            ],
        )
        .expect("the corpus generator");
    let frames: BTreeMap<String, (String, u64)> =
        serde_json::from_str(sent.trim()).expect("the generator's JSON");
    assert!(frames.len() >= 30, "{frames:?}");
    // On the kernel fast path the frames reach lvsd through its capture socket: let it read.
    std::thread::sleep(Duration::from_millis(1500));
    let after = d.counters();
    let rs_after = rs_ipv4_frames(&d);

    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    for (reason, n) in frames.values() {
        *want.entry(reason.as_str()).or_default() += n;
    }
    let (b, a) = (drops(&before), drops(&after));
    let moved: BTreeMap<&str, u64> = a
        .iter()
        .map(|(r, n)| (r.as_str(), n - b.get(r).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    eprintln!(
        "{method}: {} frames of {} kinds sent; drops moved {moved:?}; passed +{}; icmp_sent +{}",
        want.values().sum::<u64>(),
        frames.len(),
        after.passed - before.passed,
        after.icmp_sent - before.icmp_sent
    );
    for (reason, n) in &want {
        if *reason == "other_host" {
            // Never the core's; on the fast path the program leaves it to the kernel.
            if after.datapath != "afpacket" {
                let not_ours = |c: &lvs_api::CountersInfo| {
                    c.kernel
                        .iter()
                        .find(|(name, _)| name == "not_ours")
                        .map_or(0, |(_, v)| *v)
                };
                let moved = not_ours(&after) - not_ours(&before);
                assert!(
                    moved >= *n,
                    "{method}: {n} frames for another host, not_ours moved by {moved}"
                );
            }
            continue;
        }
        if *reason == "passed" {
            assert!(
                after.passed - before.passed >= *n,
                "{method}: {n} VLAN-tagged frames left to the kernel, passed moved by {}",
                after.passed - before.passed
            );
            continue;
        }
        assert_eq!(
            moved.get(reason).copied().unwrap_or(0),
            *n,
            "{method}: drops counted as {reason} (all moved: {moved:?})"
        );
    }
    for (reason, n) in &moved {
        assert!(
            want.contains_key(reason),
            "{method}: {n} frames counted as {reason}, which the corpus has none of"
        );
    }
    assert_eq!(
        after.icmp_sent - before.icmp_sent,
        want["ttl_exceeded"],
        "{method}: a time-exceeded answer per TTL frame"
    );
    assert_eq!(after.conns, before.conns, "{method}: no entry made");
    for i in 0..3 {
        assert_eq!(
            rs_after[i] - rs_before[i],
            0,
            "{method}: {} IPv4 frames reached rs{} during the corpus",
            rs_after[i] - rs_before[i],
            i + 1
        );
    }
    // Still serving.
    let body = d.curl_vip();
    assert!(lvs_e2e::answered_by(&body).is_some(), "{body}");
}

#[test]
fn nat_hostile_corpus_is_dropped_and_counted() {
    corpus_through(Method::Nat, "nat_hostile_corpus_is_dropped_and_counted");
}

#[test]
fn dr_hostile_corpus_is_dropped_and_counted() {
    corpus_through(Method::Dr, "dr_hostile_corpus_is_dropped_and_counted");
}

#[test]
fn tun_hostile_corpus_is_dropped_and_counted() {
    corpus_through(Method::Tun, "tun_hostile_corpus_is_dropped_and_counted");
}
