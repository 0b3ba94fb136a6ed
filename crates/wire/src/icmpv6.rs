//! ICMP for IPv6 (RFC 4443).

use crate::checksum;
use crate::field;
use crate::protocol;
use crate::{Error, Result};
use std::net::Ipv6Addr;

/// Length of the ICMPv6 header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// IPv6 minimum MTU: the largest packet carrying an ICMPv6 error (RFC 4443 2.4 (c)).
pub const MIN_MTU: usize = 1280;

/// Most bytes of the offending packet an error quotes: 1280 - 40 - 8 = 1232.
pub const MAX_QUOTE_LEN: usize = MIN_MTU - crate::ipv6::HEADER_LEN - HEADER_LEN;

/// ICMPv6 message types.
pub mod msg_type {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PKT_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Neighbor solicitation (RFC 4861).
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbor advertisement (RFC 4861).
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// Codes of "destination unreachable".
pub mod unreach_code {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const PROHIBITED: u8 = 1;
    /// Beyond scope of source address.
    pub const BEYOND_SCOPE: u8 = 2;
    /// Address unreachable.
    pub const ADDR: u8 = 3;
    /// Port unreachable.
    pub const PORT: u8 = 4;
}

mod offset {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const REST: usize = 4;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQ: usize = 6;
}

/// Unfolded pseudo-header sum for an ICMPv6 message of `len` bytes.
fn pseudo(src: &Ipv6Addr, dst: &Ipv6Addr, len: usize) -> u32 {
    checksum::pseudo_header_v6(
        src,
        dst,
        protocol::ICMPV6,
        u32::try_from(len).unwrap_or(u32::MAX),
    )
}

/// A view of an ICMPv6 message; the buffer is the whole message (the checksum covers it all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer, checking the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Type.
    pub fn msg_type(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::TYPE)
    }

    /// Code.
    pub fn msg_code(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::CODE)
    }

    /// Checksum.
    pub fn checksum(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    /// Rest of header (bytes 4..8: MTU, pointer, echo identifier and sequence, or unused).
    pub fn rest_of_header(&self) -> u32 {
        field::u32_at(self.buffer.as_ref(), offset::REST)
    }

    /// MTU of "packet too big".
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// Identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::ECHO_IDENT)
    }

    /// Sequence Number of an echo request or reply.
    pub fn echo_seq_no(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::ECHO_SEQ)
    }

    /// Message body after the header (for errors: as much of the offending packet as fits).
    pub fn data(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        field::slice(b, HEADER_LEN, b.len())
    }

    /// Whether this is an error message (types below 128).
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// Whether the checksum (with the IPv6 pseudo header) over the whole message is right.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let s = checksum::combine(pseudo(src, dst, b.len()), checksum::sum(b));
        b.len() >= HEADER_LEN && checksum::fold(s) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the Type.
    pub fn set_msg_type(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::TYPE, value);
    }

    /// Sets the Code.
    pub fn set_msg_code(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::CODE, value);
    }

    /// Sets the Checksum.
    pub fn set_checksum(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::CHECKSUM, value);
    }

    /// Sets the rest of header (bytes 4..8).
    pub fn set_rest_of_header(&mut self, value: u32) {
        field::set_u32(self.buffer.as_mut(), offset::REST, value);
    }

    /// Sets the MTU of "packet too big".
    pub fn set_mtu(&mut self, value: u32) {
        self.set_rest_of_header(value);
    }

    /// Message body after the header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let end = b.len();
        field::slice_mut(b, HEADER_LEN, end)
    }

    /// Recomputes the checksum over the whole buffer with the IPv6 pseudo header.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let s = checksum::combine(pseudo(src, dst, b.len()), checksum::sum(b));
        self.set_checksum(!checksum::fold(s));
    }
}

/// An ICMPv6 error message (any type/code) quoting part of an offending packet, truncated
/// so the IPv6 packet carrying it stays within 1280 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6ErrorRepr {
    /// Type, see [`msg_type`].
    pub msg_type: u8,
    /// Code.
    pub msg_code: u8,
    /// Rest of header (MTU for "packet too big", pointer for "parameter problem").
    pub rest_of_header: u32,
}

impl Icmpv6ErrorRepr {
    /// Length of the ICMPv6 message: `8 + min(quoted_len, 1232)`.
    pub fn buffer_len(&self, quoted_len: usize) -> usize {
        HEADER_LEN + quoted_len.min(MAX_QUOTE_LEN)
    }

    /// Writes the header and the (truncated) quote into `buf` and fills the checksum for an
    /// IPv6 packet from `src` to `dst`. Returns the bytes written, or 0 (writing nothing) if
    /// `buf` is too small.
    pub fn emit(&self, buf: &mut [u8], quoted: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> usize {
        let n = self.buffer_len(quoted.len());
        match (buf.get_mut(HEADER_LEN..n), quoted.get(..n - HEADER_LEN)) {
            (Some(d), Some(s)) => d.copy_from_slice(s),
            _ => return 0,
        }
        self.emit_in_place(buf, quoted.len(), src, dst)
    }

    /// Writes only the 8-byte header in front of a quote already at `buf[8..8 + quoted_len]`
    /// (only its first 1232 bytes count) and fills the checksum. Returns the message length,
    /// or 0 (writing nothing) if `buf` is too small.
    pub fn emit_in_place(
        &self,
        buf: &mut [u8],
        quoted_len: usize,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> usize {
        let n = self.buffer_len(quoted_len);
        let Some(msg) = buf.get_mut(..n) else {
            return 0;
        };
        let mut p = Icmpv6Packet::new_unchecked(msg);
        p.set_msg_type(self.msg_type);
        p.set_msg_code(self.msg_code);
        p.set_rest_of_header(self.rest_of_header);
        p.fill_checksum(src, dst);
        n
    }
}

/// "Packet too big" (type 2 code 0) with the MTU, quoting as much of the offending packet as
/// keeps the whole IPv6 packet within 1280 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PktTooBigRepr {
    /// MTU of the next-hop link.
    pub mtu: u32,
}

impl PktTooBigRepr {
    fn error(&self) -> Icmpv6ErrorRepr {
        Icmpv6ErrorRepr {
            msg_type: msg_type::PKT_TOO_BIG,
            msg_code: 0,
            rest_of_header: self.mtu,
        }
    }

    /// Length of the ICMPv6 message: `8 + min(quoted_len, 1232)`.
    pub fn buffer_len(&self, quoted_len: usize) -> usize {
        self.error().buffer_len(quoted_len)
    }

    /// Writes header and truncated quote, fills the checksum; returns the bytes written, or 0
    /// if `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8], quoted: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> usize {
        self.error().emit(buf, quoted, src, dst)
    }

    /// Writes the header in front of a quote already at `buf[8..8 + quoted_len]` and fills
    /// the checksum; returns the message length, or 0 if `buf` is too small.
    pub fn emit_in_place(
        &self,
        buf: &mut [u8],
        quoted_len: usize,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> usize {
        self.error().emit_in_place(buf, quoted_len, src, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ICMPV6_PTB;
    use crate::ipv6::Ipv6Packet;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_packet_too_big() {
        let ip = Ipv6Packet::new_checked(&ICMPV6_PTB[..]).unwrap();
        let p = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(p.msg_type(), msg_type::PKT_TOO_BIG);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.mtu(), 1280);
        assert_eq!(p.rest_of_header(), 1280);
        assert!(p.is_error());
        assert_eq!(p.data().len(), 64);
        assert!(p.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        assert!(!p.verify_checksum(&ip.dst_addr(), &addr("::1")));
        let inner = Ipv6Packet::new_checked_truncated(p.data()).unwrap();
        assert_eq!(inner.src_addr(), addr("2001:db8::1"));
    }

    #[test]
    fn emit_matches_fixture() {
        let src = addr("2001:db8::fe");
        let dst = addr("2001:db8::1");
        let msg = &ICMPV6_PTB[40..];
        let quoted = &msg[8..];
        let repr = PktTooBigRepr { mtu: 1280 };
        assert_eq!(repr.buffer_len(quoted.len()), 72);
        let mut buf = [0u8; 100];
        assert_eq!(repr.emit(&mut buf, quoted, &src, &dst), 72);
        assert_eq!(&buf[..72], msg);

        let mut buf = [0u8; 72];
        buf[8..].copy_from_slice(quoted);
        assert_eq!(repr.emit_in_place(&mut buf, 64, &src, &dst), 72);
        assert_eq!(&buf[..], msg);
        assert_eq!(repr.emit_in_place(&mut buf[..71], 64, &src, &dst), 0);
        assert_eq!(repr.emit(&mut [0u8; 10], quoted, &src, &dst), 0);
    }

    #[test]
    fn quote_is_truncated_to_1280() {
        let src = addr("2001:db8::fe");
        let dst = addr("2001:db8::1");
        let big = [0x5au8; 1500];
        let repr = PktTooBigRepr { mtu: 1480 };
        assert_eq!(40 + repr.buffer_len(big.len()), MIN_MTU);
        let mut buf = [0u8; 1600];
        let n = repr.emit(&mut buf, &big, &src, &dst);
        assert_eq!(n, 1240);
        let p = Icmpv6Packet::new_checked(&buf[..n]).unwrap();
        assert!(p.verify_checksum(&src, &dst));
        assert_eq!(p.data().len(), MAX_QUOTE_LEN);
    }

    #[test]
    fn echo_and_setters() {
        let src = addr("fe80::1");
        let dst = addr("fe80::2");
        let mut buf = [0u8; 12];
        let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(msg_type::ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_rest_of_header(0x0007_0009);
        p.data_mut().copy_from_slice(b"ping");
        p.fill_checksum(&src, &dst);
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.is_error());
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (7, 9));
        p.set_mtu(1500);
        assert_eq!(p.mtu(), 1500);
        assert!(!p.verify_checksum(&src, &dst));
        assert_eq!(Icmpv6Packet::new_checked(&buf[..7]), Err(Error::Truncated));
    }
}
