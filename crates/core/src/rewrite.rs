//! Where packets are rewritten: the in-place header changes of NAT, DR and Tun, and the ICMP
//! errors the director builds. Pure functions over byte buffers; every checksum is updated
//! incrementally (RFC 1624) except where the whole message is at hand and short (ICMP).

use std::net::Ipv4Addr;

use lvs_wire::checksum;
use lvs_wire::ethernet::{self, EthernetAddress};
use lvs_wire::icmpv4::FragNeededRepr;
use lvs_wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use lvs_wire::protocol;

/// Offset of the checksum field within a TCP header.
pub const TCP_CHECKSUM_OFFSET: usize = 16;
/// Offset of the checksum field within a UDP header.
pub const UDP_CHECKSUM_OFFSET: usize = 6;

/// Which end of a flow a rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Source address and port.
    Source,
    /// Destination address and port.
    Destination,
}

fn read16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn write16(b: &mut [u8], at: usize, v: u16) -> bool {
    match b.get_mut(at..at + 2) {
        Some(s) => {
            s.copy_from_slice(&v.to_be_bytes());
            true
        }
        None => false,
    }
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
    let port_at = match end {
        End::Source => 0,
        End::Destination => 2,
    };
    let old_port = read16(l4, port_at)?;
    write16(l4, port_at, port);
    let csum_at = match proto {
        protocol::TCP => TCP_CHECKSUM_OFFSET,
        protocol::UDP => UDP_CHECKSUM_OFFSET,
        _ => return Some(()),
    };
    let Some(old) = read16(l4, csum_at) else {
        return Some(()); // truncated quote: no checksum to fix
    };
    if proto == protocol::UDP && old == 0 && !csum_partial {
        return Some(());
    }
    let new = if csum_partial {
        checksum::update_seed_bytes(old, &old_addr.octets(), &addr.octets())
    } else {
        let c = checksum::update_bytes(old, &old_addr.octets(), &addr.octets());
        let c = checksum::update16(c, old_port, port);
        // A UDP checksum that computes to 0 is sent as all ones (RFC 768).
        if proto == protocol::UDP && c == 0 {
            0xffff
        } else {
            c
        }
    };
    write16(l4, csum_at, new);
    Some(())
}

/// Write a 14-byte Ethernet II header (IPv4) at the start of `frame`.
pub fn write_ethernet(
    frame: &mut [u8],
    src: EthernetAddress,
    dst: EthernetAddress,
    ethertype: u16,
) {
    if let Some(h) = frame.get_mut(..ethernet::HEADER_LEN) {
        h[0..6].copy_from_slice(&dst.0);
        h[6..12].copy_from_slice(&src.0);
        h[12..14].copy_from_slice(&ethertype.to_be_bytes());
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

/// Largest IP packet an ICMPv4 error may be (RFC 1812 4.3.2.3).
pub const ICMP_ERROR_MAX: usize = 576;

/// Turn `frame` (Ethernet + an IPv4 packet of `ip_len` bytes that is too big) into an ICMP
/// "fragmentation needed" error back to its sender, in place: source `from` (the address the
/// packet was sent to), destination the original source, quoting the start of the original
/// packet. Ethernet addresses are swapped. Returns the new frame length.
pub fn frag_needed_in_place(
    frame: &mut [u8],
    ip_len: usize,
    from: Ipv4Addr,
    mtu: u16,
) -> Option<usize> {
    const ETH: usize = ethernet::HEADER_LEN;
    const HDRS: usize = ipv4::HEADER_LEN + 8;
    let orig_src = Ipv4Packet::new_checked_truncated(frame.get(ETH..)?)
        .ok()?
        .src_addr();
    let quote = ip_len.min(ICMP_ERROR_MAX - HDRS);
    if frame.len() < ETH + HDRS + quote {
        return None;
    }
    // Move the quoted bytes behind the room for the new IP + ICMP headers.
    frame.copy_within(ETH..ETH + quote, ETH + HDRS);
    let repr = FragNeededRepr { mtu };
    let written = repr.emit_in_place(frame.get_mut(ETH + ipv4::HEADER_LEN..)?, quote);
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
    let (dst, src) = {
        let mut d = [0u8; 6];
        let mut s = [0u8; 6];
        d.copy_from_slice(&frame[0..6]);
        s.copy_from_slice(&frame[6..12]);
        (d, s)
    };
    // Reply goes back to where the frame came from.
    write_ethernet(
        frame,
        EthernetAddress(dst),
        EthernetAddress(src),
        ethernet::ethertype::IPV4,
    );
    Some(ETH + ipv4::HEADER_LEN + written)
}

/// Recompute the ICMPv4 checksum of `icmp` (a whole ICMP message).
pub fn fill_icmp_checksum(icmp: &mut [u8]) {
    if icmp.len() < 4 {
        return;
    }
    icmp[2] = 0;
    icmp[3] = 0;
    let c = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Finish a partial (`CHECKSUM_PARTIAL`) transport checksum in software: the field holds the
/// pseudo-header seed, so the one's-complement sum of the whole segment with the seed in
/// place, complemented, is the checksum. Needed where no NIC will finish it (a packet
/// wrapped in IP-in-IP is decapsulated by a receiver that never sees the offload request).
pub fn complete_partial_checksum(l4: &mut [u8], proto: u8) {
    let at = match proto {
        protocol::TCP => TCP_CHECKSUM_OFFSET,
        protocol::UDP => UDP_CHECKSUM_OFFSET,
        _ => return,
    };
    if l4.len() < at + 2 {
        return;
    }
    let mut c = !checksum::fold(checksum::sum(l4));
    if proto == protocol::UDP && c == 0 {
        c = 0xffff;
    }
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}
