//! Zero-copy packet views and checksum helpers for the LVS director.
//!
//! Every header type has a view (`XxxPacket<T: AsRef<[u8]>>`) over a borrowed or owned buffer:
//! `new_checked` validates the lengths the getters rely on, getters read fields straight from
//! the buffer, setters write them in place. Headers the director builds (the IP-in-IP outer
//! header, ICMP errors) also have a `Repr` with `emit`.
//!
//! No input can make this crate panic: getters and setters use bounds-checked access even on a
//! view made with `new_unchecked`, returning `0` or an empty slice (and ignoring writes) when
//! a field lies past the end of the buffer. Nothing here allocates.
//!
//! ```
//! use lvs_wire::{ethernet::EthernetFrame, ipv4::Ipv4Packet, protocol, tcp::TcpPacket};
//! use std::net::Ipv4Addr;
//!
//! /// NAT: send a client's TCP segment to a real server, fixing checksums incrementally.
//! fn dnat(frame: &mut [u8], real: Ipv4Addr, port: u16) -> lvs_wire::Result<()> {
//!     let mut eth = EthernetFrame::new_checked(frame)?;
//!     let mut ip = Ipv4Packet::new_checked(eth.payload_mut())?;
//!     if ip.protocol() != protocol::TCP || ip.is_fragment() {
//!         return Ok(());
//!     }
//!     let vip = ip.dst_addr();
//!     ip.set_dst_addr_incremental(real);
//!     let mut tcp = TcpPacket::new_checked(ip.payload_mut())?;
//!     tcp.update_checksum_for_addr(&vip.octets(), &real.octets());
//!     tcp.set_dst_port_incremental(port);
//!     Ok(())
//! }
//!
//! let mut not_a_frame = [0u8; 10];
//! assert_eq!(dnat(&mut not_a_frame, Ipv4Addr::LOCALHOST, 80), Err(lvs_wire::Error::Truncated));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod ipv6;
pub mod sctp;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod fixtures;

/// Error of parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header or the length fields say.
    Truncated,
    /// A field has a value that cannot be right (wrong version, length below the minimum, ...).
    Malformed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => {
                f.write_str("packet truncated: buffer shorter than its headers say")
            }
            Error::Malformed => {
                f.write_str("packet malformed: a header field has an impossible value")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Result of parsing.
pub type Result<T> = core::result::Result<T, Error>;

/// Source and destination ports of a TCP, UDP or SCTP header at the start of `l4` (all three
/// carry them in their first four bytes), or `None` when the four bytes are not all there.
pub fn transport_ports(l4: &[u8]) -> Option<(u16, u16)> {
    (l4.len() >= 4).then(|| (field::u16_at(l4, 0), field::u16_at(l4, 2)))
}

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), also IPv6 next-header values.
pub mod protocol {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: u8 = 0;
    /// Internet Control Message Protocol.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulation (IP-in-IP).
    pub const IPIP: u8 = 4;
    /// Transmission Control Protocol.
    pub const TCP: u8 = 6;
    /// User Datagram Protocol.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation.
    pub const IPV6: u8 = 41;
    /// IPv6 routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// Generic Routing Encapsulation.
    pub const GRE: u8 = 47;
    /// Encapsulating Security Payload.
    pub const ESP: u8 = 50;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 destination options.
    pub const IPV6_OPTS: u8 = 60;
    /// Stream Control Transmission Protocol.
    pub const SCTP: u8 = 132;
}

/// Bounds-safe field access shared by the views: reads past the end give 0, writes past the
/// end are ignored.
pub(crate) mod field {
    /// Byte at `off`, or 0.
    #[inline]
    pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
        b.get(off).copied().unwrap_or(0)
    }

    /// Big-endian u16 at `off`, or 0.
    #[inline]
    pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
        match b.get(off..off.saturating_add(2)) {
            Some(&[x, y]) => u16::from_be_bytes([x, y]),
            _ => 0,
        }
    }

    /// Big-endian u32 at `off`, or 0.
    #[inline]
    pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
        match b.get(off..off.saturating_add(4)) {
            Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
            _ => 0,
        }
    }

    /// `N` bytes at `off`, or zeros.
    #[inline]
    pub(crate) fn array_at<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = b.get(off..off.saturating_add(N)) {
            out.copy_from_slice(s);
        }
        out
    }

    /// `b[start..end]`, or an empty slice when the range is out of bounds or reversed.
    #[inline]
    pub(crate) fn slice(b: &[u8], start: usize, end: usize) -> &[u8] {
        b.get(start..end).unwrap_or(&[])
    }

    /// `b[start..end]` mutably, or an empty slice when the range is out of bounds or reversed.
    #[inline]
    pub(crate) fn slice_mut(b: &mut [u8], start: usize, end: usize) -> &mut [u8] {
        b.get_mut(start..end).unwrap_or(&mut [])
    }

    /// Writes a byte at `off` if it is in bounds.
    #[inline]
    pub(crate) fn set_u8(b: &mut [u8], off: usize, v: u8) {
        if let Some(x) = b.get_mut(off) {
            *x = v;
        }
    }

    /// Writes bytes at `off` if they all fit.
    #[inline]
    pub(crate) fn set_bytes(b: &mut [u8], off: usize, v: &[u8]) {
        if let Some(s) = b.get_mut(off..off.saturating_add(v.len())) {
            s.copy_from_slice(v);
        }
    }

    /// Writes a big-endian u16 at `off` if it fits.
    #[inline]
    pub(crate) fn set_u16(b: &mut [u8], off: usize, v: u16) {
        set_bytes(b, off, &v.to_be_bytes());
    }

    /// Writes a big-endian u32 at `off` if it fits.
    #[inline]
    pub(crate) fn set_u32(b: &mut [u8], off: usize, v: u32) {
        set_bytes(b, off, &v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn error_display() {
        assert!(Error::Truncated.to_string().contains("truncated"));
        assert!(Error::Malformed.to_string().contains("malformed"));
        let e: Box<dyn std::error::Error> = Box::new(Error::Malformed);
        assert!(!e.to_string().is_empty());
    }

    /// Calls every getter of every view on `b`, through `new_checked`, `new_checked_truncated`
    /// and (misuse) `new_unchecked`, and every setter on an unchecked copy.
    fn exercise(b: &[u8]) {
        let a4 = Ipv4Addr::new(10, 0, 0, 1);
        let a6 = Ipv6Addr::LOCALHOST;

        macro_rules! eth {
            ($f:expr) => {{
                let f = $f;
                let _ = (
                    f.dst_addr(),
                    f.src_addr(),
                    f.outer_ethertype(),
                    f.vlan_id(),
                    f.vlan_tci(),
                );
                let _ = (
                    f.ethertype(),
                    f.header_len(),
                    f.payload().len(),
                    f.is_tagged(),
                );
                let _ = ethernet::EthernetRepr::parse(&f);
            }};
        }
        if let Ok(f) = ethernet::EthernetFrame::new_checked(b) {
            assert!(f.payload().len() + f.header_len() == b.len());
            eth!(f);
        }
        eth!(ethernet::EthernetFrame::new_unchecked(b));

        macro_rules! ip4 {
            ($p:expr) => {{
                let p = $p;
                let _ = (
                    p.version(),
                    p.header_len(),
                    p.dscp_ecn(),
                    p.total_len(),
                    p.ident(),
                );
                let _ = (
                    p.dont_frag(),
                    p.more_frags(),
                    p.frag_offset(),
                    p.is_fragment(),
                    p.ttl(),
                );
                let _ = (
                    p.protocol(),
                    p.checksum(),
                    p.src_addr(),
                    p.dst_addr(),
                    p.options().len(),
                );
                let _ = (p.header().len(), p.payload().len(), p.verify_checksum());
                let _ = ipv4::Ipv4Repr::parse(&p);
            }};
        }
        if let Ok(p) = ipv4::Ipv4Packet::new_checked(b) {
            assert_eq!(
                p.payload().len(),
                usize::from(p.total_len()) - p.header_len()
            );
            let r = ipv4::Ipv4Repr::parse(&p).unwrap();
            assert_eq!(r.payload_len, p.payload().len());
            ip4!(p);
        }
        if let Ok(p) = ipv4::Ipv4Packet::new_checked_truncated(b) {
            assert_eq!(p.options().len(), p.header_len() - ipv4::HEADER_LEN);
            ip4!(p);
        }
        ip4!(ipv4::Ipv4Packet::new_unchecked(b));

        macro_rules! ip6 {
            ($p:expr) => {{
                let p = $p;
                let _ = (
                    p.version(),
                    p.traffic_class(),
                    p.flow_label(),
                    p.payload_len(),
                );
                let _ = (p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr());
                let _ = p.payload().len();
                if let Ok((_, off, _)) = p.upper_layer() {
                    assert!(off <= ipv6::HEADER_LEN + p.payload().len());
                }
                let _ = ipv6::Ipv6Repr::parse(&p);
            }};
        }
        if let Ok(p) = ipv6::Ipv6Packet::new_checked(b) {
            assert_eq!(p.payload().len(), usize::from(p.payload_len()));
            ip6!(p);
        }
        if let Ok(p) = ipv6::Ipv6Packet::new_checked_truncated(b) {
            ip6!(p);
        }
        ip6!(ipv6::Ipv6Packet::new_unchecked(b));

        macro_rules! tcp {
            ($p:expr) => {{
                let p = $p;
                let _ = (
                    p.src_port(),
                    p.dst_port(),
                    p.seq_number(),
                    p.ack_number(),
                    p.header_len(),
                );
                let _ = (
                    p.flags(),
                    p.fin(),
                    p.syn(),
                    p.rst(),
                    p.psh(),
                    p.ack(),
                    p.urg(),
                );
                let _ = (
                    p.window_len(),
                    p.checksum(),
                    p.urgent_at(),
                    p.options().len(),
                );
                let _ = (
                    p.payload().len(),
                    p.verify_checksum(u32::MAX),
                    p.verify_checksum(0),
                );
            }};
        }
        if let Ok(p) = tcp::TcpPacket::new_checked(b) {
            assert_eq!(p.header_len() + p.payload().len(), b.len());
            tcp!(p);
        }
        if let Ok(p) = tcp::TcpPacket::new_checked_truncated(b) {
            tcp!(p);
        }
        tcp!(tcp::TcpPacket::new_unchecked(b));

        macro_rules! udp {
            ($p:expr) => {{
                let p = $p;
                let _ = (
                    p.src_port(),
                    p.dst_port(),
                    p.len(),
                    p.is_empty(),
                    p.checksum(),
                );
                let _ = (p.payload().len(), p.verify_checksum(u32::MAX));
            }};
        }
        if let Ok(p) = udp::UdpPacket::new_checked(b) {
            assert_eq!(p.payload().len() + udp::HEADER_LEN, usize::from(p.len()));
            udp!(p);
        }
        if let Ok(p) = udp::UdpPacket::new_checked_truncated(b) {
            udp!(p);
        }
        udp!(udp::UdpPacket::new_unchecked(b));

        macro_rules! icmp4 {
            ($p:expr) => {{
                let p = $p;
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.rest_of_header());
                let _ = (
                    p.echo_ident(),
                    p.echo_seq_no(),
                    p.next_hop_mtu(),
                    p.data().len(),
                );
                let _ = (p.is_error(), p.verify_checksum());
            }};
        }
        if let Ok(p) = icmpv4::Icmpv4Packet::new_checked(b) {
            icmp4!(p);
        }
        icmp4!(icmpv4::Icmpv4Packet::new_unchecked(b));

        // Setters and in-place helpers on unchecked views of a copy must not panic either.
        let mut m = [0u8; 200];
        let m = &mut m[..b.len()];
        m.copy_from_slice(b);
        let mut f = ethernet::EthernetFrame::new_unchecked(&mut *m);
        f.set_dst_addr(ethernet::EthernetAddress::BROADCAST);
        f.set_ethertype(0x0800);
        f.set_vlan_tci(1);
        let _ = f.payload_mut().len();
        let mut p = ipv4::Ipv4Packet::new_unchecked(&mut *m);
        p.set_src_addr_incremental(a4);
        p.set_dst_addr_incremental(a4);
        let _ = p.decrement_ttl_incremental();
        p.set_frag_offset(8);
        p.fill_checksum();
        let _ = (p.payload_mut().len(), p.options_mut().len());
        let mut p = ipv6::Ipv6Packet::new_unchecked(&mut *m);
        p.set_flow_label(5);
        p.set_dst_addr(a6);
        let _ = p.payload_mut().len();
        let mut p = tcp::TcpPacket::new_unchecked(&mut *m);
        p.set_dst_port_incremental(1);
        p.update_checksum_for_addr(&[1, 2, 3, 4], &[5, 6, 7, 8]);
        p.fill_checksum(u32::MAX);
        let _ = (p.payload_mut().len(), p.options_mut().len());
        let mut p = udp::UdpPacket::new_unchecked(&mut *m);
        p.set_src_port_incremental(1);
        p.fill_checksum(u32::MAX);
        let _ = p.payload_mut().len();
        let mut p = icmpv4::Icmpv4Packet::new_unchecked(&mut *m);
        p.fill_checksum();
        let _ = p.data_mut().len();
        let n = m.len();
        let _ = icmpv4::FragNeededRepr { mtu: 1480 }.emit_in_place(m, n);
        let _ = icmpv4::FragNeededRepr { mtu: 1480 }.emit(m, b);
    }

    #[test]
    fn fixtures_do_not_panic() {
        for f in [
            &fixtures::TCP_SYN[..],
            &fixtures::UDP_DNS[..],
            &fixtures::ICMP_ECHO[..],
            &fixtures::ICMP_FRAG_NEEDED[..],
            &fixtures::ARP_REQUEST[..],
            &fixtures::VLAN_FRAME[..],
            &fixtures::IPV6_EXT_UDP[..],
            &fixtures::ICMPV6_PTB[..],
        ] {
            for end in 0..=f.len() {
                for start in 0..end.min(60) {
                    exercise(&f[start..end]);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            exercise(&b);
        }

        #[test]
        fn plausible_headers_never_panic(
            mut b in proptest::collection::vec(any::<u8>(), 0..200),
            first in prop_oneof![0x40u8..0x50, 0x60u8..0x70],
            len in any::<u8>(),
        ) {
            // Bias towards inputs that get past the version checks.
            if let Some(x) = b.first_mut() {
                *x = first;
            }
            if b.len() > 5 {
                b[2] = 0;
                b[3] = len;
                b[4] = 0;
                b[5] = len;
            }
            exercise(&b);
        }
    }
}
