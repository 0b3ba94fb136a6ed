//! Nanoseconds per packet in the kernel programs (`lvs_tc_ingress`, and `lvs_xdp` for the
//! established paths), measured by the kernel itself with `BPF_PROG_TEST_RUN`, beside the core
//! (`Director::process`) on the same frames.
//!
//! Paths: NAT in and NAT out, DR and Tun on an established TCP flow (100-byte payload, as in
//! `benches/packet.rs`); a new flow the program schedules itself (a SYN from a new client
//! port each run, rr and mh, DR and NAT: table lookup, entry creation, the report to user
//! space and the forwarding); and a frame of an unknown flow (what the program costs before
//! it hands a frame to user space).
//!
//! Two kernel figures per path:
//! - `repeat`: `BPF_PROG_TEST_RUN` with repeat 254, the kernel's average per run, the median
//!   of 4,000 such runs (1,016,000 packets). The kernel runs the program again and again on
//!   the *same* skb, so each run must leave a frame the next run treats the same way: for NAT
//!   the bench installs the mirror entry too (the rewritten frame is rewritten back, doing
//!   the same work); DR changes only the TTL. Every forwarded packet leaves with its TTL one
//!   less, so a frame sent with TTL 255 is forwarded 254 times and then handed to user space:
//!   hence 254 per run (the kernel's timer reads, once per run, cost under 0.5 ns a packet
//!   at that count). Tun cannot be repeated (each run would add another outer header), so it
//!   has no `repeat` figure.
//!
//! XDP runs on a bare frame where tc runs on an skb: the `xdp` columns are what the same work
//! costs before the kernel builds an skb (what a NIC with native XDP gets), the `tc` columns
//! what it costs on an skb (what a veth gets). New flows are tc's only (`lvs_xdp` passes them
//! up).
//! - `single`: 200,000 runs of repeat 1, the median of the kernel-reported time of each run
//!   (includes the kernel's own timer reads, so it is an upper bound). New flows have only
//!   this figure (each run needs a frame of its own); the event ring is drained every 4096
//!   runs, as lvsd drains it.
//!
//! Run as root: `cargo bench -p lvs-benches --bench bpf`.

use std::net::IpAddr;
use std::time::Instant;

use lvs_bpf::services::Tables;
use lvs_bpf::{Datapath, Options, Prog, TC_ACT_OK, TC_ACT_REDIRECT, XDP_REDIRECT, compile};
use lvs_core::director::{RxMeta, Verdict};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, SchedulerKind};
use lvs_core::{Director, Time};

const CPORT: u16 = 40000;
const REPEAT: u32 = 254;
const ROUNDS: usize = 4_000;

fn frame(spec: &PacketSpec) -> Vec<u8> {
    let (buf, len) = spec.frame();
    buf[sim::HEADROOM..sim::HEADROOM + len].to_vec()
}

fn meta(ifindex: u32) -> RxMeta {
    RxMeta {
        ifindex,
        ..RxMeta::default()
    }
}

/// A director with one connection of `method`, and the datapath holding it.
fn setup(dp: &mut Datapath, method: ForwardMethod) -> (Director, PacketSpec, PacketSpec) {
    let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
    let syn = PacketSpec::tcp((addr::CLIENT, CPORT), (addr::VIP, 80), SYN);
    let (mut b, l) = syn.frame();
    let v = d.process(
        Time::from_secs(1),
        &meta(addr::FRONT),
        &mut b,
        sim::HEADROOM,
        l,
    );
    assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
    for (_, c) in d.conns().iter() {
        for (f, e) in compile::conn_entries(c, 0, 0).unwrap_or_default() {
            dp.insert(&f, &e).expect("insert");
        }
    }
    dp.set_routes(&compile::routes(&d.net)).expect("routes");
    let mut neighbours = compile::neighbours(&d.net);
    if method == ForwardMethod::Masq {
        // The mirror connection below sends to the VIP, which has no neighbour entry (it is
        // the director's own): give lvs_xdp one, as tc's redirect_neigh needs none.
        let mut any = *neighbours.values().next().expect("a neighbour");
        any.ifindex = compile::routes(&d.net)
            .iter()
            .find(|(k, _)| {
                k.len > 0 && u32::from(k.addr) == u32::from(addr::VIP) & (u32::MAX << (32 - k.len))
            })
            .map_or(addr::FRONT, |(_, r)| r.ifindex);
        neighbours.insert(addr::VIP, any);
    }
    dp.set_neighbours(&neighbours).expect("neighbours");
    let c = d
        .conns()
        .iter()
        .next()
        .map(|(_, c)| c.clone())
        .expect("conn");
    let IpAddr::V4(rip) = c.daddr else { panic!() };
    if method == ForwardMethod::Masq {
        // The mirror connection: client -> RIP:8080 is rewritten back to the VIP, so repeated
        // runs on one skb keep doing a full NAT rewrite (see the module docs).
        let mut m = c.clone();
        (m.vaddr, m.vport, m.daddr, m.dport) = (c.daddr, c.dport, c.vaddr, c.vport);
        for (f, e) in compile::conn_entries(&m, 0, 0).unwrap_or_default() {
            dp.insert(&f, &e).expect("insert");
        }
    }
    let payload = vec![0x61u8; 100];
    let mut data =
        PacketSpec::tcp((addr::CLIENT, CPORT), (addr::VIP, 80), ACK | PSH).payload(&payload);
    let mut reply = PacketSpec::tcp((rip, c.dport), (addr::CLIENT, CPORT), ACK | PSH)
        .macs(addr::rs_mac(sim::rs_index(rip).unwrap()), addr::BACK_MAC)
        .payload(&payload);
    // 254 forwards of one skb (see `REPEAT`).
    data.ttl = 255;
    reply.ttl = 255;
    (d, data, reply)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn kernel_repeat_ns(dp: &Datapath, prog: Prog, f: &[u8], expect: u32) -> f64 {
    median(
        (0..ROUNDS)
            .map(|_| {
                let r = dp.test_run(prog, f, REPEAT).expect("test run");
                assert_eq!(r.retval, expect, "unexpected verdict {:02x?}", r.frame);
                r.duration.as_nanos() as f64
            })
            .collect(),
    )
}

fn kernel_single_ns(dp: &Datapath, prog: Prog, f: &[u8], expect: u32) -> f64 {
    median(
        (0..200_000)
            .map(|_| {
                let r = dp.test_run(prog, f, 1).expect("test run");
                assert_eq!(r.retval, expect, "unexpected verdict");
                r.duration.as_nanos() as f64
            })
            .collect(),
    )
}

/// A SYN of a new flow each run through a `sched` service of `method`, kernel-timed.
fn new_flow_ns(method: ForwardMethod, sched: SchedulerKind) -> f64 {
    let runs = 200_000u32;
    let dp = Datapath::load(&Options {
        conn_entries: 2 * runs + 16,
        stats_slots: 16,
        sched_slots: 1 << 18,
        test_mode: false,
        adopt_from: &[],
    })
    .expect("load");
    let d = sim::director(method, sched, Time::ZERO);
    let mut dp = dp;
    dp.set_routes(&compile::routes(&d.net)).expect("routes");
    let mut tables = Tables::new(dp.sched_slots());
    let r = tables.sync(&dp, &d, |svc, slot| Some(svc * 8 + slot));
    assert!(r.errors.is_empty() && !r.in_kernel.is_empty(), "{r:?}");
    let mut events = Vec::new();
    let mut times = Vec::with_capacity(runs as usize);
    for i in 0..runs {
        let client = std::net::Ipv4Addr::from(0x0a02_0000 + (i >> 14));
        let port = 1024 + (i & 0x3fff) as u16;
        let f = frame(&PacketSpec::tcp((client, port), (addr::VIP, 80), SYN));
        let r = dp.test_run(Prog::TcIngress, &f, 1).expect("test run");
        assert_eq!(r.retval, TC_ACT_REDIRECT, "new flow {i} not forwarded");
        times.push(r.duration.as_nanos() as f64);
        if i % 4096 == 4095 {
            events.clear();
            dp.drain_events(&mut events).expect("events");
        }
    }
    let lost = dp.counter(lvs_bpf::maps::Counter::EventLost).unwrap_or(0);
    assert_eq!(lost, 0, "events lost");
    median(times)
}

fn core_ns(d: &mut Director, m: RxMeta, spec: &PacketSpec) -> f64 {
    let (template, len) = spec.frame();
    let mut buf = template.clone();
    let n = 200_000;
    median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    buf.copy_from_slice(&template);
                    let v = d.process(Time::from_secs(2), &m, &mut buf, sim::HEADROOM, len);
                    std::hint::black_box(v);
                }
                t.elapsed().as_nanos() as f64 / f64::from(n)
            })
            .collect(),
    )
}

fn main() {
    let mut dp = match Datapath::load(&Options {
        conn_entries: 1 << 16,
        stats_slots: 16,
        sched_slots: 16,
        test_mode: false,
        adopt_from: &[],
    }) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("bpf bench needs root and a BPF-capable kernel: {e}");
            std::process::exit(if std::env::var("CI").as_deref() == Ok("true") {
                1
            } else {
                0
            });
        }
    };
    println!(
        "{:<22} {:>11} {:>11} {:>11} {:>11} {:>9} {:>12}",
        "path", "tc repeat", "tc single", "xdp repeat", "xdp single", "core ns", "core/tc 1"
    );
    let started = Instant::now();
    for (name, method, reply) in [
        ("nat_in", ForwardMethod::Masq, false),
        ("nat_out", ForwardMethod::Masq, true),
        ("dr", ForwardMethod::DirectRoute, false),
        ("tun", ForwardMethod::Tunnel, false),
    ] {
        let (mut d, data, back) = setup(&mut dp, method);
        let (spec, m) = if reply {
            (back, meta(addr::BACK))
        } else {
            (data, meta(addr::FRONT))
        };
        let f = frame(&spec);
        let repeat = |prog, expect| {
            if method == ForwardMethod::Tunnel {
                "-".to_string()
            } else {
                format!("{:.1}", kernel_repeat_ns(&dp, prog, &f, expect))
            }
        };
        let r = repeat(Prog::TcIngress, TC_ACT_REDIRECT);
        let k = kernel_single_ns(&dp, Prog::TcIngress, &f, TC_ACT_REDIRECT);
        let xr = repeat(Prog::Xdp, XDP_REDIRECT);
        let xk = kernel_single_ns(&dp, Prog::Xdp, &f, XDP_REDIRECT);
        let c = core_ns(&mut d, m, &spec);
        println!(
            "{name:<22} {r:>11} {k:>11.1} {xr:>11} {xk:>11.1} {c:>9.1} {:>12.2}",
            c / k
        );
    }
    let new_flows = [
        (
            "new_flow_rr_dr",
            ForwardMethod::DirectRoute,
            SchedulerKind::Rr,
        ),
        (
            "new_flow_mh_dr",
            ForwardMethod::DirectRoute,
            SchedulerKind::Mh,
        ),
        ("new_flow_rr_nat", ForwardMethod::Masq, SchedulerKind::Rr),
        ("new_flow_mh_nat", ForwardMethod::Masq, SchedulerKind::Mh),
    ];
    for (name, method, sched) in new_flows {
        let k = new_flow_ns(method, sched);
        println!(
            "{name:<22} {:>11} {k:>11.1} {:>11} {:>11} {:>9} {:>12}",
            "-", "-", "-", "-", "-"
        );
    }
    let unknown = frame(&PacketSpec::tcp((addr::CLIENT, 1), (addr::VIP, 80), ACK));
    let r = kernel_repeat_ns(&dp, Prog::TcIngress, &unknown, TC_ACT_OK);
    let k = kernel_single_ns(&dp, Prog::TcIngress, &unknown, TC_ACT_OK);
    let xr = kernel_repeat_ns(&dp, Prog::Xdp, &unknown, lvs_bpf::XDP_PASS);
    let xk = kernel_single_ns(&dp, Prog::Xdp, &unknown, lvs_bpf::XDP_PASS);
    println!(
        "{:<22} {r:>11.1} {k:>11.1} {xr:>11.1} {xk:>11.1} {:>9} {:>12}",
        "unknown_flow_to_user", "-", "-"
    );
    memory();
    eprintln!(
        "(repeat: median of {ROUNDS} x {REPEAT}; single: median of 200000; {:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// Kernel memory per tracked connection: 1,000,000 DR connections (one entry each) and
/// 500,000 NAT connections (two entries each), in a fresh map each.
fn memory() {
    use lvs_bpf::maps::{Action, ConnEntry, Flow, RouteCache};
    use std::net::Ipv4Addr;
    for (name, conns, per_conn) in [("dr", 1_000_000u32, 1u32), ("nat", 500_000, 2)] {
        let dp = Datapath::load(&Options {
            conn_entries: conns * per_conn,
            stats_slots: 16,
            sched_slots: 16,
            test_mode: false,
            adopt_from: &[],
        })
        .expect("load");
        let empty = dp.conn_map_bytes().unwrap_or(0);
        for i in 0..conns {
            let client = Ipv4Addr::from(0x0a00_0000 | (i >> 8));
            let e = ConnEntry {
                action: Action::DirectRoute,
                state: 1,
                flags: 0,
                addr: Ipv4Addr::new(10, 0, 1, 11),
                port: 80,
                stats: 0,
                route: RouteCache::default(),
                seen_ns: 0,
            };
            let port = 1024 + (i & 0xff) as u16;
            dp.insert(
                &Flow::new(lvs_core::types::Protocol::Tcp, client, port, addr::VIP, 80),
                &e,
            )
            .expect("insert");
            if per_conn == 2 {
                let out = Flow::new(
                    lvs_core::types::Protocol::Tcp,
                    Ipv4Addr::new(10, 0, 1, 11),
                    80,
                    client,
                    port,
                );
                dp.insert(
                    &out,
                    &ConnEntry {
                        action: Action::NatOut,
                        ..e
                    },
                )
                .expect("insert");
            }
        }
        let full = dp.conn_map_bytes().unwrap_or(0);
        println!(
            "memory {name:<4} {conns} connections held: {:.1} MiB, {} bytes per connection",
            full as f64 / (1 << 20) as f64,
            (full - empty) / u64::from(conns)
        );
    }
}
