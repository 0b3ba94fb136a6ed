//! UDP datagrams (RFC 768).

use crate::checksum;
use crate::field;
use crate::{Error, Result};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// Offset of the checksum field in the header (what a `CHECKSUM_PARTIAL` offload names).
pub const CHECKSUM_OFFSET: usize = offset::CHECKSUM;

mod offset {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer, checking the header is present and `8 <= Length <= buffer length`.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_checked_truncated(buffer)?;
        if usize::from(packet.len()) < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if usize::from(packet.len()) > packet.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Wraps the start of a datagram quoted in an ICMP error: only the 8-byte header must be
    /// present; [`payload`](Self::payload) returns what is there.
    pub fn new_checked_truncated(buffer: T) -> Result<UdpPacket<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source Port.
    pub fn src_port(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::SRC_PORT)
    }

    /// Destination Port.
    pub fn dst_port(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::DST_PORT)
    }

    /// Length (header and data).
    pub fn len(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::LENGTH)
    }

    /// Whether Length says there is no data.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum (0 means "none" over IPv4).
    pub fn checksum(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    /// The datagram as far as Length says, clipped to the buffer.
    fn datagram(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        field::slice(b, 0, usize::from(self.len()).min(b.len()))
    }

    /// Data: bytes 8..Length, clipped to the buffer.
    pub fn payload(&self) -> &[u8] {
        let d = self.datagram();
        field::slice(d, HEADER_LEN, d.len())
    }

    /// Whether the checksum is right, given the unfolded pseudo-header sum `pseudo` (with
    /// the UDP Length). A zero checksum means "not computed" and is accepted: that is right
    /// for IPv4, while over IPv6 (RFC 8200 8.1) the caller must reject it.
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = self.datagram();
        d.len() >= HEADER_LEN
            && checksum::fold(checksum::combine(pseudo, checksum::sum(d))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the Source Port (the checksum is left alone).
    pub fn set_src_port(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::SRC_PORT, value);
    }

    /// Sets the Destination Port (the checksum is left alone).
    pub fn set_dst_port(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::DST_PORT, value);
    }

    /// Sets the Length.
    pub fn set_len(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::LENGTH, value);
    }

    /// Sets the Checksum.
    pub fn set_checksum(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::CHECKSUM, value);
    }

    /// Recomputes the checksum over the datagram (0..Length), given the unfolded
    /// pseudo-header sum; a computed 0 is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let s = checksum::combine(pseudo, checksum::sum(self.datagram()));
        let c = !checksum::fold(s);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Applies an incremental update to a present checksum: a zero ("none") checksum stays
    /// zero, and a result of 0 is written as 0xffff.
    fn update_checksum_with(&mut self, f: impl FnOnce(u16) -> u16) {
        let c = self.checksum();
        if c != 0 {
            let n = f(c);
            self.set_checksum(if n == 0 { 0xffff } else { n });
        }
    }

    /// Sets the Source Port and fixes the checksum incrementally (left 0 if it is 0).
    pub fn set_src_port_incremental(&mut self, value: u16) {
        let old = self.src_port();
        self.update_checksum_with(|c| checksum::update16(c, old, value));
        self.set_src_port(value);
    }

    /// Sets the Destination Port and fixes the checksum incrementally (left 0 if it is 0).
    pub fn set_dst_port_incremental(&mut self, value: u16) {
        let old = self.dst_port();
        self.update_checksum_with(|c| checksum::update16(c, old, value));
        self.set_dst_port(value);
    }

    /// Fixes the checksum for a pseudo-header address change `old` -> `new` (4 or 16 bytes);
    /// a zero checksum stays zero.
    pub fn update_checksum_for_addr(&mut self, old: &[u8], new: &[u8]) {
        self.update_checksum_with(|c| checksum::update_bytes(c, old, new));
    }

    /// Data (8..Length, clipped to the buffer), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        let b = self.buffer.as_mut();
        let end = len.min(b.len());
        field::slice_mut(b, HEADER_LEN, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{pseudo_header_v4, pseudo_header_v6};
    use crate::fixtures::{IPV6_EXT_UDP, UDP_DNS};
    use crate::protocol;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    const DST: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    fn dns() -> &'static [u8] {
        &UDP_DNS[20..]
    }

    #[test]
    fn parse_dns_query() {
        let u = UdpPacket::new_checked(dns()).unwrap();
        assert_eq!(u.src_port(), 0xd5b3);
        assert_eq!(u.dst_port(), 53);
        assert_eq!(u.len(), 37);
        assert!(!u.is_empty());
        assert_eq!(u.payload().len(), 29);
        assert_eq!(&u.payload()[12..20], b"\x07example");
        assert!(u.verify_checksum(pseudo_header_v4(SRC, DST, protocol::UDP, 37)));
        assert!(!u.verify_checksum(pseudo_header_v4(DST, DST, protocol::UDP, 37)));
    }

    #[test]
    fn parse_v6() {
        let u = UdpPacket::new_checked(&IPV6_EXT_UDP[56..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (0x1234, 53, 16));
        assert_eq!(u.payload(), b"hello v6");
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::2".parse().unwrap();
        assert!(u.verify_checksum(pseudo_header_v6(&s, &d, protocol::UDP, 16)));
    }

    #[test]
    fn checked_errors_and_truncated() {
        assert_eq!(UdpPacket::new_checked(&dns()[..7]), Err(Error::Truncated));
        assert_eq!(UdpPacket::new_checked(&dns()[..36]), Err(Error::Truncated));
        let mut b = [0u8; 37];
        b.copy_from_slice(dns());
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(Error::Malformed));
        let q = UdpPacket::new_checked_truncated(&dns()[..12]).unwrap();
        assert_eq!(q.payload(), &dns()[8..12]);
        assert_eq!(
            UdpPacket::new_checked_truncated(&dns()[..7]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn emit_round_trip_via_setters() {
        let mut b = [0u8; 37];
        b[8..].copy_from_slice(&dns()[8..]);
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.set_src_port(0xd5b3);
        u.set_dst_port(53);
        u.set_len(37);
        u.fill_checksum(pseudo_header_v4(SRC, DST, protocol::UDP, 37));
        assert_eq!(&b[..], dns());
    }

    #[test]
    fn zero_checksum_stays_zero() {
        let mut b = [0u8; 37];
        b.copy_from_slice(dns());
        let mut u = UdpPacket::new_checked(&mut b[..]).unwrap();
        u.set_checksum(0);
        u.update_checksum_for_addr(&DST.octets(), &[10, 0, 1, 2]);
        u.set_dst_port_incremental(5353);
        assert_eq!(u.checksum(), 0);
        assert_eq!(u.dst_port(), 5353);
        assert!(u.verify_checksum(0));
        u.payload_mut()[0] = 0xff;
        assert_eq!(u.payload()[0], 0xff);
    }

    proptest! {
        #[test]
        fn incremental_matches_recompute(
            mut dgram in proptest::collection::vec(any::<u8>(), 8..120),
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new_addr in any::<[u8; 4]>(),
            new_port in any::<u16>(), no_checksum in any::<bool>(),
        ) {
            let (src, dst, new_addr) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(new_addr));
            let len = dgram.len() as u16;
            dgram[4..6].copy_from_slice(&len.to_be_bytes());
            let mut u = UdpPacket::new_checked(&mut dgram[..]).unwrap();
            if no_checksum {
                u.set_checksum(0);
            } else {
                u.fill_checksum(pseudo_header_v4(src, dst, 17, u32::from(len)));
            }
            // Reverse NAT: the reply's source becomes the VIP and port.
            u.update_checksum_for_addr(&src.octets(), &new_addr.octets());
            u.set_src_port_incremental(new_port);
            let pseudo = pseudo_header_v4(new_addr, dst, 17, u32::from(len));
            let got = u.checksum();
            if no_checksum {
                prop_assert_eq!(got, 0);
            } else {
                prop_assert!(u.verify_checksum(pseudo));
                u.fill_checksum(pseudo);
                prop_assert_eq!(got, u.checksum());
            }
        }

        #[test]
        fn incremental_v6_matches_recompute(
            mut dgram in proptest::collection::vec(any::<u8>(), 8..120),
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new_addr in any::<[u8; 16]>(),
            new_port in any::<u16>(),
        ) {
            let (src, dst, new_addr) = (Ipv6Addr::from(src), Ipv6Addr::from(dst), Ipv6Addr::from(new_addr));
            let len = dgram.len() as u16;
            dgram[4..6].copy_from_slice(&len.to_be_bytes());
            let mut u = UdpPacket::new_checked(&mut dgram[..]).unwrap();
            u.fill_checksum(pseudo_header_v6(&src, &dst, 17, u32::from(len)));
            u.update_checksum_for_addr(&dst.octets(), &new_addr.octets());
            u.set_dst_port_incremental(new_port);
            let got = u.checksum();
            u.fill_checksum(pseudo_header_v6(&src, &new_addr, 17, u32::from(len)));
            prop_assert_eq!(got, u.checksum());
        }
    }
}
