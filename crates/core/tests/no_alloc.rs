//! The packet path of established flows does not allocate: NAT in and out, DR and Tun, and
//! timer runs that find nothing to expire.
//!
//! Allocations are counted per thread by `allocation-counter`'s global allocator (the
//! workspace forbids `unsafe`, so the counting allocator comes from that crate).

use std::time::Duration;

use lvs_core::Time;
use lvs_core::director::{Director, RxMeta, Verdict};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, SchedulerKind};

const PACKETS: usize = 10_000;
const CPORT: u16 = 40000;

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

/// A frame to process again and again: the template and a working buffer.
struct Frame {
    meta: RxMeta,
    template: Vec<u8>,
    buf: Vec<u8>,
    len: usize,
}

impl Frame {
    fn new(meta: RxMeta, spec: &PacketSpec) -> Frame {
        let (template, len) = spec.frame();
        Frame {
            meta,
            buf: template.clone(),
            template,
            len,
        }
    }

    fn process(&mut self, d: &mut Director, now: Time) -> Verdict {
        self.buf.copy_from_slice(&self.template);
        d.process(now, &self.meta, &mut self.buf, sim::HEADROOM, self.len)
    }
}

fn client(flags: u8) -> PacketSpec {
    PacketSpec::tcp((addr::CLIENT, CPORT), (addr::VIP, 80), flags).payload(&[0x5a; 100])
}

/// A director of this method with one established connection (SYN, SYN-ACK for NAT, ACK),
/// and the frames of that flow: client data, and for NAT the real server's data.
fn established(method: ForwardMethod, now: Time) -> (Director, Vec<Frame>) {
    let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
    let mut frames = vec![Frame::new(front(), &client(SYN))];
    if method == ForwardMethod::Masq {
        let synack = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), SYN | ACK)
            .macs(addr::rs_mac(0), addr::BACK_MAC);
        frames.push(Frame::new(back(), &synack));
    }
    frames.push(Frame::new(front(), &client(ACK)));
    for f in &mut frames {
        assert!(matches!(f.process(&mut d, now), Verdict::Transmit(_)));
    }
    let mut data = vec![Frame::new(front(), &client(ACK | PSH))];
    if method == ForwardMethod::Masq {
        let reply = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), ACK | PSH)
            .macs(addr::rs_mac(0), addr::BACK_MAC)
            .payload(&[0xa5; 1000]);
        data.push(Frame::new(back(), &reply));
    }
    (d, data)
}

#[test]
fn established_flows_do_not_allocate() {
    let now = Time::from_secs(1);
    for method in [
        ForwardMethod::Masq,
        ForwardMethod::DirectRoute,
        ForwardMethod::Tunnel,
    ] {
        let (mut d, mut frames) = established(method, now);
        // Warm up (first-use growth of anything lazily sized) outside the measurement.
        for f in &mut frames {
            assert!(matches!(f.process(&mut d, now), Verdict::Transmit(_)));
        }
        let mut forwarded = 0usize;
        let n = frames.len();
        let info = allocation_counter::measure(|| {
            for i in 0..PACKETS {
                let f = &mut frames[i % n];
                let t = now + Duration::from_micros(i as u64);
                if matches!(f.process(&mut d, t), Verdict::Transmit(_)) {
                    forwarded += 1;
                }
            }
        });
        assert_eq!(forwarded, PACKETS, "{method:?}: every packet forwarded");
        assert_eq!(
            info.count_total, 0,
            "{method:?}: {} allocations ({} bytes) on the packet path",
            info.count_total, info.bytes_total
        );
    }
}

#[test]
fn expire_with_nothing_due_does_not_allocate() {
    let now = Time::from_secs(1);
    for method in [
        ForwardMethod::Masq,
        ForwardMethod::DirectRoute,
        ForwardMethod::Tunnel,
    ] {
        let (mut d, mut frames) = established(method, now);
        // A new entry's first timer is filed at the initial (2 s) deadline; when it comes
        // round it is re-filed at the established deadline. Let that happen first.
        let mut ticks = (0..).map(|tick: u64| now + Duration::from_millis(250 * tick));
        let mut step = |d: &mut Director, t: Time| {
            if t.as_nanos().is_multiple_of(1_000_000_000) {
                assert!(matches!(frames[0].process(d, t), Verdict::Transmit(_)));
            }
            assert_eq!(d.expire(t), 0);
        };
        for t in ticks.by_ref().take(40) {
            step(&mut d, t);
        }
        // Then 100 s of 250 ms ticks, the flow refreshed every second: no timer is due,
        // but the wheel turns.
        let info = allocation_counter::measure(|| {
            for t in ticks.by_ref().take(400) {
                step(&mut d, t);
            }
        });
        assert_eq!(d.conns().len(), 1);
        assert_eq!(
            info.count_total, 0,
            "{method:?}: {} allocations ({} bytes) in expire()",
            info.count_total, info.bytes_total
        );
    }
}

/// When a filed timer comes round early (the flow was refreshed) it is filed again under
/// its new deadline. Slot vectors keep their capacity, so this allocates only when the new
/// slot has never held a timer: here once (the first timer, filed at the 2 s deadline of a
/// new entry, re-filed 900 s on), never per tick.
#[test]
fn refiling_a_timer_allocates_at_most_once_per_fresh_slot() {
    let now = Time::from_secs(1);
    for method in [
        ForwardMethod::Masq,
        ForwardMethod::DirectRoute,
        ForwardMethod::Tunnel,
    ] {
        let (mut d, mut frames) = established(method, now);
        let info = allocation_counter::measure(|| {
            for tick in 0..40u64 {
                let t = now + Duration::from_millis(250 * tick);
                if tick % 4 == 0 {
                    assert!(matches!(frames[0].process(&mut d, t), Verdict::Transmit(_)));
                }
                assert_eq!(d.expire(t), 0);
            }
        });
        assert_eq!(d.conns().len(), 1);
        assert!(
            info.count_total <= 1,
            "{method:?}: {} allocations ({} bytes) to re-file one timer",
            info.count_total,
            info.bytes_total
        );
    }
}

/// The counter sees this thread's allocations (so the zeros above mean something).
#[test]
fn the_counting_allocator_is_in_place() {
    let info = allocation_counter::measure(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(64));
    });
    assert_eq!(info.count_total, 1);
}
