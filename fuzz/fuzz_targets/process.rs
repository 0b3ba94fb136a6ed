//! Fuzz the whole packet path: `Director::process` on arbitrary frames, with arbitrary
//! receive metadata and buffer layout, for NAT, DR and Tun.
//!
//! Input layout:
//! - byte 0: bits 0-1 method (0 NAT, 1 DR, 2 Tun, 3 NAT with persistence), bit 2
//!   `csum_partial`, bit 3 `truncated`, bit 4 GSO present, bits 5-6 GSO kind, bit 7 arrives
//!   on the back interface (from the real servers) instead of the front;
//! - byte 1: bits 0-6 headroom before the frame (0..=79), bit 7 the frame's VLAN tag was
//!   taken off into metadata;
//! - byte 2: tailroom after the frame (0..=63) and GSO size (`byte * 23`);
//! - the rest: the frame (Ethernet onwards).
//!
//! Each run builds a fresh director (so every crash reproduces from its input alone) with a
//! NAT/DR/Tun service on VIP:80 and VIP:53, establishes one TCP flow from CLIENT:40000 so
//! established and reply paths are reachable, then processes the frame twice (the second
//! time after timers ran) and checks the invariants, among them that a frame failing the
//! director's validation (judged apart, `lvs_core::sim::judge`) is never forwarded.

#![no_main]

use std::net::IpAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lvs_core::Time;
use lvs_core::director::{Director, Gso, GsoKind, RxMeta, Settings, Verdict};
use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags};
use lvs_core::types::{ForwardMethod, Netmask, Persistence, SchedulerKind};

fn director(method: ForwardMethod, persistent: bool) -> Director {
    let settings = Settings {
        conn_limit: 64,
        conn_prealloc: 16,
        ..Settings::default()
    };
    let mut d = Director::new(settings, Time::ZERO);
    sim::wire_network(&mut d);
    for key in [sim::http_service(), sim::udp_service()] {
        let mut cfg = ServiceConfig::new(key).with_scheduler(SchedulerKind::Rr);
        if persistent {
            cfg.persistence = Some(Persistence {
                timeout: Duration::from_secs(300),
                netmask: Netmask::V4(24),
            });
        }
        d.add_service(cfg).expect("fresh service");
        for rip in addr::RIPS {
            let port = if method == ForwardMethod::Masq {
                8080
            } else {
                80
            };
            d.add_dest(&key, DestConfig::new(IpAddr::V4(rip), port, method))
                .expect("fresh dest");
        }
    }
    // One established flow: CLIENT:40000 → VIP:80 on the first real server.
    let client = (addr::CLIENT, 40000);
    let mut flow = vec![(
        addr::FRONT,
        PacketSpec::tcp(client, (addr::VIP, 80), tcp_flags::SYN),
    )];
    if method == ForwardMethod::Masq {
        flow.push((
            addr::BACK,
            PacketSpec::tcp(
                (addr::RIPS[0], 8080),
                client,
                tcp_flags::SYN | tcp_flags::ACK,
            )
            .macs(addr::rs_mac(0), addr::BACK_MAC),
        ));
    }
    flow.push((
        addr::FRONT,
        PacketSpec::tcp(client, (addr::VIP, 80), tcp_flags::ACK),
    ));
    for (ifindex, spec) in flow {
        let (mut buf, len) = spec.frame();
        let meta = RxMeta {
            ifindex,
            ..RxMeta::default()
        };
        let v = d.process(Time::ZERO, &meta, &mut buf, sim::HEADROOM, len);
        assert!(matches!(v, Verdict::Transmit(_)), "setup: {v:?}");
    }
    d
}

fn check(d: &Director, v: Verdict, buf_len: usize) {
    if let Verdict::Transmit(tx) = v {
        assert!(tx.len >= 14, "runt transmit {tx:?}");
        assert!(
            tx.start.checked_add(tx.len).is_some_and(|e| e <= buf_len),
            "transmit {tx:?} outside the {buf_len}-byte buffer"
        );
        if let Some(c) = tx.csum {
            let field = usize::from(c.start) + usize::from(c.offset) + 2;
            assert!(
                field <= tx.len,
                "checksum offload {c:?} outside the frame {tx:?}"
            );
        }
    }
    let c = d.counters();
    assert_eq!(
        c.rx_frames,
        c.forwarded + c.passed + c.total_drops() + c.segment_requests + c.tx_errors,
        "counters do not add up: {c:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let [ctl, head, tail, frame @ ..] = data else {
        return;
    };
    let (method, persistent) = match ctl & 3 {
        0 => (ForwardMethod::Masq, false),
        1 => (ForwardMethod::DirectRoute, false),
        2 => (ForwardMethod::Tunnel, false),
        _ => (ForwardMethod::Masq, true),
    };
    let meta = RxMeta {
        ifindex: if ctl & 0x80 != 0 {
            addr::BACK
        } else {
            addr::FRONT
        },
        csum_partial: ctl & 0x04 != 0,
        truncated: ctl & 0x08 != 0,
        gso: (ctl & 0x10 != 0).then(|| Gso {
            kind: match (ctl >> 5) & 3 {
                0 => GsoKind::Tcpv4,
                1 => GsoKind::Tcpv6,
                2 => GsoKind::Udp,
                _ => GsoKind::Other,
            },
            size: u16::from(*tail) * 23,
        }),
        fwmark: 0,
        vlan: head & 0x80 != 0,
    };
    let start = usize::from(head & 0x7f) % 80;
    let tailroom = usize::from(*tail) % 64;

    let mut d = director(method, persistent);
    let mut buf = vec![0u8; start + frame.len() + tailroom];
    for round in 0..2u64 {
        buf.fill(0);
        buf[start..start + frame.len()].copy_from_slice(frame);
        let now = Time::from_secs(1 + round * 5);
        if round > 0 {
            d.expire(now);
        }
        let judged = sim::judge(frame);
        let v = d.process(now, &meta, &mut buf, start, frame.len());
        check(&d, v, buf.len());
        // No frame that fails validation is forwarded; one whose only fault is its TTL may
        // be answered with "time exceeded".
        if let Verdict::Transmit(tx) = v {
            let out = &buf[tx.start..tx.start + tx.len];
            match judged {
                sim::Judged::Refused(why) => panic!("forwarded a frame failing validation ({why})"),
                sim::Judged::TtlOnly => assert!(
                    out.get(23) == Some(&1) && out.get(34) == Some(&11),
                    "a TTL of 1 or 0 answered otherwise than by time exceeded"
                ),
                sim::Judged::Any => {}
            }
        }
    }
    // A persistence template still controlling a connection when its time comes is kept
    // one more period (as in IPVS), so run the timers twice.
    d.expire(Time::from_secs(100_000));
    d.expire(Time::from_secs(101_000));
    assert!(d.conns().is_empty(), "entries left after every timeout");
});
