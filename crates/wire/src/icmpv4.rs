//! ICMP for IPv4 (RFC 792, RFC 1191 next-hop MTU, RFC 1812 error sizes).

use crate::checksum;
use crate::field;
use crate::{Error, Result};

/// Length of the ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// Largest IP datagram carrying an ICMP error (RFC 1812 4.3.2.3).
pub const MAX_ERROR_DATAGRAM: usize = 576;

/// Most bytes of the offending packet an error quotes: 576 - 20 (IPv4) - 8 (ICMP) = 548.
pub const MAX_QUOTE_LEN: usize = MAX_ERROR_DATAGRAM - crate::ipv4::HEADER_LEN - HEADER_LEN;

/// ICMP message types.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, RFC 6633).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Codes of "destination unreachable" (RFC 792, RFC 1122, RFC 1812).
pub mod unreach_code {
    /// Net unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTO: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set.
    pub const FRAG_NEEDED: u8 = 4;
    /// Source route failed.
    pub const SRC_ROUTE_FAILED: u8 = 5;
    /// Destination network unknown.
    pub const NET_UNKNOWN: u8 = 6;
    /// Destination host unknown.
    pub const HOST_UNKNOWN: u8 = 7;
    /// Source host isolated.
    pub const HOST_ISOLATED: u8 = 8;
    /// Network administratively prohibited.
    pub const NET_PROHIBITED: u8 = 9;
    /// Host administratively prohibited.
    pub const HOST_PROHIBITED: u8 = 10;
    /// Network unreachable for type of service.
    pub const NET_TOS: u8 = 11;
    /// Host unreachable for type of service.
    pub const HOST_TOS: u8 = 12;
    /// Communication administratively prohibited.
    pub const COMM_PROHIBITED: u8 = 13;
    /// Host precedence violation.
    pub const HOST_PRECEDENCE: u8 = 14;
    /// Precedence cutoff in effect.
    pub const PRECEDENCE_CUTOFF: u8 = 15;
}

/// Codes of "time exceeded".
pub mod time_exceeded_code {
    /// TTL exceeded in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

mod offset {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const REST: usize = 4;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQ: usize = 6;
    pub(super) const MTU: usize = 6;
}

/// A view of an ICMP message; the buffer is the whole message (the checksum covers it all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer, checking the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
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

    /// Rest of header (bytes 4..8, meaning depends on the type).
    pub fn rest_of_header(&self) -> u32 {
        field::u32_at(self.buffer.as_ref(), offset::REST)
    }

    /// Identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::ECHO_IDENT)
    }

    /// Sequence Number of an echo request or reply.
    pub fn echo_seq_no(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::ECHO_SEQ)
    }

    /// Next-Hop MTU of "fragmentation needed" (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::MTU)
    }

    /// Data after the header (for errors: the quoted IP header and leading payload bytes).
    pub fn data(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        field::slice(b, HEADER_LEN, b.len())
    }

    /// Whether this is an error message (destination unreachable, source quench, redirect,
    /// time exceeded, parameter problem) that quotes an offending packet.
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::DST_UNREACHABLE
                | msg_type::SOURCE_QUENCH
                | msg_type::REDIRECT
                | msg_type::TIME_EXCEEDED
                | msg_type::PARAM_PROBLEM
        )
    }

    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        let b = self.buffer.as_ref();
        b.len() >= HEADER_LEN && checksum::checksum(b) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
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

    /// Sets the echo Identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::ECHO_IDENT, value);
    }

    /// Sets the echo Sequence Number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::ECHO_SEQ, value);
    }

    /// Sets the Next-Hop MTU.
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::MTU, value);
    }

    /// Data after the header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let end = b.len();
        field::slice_mut(b, HEADER_LEN, end)
    }

    /// Recomputes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An ICMP error message (any type/code) quoting part of an offending packet, truncated so
/// the IP datagram carrying it stays within 576 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4ErrorRepr {
    /// Type, see [`msg_type`].
    pub msg_type: u8,
    /// Code.
    pub msg_code: u8,
    /// Rest of header (e.g. the next-hop MTU in its low 16 bits for "fragmentation needed").
    pub rest_of_header: u32,
}

impl Icmpv4ErrorRepr {
    /// Length of the ICMP message for a quote of `quoted_len` bytes:
    /// `8 + min(quoted_len, 548)`.
    pub fn buffer_len(&self, quoted_len: usize) -> usize {
        HEADER_LEN + quoted_len.min(MAX_QUOTE_LEN)
    }

    /// Writes the header and the (truncated) quote into `buf` and fills the checksum.
    /// Returns the bytes written, or 0 (writing nothing) if `buf` is too small.
    pub fn emit(&self, buf: &mut [u8], quoted: &[u8]) -> usize {
        let n = self.buffer_len(quoted.len());
        match (buf.get_mut(HEADER_LEN..n), quoted.get(..n - HEADER_LEN)) {
            (Some(dst), Some(src)) => dst.copy_from_slice(src),
            _ => return 0,
        }
        self.emit_in_place(buf, quoted.len())
    }

    /// Writes only the 8-byte header in front of a quote already at `buf[8..8 + quoted_len]`
    /// (only its first 548 bytes count) and fills the checksum. Returns the message length,
    /// or 0 (writing nothing) if `buf` is too small.
    pub fn emit_in_place(&self, buf: &mut [u8], quoted_len: usize) -> usize {
        let n = self.buffer_len(quoted_len);
        let Some(msg) = buf.get_mut(..n) else {
            return 0;
        };
        let mut p = Icmpv4Packet::new_unchecked(msg);
        p.set_msg_type(self.msg_type);
        p.set_msg_code(self.msg_code);
        p.set_rest_of_header(self.rest_of_header);
        p.fill_checksum();
        n
    }
}

/// "Destination unreachable, fragmentation needed and DF set" (type 3 code 4) with the
/// next-hop MTU (RFC 1191), quoting the offending packet truncated so the whole IP packet of
/// the error is at most 576 bytes (RFC 1812 4.3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragNeededRepr {
    /// Next-hop MTU.
    pub mtu: u16,
}

impl FragNeededRepr {
    /// The error message this is.
    pub fn error(&self) -> Icmpv4ErrorRepr {
        Icmpv4ErrorRepr {
            msg_type: msg_type::DST_UNREACHABLE,
            msg_code: unreach_code::FRAG_NEEDED,
            rest_of_header: u32::from(self.mtu),
        }
    }

    /// Length of the ICMP message: `8 + min(quoted_len, 548)`.
    pub fn buffer_len(&self, quoted_len: usize) -> usize {
        self.error().buffer_len(quoted_len)
    }

    /// Writes header and truncated quote, fills the checksum; returns the bytes written, or 0
    /// if `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8], quoted: &[u8]) -> usize {
        self.error().emit(buf, quoted)
    }

    /// Writes the header in front of a quote already at `buf[8..8 + quoted_len]` and fills
    /// the checksum; returns the message length, or 0 if `buf` is too small.
    pub fn emit_in_place(&self, buf: &mut [u8], quoted_len: usize) -> usize {
        self.error().emit_in_place(buf, quoted_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ICMP_ECHO, ICMP_FRAG_NEEDED, TCP_SYN};
    use crate::ipv4::Ipv4Packet;
    use crate::tcp::TcpPacket;

    #[test]
    fn parse_echo() {
        let ip = Ipv4Packet::new_checked(&ICMP_ECHO[..]).unwrap();
        let p = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x4d5a);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (1, 1));
        assert_eq!(p.rest_of_header(), 0x0001_0001);
        assert_eq!(p.data(), b"abcdefghijklmnopqrstuvwabcdefghi");
        assert!(!p.is_error());
        assert!(p.verify_checksum());
    }

    #[test]
    fn echo_reply_in_place() {
        let mut b = ICMP_ECHO;
        let mut p = Icmpv4Packet::new_checked(&mut b[20..]).unwrap();
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0x555a);
        p.set_echo_ident(2);
        p.set_echo_seq_no(3);
        p.data_mut()[0] = b'A';
        assert_eq!((p.echo_ident(), p.echo_seq_no(), p.data()[0]), (2, 3, b'A'));
        assert!(!p.verify_checksum());
    }

    #[test]
    fn parse_frag_needed_and_quote() {
        let ip = Ipv4Packet::new_checked(&ICMP_FRAG_NEEDED[..]).unwrap();
        assert!(ip.verify_checksum());
        let p = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(p.msg_type(), msg_type::DST_UNREACHABLE);
        assert_eq!(p.msg_code(), unreach_code::FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1480);
        assert!(p.is_error());
        assert!(p.verify_checksum());
        let inner = Ipv4Packet::new_checked_truncated(p.data()).unwrap();
        let tcp = TcpPacket::new_checked_truncated(inner.payload()).unwrap();
        assert_eq!(tcp.dst_port(), 80);
    }

    #[test]
    fn emit_frag_needed_matches_fixture() {
        let icmp = &ICMP_FRAG_NEEDED[20..];
        let quoted = &icmp[8..];
        let repr = FragNeededRepr { mtu: 1480 };
        assert_eq!(repr.buffer_len(quoted.len()), 36);
        let mut buf = [0u8; 64];
        assert_eq!(repr.emit(&mut buf, quoted), 36);
        assert_eq!(&buf[..36], icmp);

        let mut buf = [0u8; 36];
        buf[8..].copy_from_slice(quoted);
        assert_eq!(repr.emit_in_place(&mut buf, 28), 36);
        assert_eq!(&buf[..], icmp);

        assert_eq!(repr.emit(&mut [0u8; 35], quoted), 0);
        assert_eq!(repr.emit_in_place(&mut [0u8; 35], 28), 0);
    }

    #[test]
    fn quote_is_truncated_to_576() {
        let big = [0xabu8; 1500];
        let repr = FragNeededRepr { mtu: 1480 };
        assert_eq!(repr.buffer_len(big.len()), 556);
        assert_eq!(20 + repr.buffer_len(big.len()), MAX_ERROR_DATAGRAM);
        let mut buf = [0u8; 1600];
        assert_eq!(repr.emit(&mut buf, &big), 556);
        let p = Icmpv4Packet::new_checked(&buf[..556]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.data().len(), MAX_QUOTE_LEN);
        // In place: the bytes past the quote limit are not part of the message.
        let mut buf = [0xabu8; 1508];
        assert_eq!(repr.emit_in_place(&mut buf, 1500), 556);
        assert!(
            Icmpv4Packet::new_checked(&buf[..556])
                .unwrap()
                .verify_checksum()
        );
    }

    #[test]
    fn other_errors() {
        let quoted = &TCP_SYN[14..42];
        let repr = Icmpv4ErrorRepr {
            msg_type: msg_type::TIME_EXCEEDED,
            msg_code: time_exceeded_code::TTL,
            rest_of_header: 0,
        };
        let mut buf = [0u8; 36];
        assert_eq!(repr.emit(&mut buf, quoted), 36);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.is_error() && p.verify_checksum());
        assert_eq!(p.data(), quoted);
        assert_eq!(Icmpv4Packet::new_checked(&buf[..7]), Err(Error::Truncated));
    }
}
