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

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

fn sum16(mut acc: u64, data: &[u8]) -> u64 {
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = it.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn get_u16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn get_u32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
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
    let ip = frame.get(l2_len..).ok_or(GsoError::Truncated)?;
    let b0 = *ip.first().ok_or(GsoError::Truncated)?;
    if b0 >> 4 != 4 {
        return Err(GsoError::BadHeader);
    }
    let ihl = usize::from(b0 & 0x0f) * 4;
    if ihl < 20 {
        return Err(GsoError::BadHeader);
    }
    if ip.len() < ihl {
        return Err(GsoError::Truncated);
    }
    let total = usize::from(get_u16(ip, 2).ok_or(GsoError::Truncated)?);
    if total < ihl + 20 {
        return Err(GsoError::BadHeader);
    }
    if ip.len() < total {
        return Err(GsoError::Truncated);
    }
    if ip[9] != 6 {
        return Err(GsoError::NotTcp);
    }
    let frag = get_u16(ip, 6).ok_or(GsoError::Truncated)?;
    if frag & 0x3fff != 0 {
        return Err(GsoError::Fragment);
    }
    let tcp = &ip[ihl..total];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return Err(GsoError::BadHeader);
    }
    let payload = &tcp[doff..];
    let n = segment_count(payload.len(), mss);
    if n > segs.len() {
        return Err(GsoError::TooManySegments);
    }
    let hdrs = l2_len + ihl + doff;
    let id0 = get_u16(ip, 4).ok_or(GsoError::Truncated)?;
    let seq0 = get_u32(tcp, 4).ok_or(GsoError::Truncated)?;
    let flags0 = tcp[13];
    let (src, dst) = (&ip[12..16], &ip[16..20]);

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

        let (l2, rest) = out.split_at_mut(l2_len);
        let _ = l2;
        let (iph, tcph) = rest.split_at_mut(ihl);
        // IPv4: total length, identification, header checksum.
        let ip_len = (ihl + doff + chunk.len()) as u16;
        iph[2..4].copy_from_slice(&ip_len.to_be_bytes());
        iph[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
        iph[10..12].fill(0);
        let c = !fold(sum16(0, iph));
        iph[10..12].copy_from_slice(&c.to_be_bytes());
        // TCP: sequence number, flags, checksum.
        let seq = seq0.wrapping_add(from as u32);
        tcph[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < n {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        tcph[13] = flags;
        tcph[16..18].fill(0);
        let tcp_len = (doff + chunk.len()) as u16;
        let mut acc = sum16(0, src);
        acc = sum16(acc, dst);
        acc += 6 + u64::from(tcp_len);
        acc = sum16(acc, tcph);
        let c = !fold(acc);
        tcph[16..18].copy_from_slice(&c.to_be_bytes());

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

    fn tcp_ok(seg: &[u8]) -> bool {
        let ip = &seg[14..];
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = &ip[20..total];
        let mut acc = sum16(0, &ip[12..20]);
        acc += 6 + tcp.len() as u64;
        fold(sum16(acc, tcp)) == 0xffff
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
            assert_eq!(fold(sum16(0, &ip[..20])), 0xffff, "IPv4 header checksum");
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
        assert_eq!(fold(sum16(0, &seg[14..34])), 0xffff);
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
