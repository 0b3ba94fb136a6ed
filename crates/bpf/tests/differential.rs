//! The kernel program against the core, byte for byte: the same frames go through
//! `lvs_core::Director::process` and through `lvs_tc_ingress` in the running kernel
//! (`BPF_PROG_TEST_RUN`), with the program's maps filled from the core's connections and
//! routes, and its service tables from the core's compiled schedulers. Wherever the program
//! forwards, the core must forward the same IP bytes out of the same interface to the same
//! next hop, and leave the TCP state where the program left it — for a new flow the program
//! scheduled itself too, so its choice of real server is the core's; wherever the program
//! declines, the socket filter must hand the frame to user space.
//!
//! Every test runs twice: once as on a veth (the tap's filter, then tc ingress) and once as
//! on a NIC with native XDP, where `lvs_xdp` sees the frame first. There, what `lvs_xdp`
//! forwards must be the core's frame whole (it writes the MAC addresses itself), and what it
//! passes up must be untouched and then judged by the filter and tc as before.
//!
//! Needs root (loading BPF programs). Without it the tests fail under CI (`CI=true`) and
//! are reported as skipped elsewhere.

use std::net::IpAddr;
use std::ops::{Deref, DerefMut};

use lvs_bpf::maps::{Counter, EventKind, Flow, TestOut};
use lvs_bpf::services::Tables;
use lvs_bpf::{
    Datapath, Options, Prog, TC_ACT_OK, TC_ACT_REDIRECT, XDP_PASS, XDP_REDIRECT, compile,
};
use lvs_core::director::{Action, RxMeta, Tx, Verdict};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, Protocol, SchedFlags, SchedulerKind};
use lvs_core::{Director, Time};
use proptest::prelude::*;

mod common;

const CPORT: u16 = 40000;

/// The programs as a frame meets them: with `xdp`, `lvs_xdp` first.
struct Dp {
    dp: Datapath,
    xdp: bool,
}

impl Deref for Dp {
    type Target = Datapath;
    fn deref(&self) -> &Datapath {
        &self.dp
    }
}

impl DerefMut for Dp {
    fn deref_mut(&mut self) -> &mut Datapath {
        &mut self.dp
    }
}

/// Both ways a frame can meet the programs: tc only (a veth), then XDP in front (a NIC).
const FRONTS: [bool; 2] = [false, true];

fn datapath(xdp: bool) -> Option<Dp> {
    if !common::root_or_skip("the BPF differential tests") {
        return None;
    }
    let opts = Options {
        conn_entries: 1 << 12,
        stats_slots: 64,
        sched_slots: 1 << 18,
        test_mode: true,
        adopt_from: &[],
    };
    Some(Dp {
        dp: Datapath::load(&opts).unwrap_or_else(|e| panic!("{e}")),
        xdp,
    })
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

/// The core's action, verdict and transmitted frame for `frame`.
fn core_run(d: &mut Director, now: Time, meta: RxMeta, frame: &[u8]) -> (Action, Verdict, Vec<u8>) {
    let mut buf = vec![0u8; sim::HEADROOM + frame.len()];
    buf[sim::HEADROOM..].copy_from_slice(frame);
    let action = d.decide(now, &meta, frame);
    let v = d.apply(&action, &meta, &mut buf, sim::HEADROOM, frame.len());
    let out = match v {
        Verdict::Transmit(Tx { start, len, .. }) => buf[start..start + len].to_vec(),
        _ => Vec::new(),
    };
    (action, v, out)
}

/// The program's action, in the core's terms, is the core's: same method, same address and
/// port written, same tunnel source, same egress interface.
fn same_action(out: TestOut, core: &Action, who: &str) {
    let hop = core
        .hop()
        .unwrap_or_else(|| panic!("{who} forwarded; the core's action was {core:?}"));
    assert_eq!(out.ifindex, hop.ifindex, "egress interface ({who})");
    assert_eq!(
        &out.core_action(*hop),
        core,
        "actions differ (left: {who}, right: core)"
    );
}

fn frame_of(spec: &PacketSpec) -> Vec<u8> {
    let (buf, len) = spec.frame();
    buf[sim::HEADROOM..sim::HEADROOM + len].to_vec()
}

/// The `lvs_dests` index (and stats slot) of real server `i` of service `svc` here.
fn dest_id(svc: u32, i: usize) -> u32 {
    svc * 8 + i as u32
}

/// The `lvs_dests` index of the real server in slot `slot` of service `svc` of `d`.
fn dest_id_of(d: &Director, svc: u32, slot: u32) -> Option<u32> {
    let s = d.services().get(svc)?;
    let i = s.dest_slots().iter().position(|&x| x == slot)?;
    Some(dest_id(svc, i))
}

/// Copy every connection of the core into the program's maps (what lvsd does after the
/// slow path), and the routes.
fn sync(dp: &mut Datapath, d: &Director) {
    for (_, c) in d.conns().iter() {
        let slot = dest_id_of(d, c.svc, c.dest).unwrap_or(0);
        for (flow, entry) in compile::conn_entries(c, slot, 0).unwrap_or_default() {
            dp.insert(&flow, &entry).expect("insert entry");
        }
    }
    dp.set_routes(&compile::routes(&d.net)).expect("routes");
    let refused = lvs_core::director::refused_sources(&d.net, d.services())
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    dp.set_refused(&refused).expect("refused sources");
    dp.set_neighbours(&compile::neighbours(&d.net))
        .expect("neighbours");
}

/// Give the program the core's compiled schedulers (what lvsd does after every change).
fn sync_services(dp: &Datapath, tables: &mut Tables, d: &Director) {
    let report = tables.sync(dp, d, |svc, slot| dest_id_of(d, svc, slot));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    tables.release_retired();
}

fn in_flow(d: &Director) -> Option<(Flow, u8)> {
    d.conns()
        .iter()
        .find(|(_, c)| !c.is_template())
        .and_then(|(_, c)| compile::conn_entries(c, 0, 0).map(|e| (e[0].0, c.state as u8)))
}

/// Run `frame` through both; when the program forwards, check it did what the core did.
/// Returns whether the program forwarded.
fn compare(dp: &mut Dp, d: &mut Director, now: Time, meta: RxMeta, frame: &[u8]) -> bool {
    if dp.xdp && xdp_forwards(dp, d, now, meta, frame) {
        return true;
    }
    // The capture tap (with its filter) sees a frame before tc ingress does.
    let filter = dp.test_run(Prog::SockFilter, frame, 1).expect("filter run");
    let bpf = dp
        .test_run(Prog::TcIngress, frame, 1)
        .unwrap_or_else(|e| panic!("{e}: {frame:02x?}"));
    let (action, v, out) = core_run(d, now, meta, frame);
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
            let rec = bpf.out.expect("test mode records the action");
            same_action(rec, &action, "lvs_tc_ingress");
            assert_eq!(rec.ifindex, tx.ifindex, "egress interface");
            let nexthop = rec.nexthop;
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

/// `lvs_xdp` first: whether it forwarded (and then exactly as the core did, MAC addresses
/// included). A frame it passes up must be as it came.
fn xdp_forwards(dp: &mut Dp, d: &mut Director, now: Time, meta: RxMeta, frame: &[u8]) -> bool {
    let x = dp
        .test_run(Prog::Xdp, frame, 1)
        .unwrap_or_else(|e| panic!("{e}: {frame:02x?}"));
    match x.retval {
        XDP_PASS => {
            assert_eq!(x.frame, frame, "lvs_xdp changed a frame it passed up");
            false
        }
        XDP_REDIRECT => {
            let (action, v, out) = core_run(d, now, meta, frame);
            let Verdict::Transmit(tx) = v else {
                panic!("lvs_xdp forwarded what the core did not: {v:?}\n{frame:02x?}");
            };
            assert_eq!(x.frame, out, "frames differ (left: lvs_xdp, right: core)");
            let rec = x.out.expect("test mode records the action");
            same_action(rec, &action, "lvs_xdp");
            assert_eq!(rec.ifindex, tx.ifindex, "egress interface");
            if let Some((flow, state)) = in_flow(d) {
                let e = dp.entry(&flow).expect("lookup").expect("entry still there");
                assert_eq!(e.state, state, "TCP state (xdp {} / core {state})", e.state);
            }
            true
        }
        r => panic!("unexpected XDP verdict {r} for {frame:02x?}"),
    }
}

fn client(flags: u8, payload: &[u8]) -> PacketSpec {
    PacketSpec::tcp((addr::CLIENT, CPORT), (addr::VIP, 80), flags).payload(payload)
}

/// A TCP exchange through `method`: the SYN makes the connection in the core (the program
/// declines it), then every segment must go through the kernel exactly as through the core.
fn tcp_exchange(method: ForwardMethod, sched: SchedulerKind) {
    for xdp in FRONTS {
        let Some(mut dp) = datapath(xdp) else { return };
        let mut d = sim::director(method, sched, Time::ZERO);
        let t = Time::from_secs(1);
        sync(&mut dp, &d);
        let mut tables = Tables::new(dp.sched_slots());
        sync_services(&dp, &mut tables, &d);
        // rr: the program schedules the SYN itself; wlc: the core does.
        let in_kernel = sched == SchedulerKind::Rr;
        assert_eq!(
            compare(&mut dp, &mut d, t, front(), &frame_of(&client(SYN, b""))),
            in_kernel
        );
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
        // With XDP in front every packet after the first went through lvs_xdp, not tc.
        let by_xdp = dp.counter(Counter::Xdp).unwrap();
        if xdp {
            let forwarded: u64 = [
                Counter::NatIn,
                Counter::NatOut,
                Counter::DirectRoute,
                Counter::Tunnel,
            ]
            .iter()
            .map(|&c| dp.counter(c).unwrap())
            .sum();
            assert_eq!(by_xdp, forwarded - u64::from(in_kernel));
        } else {
            assert_eq!(by_xdp, 0);
        }
        let s = dp.stats(dest_id(c.svc, 0)).unwrap();
        assert!(s.pkts_in >= 3 && s.bytes_in > 0, "{s:?}");
        if nat {
            assert!(s.pkts_out >= 3, "{s:?}");
        }
        assert_eq!(dp.counter(Counter::New).unwrap(), u64::from(in_kernel));
    }
}

#[test]
fn nat_tcp_exchange_matches_the_core() {
    tcp_exchange(ForwardMethod::Masq, SchedulerKind::Rr);
    tcp_exchange(ForwardMethod::Masq, SchedulerKind::Wlc);
}

#[test]
fn dr_tcp_exchange_matches_the_core() {
    tcp_exchange(ForwardMethod::DirectRoute, SchedulerKind::Rr);
    tcp_exchange(ForwardMethod::DirectRoute, SchedulerKind::Wlc);
}

#[test]
fn tun_tcp_exchange_matches_the_core() {
    tcp_exchange(ForwardMethod::Tunnel, SchedulerKind::Rr);
    tcp_exchange(ForwardMethod::Tunnel, SchedulerKind::Wlc);
}

/// New flows from many clients through a service of every scheduler the core compiles:
/// each SYN (and UDP datagram) is scheduled by the program and must reach the real server
/// the core picks for the same packet, from the same state; every one is reported.
fn new_flows(method: ForwardMethod, sched: SchedulerKind, flags: SchedFlags, weights: &[u32]) {
    for xdp in FRONTS {
        let Some(mut dp) = datapath(xdp) else { return };
        let mut d = sim::director(method, sched, Time::ZERO);
        for key in d.services().keys() {
            let mut cfg = *d
                .services()
                .get(d.services().find(&key).unwrap())
                .unwrap()
                .config();
            cfg.flags = flags;
            d.edit_service(cfg).unwrap();
            let svc = d.services().find(&key).unwrap();
            let dests: Vec<_> = d.services().get(svc).unwrap().dests().to_vec();
            for (dest, &w) in dests.iter().zip(weights) {
                d.edit_dest(&key, dest.config.with_weight(w)).unwrap();
            }
        }
        let t = Time::from_secs(1);
        sync(&mut dp, &d);
        let mut tables = Tables::new(dp.sched_slots());
        sync_services(&dp, &mut tables, &d);
        let mut per_server = std::collections::BTreeMap::new();
        // 60 TCP connections (the wrr case: 3:2:1 as 30/20/10) and 12 UDP flows.
        let mut flows = Vec::new();
        for i in 0..60u32 {
            let src = std::net::Ipv4Addr::from(0x0a02_0000 + i.wrapping_mul(2_654_435_761) % 65536);
            let sport = 20000 + (i * 7919 % 40000) as u16;
            flows.push((Protocol::Tcp, src, sport));
            if i % 5 == 4 {
                flows.push((Protocol::Udp, src, sport ^ 0x5555));
            }
        }
        for (i, &(proto, src, sport)) in flows.iter().enumerate() {
            let vport = if proto == Protocol::Udp { 53 } else { 80 };
            let spec = if proto == Protocol::Udp {
                PacketSpec::udp((src, sport), (addr::VIP, vport), b"q")
            } else {
                PacketSpec::tcp((src, sport), (addr::VIP, vport), SYN)
            };
            assert!(
                compare(&mut dp, &mut d, t, front(), &frame_of(&spec)),
                "{sched} {method:?}: new flow {i} not scheduled in the kernel"
            );
            let key = lvs_core::conn::FlowKey::new(
                proto,
                IpAddr::V4(src),
                sport,
                IpAddr::V4(addr::VIP),
                vport,
            );
            let id = d.conns().lookup_in(&key).expect("the core made it too");
            let c = d.conns().get(id).unwrap();
            let flow = Flow::new(proto, src, sport, addr::VIP, vport);
            let e = dp
                .entry(&flow)
                .unwrap()
                .expect("the program made its entry");
            assert_eq!(IpAddr::V4(e.addr), c.daddr, "{sched}: flow {i}");
            if proto == Protocol::Tcp {
                *per_server.entry(c.daddr).or_insert(0u32) += 1;
            }
        }
        let mut events = Vec::new();
        dp.drain_events(&mut events).unwrap();
        let news = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::New { .. }))
            .count();
        assert_eq!(news, flows.len(), "one report per new flow");
        assert_eq!(dp.counter(Counter::New).unwrap(), flows.len() as u64);
        eprintln!("{sched} {method:?} weights {weights:?}: {per_server:?}");
        let counts: Vec<u32> = per_server.values().copied().collect();
        match sched {
            SchedulerKind::Wrr => assert_eq!(counts, vec![30, 20, 10], "wrr through the kernel"),
            SchedulerKind::Rr => assert_eq!(counts, vec![20, 20, 20], "rr through the kernel"),
            SchedulerKind::Fo => assert_eq!(counts, vec![60], "fo: the heaviest server only"),
            _ => {}
        }
    }
}

#[test]
fn kernel_scheduling_matches_the_core() {
    let none = SchedFlags::default();
    for method in [
        ForwardMethod::Masq,
        ForwardMethod::DirectRoute,
        ForwardMethod::Tunnel,
    ] {
        new_flows(method, SchedulerKind::Rr, none, &[1, 1, 1]);
    }
    new_flows(ForwardMethod::Masq, SchedulerKind::Wrr, none, &[3, 2, 1]);
    new_flows(ForwardMethod::Masq, SchedulerKind::Fo, none, &[1, 5, 2]);
    new_flows(
        ForwardMethod::DirectRoute,
        SchedulerKind::Sh,
        none,
        &[1, 2, 3],
    );
    new_flows(
        ForwardMethod::Masq,
        SchedulerKind::Sh,
        SchedFlags::PORT,
        &[1, 1, 1],
    );
    new_flows(ForwardMethod::Masq, SchedulerKind::Dh, none, &[1, 1, 1]);
    new_flows(ForwardMethod::Tunnel, SchedulerKind::Mh, none, &[2, 1, 1]);
    new_flows(
        ForwardMethod::Masq,
        SchedulerKind::Mh,
        SchedFlags::PORT,
        &[1, 1, 3],
    );
}

/// A new flow too big for the tunnel is the core's (it answers "fragmentation needed"), in
/// both programs alike; one that fits is the kernel's.
#[test]
fn too_big_new_flow_goes_to_the_core() {
    for xdp in FRONTS {
        let Some(mut dp) = datapath(xdp) else { return };
        let mut d = sim::director(ForwardMethod::Tunnel, SchedulerKind::Rr, Time::ZERO);
        let t = Time::from_secs(1);
        sync(&mut dp, &d);
        let mut tables = Tables::new(dp.sched_slots());
        sync_services(&dp, &mut tables, &d);
        let big = PacketSpec::udp((addr::CLIENT, 7000), (addr::VIP, 53), &vec![1u8; 1481 - 28]);
        assert!(!compare(&mut dp, &mut d, t, front(), &frame_of(&big)));
        // The core chose for that one: its rr position moved, so the table is made again (as
        // lvsd does when the core schedules a connection of such a service).
        sync_services(&dp, &mut tables, &d);
        let fits = PacketSpec::udp((addr::CLIENT, 7001), (addr::VIP, 53), &vec![1u8; 1480 - 28]);
        assert!(compare(&mut dp, &mut d, t, front(), &frame_of(&fits)));
        assert_eq!(dp.counter(Counter::NewDropped).unwrap(), 0);
    }
}

/// A table is rewritten only when what it is made from changed (a new generation each time),
/// and a NAT real server of port 0 gets the client's destination port in the kernel as in
/// the core.
#[test]
fn tables_follow_changes_and_port_zero_servers() {
    for xdp in FRONTS {
        let Some(mut dp) = datapath(xdp) else { return };
        let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Sh, Time::ZERO);
        let t = Time::from_secs(1);
        sync(&mut dp, &d);
        let mut tables = Tables::new(dp.sched_slots());
        let generations = |tables: &mut Tables, d: &Director| {
            let r = tables.sync(&dp, d, |svc, slot| dest_id_of(d, svc, slot));
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            let mut g: Vec<u32> = r.in_kernel.iter().map(|k| k.generation).collect();
            g.sort_unstable();
            g
        };
        let first = generations(&mut tables, &d);
        assert_eq!(first.len(), 2, "both services in the kernel");
        assert_eq!(
            generations(&mut tables, &d),
            first,
            "nothing changed, nothing rewritten"
        );
        // Every real server of the TCP service becomes port 0: the table is made again.
        let key = d.services().keys()[0];
        let svc = d.services().find(&key).unwrap();
        let dests: Vec<_> = d.services().get(svc).unwrap().dests().to_vec();
        for dest in &dests {
            d.delete_dest(&key, dest.addr(), dest.port()).unwrap();
            let mut c = dest.config;
            c.port = 0;
            d.add_dest(&key, c).unwrap();
        }
        let second = generations(&mut tables, &d);
        assert_ne!(second, first);
        tables.release_retired();
        let syn = PacketSpec::tcp((addr::CLIENT, 33000), (addr::VIP, 80), SYN);
        assert!(compare(&mut dp, &mut d, t, front(), &frame_of(&syn)));
        let flow = Flow::new(Protocol::Tcp, addr::CLIENT, 33000, addr::VIP, 80);
        let e = dp.entry(&flow).unwrap().expect("kernel entry");
        assert_eq!(
            e.port, 80,
            "a port-0 server takes the client's destination port"
        );
    }
}

/// A quiescent server's bucket (sh without fallback) asks the core, which finds nobody;
/// with fallback the kernel's table already holds the probe's answer.
#[test]
fn quiescent_servers_in_compiled_tables() {
    for xdp in FRONTS {
        let Some(mut dp) = datapath(xdp) else { return };
        let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Wrr, Time::ZERO);
        let key = d.services().keys()[0];
        let svc = d.services().find(&key).unwrap();
        let dests: Vec<_> = d.services().get(svc).unwrap().dests().to_vec();
        d.edit_dest(&key, dests[0].config.with_weight(0)).unwrap();
        let t = Time::from_secs(1);
        sync(&mut dp, &d);
        let mut tables = Tables::new(dp.sched_slots());
        sync_services(&dp, &mut tables, &d);
        for i in 0..8u16 {
            let syn = PacketSpec::tcp((addr::CLIENT, 30000 + i), (addr::VIP, 80), SYN);
            assert!(compare(&mut dp, &mut d, t, front(), &frame_of(&syn)));
        }
        // Every server quiescent: the table is empty, the core drops ("no real server").
        for dest in &dests {
            d.edit_dest(&key, dest.config.with_weight(0)).unwrap();
        }
        sync_services(&dp, &mut tables, &d);
        let syn = PacketSpec::tcp((addr::CLIENT, 31000), (addr::VIP, 80), SYN);
        assert!(!compare(&mut dp, &mut d, t, front(), &frame_of(&syn)));
    }
}

#[test]
fn nat_udp_with_and_without_checksum() {
    for xdp in FRONTS {
        let Some(mut dp) = datapath(xdp) else { return };
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
}

#[test]
fn too_big_and_unknown_go_to_user_space() {
    for xdp in FRONTS {
        let Some(mut dp) = datapath(xdp) else { return };
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
        xdp in any::<bool>(),
    ) {
        let Some(mut dp) = datapath(xdp) else { return Ok(()) };
        let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
        let t = Time::from_secs(1);
        sync(&mut dp, &d);
        let mut tables = Tables::new(dp.sched_slots());
        sync_services(&dp, &mut tables, &d);
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

/// What the core refuses to forward (director/validate.rs) the program leaves to it, for
/// an established flow and for a new one the kernel would otherwise schedule itself; the
/// core then drops it for the reason named (or answers "time exceeded").
#[test]
fn frames_the_core_refuses_stay_out_of_the_kernel() {
    for xdp in FRONTS {
        use lvs_core::DropReason as R;
        for method in [
            ForwardMethod::Masq,
            ForwardMethod::DirectRoute,
            ForwardMethod::Tunnel,
        ] {
            let Some(mut dp) = datapath(xdp) else { return };
            let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
            let t = Time::from_secs(1);
            sync(&mut dp, &d);
            let mut tables = Tables::new(dp.sched_slots());
            sync_services(&dp, &mut tables, &d);
            // An established flow in the kernel's table.
            let _ = compare(&mut dp, &mut d, t, front(), &frame_of(&client(SYN, b"")));
            assert!(compare(
                &mut dp,
                &mut d,
                t,
                front(),
                &frame_of(&client(ACK, b"x"))
            ));
            let ip_edit = |spec: &PacketSpec, f: &dyn Fn(&mut Vec<u8>)| {
                let mut fr = frame_of(spec);
                let mut ip = fr.split_off(14);
                f(&mut ip);
                fr.extend_from_slice(&ip);
                fr
            };
            let refill = |ip: &mut Vec<u8>| {
                lvs_wire::ipv4::Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
            };
            let est = client(ACK, b"data");
            let new_from =
                |src: std::net::Ipv4Addr| PacketSpec::tcp((src, 999), (addr::VIP, 80), SYN);
            let cases: Vec<(&str, Vec<u8>, Option<R>)> = vec![
                (
                    "ttl 1",
                    ip_edit(&est, &|ip| {
                        ip[8] = 1;
                        refill(ip)
                    }),
                    None,
                ),
                (
                    "ttl 1, new",
                    ip_edit(&new_from(std::net::Ipv4Addr::new(203, 0, 113, 5)), &|ip| {
                        ip[8] = 1;
                        refill(ip)
                    }),
                    None,
                ),
                (
                    "bad ip checksum",
                    ip_edit(&est, &|ip| ip[10] ^= 0x10),
                    Some(R::BadChecksum),
                ),
                (
                    "tcp offset 4",
                    ip_edit(&est, &|ip| ip[32] = 0x40),
                    Some(R::Malformed),
                ),
                (
                    "tcp offset past the segment",
                    ip_edit(&est, &|ip| ip[32] = 0xf0),
                    Some(R::Malformed),
                ),
                (
                    "loose source route",
                    ip_edit(&est, &|ip| {
                        ip.splice(20..20, [131, 7, 4, 10, 0, 0, 1, 0]);
                        ip[0] = 0x47;
                        let tl = u16::from_be_bytes([ip[2], ip[3]]) + 8;
                        ip[2..4].copy_from_slice(&tl.to_be_bytes());
                        refill(ip)
                    }),
                    Some(R::SourceRoute),
                ),
                (
                    "martian",
                    frame_of(&new_from(std::net::Ipv4Addr::new(127, 0, 0, 9))),
                    Some(R::MartianSource),
                ),
                (
                    "multicast",
                    frame_of(&new_from(std::net::Ipv4Addr::new(224, 1, 1, 1))),
                    Some(R::MartianSource),
                ),
                (
                    "the VIP",
                    frame_of(&new_from(addr::VIP)),
                    Some(R::SpoofedSource),
                ),
                (
                    "the director's back address",
                    frame_of(&new_from(addr::DIP)),
                    Some(R::SpoofedSource),
                ),
                (
                    "a subnet broadcast",
                    frame_of(&new_from(std::net::Ipv4Addr::new(10, 0, 1, 255))),
                    Some(R::BroadcastSource),
                ),
            ];
            for (what, frame, reason) in cases {
                let before = d.counters().clone();
                assert!(
                    !compare(&mut dp, &mut d, t, front(), &frame),
                    "{method:?}: {what} forwarded by the kernel"
                );
                let after = d.counters();
                match reason {
                    Some(r) => {
                        assert_eq!(after.drops(r), before.drops(r) + 1, "{method:?}: {what}")
                    }
                    None => assert_eq!(
                        after.icmp_sent,
                        before.icmp_sent + 1,
                        "{method:?}: {what} answered"
                    ),
                }
            }
            // UDP with a length that is not the payload's.
            let _ = compare(
                &mut dp,
                &mut d,
                t,
                front(),
                &frame_of(&PacketSpec::udp((addr::CLIENT, 7), (addr::VIP, 53), b"q")),
            );
            let bad_udp = ip_edit(
                &PacketSpec::udp((addr::CLIENT, 7), (addr::VIP, 53), b"qq"),
                &|ip| ip[25] += 1,
            );
            let before = d.counters().drops(R::Malformed);
            assert!(
                !compare(&mut dp, &mut d, t, front(), &bad_udp),
                "{method:?}: bad UDP length"
            );
            assert_eq!(d.counters().drops(R::Malformed), before + 1);
        }
    }
}

/// The loader writes its connection-table layout where a successor looks for it.
#[test]
fn the_loader_records_its_connection_table_layout() {
    let Some(dp) = datapath(false) else { return };
    assert_eq!(dp.layout().expect("lvs_config"), lvs_bpf::maps::LAYOUT);
    assert_eq!(dp.foreign_layout(), None, "nothing to adopt in a test run");
}
