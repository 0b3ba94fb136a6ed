//! Nanoseconds per new connection for each scheduler, with 3 and with 100 real servers.
//!
//! Each iteration schedules one connection from a different client address and port,
//! counts it as an active connection on the chosen server (as the connection table would),
//! and every 4096 connections resets the counts so they stay bounded.
//!
//! Run: `cargo bench -p lvs-benches --bench sched` (about a minute and a half).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lvs_core::sched::{SchedCtx, new_scheduler};
use lvs_core::service::{Dest, DestConfig};
use lvs_core::time::Time;
use lvs_core::types::{ForwardMethod, Protocol, SchedFlags, SchedulerKind};

/// `n` real servers 10.1.x.y:80 with weights cycling 1..=5 (varied, with a common
/// structure so table-driven schedulers see realistic gcds).
fn dests(n: usize) -> Vec<Dest> {
    (0..n)
        .map(|i| {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 1, (i >> 8) as u8, (i & 0xff) as u8 + 1));
            let w = (i % 5) as u32 + 1;
            Dest::new(DestConfig::new(addr, 80, ForwardMethod::Masq).with_weight(w))
        })
        .collect()
}

fn bench_schedulers(c: &mut Criterion) {
    let mut group = c.benchmark_group("schedule");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(1));
    group.sample_size(30);
    for n in [3usize, 100] {
        for kind in SchedulerKind::ALL {
            let mut ds = dests(n);
            let mut s = new_scheduler(kind, SchedFlags::default(), 0x5eed);
            s.update(&ds);
            let mut i: u32 = 0;
            group.bench_function(BenchmarkId::new(kind.name(), n), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    // Spread clients over 2^16 addresses and ports; lblc/lblcr key on the
                    // destination, so vary it too (over 256 addresses, like a cache cluster).
                    let ctx = SchedCtx {
                        now: Time::from_nanos(u64::from(i) * 1000),
                        proto: Protocol::Tcp,
                        src: IpAddr::V4(Ipv4Addr::from(
                            0x6440_0000 | (i.wrapping_mul(2_654_435_761) >> 16),
                        )),
                        sport: (i as u16) | 1024,
                        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, i as u8)),
                        dport: 80,
                    };
                    if let Some(k) = s.schedule(black_box(&ctx), black_box(&ds)) {
                        ds[k].active += 1;
                    }
                    if i.is_multiple_of(4096) {
                        for d in &mut ds {
                            d.active = 0;
                        }
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_schedulers);
criterion_main!(benches);
