//! Tun and segmentation offload: a super-frame the director must encapsulate is cut by lvsd
//! before encapsulation, and only TCP over IPv4 can be cut. Every other offload kind the io
//! layer can report is refused with `gso_unsupported` (counted), never handed to a
//! segmenter that cannot cut it nor sent as an oversized tunnel frame.

use lvs_core::director::{Director, Gso, GsoKind, RxMeta, Verdict};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, SchedulerKind};
use lvs_core::{DropReason, Time};

fn meta(gso: Option<Gso>) -> RxMeta {
    RxMeta {
        ifindex: addr::FRONT,
        csum_partial: gso.is_some(),
        gso,
        ..RxMeta::default()
    }
}

fn feed(d: &mut Director, now: Time, gso: Option<Gso>, spec: &PacketSpec) -> Verdict {
    let (mut buf, len) = spec.frame();
    d.process(now, &meta(gso), &mut buf, sim::HEADROOM, len)
}

fn gso(kind: GsoKind) -> Option<Gso> {
    Some(Gso { kind, size: 1448 })
}

/// A Tun director with an established TCP connection from the client.
fn established() -> (Director, Time) {
    let mut d = sim::director(ForwardMethod::Tunnel, SchedulerKind::Rr, Time::ZERO);
    let now = Time::from_secs(1);
    let syn = PacketSpec::tcp((addr::CLIENT, 40000), (addr::VIP, 80), SYN);
    assert!(matches!(
        feed(&mut d, now, None, &syn),
        Verdict::Transmit(_)
    ));
    let ack = PacketSpec::tcp((addr::CLIENT, 40000), (addr::VIP, 80), ACK);
    assert!(matches!(
        feed(&mut d, now, None, &ack),
        Verdict::Transmit(_)
    ));
    (d, now)
}

fn data() -> PacketSpec {
    PacketSpec::tcp((addr::CLIENT, 40000), (addr::VIP, 80), ACK | PSH).payload(&[7; 3000])
}

#[test]
fn a_tcpv4_super_frame_is_segmented_to_fit_the_tunnel() {
    let (mut d, now) = established();
    let v = feed(&mut d, now, gso(GsoKind::Tcpv4), &data());
    let Verdict::Segment { mss } = v else {
        panic!("a TCPv4 super-frame on Tun must be segmented: {v:?}")
    };
    // 1500-byte path: 20 of tunnel, 20 of IP, 20 of TCP leave 1440 per segment.
    assert_eq!(mss, 1440);
    assert_eq!(d.counters().drops(DropReason::GsoUnsupported), 0);
}

#[test]
fn other_offload_kinds_are_refused_and_counted() {
    for kind in [GsoKind::Tcpv6, GsoKind::Udp, GsoKind::Other] {
        let (mut d, now) = established();
        let v = feed(&mut d, now, gso(kind), &data());
        assert_eq!(v, Verdict::Drop(DropReason::GsoUnsupported), "{kind:?}");
        assert_eq!(
            d.counters().drops(DropReason::GsoUnsupported),
            1,
            "{kind:?}"
        );
        // The connection is untouched: the next plain frame still goes through.
        assert!(matches!(
            feed(&mut d, now, None, &data()),
            Verdict::Transmit(_)
        ));
    }
}

#[test]
fn a_udp_super_frame_on_tun_is_refused() {
    let mut d = sim::director(ForwardMethod::Tunnel, SchedulerKind::Rr, Time::ZERO);
    let now = Time::from_secs(1);
    let dgram = PacketSpec::udp((addr::CLIENT, 5000), (addr::VIP, 53), &[1; 64]);
    assert!(matches!(
        feed(&mut d, now, None, &dgram),
        Verdict::Transmit(_)
    ));
    let big = PacketSpec::udp((addr::CLIENT, 5000), (addr::VIP, 53), &[1; 3000]);
    for kind in [GsoKind::Udp, GsoKind::Tcpv4] {
        let v = feed(&mut d, now, gso(kind), &big);
        assert_eq!(v, Verdict::Drop(DropReason::GsoUnsupported), "{kind:?}");
    }
    assert_eq!(d.counters().drops(DropReason::GsoUnsupported), 2);
}
