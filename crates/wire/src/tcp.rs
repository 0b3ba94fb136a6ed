//! TCP segments (RFC 9293).

use crate::checksum;
use crate::field;
use crate::{Error, Result};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// Bytes of a TCP header an ICMP error is guaranteed to quote (ports and sequence number).
pub const QUOTED_LEN: usize = 8;

/// TCP control bits (low 8 bits of the flags field).
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field is significant.
    pub const URG: u8 = 0x20;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

/// Offset of the checksum field in the header (what a `CHECKSUM_PARTIAL` offload names).
pub const CHECKSUM_OFFSET: usize = offset::CHECKSUM;

mod offset {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ_NUM: usize = 4;
    pub(super) const ACK_NUM: usize = 8;
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WIN_SIZE: usize = 14;
    pub(super) const CHECKSUM: usize = 16;
    pub(super) const URGENT: usize = 18;
}

/// A view of a TCP segment. The buffer must be exactly the segment (the IP payload), since
/// the payload and checksum cover everything after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer, checking the fixed header is present, Data Offset >= 5 and the whole
    /// header (with options) fits.
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if packet.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Wraps the start of a segment quoted in an ICMP error: only the ports and sequence
    /// number (8 bytes) must be present; other getters return 0 or clip.
    pub fn new_checked_truncated(buffer: T) -> Result<TcpPacket<T>> {
        if buffer.as_ref().len() < QUOTED_LEN {
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

    /// Sequence Number.
    pub fn seq_number(&self) -> u32 {
        field::u32_at(self.buffer.as_ref(), offset::SEQ_NUM)
    }

    /// Acknowledgment Number.
    pub fn ack_number(&self) -> u32 {
        field::u32_at(self.buffer.as_ref(), offset::ACK_NUM)
    }

    /// Data Offset, in bytes (header length with options).
    pub fn header_len(&self) -> usize {
        usize::from(field::u8_at(self.buffer.as_ref(), offset::DATA_OFF) >> 4) * 4
    }

    /// Control bits (the 8 flag bits CWR..FIN, see [`flags`]).
    pub fn flags(&self) -> u8 {
        field::u8_at(self.buffer.as_ref(), offset::FLAGS)
    }

    /// FIN control bit.
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// SYN control bit.
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// RST control bit.
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// PSH control bit.
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    /// ACK control bit.
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// URG control bit.
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    /// Window.
    pub fn window_len(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::WIN_SIZE)
    }

    /// Checksum.
    pub fn checksum(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    /// Urgent Pointer.
    pub fn urgent_at(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::URGENT)
    }

    /// Options (bytes 20..Data Offset, clipped to the buffer).
    pub fn options(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        field::slice(b, HEADER_LEN, self.header_len().min(b.len()))
    }

    /// Data after the header (empty if the header does not fit).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        field::slice(b, self.header_len().max(HEADER_LEN), b.len())
    }

    /// Whether the checksum is right, given the unfolded pseudo-header sum `pseudo`
    /// ([`checksum::pseudo_header_v4`]/[`checksum::pseudo_header_v6`] with the segment length).
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        let b = self.buffer.as_ref();
        b.len() >= HEADER_LEN
            && checksum::fold(checksum::combine(pseudo, checksum::sum(b))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the Source Port (the checksum is left alone).
    pub fn set_src_port(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::SRC_PORT, value);
    }

    /// Sets the Destination Port (the checksum is left alone).
    pub fn set_dst_port(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::DST_PORT, value);
    }

    /// Sets the Sequence Number.
    pub fn set_seq_number(&mut self, value: u32) {
        field::set_u32(self.buffer.as_mut(), offset::SEQ_NUM, value);
    }

    /// Sets the Acknowledgment Number.
    pub fn set_ack_number(&mut self, value: u32) {
        field::set_u32(self.buffer.as_mut(), offset::ACK_NUM, value);
    }

    /// Sets the Data Offset from a header length in bytes (multiple of 4, at most 60).
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buffer.as_mut();
        let old = field::u8_at(b, offset::DATA_OFF);
        field::set_u8(
            b,
            offset::DATA_OFF,
            (old & 0x0f) | ((((len / 4) & 0x0f) as u8) << 4),
        );
    }

    /// Sets the control bits.
    pub fn set_flags(&mut self, value: u8) {
        field::set_u8(self.buffer.as_mut(), offset::FLAGS, value);
    }

    /// Sets the Window.
    pub fn set_window_len(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::WIN_SIZE, value);
    }

    /// Sets the Checksum.
    pub fn set_checksum(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::CHECKSUM, value);
    }

    /// Sets the Urgent Pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::URGENT, value);
    }

    /// Recomputes the checksum over the whole buffer, given the unfolded pseudo-header sum.
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let s = checksum::combine(pseudo, checksum::sum(self.buffer.as_ref()));
        self.set_checksum(!checksum::fold(s));
    }

    /// Sets the Source Port and fixes a complete checksum incrementally (RFC 1624). With a
    /// `CHECKSUM_PARTIAL` seed use [`set_src_port`](Self::set_src_port): ports are not in it.
    pub fn set_src_port_incremental(&mut self, value: u16) {
        let c = checksum::update16(self.checksum(), self.src_port(), value);
        self.set_src_port(value);
        self.set_checksum(c);
    }

    /// Sets the Destination Port and fixes a complete checksum incrementally (RFC 1624).
    pub fn set_dst_port_incremental(&mut self, value: u16) {
        let c = checksum::update16(self.checksum(), self.dst_port(), value);
        self.set_dst_port(value);
        self.set_checksum(c);
    }

    /// Fixes a complete checksum for a pseudo-header address change `old` -> `new` (4 or 16
    /// bytes), e.g. after NAT rewrote the IP source or destination.
    pub fn update_checksum_for_addr(&mut self, old: &[u8], new: &[u8]) {
        let c = checksum::update_bytes(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Options, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        let end = hl.min(b.len());
        field::slice_mut(b, HEADER_LEN, end)
    }

    /// Data after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len().max(HEADER_LEN);
        let b = self.buffer.as_mut();
        let end = b.len();
        field::slice_mut(b, start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{pseudo_header_v4, pseudo_header_v6};
    use crate::fixtures::{ICMP_FRAG_NEEDED, TCP_SYN};
    use crate::protocol;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 104);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

    fn syn() -> &'static [u8] {
        &TCP_SYN[34..]
    }

    #[test]
    fn parse_syn() {
        let t = TcpPacket::new_checked(syn()).unwrap();
        assert_eq!(t.src_port(), 50594);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq_number(), 0x6f2a_1b3c);
        assert_eq!(t.ack_number(), 0);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), flags::SYN);
        assert!(t.syn() && !t.ack() && !t.fin() && !t.rst() && !t.psh() && !t.urg());
        assert_eq!(t.window_len(), 0xfaf0);
        assert_eq!(t.checksum(), 0x533c);
        assert_eq!(t.urgent_at(), 0);
        assert_eq!(&t.options()[..4], &[0x02, 0x04, 0x05, 0xb4]); // MSS 1460.
        assert!(t.payload().is_empty());
        assert!(t.verify_checksum(pseudo_header_v4(SRC, DST, protocol::TCP, 40)));
        assert!(!t.verify_checksum(pseudo_header_v4(SRC, DST, protocol::TCP, 41)));
    }

    #[test]
    fn checked_errors() {
        assert_eq!(TcpPacket::new_checked(&syn()[..19]), Err(Error::Truncated));
        assert_eq!(TcpPacket::new_checked(&syn()[..39]), Err(Error::Truncated));
        let mut b = [0u8; 40];
        b.copy_from_slice(syn());
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(Error::Malformed));
    }

    #[test]
    fn quoted_in_icmp() {
        let q = &ICMP_FRAG_NEEDED[48..];
        assert_eq!(TcpPacket::new_checked(q), Err(Error::Truncated));
        let t = TcpPacket::new_checked_truncated(q).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (50594, 80));
        assert_eq!(t.seq_number(), 0x6f2a_1b3d);
        assert_eq!(t.ack_number(), 0);
        assert!(t.options().is_empty());
        assert!(t.payload().is_empty());
        assert_eq!(
            TcpPacket::new_checked_truncated(&q[..7]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn emit_round_trip_via_setters() {
        let mut b = [0u8; 40];
        b[20..].copy_from_slice(&syn()[20..]);
        let mut t = TcpPacket::new_unchecked(&mut b[..]);
        t.set_src_port(50594);
        t.set_dst_port(80);
        t.set_seq_number(0x6f2a_1b3c);
        t.set_ack_number(0);
        t.set_header_len(40);
        t.set_flags(flags::SYN);
        t.set_window_len(0xfaf0);
        t.set_urgent_at(0);
        t.fill_checksum(pseudo_header_v4(SRC, DST, protocol::TCP, 40));
        assert_eq!(&b[..], syn());
    }

    #[test]
    fn nat_rewrite_incremental() {
        let mut b = [0u8; 40];
        b.copy_from_slice(syn());
        let rs = Ipv4Addr::new(10, 0, 1, 2);
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        t.update_checksum_for_addr(&DST.octets(), &rs.octets());
        t.set_dst_port_incremental(8080);
        t.set_src_port_incremental(1024);
        assert!(t.verify_checksum(pseudo_header_v4(SRC, rs, protocol::TCP, 40)));
        t.options_mut()[0] = 0x01;
        assert_eq!(t.options()[0], 0x01);
    }

    fn segment() -> impl Strategy<Value = Vec<u8>> {
        (0usize..=10, proptest::collection::vec(any::<u8>(), 60..160)).prop_map(|(words, mut b)| {
            b[12] = (((20 + 4 * words) / 4) as u8) << 4;
            b
        })
    }

    proptest! {
        #[test]
        fn incremental_v4_matches_recompute(
            mut seg in segment(),
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new_addr in any::<[u8; 4]>(),
            new_port in any::<u16>(), rewrite_src in any::<bool>(),
        ) {
            let (src, dst, new_addr) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(new_addr));
            let len = seg.len() as u32;
            TcpPacket::new_checked(&mut seg[..]).unwrap().fill_checksum(pseudo_header_v4(src, dst, 6, len));
            let mut t = TcpPacket::new_checked(&mut seg[..]).unwrap();
            let (nsrc, ndst) = if rewrite_src {
                t.update_checksum_for_addr(&src.octets(), &new_addr.octets());
                t.set_src_port_incremental(new_port);
                (new_addr, dst)
            } else {
                t.update_checksum_for_addr(&dst.octets(), &new_addr.octets());
                t.set_dst_port_incremental(new_port);
                (src, new_addr)
            };
            let pseudo = pseudo_header_v4(nsrc, ndst, 6, len);
            prop_assert!(t.verify_checksum(pseudo));
            let got = t.checksum();
            t.fill_checksum(pseudo);
            prop_assert_eq!(got, t.checksum());
        }

        #[test]
        fn incremental_v6_matches_recompute(
            mut seg in segment(),
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new_addr in any::<[u8; 16]>(),
            new_port in any::<u16>(),
        ) {
            let (src, dst, new_addr) = (Ipv6Addr::from(src), Ipv6Addr::from(dst), Ipv6Addr::from(new_addr));
            let len = seg.len() as u32;
            TcpPacket::new_checked(&mut seg[..]).unwrap().fill_checksum(pseudo_header_v6(&src, &dst, 6, len));
            let mut t = TcpPacket::new_checked(&mut seg[..]).unwrap();
            t.update_checksum_for_addr(&dst.octets(), &new_addr.octets());
            t.set_dst_port_incremental(new_port);
            let pseudo = pseudo_header_v6(&src, &new_addr, 6, len);
            let got = t.checksum();
            t.fill_checksum(pseudo);
            prop_assert_eq!(got, t.checksum());
        }
    }
}
