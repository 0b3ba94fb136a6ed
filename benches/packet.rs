//! Nanoseconds per packet through `Director::process` for each forwarding path.
//!
//! Each iteration copies a pre-built template frame into the working buffer (the director
//! rewrites in place) and processes it. `copy_only` measures the copy alone, so it can be
//! subtracted from the others.
//!
//! - `nat_in`: client → real server, established NAT flow (dst rewrite, incremental checksums);
//! - `nat_out`: real server → client reply (src rewrite);
//! - `dr`: established DR flow (MAC rewrite only);
//! - `tun`: established Tun flow (20-byte outer header in the headroom);
//! - `new_conn`: a NAT SYN from a new client port each time (schedule with wlc, insert the
//!   entry, rewrite); timers run every 4096 connections so the table stays bounded.
//!
//! Run: `cargo bench -p lvs-benches --bench packet` (under a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lvs_core::Time;
use lvs_core::director::{Director, RxMeta, Verdict};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, SchedulerKind};

const CPORT: u16 = 40000;
/// TCP payload of the data packets (a small request / response segment).
const PAYLOAD: usize = 100;

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

fn client(flags: u8) -> PacketSpec {
    PacketSpec::tcp((addr::CLIENT, CPORT), (addr::VIP, 80), flags)
}

fn must_transmit(d: &mut Director, meta: RxMeta, spec: &PacketSpec) {
    let (mut buf, len) = spec.frame();
    let v = d.process(Time::from_secs(1), &meta, &mut buf, sim::HEADROOM, len);
    assert!(matches!(v, Verdict::Transmit(_)), "setup: {v:?}");
}

/// A director with one established flow CLIENT:40000 → VIP:80 on the first real server.
fn established(method: ForwardMethod) -> Director {
    let mut d = sim::director(method, SchedulerKind::Wlc, Time::ZERO);
    must_transmit(&mut d, front(), &client(SYN));
    if method == ForwardMethod::Masq {
        let synack = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), SYN | ACK)
            .macs(addr::rs_mac(0), addr::BACK_MAC);
        must_transmit(&mut d, back(), &synack);
    }
    must_transmit(&mut d, front(), &client(ACK));
    d
}

fn bench_packets(c: &mut Criterion) {
    let mut group = c.benchmark_group("packet");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(50);

    let data = client(ACK | PSH).payload(&[0x5a; PAYLOAD]);
    let reply = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), ACK | PSH)
        .macs(addr::rs_mac(0), addr::BACK_MAC)
        .payload(&[0xa5; PAYLOAD]);

    {
        let (template, _) = data.frame();
        let mut buf = template.clone();
        group.bench_function("copy_only", |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&template));
                black_box(&mut buf);
            })
        });
    }

    let cases = [
        ("nat_in", ForwardMethod::Masq, front(), &data),
        ("nat_out", ForwardMethod::Masq, back(), &reply),
        ("dr", ForwardMethod::DirectRoute, front(), &data),
        ("tun", ForwardMethod::Tunnel, front(), &data),
    ];
    for (name, method, meta, spec) in cases {
        let mut d = established(method);
        let (template, len) = spec.frame();
        let mut buf = template.clone();
        let now = Time::from_secs(2);
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&template));
                let v = d.process(now, black_box(&meta), &mut buf, sim::HEADROOM, len);
                debug_assert!(matches!(v, Verdict::Transmit(_)));
                black_box(v)
            })
        });
        buf.copy_from_slice(&template);
        assert!(
            matches!(
                d.process(now, &meta, &mut buf, sim::HEADROOM, len),
                Verdict::Transmit(_)
            ),
            "{name} still forwards"
        );
    }

    {
        // New connections: each SYN from another client port (and, every 64 Ki ports,
        // another client address). Every 4096 SYNs time jumps past the SYN_RECV timeout
        // (60 s) and the timers run, so the table holds at most 4096 entries.
        let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Wlc, Time::ZERO);
        let (template, len) = client(SYN).frame();
        let mut buf = template.clone();
        let sport_at = sim::HEADROOM + 14 + 20;
        let caddr_at = sim::HEADROOM + 14 + 12;
        let mut n: u32 = 0;
        let mut now = Time::from_secs(1);
        group.bench_function("new_conn", |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                if n.is_multiple_of(4096) {
                    now = now + Duration::from_secs(61);
                    d.expire(now);
                }
                buf.copy_from_slice(black_box(&template));
                buf[sport_at..sport_at + 2].copy_from_slice(&(n as u16).to_be_bytes());
                buf[caddr_at + 2..caddr_at + 4].copy_from_slice(&((n >> 16) as u16).to_be_bytes());
                let v = d.process(now, &front(), &mut buf, sim::HEADROOM, len);
                debug_assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
                black_box(v)
            })
        });
        assert!(d.conns().len() <= 4096);
        assert_eq!(
            d.counters().total_drops(),
            0,
            "no SYN dropped: {:?}",
            d.counters()
        );
    }
    group.finish();
}

criterion_group!(benches, bench_packets);
criterion_main!(benches);
