//! Ethernet II frames (IEEE 802.3) with at most one 802.1Q / 802.1ad VLAN tag.

use crate::field;
use crate::{Error, Result};
use core::fmt;

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of an Ethernet header with one VLAN tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// EtherType values (IEEE 802 numbers).
pub mod ethertype {
    /// Internet Protocol version 4.
    pub const IPV4: u16 = 0x0800;
    /// Address Resolution Protocol.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (Q-in-Q).
    pub const QINQ: u16 = 0x88a8;
    /// Internet Protocol version 6.
    pub const IPV6: u16 = 0x86dd;
}

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Address from a 6-byte slice; `None` if the slice is not 6 bytes long.
    pub fn from_bytes(b: &[u8]) -> Option<EthernetAddress> {
        <[u8; 6]>::try_from(b).ok().map(EthernetAddress)
    }

    /// The six octets.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit (least significant bit of the first octet) is set.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (not group) address.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

mod offset {
    pub(super) const DST: usize = 0;
    pub(super) const SRC: usize = 6;
    pub(super) const ETHERTYPE: usize = 12;
    pub(super) const TCI: usize = 14;
    pub(super) const INNER_ETHERTYPE: usize = 16;
}

/// A view of an Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer, checking it holds the whole header (including a VLAN tag if present).
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let frame = Self::new_unchecked(buffer);
        let len = frame.buffer.as_ref().len();
        if len < HEADER_LEN || len < frame.header_len() {
            return Err(Error::Truncated);
        }
        Ok(frame)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress(field::array_at(self.buffer.as_ref(), offset::DST))
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress(field::array_at(self.buffer.as_ref(), offset::SRC))
    }

    /// EtherType (or TPID of a VLAN tag) in bytes 12..14.
    pub fn outer_ethertype(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::ETHERTYPE)
    }

    /// Whether the frame carries a VLAN tag (TPID 0x8100 or 0x88a8).
    pub fn is_tagged(&self) -> bool {
        matches!(self.outer_ethertype(), ethertype::VLAN | ethertype::QINQ)
    }

    /// Tag control information (PCP, DEI, VID) of the VLAN tag, if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_tagged()
            .then(|| field::u16_at(self.buffer.as_ref(), offset::TCI))
    }

    /// VLAN identifier (low 12 bits of the TCI), if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// EtherType of the payload, after at most one VLAN tag.
    pub fn ethertype(&self) -> u16 {
        if self.is_tagged() {
            field::u16_at(self.buffer.as_ref(), offset::INNER_ETHERTYPE)
        } else {
            self.outer_ethertype()
        }
    }

    /// Header length: 14, or 18 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The payload after the header.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        field::slice(b, self.header_len(), b.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        field::set_bytes(self.buffer.as_mut(), offset::DST, &addr.0);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        field::set_bytes(self.buffer.as_mut(), offset::SRC, &addr.0);
    }

    /// Sets bytes 12..14 (the EtherType of an untagged frame, or the TPID of a tag).
    pub fn set_outer_ethertype(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::ETHERTYPE, value);
    }

    /// Sets the EtherType of the payload (after the VLAN tag, if any).
    pub fn set_ethertype(&mut self, value: u16) {
        let off = if self.is_tagged() {
            offset::INNER_ETHERTYPE
        } else {
            offset::ETHERTYPE
        };
        field::set_u16(self.buffer.as_mut(), off, value);
    }

    /// Sets the VLAN TCI; does nothing on an untagged frame.
    pub fn set_vlan_tci(&mut self, tci: u16) {
        if self.is_tagged() {
            field::set_u16(self.buffer.as_mut(), offset::TCI, tci);
        }
    }

    /// The payload after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let b = self.buffer.as_mut();
        let end = b.len();
        field::slice_mut(b, start, end)
    }
}

/// High-level form of an untagged Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC address.
    pub src_addr: EthernetAddress,
    /// Destination MAC address.
    pub dst_addr: EthernetAddress,
    /// EtherType of the payload (after any VLAN tag when parsed).
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of a frame (the VLAN tag, if any, is skipped).
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        let len = frame.buffer.as_ref().len();
        if len < frame.header_len() {
            return Err(Error::Truncated);
        }
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the header `emit` writes: 14.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes an untagged 14-byte header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_outer_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ARP_REQUEST, TCP_SYN, VLAN_FRAME};

    const A: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const B: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);

    #[test]
    fn parse_untagged() {
        let f = EthernetFrame::new_checked(&TCP_SYN[..]).unwrap();
        assert_eq!(f.dst_addr(), A);
        assert_eq!(f.src_addr(), B);
        assert_eq!(f.outer_ethertype(), ethertype::IPV4);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &TCP_SYN[14..]);
        assert_eq!(f.payload()[0], 0x45);
    }

    #[test]
    fn parse_tagged() {
        let f = EthernetFrame::new_checked(&VLAN_FRAME[..]).unwrap();
        assert_eq!(f.outer_ethertype(), ethertype::VLAN);
        assert_eq!(f.vlan_tci(), Some(0x2064));
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload()[0], 0x45);
        // A tagged frame cut inside the tag is truncated.
        assert_eq!(
            EthernetFrame::new_checked(&VLAN_FRAME[..16]),
            Err(Error::Truncated)
        );
        assert_eq!(
            EthernetFrame::new_checked(&VLAN_FRAME[..13]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn broadcast_arp() {
        let f = EthernetFrame::new_checked(&ARP_REQUEST[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert!(f.dst_addr().is_multicast());
        assert!(f.src_addr().is_unicast());
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.src_addr().to_string(), "52:54:00:ab:cd:ef");
    }

    #[test]
    fn emit_round_trip() {
        let f = EthernetFrame::new_checked(&TCP_SYN[..]).unwrap();
        let repr = EthernetRepr::parse(&f).unwrap();
        let mut buf = TCP_SYN;
        buf[..14].fill(0);
        let mut out = EthernetFrame::new_unchecked(&mut buf[..]);
        repr.emit(&mut out);
        assert_eq!(buf, TCP_SYN);
        assert_eq!(repr.buffer_len(), 14);
    }

    #[test]
    fn dr_mac_rewrite_and_tagged_setters() {
        let mut buf = VLAN_FRAME;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_dst_addr(B);
        f.set_src_addr(A);
        f.set_ethertype(ethertype::IPV6);
        f.set_vlan_tci(0x0005);
        assert_eq!(f.dst_addr(), B);
        assert_eq!(f.outer_ethertype(), ethertype::VLAN);
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.vlan_id(), Some(5));
        f.payload_mut()[0] = 0x60;
        assert_eq!(buf[18], 0x60);
        assert_eq!(&buf[19..], &VLAN_FRAME[19..]);
    }

    #[test]
    fn address_helpers() {
        assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3]), None);
        assert_eq!(EthernetAddress::from_bytes(A.as_bytes()), Some(A));
        assert!(EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!A.is_broadcast());
    }
}
