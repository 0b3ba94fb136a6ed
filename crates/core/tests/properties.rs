//! Property tests of the packet rewrites: NAT round trips restore the original bytes,
//! checksums stay valid (full and `CHECKSUM_PARTIAL` seeds), and whole-director exchanges
//! for NAT, DR and Tun produce what the forwarding method promises.

use std::net::Ipv4Addr;

use lvs_core::Time;
use lvs_core::director::{CsumOffload, Director, RxMeta, Tx, Verdict};
use lvs_core::rewrite::{self, End};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags};
use lvs_core::types::{ForwardMethod, SchedulerKind};
use lvs_wire::checksum;
use lvs_wire::ipv4::Ipv4Packet;
use lvs_wire::protocol;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn any_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// A client address the simulated topology routes through the router (not on the front
/// or back networks, whose neighbours are unknown).
fn client_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("routed via the router, no martian", |a| {
            let o = a.octets();
            !(o[..3] == [10, 0, 1]
                || o[..3] == [192, 0, 2]
                || lvs_core::director::martian_source(*a))
        })
}

/// A TCP segment or a UDP datagram (possibly with checksum 0) between two endpoints.
#[derive(Clone, Debug)]
struct Packet {
    spec: PacketSpec,
    udp_no_checksum: bool,
}

impl Packet {
    fn ip(&self) -> Vec<u8> {
        let mut ip = self.spec.ip_packet();
        if self.udp_no_checksum {
            ip[20 + lvs_wire::udp::CHECKSUM_OFFSET] = 0;
            ip[20 + lvs_wire::udp::CHECKSUM_OFFSET + 1] = 0;
        }
        ip
    }

    fn proto(&self) -> u8 {
        self.spec.proto.number()
    }
}

fn packet(
    src: impl Strategy<Value = Ipv4Addr>,
    dst: impl Strategy<Value = Ipv4Addr>,
    max_payload: usize,
) -> impl Strategy<Value = Packet> {
    (
        src,
        dst,
        any::<u16>(),
        any::<u16>(),
        prop::bool::ANY,
        any::<u8>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..max_payload),
        prop::bool::ANY,
        1u8..=255,
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(src, dst, sport, dport, tcp, flags, seq, payload, df, ttl, no_csum)| {
                let mut spec = if tcp {
                    let mut s = PacketSpec::tcp((src, sport), (dst, dport), flags);
                    s.seq = seq;
                    s
                } else {
                    PacketSpec::udp((src, sport), (dst, dport), &[])
                };
                spec.payload = payload;
                spec.df = df;
                spec.ttl = ttl;
                Packet {
                    spec,
                    udp_no_checksum: !tcp && no_csum,
                }
            },
        )
}

fn l4_port(ip: &[u8], at: usize) -> u16 {
    let hl = Ipv4Packet::new_unchecked(ip).header_len();
    u16::from_be_bytes([ip[hl + at], ip[hl + at + 1]])
}

fn l4_checksum(ip: &[u8], proto: u8) -> u16 {
    let at = match proto {
        protocol::TCP => lvs_wire::tcp::CHECKSUM_OFFSET,
        _ => lvs_wire::udp::CHECKSUM_OFFSET,
    };
    l4_port(ip, at)
}

/// The `CHECKSUM_PARTIAL` seed of a packet: the folded, non-complemented pseudo-header sum.
fn seed(ip: &[u8]) -> u16 {
    let p = Ipv4Packet::new_unchecked(ip);
    let len = (usize::from(p.total_len()) - p.header_len()) as u32;
    checksum::fold(checksum::pseudo_header_v4(
        p.src_addr(),
        p.dst_addr(),
        p.protocol(),
        len,
    ))
}

fn set_l4_checksum(ip: &mut [u8], proto: u8, value: u16) {
    let at = 20
        + match proto {
            protocol::TCP => lvs_wire::tcp::CHECKSUM_OFFSET,
            _ => lvs_wire::udp::CHECKSUM_OFFSET,
        };
    ip[at..at + 2].copy_from_slice(&value.to_be_bytes());
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

/// Process `ip` framed with these MACs; the verdict's transmit and the bytes sent.
fn run(d: &mut Director, meta: RxMeta, macs: ([u8; 6], [u8; 6]), ip: &[u8]) -> (Tx, Vec<u8>) {
    let (mut buf, len) = sim::frame_with(macs.0, macs.1, ip);
    let v = d.process(Time::from_secs(1), &meta, &mut buf, sim::HEADROOM, len);
    let Verdict::Transmit(tx) = v else {
        panic!("not transmitted: {v:?}");
    };
    assert!(tx.start + tx.len <= buf.len());
    (tx, buf[tx.start..tx.start + tx.len].to_vec())
}

proptest! {
    #![proptest_config(config())]

    /// Client → VIP rewritten to RIP and back gives the original bytes; the rewritten packet
    /// has valid checksums and a UDP checksum of 0 stays 0.
    #[test]
    fn nat_destination_round_trip(
        p in packet(any_addr(), any_addr(), 1400),
        rip in any_addr(),
        rport in any::<u16>(),
    ) {
        let original = p.ip();
        let (vip, vport) = (p.spec.dst, p.spec.dport);
        let mut ip = original.clone();
        prop_assert!(rewrite::rewrite_v4(&mut ip, p.proto(), End::Destination, rip, rport, false).is_some());
        let pkt = Ipv4Packet::new_checked(&ip[..]).unwrap();
        prop_assert_eq!((pkt.src_addr(), pkt.dst_addr()), (p.spec.src, rip));
        prop_assert_eq!(l4_port(&ip, 0), p.spec.sport);
        prop_assert_eq!(l4_port(&ip, 2), rport);
        prop_assert!(sim::checksums_ok(&ip), "checksums after rewrite: {:02x?}", ip);
        if p.udp_no_checksum {
            prop_assert_eq!(l4_checksum(&ip, p.proto()), 0);
        }
        prop_assert!(rewrite::rewrite_v4(&mut ip, p.proto(), End::Destination, vip, vport, false).is_some());
        prop_assert_eq!(ip, original);
    }

    /// RIP → client rewritten to come from VIP and back gives the original bytes.
    #[test]
    fn nat_source_round_trip(
        p in packet(any_addr(), any_addr(), 1400),
        vip in any_addr(),
        vport in any::<u16>(),
    ) {
        let original = p.ip();
        let (rip, rport) = (p.spec.src, p.spec.sport);
        let mut ip = original.clone();
        prop_assert!(rewrite::rewrite_v4(&mut ip, p.proto(), End::Source, vip, vport, false).is_some());
        let pkt = Ipv4Packet::new_checked(&ip[..]).unwrap();
        prop_assert_eq!((pkt.src_addr(), pkt.dst_addr()), (vip, p.spec.dst));
        prop_assert_eq!(l4_port(&ip, 0), vport);
        prop_assert_eq!(l4_port(&ip, 2), p.spec.dport);
        prop_assert!(sim::checksums_ok(&ip), "checksums after rewrite: {:02x?}", ip);
        if p.udp_no_checksum {
            prop_assert_eq!(l4_checksum(&ip, p.proto()), 0);
        }
        prop_assert!(rewrite::rewrite_v4(&mut ip, p.proto(), End::Source, rip, rport, false).is_some());
        prop_assert_eq!(ip, original);
    }

    /// With `CHECKSUM_PARTIAL` the field holds the pseudo-header seed; after the rewrite it
    /// holds the seed of the new addresses (the port is not part of it), for either end.
    #[test]
    fn nat_partial_checksum_seed_follows_the_address(
        p in packet(any_addr(), any_addr(), 1400),
        to in any_addr(),
        port in any::<u16>(),
        source in prop::bool::ANY,
    ) {
        let mut ip = p.spec.ip_packet();
        let s = seed(&ip);
        set_l4_checksum(&mut ip, p.proto(), s);
        let end = if source { End::Source } else { End::Destination };
        prop_assert!(rewrite::rewrite_v4(&mut ip, p.proto(), end, to, port, true).is_some());
        prop_assert!(Ipv4Packet::new_checked(&ip[..]).unwrap().verify_checksum());
        prop_assert_eq!(l4_checksum(&ip, p.proto()), seed(&ip));
        // Completing the seeded checksum as the NIC would gives a valid packet.
        let hl = 20;
        let at = hl + if p.proto() == protocol::TCP { lvs_wire::tcp::CHECKSUM_OFFSET } else { lvs_wire::udp::CHECKSUM_OFFSET };
        let mut c = !checksum::fold(checksum::sum(&ip[hl..]));
        if p.proto() == protocol::UDP && c == 0 {
            c = 0xffff;
        }
        ip[at..at + 2].copy_from_slice(&c.to_be_bytes());
        prop_assert!(sim::checksums_ok(&ip));
    }

    /// A SYN from anywhere to VIP:80 through a NAT director goes to a real server with valid
    /// checksums and the client address kept; the real server's reply leaves from VIP:80.
    #[test]
    fn nat_director_syn_and_reply(
        client in client_addr(),
        cport in 1u16..,
        seq in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..1400),
        reply_payload in prop::collection::vec(any::<u8>(), 0..1400),
        partial in prop::bool::ANY,
    ) {
        let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
        let mut syn = PacketSpec::tcp((client, cport), (addr::VIP, 80), tcp_flags::SYN).payload(&payload);
        syn.seq = seq;
        let mut syn_ip = syn.ip_packet();
        let meta = RxMeta { csum_partial: partial, ..front() };
        if partial {
            let s = seed(&syn_ip);
            set_l4_checksum(&mut syn_ip, protocol::TCP, s);
        }
        let (tx, mut out) = run(&mut d, meta, (addr::ROUTER_MAC, addr::FRONT_MAC), &syn_ip);
        prop_assert_eq!(tx.ifindex, addr::BACK);
        if partial {
            prop_assert_eq!(tx.csum, Some(CsumOffload { start: 34, offset: lvs_wire::tcp::CHECKSUM_OFFSET as u16 }));
            prop_assert_eq!(l4_checksum(&out[14..], protocol::TCP), seed(&out[14..]));
            // Complete it as the NIC would.
            let c = !checksum::fold(checksum::sum(&out[34..]));
            out[34 + 16..34 + 18].copy_from_slice(&c.to_be_bytes());
        } else {
            prop_assert_eq!(tx.csum, None);
        }
        let ip = &out[14..];
        prop_assert!(sim::checksums_ok(ip));
        let pkt = Ipv4Packet::new_checked(ip).unwrap();
        let rs = sim::rs_index(pkt.dst_addr());
        prop_assert!(rs.is_some(), "dst {} is no real server", pkt.dst_addr());
        let rs = rs.unwrap();
        prop_assert_eq!(&out[0..6], &addr::rs_mac(rs));
        prop_assert_eq!(pkt.src_addr(), client);
        prop_assert_eq!((l4_port(ip, 0), l4_port(ip, 2)), (cport, 8080));
        prop_assert_eq!(&ip[40..], &payload[..]);

        let reply = PacketSpec::tcp((addr::RIPS[rs], 8080), (client, cport), tcp_flags::SYN | tcp_flags::ACK)
            .payload(&reply_payload);
        let (tx, out) = run(&mut d, back(), (addr::rs_mac(rs), addr::BACK_MAC), &reply.ip_packet());
        prop_assert_eq!(tx.ifindex, addr::FRONT);
        prop_assert_eq!(&out[0..6], &addr::ROUTER_MAC);
        let ip = &out[14..];
        prop_assert!(sim::checksums_ok(ip));
        let pkt = Ipv4Packet::new_checked(ip).unwrap();
        prop_assert_eq!((pkt.src_addr(), pkt.dst_addr()), (addr::VIP, client));
        prop_assert_eq!((l4_port(ip, 0), l4_port(ip, 2)), (80, cport));
        prop_assert_eq!(&ip[40..], &reply_payload[..]);
    }

    /// DR leaves the IP packet as it was but for the TTL.
    #[test]
    fn dr_leaves_the_ip_packet_alone_but_the_ttl(
        client in client_addr(),
        cport in 1u16..,
        payload in prop::collection::vec(any::<u8>(), 0..1400),
        udp in prop::bool::ANY,
    ) {
        let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
        let spec = if udp {
            PacketSpec::udp((client, cport), (addr::VIP, 53), &payload)
        } else {
            PacketSpec::tcp((client, cport), (addr::VIP, 80), tcp_flags::SYN).payload(&payload)
        };
        let original = spec.ip_packet();
        let (tx, out) = run(&mut d, front(), (addr::ROUTER_MAC, addr::FRONT_MAC), &original);
        prop_assert_eq!(tx.ifindex, addr::BACK);
        prop_assert!((0..3).any(|i| out[0..6] == addr::rs_mac(i)));
        prop_assert_eq!(&out[6..12], &addr::BACK_MAC);
        prop_assert_eq!(&out[14..], &sim::after_hop(&original)[..]);
    }

    /// Tun wraps the client's packet, unchanged but for the TTL (one less), in an outer
    /// IPv4 header DIP → RIP that copies DF, TTL and TOS; a TTL of 1 is answered with
    /// "time exceeded" instead.
    #[test]
    fn tun_encapsulation_decapsulates_to_the_original(
        client in client_addr(),
        cport in 1u16..,
        payload in prop::collection::vec(any::<u8>(), 0..1440),
        udp in prop::bool::ANY,
        df in prop::bool::ANY,
        ttl in 2u8..=255,
        tos in any::<u8>(),
    ) {
        let mut d = sim::director(ForwardMethod::Tunnel, SchedulerKind::Rr, Time::ZERO);
        let mut spec = if udp {
            PacketSpec::udp((client, cport), (addr::VIP, 53), &payload)
        } else {
            PacketSpec::tcp((client, cport), (addr::VIP, 80), tcp_flags::SYN).payload(&payload)
        };
        spec.df = df;
        spec.ttl = ttl;
        let mut original = spec.ip_packet();
        {
            let mut p = Ipv4Packet::new_unchecked(&mut original[..]);
            p.set_dscp_ecn(tos);
            p.fill_checksum();
        }
        let (tx, out) = run(&mut d, front(), (addr::ROUTER_MAC, addr::FRONT_MAC), &original);
        prop_assert_eq!(tx.ifindex, addr::BACK);
        prop_assert_eq!(tx.len, 14 + 20 + original.len());
        let outer = Ipv4Packet::new_checked(&out[14..]).unwrap();
        prop_assert!(outer.verify_checksum());
        prop_assert_eq!(outer.protocol(), protocol::IPIP);
        prop_assert_eq!(outer.header_len(), 20);
        prop_assert_eq!(outer.src_addr(), addr::DIP);
        let rs = sim::rs_index(outer.dst_addr());
        prop_assert!(rs.is_some(), "outer dst {} is no real server", outer.dst_addr());
        prop_assert_eq!(&out[0..6], &addr::rs_mac(rs.unwrap()));
        prop_assert_eq!(usize::from(outer.total_len()), original.len() + 20);
        prop_assert_eq!(outer.dont_frag(), df);
        prop_assert_eq!(outer.ttl(), ttl - 1);
        prop_assert_eq!(outer.dscp_ecn(), tos);
        prop_assert!(!outer.is_fragment());
        prop_assert_eq!(outer.payload(), &sim::after_hop(&original)[..]);
    }
}
