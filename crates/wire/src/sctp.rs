//! SCTP common headers (RFC 9260 §3.1): the ports and the verification tag the director reads
//! and rewrites. The CRC32c checksum is exposed as a field only (not computed here).

use crate::field;
use crate::{Error, Result};

/// Length of the SCTP common header.
pub const HEADER_LEN: usize = 12;

/// Bytes of an SCTP common header an ICMP error is guaranteed to quote (ports and tag).
pub const QUOTED_LEN: usize = 8;

mod offset {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const VERIFICATION_TAG: usize = 4;
    pub(super) const CHECKSUM: usize = 8;
}

/// A view of an SCTP packet's common header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SctpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpPacket<T> {
    /// Wraps a buffer without checking it (getters stay panic-free).
    pub const fn new_unchecked(buffer: T) -> SctpPacket<T> {
        SctpPacket { buffer }
    }

    /// Wraps a buffer, checking the 12-byte common header is present.
    pub fn new_checked(buffer: T) -> Result<SctpPacket<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Wraps the start of a packet quoted in an ICMP error: the ports and the verification
    /// tag (8 bytes) must be present; the checksum getter returns 0 when it is cut off.
    pub fn new_checked_truncated(buffer: T) -> Result<SctpPacket<T>> {
        if buffer.as_ref().len() < QUOTED_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Source Port.
    pub fn src_port(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::SRC_PORT)
    }

    /// Destination Port.
    pub fn dst_port(&self) -> u16 {
        field::u16_at(self.buffer.as_ref(), offset::DST_PORT)
    }

    /// Verification Tag.
    pub fn verification_tag(&self) -> u32 {
        field::u32_at(self.buffer.as_ref(), offset::VERIFICATION_TAG)
    }

    /// Checksum field (CRC32c, as sent), 0 when cut off.
    pub fn checksum(&self) -> u32 {
        field::u32_at(self.buffer.as_ref(), offset::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SctpPacket<T> {
    /// Sets the Source Port (the CRC32c is left alone).
    pub fn set_src_port(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::SRC_PORT, value);
    }

    /// Sets the Destination Port (the CRC32c is left alone).
    pub fn set_dst_port(&mut self, value: u16) {
        field::set_u16(self.buffer.as_mut(), offset::DST_PORT, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_common_header() {
        let mut b = [
            0x04, 0xd2, 0x00, 0x50, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 0,
        ];
        let p = SctpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (1234, 80));
        assert_eq!(p.verification_tag(), 0xdead_beef);
        assert_eq!(p.checksum(), 0x0102_0304);
        let mut p = SctpPacket::new_unchecked(&mut b[..]);
        p.set_src_port(40000);
        p.set_dst_port(8080);
        assert_eq!(&b[..4], &[0x9c, 0x40, 0x1f, 0x90]);
    }

    #[test]
    fn short_buffers_are_refused_or_clipped() {
        assert_eq!(
            SctpPacket::new_checked(&[0u8; 11][..]),
            Err(Error::Truncated)
        );
        assert_eq!(
            SctpPacket::new_checked_truncated(&[0u8; 7][..]),
            Err(Error::Truncated)
        );
        let q = SctpPacket::new_checked_truncated(&[0xffu8; 8][..]).unwrap();
        assert_eq!(q.checksum(), 0);
    }
}
