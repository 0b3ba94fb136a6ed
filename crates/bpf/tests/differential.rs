//! The kernel program against the core, byte for byte: the same frames go through
//! `lvs_core::Director::process` and through `lvs_tc_ingress` in the running kernel
//! (`BPF_PROG_TEST_RUN`), with the program's maps filled from the core's connections and
//! routes. Wherever the program forwards, the core must forward the same IP bytes out of the
//! same interface to the same next hop, and leave the TCP state where the program left it;
//! wherever the program declines, the socket filter must hand the frame to user space.
//!
//! Needs root (loading BPF programs). Without it the tests fail under CI (`CI=true`) and
//! are reported as skipped elsewhere.

use std::net::IpAddr;

use lvs_bpf::maps::{Counter, Flow};
use lvs_bpf::{Datapath, Options, Prog, TC_ACT_OK, TC_ACT_REDIRECT, compile};
use lvs_core::director::{RxMeta, Tx, Verdict};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, Protocol, SchedulerKind};
use lvs_core::{Director, Time};
use proptest::prelude::*;

mod common;

const CPORT: u16 = 40000;

fn datapath() -> Option<Datapath> {
    if !common::root_or_skip("the BPF differential tests") {
        return None;
    }
    let opts = Options {
        conn_entries: 1 << 12,
        stats_slots: 16,
        test_mode: true,
        adopt_from: &[],
    };
    Some(Datapath::load(&opts).unwrap_or_else(|e| panic!("{e}")))
}

fn front() -> RxMeta {
    RxMeta {
        ifindex: addr::FRONT,
        ..RxMeta::default()
    }
}

fn back() -> RxMeta {
    RxMeta {
        ifindex: addr::BACK,
        ..RxMeta::default()
    }
}

/// The core's verdict and transmitted frame for `frame`.
fn core_run(d: &mut Director, now: Time, meta: RxMeta, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; sim::HEADROOM + frame.len()];
    buf[sim::HEADROOM..].copy_from_slice(frame);
    let v = d.process(now, &meta, &mut buf, sim::HEADROOM, frame.len());
    let out = match v {
        Verdict::Transmit(Tx { start, len, .. }) => buf[start..start + len].to_vec(),
        _ => Vec::new(),
    };
    (v, out)
}

fn frame_of(spec: &PacketSpec) -> Vec<u8> {
    let (buf, len) = spec.frame();
    buf[sim::HEADROOM..sim::HEADROOM + len].to_vec()
}

/// Copy every connection of the core into the program's maps (what lvsd does after the
/// slow path), and the routes.
fn sync(dp: &mut Datapath, d: &Director) {
    for (_, c) in d.conns().iter() {
        for (flow, entry) in compile::conn_entries(c, 0, 0).unwrap_or_default() {
            dp.insert(&flow, &entry).expect("insert entry");
        }
    }
    dp.set_routes(&compile::routes(&d.net)).expect("routes");
}

fn in_flow(d: &Director) -> Option<(Flow, u8)> {
    d.conns()
        .iter()
        .find(|(_, c)| !c.is_template())
        .and_then(|(_, c)| compile::conn_entries(c, 0, 0).map(|e| (e[0].0, c.state as u8)))
}

/// Run `frame` through both; when the program forwards, check it did what the core did.
/// Returns whether the program forwarded.
fn compare(dp: &mut Datapath, d: &mut Director, now: Time, meta: RxMeta, frame: &[u8]) -> bool {
    let bpf = dp
        .test_run(Prog::TcIngress, frame, 1)
        .unwrap_or_else(|e| panic!("{e}: {frame:02x?}"));
    let filter = dp.test_run(Prog::SockFilter, frame, 1).expect("filter run");
    let (v, out) = core_run(d, now, meta, frame);
    match bpf.retval {
        TC_ACT_REDIRECT => {
            assert_eq!(
                filter.retval, 0,
                "forwarded in the kernel, yet copied to user space"
            );
            let Verdict::Transmit(tx) = v else {
                panic!("the program forwarded what the core did not: {v:?}\n{frame:02x?}");
            };
            assert_eq!(
                &bpf.frame[14..],
                &out[14..],
                "IP bytes differ (left: kernel, right: core)"
            );
            let (ifindex, nexthop) = bpf.out.expect("test mode records the next hop");
            assert_eq!(ifindex, tx.ifindex, "egress interface");
            let hop = d.net.next_hop(IpAddr::V4(nexthop)).expect("next hop known");
            assert_eq!(&out[0..6], &hop.dst_mac.0, "next hop {nexthop}");
            assert_eq!(&out[6..12], &hop.src_mac.0);
            // The state the program moved to is the core's.
            if let Some((flow, state)) = in_flow(d) {
                let e = dp.entry(&flow).expect("lookup").expect("entry still there");
                assert_eq!(
                    e.state, state,
                    "TCP state (kernel {} / core {state})",
                    e.state
                );
            }
            true
        }
        TC_ACT_OK => {
            assert_ne!(
                filter.retval, 0,
                "declined by the kernel and hidden from user space"
            );
            // The core decided (maybe a new connection, maybe a state change): sync.
            sync(dp, d);
            false
        }
        r => panic!("unexpected tc verdict {r} for {frame:02x?}"),
    }
}

fn client(flags: u8, payload: &[u8]) -> PacketSpec {
    PacketSpec::tcp((addr::CLIENT, CPORT), (addr::VIP, 80), flags).payload(payload)
}

/// A TCP exchange through `method`: the SYN makes the connection in the core (the program
/// declines it), then every segment must go through the kernel exactly as through the core.
fn tcp_exchange(method: ForwardMethod) {
    let Some(mut dp) = datapath() else { return };
    let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
    let t = Time::from_secs(1);
    sync(&mut dp, &d);
    assert!(!compare(
        &mut dp,
        &mut d,
        t,
        front(),
        &frame_of(&client(SYN, b""))
    ));
    let c = d
        .conns()
        .iter()
        .next()
        .map(|(_, c)| c.clone())
        .expect("a connection");
    let IpAddr::V4(rip) = c.daddr else { panic!() };
    let rs = sim::rs_index(rip).unwrap();
    let reply = |flags: u8, payload: &[u8]| {
        PacketSpec::tcp((rip, c.dport), (addr::CLIENT, CPORT), flags)
            .macs(addr::rs_mac(rs), addr::BACK_MAC)
            .payload(payload)
    };
    let nat = method == ForwardMethod::Masq;
    if nat {
        assert!(compare(
            &mut dp,
            &mut d,
            t,
            back(),
            &frame_of(&reply(SYN | ACK, b""))
        ));
    }
    assert!(compare(
        &mut dp,
        &mut d,
        t,
        front(),
        &frame_of(&client(ACK, b""))
    ));
    let req = client(ACK | PSH, b"GET / HTTP/1.0\r\n\r\n");
    assert!(compare(&mut dp, &mut d, t, front(), &frame_of(&req)));
    if nat {
        let body = vec![0x5a; 1200];
        assert!(compare(
            &mut dp,
            &mut d,
            t,
            back(),
            &frame_of(&reply(ACK | PSH, &body))
        ));
        assert!(compare(
            &mut dp,
            &mut d,
            t,
            back(),
            &frame_of(&reply(ACK | FIN, b""))
        ));
    }
    assert!(compare(
        &mut dp,
        &mut d,
        t,
        front(),
        &frame_of(&client(ACK | FIN, b""))
    ));
    let counted = match method {
        ForwardMethod::Masq => Counter::NatIn,
        ForwardMethod::DirectRoute => Counter::DirectRoute,
        ForwardMethod::Tunnel => Counter::Tunnel,
    };
    assert!(dp.counter(counted).unwrap() >= 3);
    let s = dp.stats(0).unwrap();
    assert!(s.pkts_in >= 3 && s.bytes_in > 0, "{s:?}");
    if nat {
        assert!(s.pkts_out >= 3, "{s:?}");
    }
}

#[test]
fn nat_tcp_exchange_matches_the_core() {
    tcp_exchange(ForwardMethod::Masq);
}

#[test]
fn dr_tcp_exchange_matches_the_core() {
    tcp_exchange(ForwardMethod::DirectRoute);
}

#[test]
fn tun_tcp_exchange_matches_the_core() {
    tcp_exchange(ForwardMethod::Tunnel);
}

#[test]
fn nat_udp_with_and_without_checksum() {
    let Some(mut dp) = datapath() else { return };
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let t = Time::from_secs(1);
    sync(&mut dp, &d);
    let q = PacketSpec::udp((addr::CLIENT, 5000), (addr::VIP, 53), b"query");
    assert!(!compare(&mut dp, &mut d, t, front(), &frame_of(&q)));
    assert!(compare(&mut dp, &mut d, t, front(), &frame_of(&q)));
    // The same datagram without a checksum (0): stays 0 on both paths.
    let mut f = frame_of(&q);
    f[14 + 20 + 6] = 0;
    f[14 + 20 + 7] = 0;
    assert!(compare(&mut dp, &mut d, t, front(), &f));
}

#[test]
fn too_big_and_unknown_go_to_user_space() {
    let Some(mut dp) = datapath() else { return };
    let mut d = sim::director(ForwardMethod::Tunnel, SchedulerKind::Rr, Time::ZERO);
    let t = Time::from_secs(1);
    sync(&mut dp, &d);
    assert!(!compare(
        &mut dp,
        &mut d,
        t,
        front(),
        &frame_of(&client(SYN, b""))
    ));
    // 1481 + 20 bytes of tunnel header > 1500: the core answers "fragmentation needed".
    let big = client(ACK, &vec![7u8; 1481 - 40]);
    assert!(!compare(&mut dp, &mut d, t, front(), &frame_of(&big)));
    // A flow nobody knows.
    let other = PacketSpec::tcp((addr::CLIENT, 1), (addr::VIP, 80), ACK);
    assert!(!compare(&mut dp, &mut d, t, front(), &frame_of(&other)));
    assert!(dp.counter(Counter::ToUser).unwrap() >= 3);
}

/// Mutations of an established NAT flow's packets: whatever the program forwards must be
/// what the core forwards.
fn mutate(frame: &mut [u8], edits: &[(usize, u8)]) {
    for &(at, v) in edits {
        if let Some(b) = frame.get_mut(at % frame.len().max(1)) {
            *b = v;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_frames_agree(
        method in prop_oneof![
            Just(ForwardMethod::Masq),
            Just(ForwardMethod::DirectRoute),
            Just(ForwardMethod::Tunnel)
        ],
        udp in any::<bool>(),
        reply in any::<bool>(),
        flags in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        edits in proptest::collection::vec((0usize..200, any::<u8>()), 0..4),
        cut in 0usize..80,
    ) {
        let Some(mut dp) = datapath() else { return Ok(()) };
        let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
        let t = Time::from_secs(1);
        sync(&mut dp, &d);
        let first = if udp {
            PacketSpec::udp((addr::CLIENT, CPORT), (addr::VIP, 53), b"x")
        } else {
            client(SYN, b"")
        };
        compare(&mut dp, &mut d, t, front(), &frame_of(&first));
        let c = d.conns().iter().next().map(|(_, c)| c.clone()).expect("a connection");
        let IpAddr::V4(rip) = c.daddr else { panic!() };
        let spec = if reply && method == ForwardMethod::Masq {
            let p = if udp { Protocol::Udp } else { Protocol::Tcp };
            let mut s = PacketSpec::tcp((rip, c.dport), (addr::CLIENT, CPORT), flags)
                .macs(addr::rs_mac(sim::rs_index(rip).unwrap()), addr::BACK_MAC)
                .payload(&payload);
            s.proto = p;
            s
        } else if udp {
            PacketSpec::udp((addr::CLIENT, CPORT), (addr::VIP, 53), &payload)
        } else {
            client(flags, &payload)
        };
        let meta = if reply && method == ForwardMethod::Masq { back() } else { front() };
        let mut f = frame_of(&spec);
        mutate(&mut f, &edits);
        // BPF_PROG_TEST_RUN refuses IPv4 frames shorter than an IP header (the kernel's
        // test harness, not the program: real runts reach the program and go to user space).
        let keep = f.len().saturating_sub(cut).max(14 + 20);
        f.truncate(keep);
        compare(&mut dp, &mut d, t, meta, &f);
    }
}
