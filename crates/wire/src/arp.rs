//! ARP packets (RFC 826) for Ethernet hardware and IPv4 protocol addresses.

use crate::ethernet::{EthernetAddress, ethertype};
use crate::field;
use crate::{Error, Result};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const LEN: usize = 28;

/// ARP operation codes (RFC 826 `ar$op`).
pub mod operation {
    /// ARP request.
    pub const REQUEST: u16 = 1;
    /// ARP reply.
    pub const REPLY: u16 = 2;
}

/// Hardware type of Ethernet (`ar$hrd`).
pub const HARDWARE_ETHERNET: u16 = 1;

mod offset {
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    pub(super) const SHA: usize = 8;
    pub(super) const SPA: usize = 14;
    pub(super) const THA: usize = 18;
    pub(super) const TPA: usize = 24;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking its length (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer, checking it holds 28 bytes (use [`ArpRepr::parse`] to check the types).
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        if buffer.as_ref().len() < LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware address space (`ar$hrd`).
    pub fn hardware_type(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::HTYPE)
    }

    /// Protocol address space (`ar$pro`).
    pub fn protocol_type(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::PTYPE)
    }

    /// Hardware address length (`ar$hln`).
    pub fn hardware_len(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::HLEN)
    }

    /// Protocol address length (`ar$pln`).
    pub fn protocol_len(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::PLEN)
    }

    /// Operation (`ar$op`): 1 request, 2 reply.
    pub fn operation(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::OPER)
    }

    /// Sender hardware address (`ar$sha`).
    pub fn source_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress(field::array_at(self.buffer.as_ref(), offset::SHA))
    }

    /// Sender protocol address (`ar$spa`).
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(field::array_at::<4>(self.buffer.as_ref(), offset::SPA))
    }

    /// Target hardware address (`ar$tha`).
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress(field::array_at(self.buffer.as_ref(), offset::THA))
    }

    /// Target protocol address (`ar$tpa`).
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(field::array_at::<4>(self.buffer.as_ref(), offset::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware address space (`ar$hrd`).
    pub fn set_hardware_type(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::HTYPE, value);
    }

    /// Sets the protocol address space (`ar$pro`).
    pub fn set_protocol_type(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::PTYPE, value);
    }

    /// Sets the hardware address length (`ar$hln`).
    pub fn set_hardware_len(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::HLEN, value);
    }

    /// Sets the protocol address length (`ar$pln`).
    pub fn set_protocol_len(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::PLEN, value);
    }

    /// Sets the operation (`ar$op`).
    pub fn set_operation(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::OPER, value);
    }

    /// Sets the sender hardware address (`ar$sha`).
    pub fn set_source_hardware_addr(&mut self, addr: EthernetAddress) {
        field::set_bytes(self.buffer.as_mut(), offset::SHA, &addr.0);
    }

    /// Sets the sender protocol address (`ar$spa`).
    pub fn set_source_protocol_addr(&mut self, addr: Ipv4Addr) {
        field::set_bytes(self.buffer.as_mut(), offset::SPA, &addr.octets());
    }

    /// Sets the target hardware address (`ar$tha`).
    pub fn set_target_hardware_addr(&mut self, addr: EthernetAddress) {
        field::set_bytes(self.buffer.as_mut(), offset::THA, &addr.0);
    }

    /// Sets the target protocol address (`ar$tpa`).
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        field::set_bytes(self.buffer.as_mut(), offset::TPA, &addr.octets());
    }
}

/// High-level form of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Operation, see [`operation`].
    pub operation: u16,
    /// Sender hardware address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address.
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an ARP packet; `Malformed` unless it is Ethernet (1) / IPv4 (0x0800) with
    /// lengths 6 and 4 and operation request or reply.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        if packet.buffer.as_ref().len() < LEN {
            return Err(Error::Truncated);
        }
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != ethertype::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
            || !matches!(packet.operation(), operation::REQUEST | operation::REPLY)
        {
            return Err(Error::Malformed);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Length of the packet `emit` writes: 28.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(ethertype::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ARP_REQUEST;

    fn arp_bytes() -> &'static [u8] {
        &ARP_REQUEST[14..]
    }

    #[test]
    fn parse_request() {
        let p = ArpPacket::new_checked(arp_bytes()).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.operation(), operation::REQUEST);
        assert_eq!(
            p.source_hardware_addr(),
            EthernetAddress([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef])
        );
        assert_eq!(p.source_protocol_addr(), Ipv4Addr::new(192, 168, 0, 104));
        assert_eq!(p.target_hardware_addr(), EthernetAddress([0; 6]));
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(192, 168, 0, 1));
        let repr = ArpRepr::parse(&p).unwrap();
        assert_eq!(repr.operation, operation::REQUEST);
        assert_eq!(repr.target_protocol_addr, Ipv4Addr::new(192, 168, 0, 1));
    }

    #[test]
    fn truncated_and_malformed() {
        assert_eq!(
            ArpPacket::new_checked(&arp_bytes()[..27]),
            Err(Error::Truncated)
        );
        let mut b = [0u8; LEN];
        b.copy_from_slice(arp_bytes());
        b[5] = 16;
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&b[..10])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn emit_round_trip_and_reply() {
        let repr = ArpRepr::parse(&ArpPacket::new_checked(arp_bytes()).unwrap()).unwrap();
        let mut buf = [0u8; LEN];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], arp_bytes());

        // Answer the request for 192.168.0.1 as the director.
        let me = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
        let reply = ArpRepr {
            operation: operation::REPLY,
            source_hardware_addr: me,
            source_protocol_addr: repr.target_protocol_addr,
            target_hardware_addr: repr.source_hardware_addr,
            target_protocol_addr: repr.source_protocol_addr,
        };
        let mut p = ArpPacket::new_unchecked([0u8; LEN]);
        reply.emit(&mut p);
        let p = ArpPacket::new_checked(p.into_inner()).unwrap();
        assert_eq!(p.operation(), 2);
        assert_eq!(ArpRepr::parse(&p), Ok(reply));
        assert_eq!(reply.buffer_len(), LEN);
    }
}
