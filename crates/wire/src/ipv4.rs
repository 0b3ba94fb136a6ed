//! IPv4 packets (RFC 791).

use crate::checksum;
use crate::field;
use crate::{Error, Result};
use std::net::Ipv4Addr;

pub use crate::protocol;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod offset {
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLG_OFF: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC: usize = 12;
    pub(super) const DST: usize = 16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer, checking version 4, `IHL >= 5`, and that both the header and
    /// `total_len` fit in the buffer (which may carry trailing link-layer padding).
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_checked_truncated(buffer)?;
        if usize::from(packet.total_len()) > packet.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Like [`new_checked`](Self::new_checked) but accepts a buffer shorter than `total_len`
    /// (a packet quoted in an ICMP error); the whole header must still be present.
    /// [`payload`](Self::payload) then returns what is present.
    pub fn new_checked_truncated(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 4 || packet.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if packet.header_len() > len {
            return Err(Error::Truncated);
        }
        if usize::from(packet.total_len()) < packet.header_len() {
            return Err(Error::Malformed);
        }
        Ok(packet)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4).
    pub fn version(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::VER_IHL) >> 4
    }

    /// Internet Header Length, in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(field::u8_at(self.buffer.as_ref(), offset::VER_IHL) & 0x0f) * 4
    }

    /// DSCP and ECN byte (former Type of Service).
    pub fn dscp_ecn(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::DSCP_ECN)
    }

    /// Total Length of the datagram, header included.
    pub fn total_len(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::IDENT)
    }

    fn flags_offset(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::FLG_OFF)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment Offset, in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (More Fragments set or a non-zero Fragment Offset).
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to Live.
    pub fn ttl(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::TTL)
    }

    /// Protocol of the payload, see [`protocol`].
    pub fn protocol(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::PROTOCOL)
    }

    /// Header Checksum.
    pub fn checksum(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    /// Source Address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(field::array_at::<4>(self.buffer.as_ref(), offset::SRC))
    }

    /// Destination Address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(field::array_at::<4>(self.buffer.as_ref(), offset::DST))
    }

    /// Options (bytes 20..header_len).
    pub fn options(&self) -> &[u8] {
        field::slice(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The whole header (bytes 0..header_len), or empty if it does not fit.
    pub fn header(&self) -> &[u8] {
        field::slice(self.buffer.as_ref(), 0, self.header_len())
    }

    /// Payload: bytes header_len..total_len, clipped to the buffer.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.total_len()).min(b.len());
        field::slice(b, self.header_len(), end)
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        let h = self.header();
        h.len() >= HEADER_LEN && checksum::checksum(h) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the Version field.
    pub fn set_version(&mut self, value: u8) {
        let b = self.buffer.as_mut();
        let old = field::u8_at(b, offset::VER_IHL);
        field::set_u8(b, offset::VER_IHL, (old & 0x0f) | (value << 4));
    }

    /// Sets the IHL from a header length in bytes (must be a multiple of 4, at most 60).
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buffer.as_mut();
        let old = field::u8_at(b, offset::VER_IHL);
        let ihl = ((len / 4) & 0x0f) as u8;
        field::set_u8(b, offset::VER_IHL, (old & 0xf0) | ihl);
    }

    /// Sets the DSCP and ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::DSCP_ECN, value);
    }

    /// Sets the Total Length.
    pub fn set_total_len(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::LENGTH, value);
    }

    /// Sets the Identification.
    pub fn set_ident(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::IDENT, value);
    }

    fn set_flags_offset(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::FLG_OFF, value);
    }

    /// Sets the Don't Fragment flag.
    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(if value { v | FLAG_DF } else { v });
    }

    /// Sets the More Fragments flag.
    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(if value { v | FLAG_MF } else { v });
    }

    /// Sets the Fragment Offset, in bytes (rounded down to a multiple of 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let v = self.flags_offset() & !OFFSET_MASK;
        self.set_flags_offset(v | (bytes >> 3));
    }

    /// Sets the Time to Live.
    pub fn set_ttl(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::TTL, value);
    }

    /// Sets the Protocol.
    pub fn set_protocol(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::PROTOCOL, value);
    }

    /// Sets the Header Checksum.
    pub fn set_checksum(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::CHECKSUM, value);
    }

    /// Sets the Source Address (the checksum is left alone).
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        field::set_bytes(self.buffer.as_mut(), offset::SRC, &addr.octets());
    }

    /// Sets the Destination Address (the checksum is left alone).
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        field::set_bytes(self.buffer.as_mut(), offset::DST, &addr.octets());
    }

    /// Recomputes the Header Checksum over the whole header.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Sets the Source Address and fixes the header checksum incrementally (RFC 1624).
    /// The TCP/UDP checksum (pseudo header) is the caller's business.
    pub fn set_src_addr_incremental(&mut self, addr: Ipv4Addr) {
        let old = self.src_addr().octets();
        let c = checksum::update_bytes(self.checksum(), &old, &addr.octets());
        self.set_src_addr(addr);
        self.set_checksum(c);
    }

    /// Sets the Destination Address and fixes the header checksum incrementally (RFC 1624).
    /// The TCP/UDP checksum (pseudo header) is the caller's business.
    pub fn set_dst_addr_incremental(&mut self, addr: Ipv4Addr) {
        let old = self.dst_addr().octets();
        let c = checksum::update_bytes(self.checksum(), &old, &addr.octets());
        self.set_dst_addr(addr);
        self.set_checksum(c);
    }

    /// Decrements the TTL and fixes the header checksum incrementally. Returns `false` and
    /// changes nothing if the TTL is already 0 or 1 (the packet must not be forwarded).
    pub fn decrement_ttl_incremental(&mut self) -> bool {
        let ttl = self.ttl();
        if ttl <= 1 {
            return false;
        }
        let proto = self.protocol();
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        true
    }

    /// Options, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        field::slice_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// Payload (header_len..total_len, clipped to the buffer), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let total = usize::from(self.total_len());
        let b = self.buffer.as_mut();
        let end = total.min(b.len());
        field::slice_mut(b, start, end)
    }
}

/// High-level form of an IPv4 header (options are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source Address.
    pub src_addr: Ipv4Addr,
    /// Destination Address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Length of the payload (Total Length minus the header).
    pub payload_len: usize,
    /// Time to Live.
    pub ttl: u8,
    /// DSCP and ECN byte.
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Reads a header. Re-checks what [`Ipv4Packet::new_checked`] checks (so an unchecked view
    /// is fine); does not verify the checksum (use [`Ipv4Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        let packet = Ipv4Packet::new_checked(packet.buffer.as_ref())?;
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()).saturating_sub(packet.header_len()),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Length of the header `emit` writes: 20.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header without options (no fragmentation) and fills its checksum.
    /// Total Length saturates at 65535 if `payload_len` is too large.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        let total = self.payload_len.saturating_add(HEADER_LEN);
        packet.set_total_len(u16::try_from(total).unwrap_or(u16::MAX));
        packet.set_ident(self.ident);
        packet.set_flags_offset(if self.dont_frag { FLAG_DF } else { 0 });
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ICMP_FRAG_NEEDED, TCP_SYN, UDP_DNS};
    use proptest::prelude::*;

    #[test]
    fn parse_tcp_syn_header() {
        let p = Ipv4Packet::new_checked(&TCP_SYN[14..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::TCP);
        assert_eq!(p.checksum(), 0x9cbc);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 104));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 40);
        assert!(p.verify_checksum());
    }

    #[test]
    fn parse_udp_and_trailing_padding() {
        // A 57-byte packet in a 64-byte buffer (Ethernet minimum-size padding).
        let mut buf = [0u8; 64];
        buf[..UDP_DNS.len()].copy_from_slice(&UDP_DNS);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.protocol(), protocol::UDP);
        assert!(!p.dont_frag());
        assert_eq!(p.payload(), &UDP_DNS[20..]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn checked_errors() {
        assert_eq!(
            Ipv4Packet::new_checked(&UDP_DNS[..19]),
            Err(Error::Truncated)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&UDP_DNS[..40]),
            Err(Error::Truncated)
        );
        let mut b = UDP_DNS;
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Malformed));
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Malformed));
        b[0] = 0x4f; // 60-byte header in a 57-byte buffer.
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Truncated));
        b[0] = 0x45;
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Malformed));
    }

    #[test]
    fn truncated_quote_in_icmp() {
        let quote = &ICMP_FRAG_NEEDED[28..];
        assert_eq!(Ipv4Packet::new_checked(quote), Err(Error::Truncated));
        let q = Ipv4Packet::new_checked_truncated(quote).unwrap();
        assert_eq!(q.total_len(), 1500);
        assert!(q.dont_frag());
        assert_eq!(q.protocol(), protocol::TCP);
        assert_eq!(q.src_addr(), Ipv4Addr::new(192, 168, 0, 104));
        assert_eq!(q.dst_addr(), Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(q.payload().len(), 8);
        assert!(q.verify_checksum());
        assert_eq!(
            Ipv4Packet::new_checked_truncated(&quote[..19]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn fragments() {
        let mut b = UDP_DNS;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_more_frags(true);
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        p.set_more_frags(false);
        p.set_frag_offset(1480);
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.set_dont_frag(true);
        assert!(p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn emit_round_trip() {
        let p = Ipv4Packet::new_checked(&TCP_SYN[14..]).unwrap();
        let repr = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 40);
        assert_eq!(repr.buffer_len(), 20);
        let mut buf = [0u8; 60];
        buf[20..].copy_from_slice(p.payload());
        let mut out = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut out);
        assert_eq!(&buf[..], &TCP_SYN[14..]);
    }

    #[test]
    fn emit_tunnel_outer_header() {
        // IP-in-IP outer header around the SYN, director 10.0.0.1 -> real server 10.0.1.2.
        let inner = &TCP_SYN[14..];
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 1, 2),
            protocol: protocol::IPIP,
            payload_len: inner.len(),
            ttl: 64,
            dscp_ecn: 0,
            ident: 7,
            dont_frag: true,
        };
        let mut buf = [0u8; 80];
        buf[20..].copy_from_slice(inner);
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let outer = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!(outer.total_len(), 80);
        assert_eq!(outer.payload(), inner);
        assert_eq!(Ipv4Repr::parse(&outer), Ok(repr));
    }

    #[test]
    fn incremental_setters() {
        let mut b = TCP_SYN;
        let mut p = Ipv4Packet::new_checked(&mut b[14..]).unwrap();
        p.set_dst_addr_incremental(Ipv4Addr::new(10, 0, 1, 2));
        assert!(p.verify_checksum());
        p.set_src_addr_incremental(Ipv4Addr::new(172, 16, 0, 9));
        assert!(p.verify_checksum());
        assert!(p.decrement_ttl_incremental());
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        p.set_ttl(1);
        p.fill_checksum();
        let before = p.checksum();
        assert!(!p.decrement_ttl_incremental());
        assert_eq!((p.ttl(), p.checksum()), (1, before));
    }

    #[test]
    fn options_and_payload_mut() {
        let mut b = [0u8; 28];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_total_len(28);
        p.options_mut().copy_from_slice(&[0x94, 0x04, 0, 0]); // Router Alert.
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum());
    }

    fn header_strategy() -> impl Strategy<Value = Vec<u8>> {
        (0usize..=10, proptest::collection::vec(any::<u8>(), 60)).prop_map(|(opt_words, mut b)| {
            let hl = 20 + 4 * opt_words;
            b[0] = 0x40 | (hl / 4) as u8;
            b.truncate(hl);
            let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
            p.set_total_len(hl as u16);
            p.fill_checksum();
            b
        })
    }

    proptest! {
        #[test]
        fn incremental_header_checksum_matches_recompute(
            b in header_strategy(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            which in 0u8..4,
        ) {
            let mut inc = b.clone();
            let mut p = Ipv4Packet::new_checked(&mut inc[..]).unwrap();
            prop_assert!(p.verify_checksum());
            if which & 1 != 0 {
                p.set_src_addr_incremental(Ipv4Addr::from(src));
            }
            if which & 2 != 0 || which == 0 {
                p.set_dst_addr_incremental(Ipv4Addr::from(dst));
            }
            let ttl_ok = p.decrement_ttl_incremental();
            let got = p.checksum();
            let mut full = inc.clone();
            let mut f = Ipv4Packet::new_checked(&mut full[..]).unwrap();
            f.fill_checksum();
            prop_assert_eq!(got, f.checksum());
            prop_assert_eq!(ttl_ok, b[8] > 1);
        }
    }
}
