//! Software segmentation of TCP/IPv4 GSO super-frames.
//!
//! The kernel segments a GSO super-frame on TX when it is sent with its vnet
//! header (see [`crate::afpacket`]), but only for the GSO types virtio can
//! describe. A TCP super-frame that the director wraps in an outer IPv4
//! header (IP-in-IP, the Tun method) has no such type, so it must be cut
//! into MSS-sized segments here before encapsulation.
//!
//! [`segment_tcp_ipv4`] does what the kernel's `tcp_gso_segment` +
//! `inet_gso_segment` do: per segment a new IPv4 total length, an
//! incremented identification and a fresh header checksum; the TCP sequence
//! number advanced by the payload already emitted; FIN and PSH only on the
//! last segment, CWR only on the first; and a full TCP checksum (pseudo
//! header + header + payload) computed per segment, so the result needs no
//! checksum offload. Pure logic, no allocation, no `unsafe`, no panics.
#![forbid(unsafe_code)]

use std::fmt;

use lvs_wire::ipv4::Ipv4Packet;
use lvs_wire::tcp::{self, TcpPacket};
use lvs_wire::{checksum, protocol};

/// Why a super-frame could not be segmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoError {
    /// The buffer ends before the headers or the IPv4 total length.
    Truncated,
    /// Not IPv4, or a bad IHL / data offset / total length.
    BadHeader,
    /// The IPv4 protocol is not TCP.
    NotTcp,
    /// The packet is an IPv4 fragment.
    Fragment,
    /// The segment size is 0.
    ZeroSegmentSize,
    /// The arena cannot hold all segments.
    ArenaTooSmall,
    /// More segments than the `segs` slice can describe.
    TooManySegments,
}

impl fmt::Display for GsoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "super-frame truncated",
            Self::BadHeader => "malformed IPv4/TCP header",
            Self::NotTcp => "not a TCP/IPv4 packet",
            Self::Fragment => "IPv4 fragment cannot be segmented",
            Self::ZeroSegmentSize => "segment size is zero",
            Self::ArenaTooSmall => "segment arena too small",
            Self::TooManySegments => "too many segments for the output slice",
        })
    }
}

impl std::error::Error for GsoError {}

/// One produced segment: `arena[start..start + len]` is the segment (from
/// its L2 header, if any); `arena[start - headroom..start]` is free headroom.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the segment's first byte in the arena.
    pub start: usize,
    /// Length of the segment in bytes.
    pub len: usize,
}

impl From<lvs_wire::Error> for GsoError {
    fn from(e: lvs_wire::Error) -> GsoError {
        match e {
            lvs_wire::Error::Truncated => GsoError::Truncated,
            lvs_wire::Error::Malformed => GsoError::BadHeader,
        }
    }
}

/// Number of segments a payload of `payload_len` bytes yields with size `mss`.
pub fn segment_count(payload_len: usize, mss: usize) -> usize {
    if mss == 0 {
        0
    } else {
        payload_len.div_ceil(mss).max(1)
    }
}

/// Cuts the TCP/IPv4 super-frame `frame` into segments of at most `mss`
/// payload bytes, written one after another into `arena` (each 16-byte
/// aligned and preceded by `headroom` free bytes) and described in `segs`.
///
/// `frame[..l2_len]` is an opaque link-layer header (e.g. 14 for Ethernet,
/// 0 for a bare IP packet) copied to every segment unchanged; the IPv4
/// header follows. Bytes past the IPv4 total length (Ethernet padding) are
/// ignored. Returns the number of segments; on error nothing in `segs` is
/// meaningful. A payload that already fits gives one segment with fresh
/// checksums and unchanged flags.
pub fn segment_tcp_ipv4(
    frame: &[u8],
    l2_len: usize,
    mss: usize,
    headroom: usize,
    arena: &mut [u8],
    segs: &mut [Segment],
) -> Result<usize, GsoError> {
    if mss == 0 {
        return Err(GsoError::ZeroSegmentSize);
    }
    // The headers are read and written through the wire crate's views.
    let ip = Ipv4Packet::new_checked(frame.get(l2_len..).ok_or(GsoError::Truncated)?)?;
    let ihl = ip.header_len();
    if usize::from(ip.total_len()) < ihl + tcp::HEADER_LEN {
        return Err(GsoError::BadHeader);
    }
    if ip.protocol() != protocol::TCP {
        return Err(GsoError::NotTcp);
    }
    if ip.is_fragment() {
        return Err(GsoError::Fragment);
    }
    // The whole TCP header must lie within the IPv4 total length.
    let tcp = TcpPacket::new_checked(ip.payload()).map_err(|_| GsoError::BadHeader)?;
    let doff = tcp.header_len();
    let payload = tcp.payload();
    let n = segment_count(payload.len(), mss);
    if n > segs.len() {
        return Err(GsoError::TooManySegments);
    }
    let hdrs = l2_len + ihl + doff;
    let (id0, seq0, flags0) = (ip.ident(), tcp.seq_number(), tcp.flags());
    let (src, dst) = (ip.src_addr(), ip.dst_addr());

    let mut pos = 0usize;
    for (i, seg) in segs.iter_mut().take(n).enumerate() {
        let from = i * mss;
        let chunk = payload
            .get(from..(from + mss).min(payload.len()))
            .unwrap_or(&[]);
        let start = pos.checked_add(headroom).ok_or(GsoError::ArenaTooSmall)?;
        let len = hdrs + chunk.len();
        let end = start.checked_add(len).ok_or(GsoError::ArenaTooSmall)?;
        let out = arena.get_mut(start..end).ok_or(GsoError::ArenaTooSmall)?;
        out[..hdrs].copy_from_slice(&frame[..hdrs]);
        out[hdrs..].copy_from_slice(chunk);

        let (iph, tcph) = out[l2_len..].split_at_mut(ihl);
        let tcp_len = doff + chunk.len();
        // IPv4: total length, identification, header checksum. `iph` is the header alone,
        // so the view's header checksum covers exactly it.
        let mut ipo = Ipv4Packet::new_unchecked(iph);
        ipo.set_total_len((ihl + tcp_len) as u16);
        ipo.set_ident(id0.wrapping_add(i as u16));
        ipo.fill_checksum();
        // TCP: sequence number, flags (FIN and PSH only on the last, CWR only on the first),
        // full checksum over this segment.
        let mut flags = flags0;
        if i + 1 < n {
            flags &= !(tcp::flags::FIN | tcp::flags::PSH);
        }
        if i > 0 {
            flags &= !tcp::flags::CWR;
        }
        let mut t = TcpPacket::new_unchecked(tcph);
        t.set_seq_number(seq0.wrapping_add(from as u32));
        t.set_flags(flags);
        t.fill_checksum(checksum::pseudo_header_v4(
            src,
            dst,
            protocol::TCP,
            tcp_len as u32,
        ));

        *seg = Segment { start, len };
        pos = (end + 15) & !15;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds Ethernet + IPv4 (DF, id 100) + TCP (12 bytes of options) + payload.
    fn superframe(payload: &[u8], flags: u8) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 32 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 100, 0x40, 0, 64, 6, 0, 0]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50]); // ports 12345 -> 80
        f.extend_from_slice(&1000u32.to_be_bytes()); // seq
        f.extend_from_slice(&7u32.to_be_bytes()); // ack
        f.extend_from_slice(&[0x80, flags, 0xff, 0xff, 0xab, 0xcd, 0, 0]); // doff 8, win, bogus csum
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP TS
        f.extend_from_slice(payload);
        f
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Whether the segment's TCP checksum (with its pseudo header) is right.
    fn tcp_ok(seg: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let len = ip.payload().len() as u32;
        tcp.verify_checksum(checksum::pseudo_header_v4(
            ip.src_addr(),
            ip.dst_addr(),
            protocol::TCP,
            len,
        ))
    }

    /// Whether the IPv4 header checksum is right.
    fn ip_ok(ip: &[u8]) -> bool {
        Ipv4Packet::new_checked_truncated(ip)
            .unwrap()
            .verify_checksum()
    }

    #[test]
    fn splits_into_mss_segments_with_fixed_headers() {
        let payload = pattern(3500);
        let f = superframe(&payload, 0x80 | 0x10 | 0x08 | 0x01); // CWR ACK PSH FIN
        let mut arena = vec![0u8; 8192];
        let mut segs = [Segment::default(); 8];
        let n = segment_tcp_ipv4(&f, 14, 1448, 20, &mut arena, &mut segs).unwrap();
        assert_eq!(n, 3);
        let mut joined = Vec::new();
        for (i, s) in segs[..n].iter().enumerate() {
            assert!(s.start >= 20 && (s.start - 20) % 16 == 0);
            let seg = &arena[s.start..s.start + s.len];
            let plen = [1448, 1448, 604][i];
            assert_eq!(s.len, 14 + 20 + 32 + plen);
            assert_eq!(&seg[..14], &f[..14]);
            let ip = &seg[14..];
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), 52 + plen);
            assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 100 + i as u16);
            assert!(ip_ok(ip), "IPv4 header checksum");
            assert!(tcp_ok(seg), "TCP checksum of segment {i}");
            let tcp = &ip[20..];
            assert_eq!(
                u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
                1000 + 1448 * i as u32
            );
            assert_eq!(&tcp[20..32], &f[14 + 40..14 + 52], "options copied");
            let fl = tcp[13];
            assert_eq!(fl & 0x10, 0x10, "ACK on every segment");
            assert_eq!(fl & 0x80 != 0, i == 0, "CWR only on the first");
            assert_eq!(fl & 0x09 == 0x09, i == 2, "FIN+PSH only on the last");
            assert_eq!(fl & 0x09 == 0, i < 2);
            joined.extend_from_slice(&tcp[32..]);
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn small_payload_is_one_segment_with_flags_kept() {
        let f = superframe(&pattern(100), 0x80 | 0x10 | 0x01);
        let mut arena = vec![0u8; 2048];
        let mut segs = [Segment::default(); 1];
        let n = segment_tcp_ipv4(&f, 14, 1448, 0, &mut arena, &mut segs).unwrap();
        assert_eq!(n, 1);
        let seg = &arena[segs[0].start..segs[0].start + segs[0].len];
        assert_eq!(seg.len(), f.len());
        assert_eq!(seg[14 + 20 + 13], 0x91);
        assert!(tcp_ok(seg));
        // Only the checksums differ from the input (which had bogus ones).
        assert!(ip_ok(&seg[14..34]));
        assert_eq!(&seg[..24], &f[..24]);
        assert_eq!(&seg[26..50], &f[26..50]);
        assert_eq!(&seg[52..], &f[52..]);
    }

    #[test]
    fn exact_multiple_and_ethernet_padding() {
        let mut f = superframe(&pattern(2000), 0x10);
        f.extend_from_slice(&[0xee; 6]); // trailing padding, ignored
        let mut arena = vec![0u8; 4096];
        let mut segs = [Segment::default(); 4];
        assert_eq!(
            segment_tcp_ipv4(&f, 14, 1000, 0, &mut arena, &mut segs),
            Ok(2)
        );
        assert_eq!(segs[1].len, 14 + 52 + 1000);
    }

    #[test]
    fn bare_ip_packet_without_l2() {
        let f = superframe(&pattern(300), 0x18);
        let mut arena = vec![0u8; 4096];
        let mut segs = [Segment::default(); 4];
        assert_eq!(
            segment_tcp_ipv4(&f[14..], 0, 100, 0, &mut arena, &mut segs),
            Ok(3)
        );
        assert_eq!(segs[2].len, 52 + 100);
    }

    #[test]
    fn errors() {
        let f = superframe(&pattern(3000), 0x10);
        let mut arena = vec![0u8; 8192];
        let mut segs = [Segment::default(); 8];
        assert_eq!(
            segment_tcp_ipv4(&f, 14, 0, 0, &mut arena, &mut segs),
            Err(GsoError::ZeroSegmentSize)
        );
        assert_eq!(
            segment_tcp_ipv4(&f, 14, 100, 0, &mut arena, &mut segs),
            Err(GsoError::TooManySegments)
        );
        assert_eq!(
            segment_tcp_ipv4(&f, 14, 1448, 0, &mut arena[..3000], &mut segs),
            Err(GsoError::ArenaTooSmall)
        );
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert_eq!(
            segment_tcp_ipv4(&udp, 14, 1448, 0, &mut arena, &mut segs),
            Err(GsoError::NotTcp)
        );
        let mut frag = f.clone();
        frag[14 + 6] = 0x20; // MF
        assert_eq!(
            segment_tcp_ipv4(&frag, 14, 1448, 0, &mut arena, &mut segs),
            Err(GsoError::Fragment)
        );
        let mut v6 = f.clone();
        v6[14] = 0x65;
        assert_eq!(
            segment_tcp_ipv4(&v6, 14, 1448, 0, &mut arena, &mut segs),
            Err(GsoError::BadHeader)
        );
        assert_eq!(
            segment_tcp_ipv4(&f[..1000], 14, 1448, 0, &mut arena, &mut segs),
            Err(GsoError::Truncated)
        );
    }

    #[test]
    fn no_panic_on_any_prefix_or_corruption() {
        let f = superframe(&pattern(600), 0x18);
        let mut arena = vec![0u8; 4096];
        let mut segs = [Segment::default(); 16];
        for cut in 0..=f.len() {
            let _ = segment_tcp_ipv4(&f[..cut], 14, 200, 7, &mut arena, &mut segs);
        }
        for pos in 0..80 {
            for v in [0u8, 0x0f, 0x45, 0xf0, 0xff] {
                let mut g = f.clone();
                g[pos] = v;
                let _ = segment_tcp_ipv4(&g, 14, 200, 3, &mut arena, &mut segs);
                let _ = segment_tcp_ipv4(&g, 100, 1, 0, &mut arena, &mut segs);
            }
        }
    }
}
