//! IPv6 packets (RFC 8200) and a walk over their extension headers.

use crate::field;
use crate::protocol;
use crate::{Error, Result};
use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers [`Ipv6Packet::upper_layer`] walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

mod offset {
    pub(super) const VER_TC_FLOW: usize = 0;
    pub(super) const LENGTH: usize = 4;
    pub(super) const NXT_HDR: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: usize = 8;
    pub(super) const DST: usize = 24;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer, checking version 6 and that the header and Payload Length fit
    /// (the buffer may be longer).
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let packet = Self::new_checked_truncated(buffer)?;
        if HEADER_LEN + usize::from(packet.payload_len()) > packet.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Like [`new_checked`](Self::new_checked) but accepts a payload shorter than Payload
    /// Length (a packet quoted in an ICMPv6 error); the fixed header must be present.
    pub fn new_checked_truncated(buffer: T) -> Result<Ipv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(packet)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        field::u32_at(self.buffer.as_ref(), offset::VER_TC_FLOW)
    }

    /// Version (6).
    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// Traffic Class.
    pub fn traffic_class(&self) -> u8 {
        ((self.first_word() >> 20) & 0xff) as u8
    }

    /// Flow Label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload Length (everything after the fixed header, extension headers included).
    pub fn payload_len(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::LENGTH)
    }

    /// Next Header (first extension header or upper-layer protocol, see [`protocol`]).
    pub fn next_header(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::NXT_HDR)
    }

    /// Hop Limit.
    pub fn hop_limit(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::HOP_LIMIT)
    }

    /// Source Address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(field::array_at::<16>(self.buffer.as_ref(), offset::SRC))
    }

    /// Destination Address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(field::array_at::<16>(self.buffer.as_ref(), offset::DST))
    }

    /// The packet as far as Payload Length says, clipped to the buffer.
    fn packet_bytes(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(b.len());
        field::slice(b, 0, end)
    }

    /// Payload: bytes 40..40+payload_len, clipped to the buffer.
    pub fn payload(&self) -> &[u8] {
        let p = self.packet_bytes();
        field::slice(p, HEADER_LEN, p.len())
    }

    /// Walks the extension headers (hop-by-hop, routing, destination options, fragment, AH)
    /// and returns `(protocol, offset, non_first_fragment)`: the upper-layer protocol, the
    /// offset of its header from the start of the IPv6 header, and whether a fragment header
    /// with a non-zero offset was seen (then the walk stops there: what follows is not a
    /// header). Stops at any other next-header value (TCP, UDP, ICMPv6, ESP, no next header).
    ///
    /// Errors: `Truncated` if an extension header runs past the payload; `Malformed` for
    /// more than [`MAX_EXT_HEADERS`] extension headers or a hop-by-hop header that is not
    /// first.
    pub fn upper_layer(&self) -> Result<(u8, usize, bool)> {
        let p = self.packet_bytes();
        if p.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let mut next = self.next_header();
        let mut off = HEADER_LEN;
        let mut count = 0;
        loop {
            let len = match next {
                protocol::HOPOPT | protocol::IPV6_ROUTE | protocol::IPV6_OPTS => {
                    if next == protocol::HOPOPT && count != 0 {
                        return Err(Error::Malformed);
                    }
                    (usize::from(field::u8_at(p, off + 1)) + 1) * 8
                }
                protocol::IPV6_FRAG => 8,
                protocol::AH => (usize::from(field::u8_at(p, off + 1)) + 2) * 4,
                _ => return Ok((next, off, false)),
            };
            if count == MAX_EXT_HEADERS {
                return Err(Error::Malformed);
            }
            count += 1;
            if off + len > p.len() {
                return Err(Error::Truncated);
            }
            let this = next;
            next = field::u8_at(p, off);
            if this == protocol::IPV6_FRAG && field::u16_at(p, off + 2) & 0xfff8 != 0 {
                return Ok((next, off + len, true));
            }
            off += len;
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_first_word(&mut self, value: u32) {
        field::set_u32(self.buffer.as_mut(), offset::VER_TC_FLOW, value);
    }

    /// Sets the Version.
    pub fn set_version(&mut self, value: u8) {
        let w = self.first_word() & 0x0fff_ffff;
        self.set_first_word(w | (u32::from(value & 0x0f) << 28));
    }

    /// Sets the Traffic Class.
    pub fn set_traffic_class(&mut self, value: u8) {
        let w = self.first_word() & 0xf00f_ffff;
        self.set_first_word(w | (u32::from(value) << 20));
    }

    /// Sets the Flow Label (low 20 bits of `value`).
    pub fn set_flow_label(&mut self, value: u32) {
        let w = self.first_word() & 0xfff0_0000;
        self.set_first_word(w | (value & 0x000f_ffff));
    }

    /// Sets the Payload Length.
    pub fn set_payload_len(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::LENGTH, value);
    }

    /// Sets the Next Header.
    pub fn set_next_header(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::NXT_HDR, value);
    }

    /// Sets the Hop Limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::HOP_LIMIT, value);
    }

    /// Sets the Source Address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        field::set_bytes(self.buffer.as_mut(), offset::SRC, &addr.octets());
    }

    /// Sets the Destination Address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        field::set_bytes(self.buffer.as_mut(), offset::DST, &addr.octets());
    }

    /// Payload (40..40+payload_len, clipped to the buffer), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.payload_len());
        let b = self.buffer.as_mut();
        let end = (HEADER_LEN + len).min(b.len());
        field::slice_mut(b, HEADER_LEN, end)
    }
}

/// High-level form of the fixed IPv6 header (traffic class and flow label are emitted as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source Address.
    pub src_addr: Ipv6Addr,
    /// Destination Address.
    pub dst_addr: Ipv6Addr,
    /// Next Header.
    pub next_header: u8,
    /// Payload Length.
    pub payload_len: usize,
    /// Hop Limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Reads the fixed header, re-checking what [`Ipv6Packet::new_checked`] checks.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        let packet = Ipv6Packet::new_checked(packet.buffer.as_ref())?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Length of the header `emit` writes: 40.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header (traffic class and flow label 0; Payload Length saturates at
    /// 65535).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_first_word(6 << 28);
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ICMPV6_PTB, IPV6_EXT_UDP};

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_with_extension_headers() {
        let p = Ipv6Packet::new_checked(&IPV6_EXT_UDP[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x12);
        assert_eq!(p.flow_label(), 0xabcde);
        assert_eq!(p.payload_len(), 32);
        assert_eq!(p.next_header(), protocol::HOPOPT);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), addr("2001:db8::1"));
        assert_eq!(p.dst_addr(), addr("2001:db8::2"));
        assert_eq!(p.payload().len(), 32);
        assert_eq!(p.upper_layer(), Ok((protocol::UDP, 56, false)));
    }

    #[test]
    fn non_first_fragment_and_errors() {
        let mut b = IPV6_EXT_UDP;
        // Fragment offset 185 (1480 bytes): the walk stops after the fragment header.
        b[50..52].copy_from_slice(&((185u16 << 3) | 1).to_be_bytes());
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok((protocol::UDP, 56, true)));

        // Payload Length cutting the fragment header: truncated.
        let mut b = IPV6_EXT_UDP;
        b[4..6].copy_from_slice(&12u16.to_be_bytes());
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Truncated));

        // A hop-by-hop header after the first one is malformed.
        let mut b = IPV6_EXT_UDP;
        b[40] = protocol::HOPOPT;
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Malformed));

        assert_eq!(
            Ipv6Packet::new_checked(&IPV6_EXT_UDP[..71]),
            Err(Error::Truncated)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&IPV6_EXT_UDP[..39]),
            Err(Error::Truncated)
        );
        let mut b = IPV6_EXT_UDP;
        b[0] = 0x40;
        assert_eq!(Ipv6Packet::new_checked(&b[..]), Err(Error::Malformed));
    }

    #[test]
    fn too_many_extension_headers() {
        // Nine destination-options headers in a row.
        let mut b = [0u8; HEADER_LEN + 9 * 8 + 8];
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_version(6);
        p.set_payload_len((9 * 8 + 8) as u16);
        p.set_next_header(protocol::IPV6_OPTS);
        for i in 0..9 {
            b[HEADER_LEN + i * 8] = if i == 8 {
                protocol::TCP
            } else {
                protocol::IPV6_OPTS
            };
        }
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Malformed));
        // Eight are fine.
        b[HEADER_LEN + 7 * 8] = protocol::TCP;
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok((protocol::TCP, HEADER_LEN + 64, false)));
    }

    #[test]
    fn ah_and_routing_lengths() {
        let mut b = [0u8; HEADER_LEN + 24 + 16 + 20];
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_version(6);
        p.set_payload_len(60);
        p.set_next_header(protocol::IPV6_ROUTE);
        // Routing header, Hdr Ext Len 2 -> 24 bytes.
        b[40] = protocol::AH;
        b[41] = 2;
        // AH, Payload Len 2 -> 16 bytes.
        b[64] = protocol::TCP;
        b[65] = 2;
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok((protocol::TCP, 80, false)));
    }

    #[test]
    fn quoted_packet_in_ptb() {
        let quote = &ICMPV6_PTB[48..];
        assert_eq!(Ipv6Packet::new_checked(quote), Err(Error::Truncated));
        let q = Ipv6Packet::new_checked_truncated(quote).unwrap();
        assert_eq!(q.payload_len(), 1460);
        assert_eq!(q.payload().len(), 24);
        assert_eq!(q.next_header(), protocol::TCP);
        assert_eq!(q.upper_layer(), Ok((protocol::TCP, 40, false)));
        assert_eq!(q.dst_addr(), addr("2001:db8:1::7"));
    }

    #[test]
    fn emit_round_trip() {
        let p = Ipv6Packet::new_checked(&ICMPV6_PTB[..]).unwrap();
        let repr = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(repr.next_header, protocol::ICMPV6);
        assert_eq!(repr.hop_limit, 255);
        assert_eq!(repr.buffer_len(), 40);
        let mut buf = ICMPV6_PTB;
        buf[..40].fill(0xee);
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ICMPV6_PTB);
    }

    #[test]
    fn setters() {
        let mut b = IPV6_EXT_UDP;
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        p.set_traffic_class(0xb8);
        p.set_flow_label(0x12345);
        p.set_hop_limit(1);
        p.set_src_addr(addr("::1"));
        p.set_dst_addr(addr("fe80::2"));
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0x12345)
        );
        assert_eq!(p.hop_limit(), 1);
        assert_eq!(p.src_addr(), addr("::1"));
        assert_eq!(p.dst_addr(), addr("fe80::2"));
        p.payload_mut()[0] = protocol::TCP;
        p.set_next_header(protocol::IPV6_OPTS);
        assert_eq!(p.upper_layer(), Ok((protocol::TCP, 48, false)));
    }
}
