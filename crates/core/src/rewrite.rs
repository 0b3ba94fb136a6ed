//! Where packets are rewritten: the in-place header changes of NAT, DR and Tun, and the ICMP
//! errors the director builds. Pure functions over byte buffers; every checksum is updated
//! incrementally (RFC 1624) except where the whole message is at hand and short (ICMP).

use std::net::Ipv4Addr;

use lvs_wire::checksum;
use lvs_wire::ethernet::{self, EthernetAddress, EthernetFrame};
use lvs_wire::icmpv4::{self, Icmpv4ErrorRepr, Icmpv4Packet};
use lvs_wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use lvs_wire::protocol;
use lvs_wire::sctp::SctpPacket;
use lvs_wire::tcp::TcpPacket;
use lvs_wire::udp::UdpPacket;

/// Which end of a flow a rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Source address and port.
    Source,
    /// Destination address and port.
    Destination,
}

/// Rewrite one end (address and port) of an IPv4 TCP/UDP packet in place: the IP header
/// checksum, the transport checksum (pseudo-header address and the port) are updated
/// incrementally. `l4` is the transport header and what follows (possibly truncated, as in
/// an ICMP quote: fields beyond the buffer are left alone). With `csum_partial` the transport
/// checksum field holds the un-complemented pseudo-header seed the NIC will complete, so only
/// the address enters it. A UDP checksum of 0 (none) stays 0.
pub fn rewrite_v4(
    ip: &mut [u8],
    proto: u8,
    end: End,
    addr: Ipv4Addr,
    port: u16,
    csum_partial: bool,
) -> Option<()> {
    let mut pkt = Ipv4Packet::new_unchecked(&mut *ip);
    let old_addr = match end {
        End::Source => pkt.src_addr(),
        End::Destination => pkt.dst_addr(),
    };
    match end {
        End::Source => pkt.set_src_addr_incremental(addr),
        End::Destination => pkt.set_dst_addr_incremental(addr),
    }
    let hl = pkt.header_len();
    let l4 = ip.get_mut(hl..)?;
    let addrs = (old_addr.octets(), addr.octets());
    match proto {
        protocol::TCP => {
            // An ICMP quote may end before the checksum: the view then leaves it alone.
            let mut t = TcpPacket::new_checked_truncated(l4).ok()?;
            let old_port = match end {
                End::Source => t.src_port(),
                End::Destination => t.dst_port(),
            };
            match end {
                End::Source => t.set_src_port(port),
                End::Destination => t.set_dst_port(port),
            }
            let c = t.checksum();
            t.set_checksum(updated_checksum(c, addrs, (old_port, port), csum_partial));
        }
        protocol::UDP => {
            let mut u = UdpPacket::new_checked_truncated(l4).ok()?;
            let old_port = match end {
                End::Source => u.src_port(),
                End::Destination => u.dst_port(),
            };
            match end {
                End::Source => u.set_src_port(port),
                End::Destination => u.set_dst_port(port),
            }
            let c = u.checksum();
            // A UDP checksum of 0 means none: it stays 0 (a partial seed is never 0).
            if c != 0 || csum_partial {
                let c = updated_checksum(c, addrs, (old_port, port), csum_partial);
                // A UDP checksum that computes to 0 is sent as all ones (RFC 768).
                u.set_checksum(if c == 0 && !csum_partial { 0xffff } else { c });
            }
        }
        protocol::SCTP => {
            // No pseudo-header checksum; the CRC32c is not updated yet (it covers the ports).
            let mut p = SctpPacket::new_checked_truncated(l4).ok()?;
            match end {
                End::Source => p.set_src_port(port),
                End::Destination => p.set_dst_port(port),
            }
        }
        _ => {}
    }
    Some(())
}

/// A transport checksum after an address change `addrs` (old, new) and a port change `ports`
/// (old, new), RFC 1624. A `CHECKSUM_PARTIAL` seed covers the pseudo header only, so only
/// the address enters it.
fn updated_checksum(
    check: u16,
    addrs: ([u8; 4], [u8; 4]),
    ports: (u16, u16),
    csum_partial: bool,
) -> u16 {
    if csum_partial {
        checksum::update_seed_bytes(check, &addrs.0, &addrs.1)
    } else {
        let c = checksum::update_bytes(check, &addrs.0, &addrs.1);
        checksum::update16(c, ports.0, ports.1)
    }
}

/// Write a 14-byte Ethernet II header (IPv4) at the start of `frame`.
pub fn write_ethernet(
    frame: &mut [u8],
    src: EthernetAddress,
    dst: EthernetAddress,
    ethertype: u16,
) {
    if let Some(h) = frame.get_mut(..ethernet::HEADER_LEN) {
        let mut eth = EthernetFrame::new_unchecked(h);
        eth.set_dst_addr(dst);
        eth.set_src_addr(src);
        eth.set_outer_ethertype(ethertype);
    }
}

/// Write the outer IPv4 header of IP-in-IP at `outer` (20 bytes) for the `inner` packet,
/// copying TOS, TTL and DF from the inner header as IPVS does, and its identification: the
/// outer packet is never fragmented by the director (too-big DF packets get "fragmentation
/// needed", others are dropped), and a copied ID is as unique per source as the inner one
/// (RFC 6864), deterministic, and what the kernel fast path writes too.
pub fn write_tunnel_header(
    outer: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    inner: &[u8],
) -> Option<()> {
    let inner_pkt = Ipv4Packet::new_checked_truncated(inner).ok()?;
    let inner_len = usize::from(inner_pkt.total_len());
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: protocol::IPIP,
        payload_len: inner_len,
        ttl: inner_pkt.ttl(),
        dscp_ecn: inner_pkt.dscp_ecn(),
        ident: inner_pkt.ident(),
        dont_frag: inner_pkt.dont_frag(),
    };
    let buf = outer.get_mut(..ipv4::HEADER_LEN)?;
    repr.emit(&mut Ipv4Packet::new_unchecked(buf));
    Some(())
}

/// Turn `frame` (Ethernet + an IPv4 packet of `ip_len` bytes the director will not forward)
/// into the ICMP error `error` back to its sender, in place: source `from`, destination the
/// original source, quoting the start of the original packet ("fragmentation needed" for one
/// too big, "time exceeded" for one whose TTL ran out). Ethernet addresses are swapped.
/// Returns the new frame length.
pub fn icmp_error_in_place(
    frame: &mut [u8],
    ip_len: usize,
    from: Ipv4Addr,
    error: Icmpv4ErrorRepr,
) -> Option<usize> {
    const ETH: usize = ethernet::HEADER_LEN;
    const HDRS: usize = ipv4::HEADER_LEN + 8;
    let orig_src = Ipv4Packet::new_checked_truncated(frame.get(ETH..)?)
        .ok()?
        .src_addr();
    let quote = ip_len.min(icmpv4::MAX_QUOTE_LEN);
    if frame.len() < ETH + HDRS + quote {
        return None;
    }
    // Move the quoted bytes behind the room for the new IP + ICMP headers.
    frame.copy_within(ETH..ETH + quote, ETH + HDRS);
    let written = error.emit_in_place(frame.get_mut(ETH + ipv4::HEADER_LEN..)?, quote);
    if written == 0 {
        return None;
    }
    let ip = Ipv4Repr {
        src_addr: from,
        dst_addr: orig_src,
        protocol: protocol::ICMP,
        payload_len: written,
        ttl: 64,
        dscp_ecn: 0xc0,
        ident: 0,
        dont_frag: false,
    };
    ip.emit(&mut Ipv4Packet::new_unchecked(
        frame.get_mut(ETH..ETH + ipv4::HEADER_LEN)?,
    ));
    // Reply goes back to where the frame came from.
    let eth = EthernetFrame::new_unchecked(&*frame);
    let (dst, src) = (eth.dst_addr(), eth.src_addr());
    write_ethernet(frame, dst, src, ethernet::ethertype::IPV4);
    Some(ETH + ipv4::HEADER_LEN + written)
}

/// Recompute the ICMPv4 checksum of `icmp` (a whole ICMP message).
pub fn fill_icmp_checksum(icmp: &mut [u8]) {
    if let Ok(mut p) = Icmpv4Packet::new_checked(icmp) {
        p.fill_checksum();
    }
}

/// Finish a partial (`CHECKSUM_PARTIAL`) transport checksum in software: the field holds the
/// pseudo-header seed, so the one's-complement sum of the whole segment with the seed in
/// place, complemented, is the checksum. Needed where no NIC will finish it (a packet
/// wrapped in IP-in-IP is decapsulated by a receiver that never sees the offload request).
pub fn complete_partial_checksum(l4: &mut [u8], proto: u8) {
    let c = !checksum::fold(checksum::sum(l4));
    match proto {
        protocol::TCP => {
            if let Ok(mut t) = TcpPacket::new_checked(l4) {
                t.set_checksum(c);
            }
        }
        protocol::UDP => {
            if let Ok(mut u) = UdpPacket::new_checked_truncated(l4) {
                // A UDP checksum that computes to 0 is sent as all ones (RFC 768).
                u.set_checksum(if c == 0 { 0xffff } else { c });
            }
        }
        _ => {}
    }
}
