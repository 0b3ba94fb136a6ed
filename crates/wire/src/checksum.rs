//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! [`sum`] accumulates the one's complement sum of 16-bit big-endian words without the final
//! fold, so partial sums (pseudo header, header, payload) can be added together with
//! [`combine`] before [`fold`]. The value it returns is already reduced to at most `0xffff`, so
//! callers may also add a handful of them with plain `+`.
//!
//! Incremental updates come in two flavours:
//! * `update*` work on a checksum field as sent on the wire (the complemented sum), RFC 1624
//!   equation 3: `HC' = ~(~HC + ~m + m')`.
//! * `update_seed*` work on a `CHECKSUM_PARTIAL` seed: the field holds the non-complemented
//!   folded pseudo-header sum that the NIC (or the kernel) completes later:
//!   `S' = fold(S + ~m + m')`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds two unfolded sums with end-around carry; never overflows.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    // On overflow `s <= u32::MAX - 1`, so adding the carry cannot overflow again.
    s + u32::from(carry)
}

/// One's complement sum of `data` as 16-bit big-endian words (an odd trailing byte is padded
/// with zero), not complemented; the result is reduced to at most `0xffff`.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        // 2^16 == 1 modulo 0xffff, so a one's complement sum of 64-bit words (end-around carry)
        // is congruent to the sum of the 16-bit words.
        let (s, carry) = acc.overflowing_add(u64::from_be_bytes(w));
        acc = s + u64::from(carry);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc = fold64_step(acc) + u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let Some(&b) = rest.remainder().first() {
        acc = fold64_step(acc) + (u64::from(b) << 8);
    }
    u32::from(fold64(acc))
}

/// One folding step that keeps the value below 2^33.
#[inline]
fn fold64_step(x: u64) -> u64 {
    (x & 0xffff_ffff) + (x >> 32)
}

/// Folds a 64-bit one's complement accumulator to 16 bits.
#[inline]
fn fold64(x: u64) -> u16 {
    let x = (x & 0xffff_ffff) + (x >> 32);
    let x = (x & 0xffff_ffff) + (x >> 32);
    let x = (x & 0xffff) + (x >> 16);
    let x = (x & 0xffff) + (x >> 16);
    let x = (x & 0xffff) + (x >> 16);
    // The three steps above leave x <= 0xffff.
    (x & 0xffff) as u16
}

/// Folds the carries of an unfolded sum into 16 bits (no complement).
#[inline]
pub fn fold(sum: u32) -> u16 {
    fold64(u64::from(sum))
}

/// Internet checksum of `data`: `!fold(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Unfolded sum of the IPv4 pseudo header (RFC 793 3.1, RFC 768) for `proto` and the upper
/// layer length `len`.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let words = [
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        u16::from(proto),
        (len >> 16) as u16,
        (len & 0xffff) as u16,
    ];
    words.iter().map(|&w| u32::from(w)).sum()
}

/// Unfolded sum of the IPv6 pseudo header (RFC 8200 8.1) for `proto` and the upper layer
/// length `len`.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, len: u32) -> u32 {
    sum(&src.octets()) + sum(&dst.octets()) + u32::from(proto) + (len >> 16) + (len & 0xffff)
}

/// RFC 1624 equation 3 on a checksum field: 16-bit word `old` became `new`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// RFC 1624 equation 3 on a checksum field: 32-bit word `old` became `new`.
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    update_bytes(check, &old.to_be_bytes(), &new.to_be_bytes())
}

/// RFC 1624 equation 3 on a checksum field: the bytes `old` (16-bit aligned in the summed
/// data, e.g. an IPv4 or IPv6 address) became `new`. Returns `check` unchanged when the
/// lengths differ.
#[inline]
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    if old.len() != new.len() {
        return check;
    }
    // The sum of the complemented old words is the complement of their sum.
    !fold(u32::from(!check) + u32::from(!fold(sum(old))) + sum(new))
}

/// Update of a `CHECKSUM_PARTIAL` seed (non-complemented folded pseudo-header sum) when the
/// 16-bit word `old` became `new`: `fold(S + ~m + m')`.
#[inline]
pub fn update_seed16(seed: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(seed) + u32::from(!old) + u32::from(new))
}

/// Update of a `CHECKSUM_PARTIAL` seed when the 32-bit word `old` became `new`.
#[inline]
pub fn update_seed32(seed: u16, old: u32, new: u32) -> u16 {
    update_seed_bytes(seed, &old.to_be_bytes(), &new.to_be_bytes())
}

/// Update of a `CHECKSUM_PARTIAL` seed when the bytes `old` (an address in the pseudo header)
/// became `new`. Returns `seed` unchanged when the lengths differ.
#[inline]
pub fn update_seed_bytes(seed: u16, old: &[u8], new: &[u8]) -> u16 {
    if old.len() != new.len() {
        return seed;
    }
    fold(u32::from(seed) + u32::from(!fold(sum(old))) + sum(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: plain RFC 1071 loop over 16-bit words.
    fn naive_sum(data: &[u8]) -> u32 {
        let mut s: u64 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            s += u64::from(w);
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u32
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn wikipedia_ipv4_header() {
        // Header from the Wikipedia IPv4 checksum example: checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn odd_length_and_empty() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn combine_never_overflows() {
        assert_eq!(combine(u32::MAX, 1), 1);
        assert_eq!(combine(u32::MAX, u32::MAX), u32::MAX);
        assert_eq!(fold(u32::MAX), 0xffff);
        assert_eq!(fold(0x1_fffe), 0xffff);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn update_bytes_length_mismatch_is_noop() {
        assert_eq!(update_bytes(0x1234, &[1, 2, 3, 4], &[1, 2]), 0x1234);
        assert_eq!(update_seed_bytes(0x1234, &[1, 2], &[1, 2, 3, 4]), 0x1234);
    }

    #[test]
    fn pseudo_headers() {
        let a = Ipv4Addr::new(192, 168, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let mut ph = [0u8; 12];
        ph[0..4].copy_from_slice(&a.octets());
        ph[4..8].copy_from_slice(&b.octets());
        ph[9] = 6;
        ph[10..12].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(fold(pseudo_header_v4(a, b, 6, 40)), fold(sum(&ph)));

        let a6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b6: Ipv6Addr = "fe80::1234:5678".parse().unwrap();
        let mut ph6 = [0u8; 40];
        ph6[0..16].copy_from_slice(&a6.octets());
        ph6[16..32].copy_from_slice(&b6.octets());
        ph6[32..36].copy_from_slice(&70000u32.to_be_bytes());
        ph6[39] = 17;
        assert_eq!(fold(pseudo_header_v6(&a6, &b6, 17, 70000)), fold(sum(&ph6)));
    }

    proptest! {
        #[test]
        fn sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), fold(naive_sum(&data)));
            // Splitting at an even offset and combining gives the same sum.
            let mid = (data.len() / 2) & !1;
            let split = combine(sum(&data[..mid]), sum(&data[mid..]));
            prop_assert_eq!(fold(split), fold(sum(&data)));
        }

        #[test]
        fn update_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 24..80),
            at in 0usize..9,
            new in any::<[u8; 4]>(),
            new16 in any::<u16>(),
        ) {
            // Make sure the data is not all zero (the only case where 0x0000 and 0xffff differ).
            data[0] |= 0x40;
            let check = checksum(&data);
            let off = 4 + 2 * at;
            let mut edited = data.clone();
            edited[off..off + 4].copy_from_slice(&new);
            prop_assert_eq!(update_bytes(check, &data[off..off + 4], &new), checksum(&edited));
            prop_assert_eq!(
                update32(check, u32::from_be_bytes(data[off..off + 4].try_into().unwrap()), u32::from_be_bytes(new)),
                checksum(&edited)
            );
            let mut edited16 = data.clone();
            edited16[off..off + 2].copy_from_slice(&new16.to_be_bytes());
            let old16 = u16::from_be_bytes([data[off], data[off + 1]]);
            prop_assert_eq!(update16(check, old16, new16), checksum(&edited16));
        }

        #[test]
        fn seed_update_matches_recompute_v4(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new in any::<[u8; 4]>(),
            len in 0u32..65536, port_old in any::<u16>(), port_new in any::<u16>(),
        ) {
            let (src, dst, new) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(new));
            let seed = fold(pseudo_header_v4(src, dst, 6, len));
            let s1 = update_seed_bytes(seed, &src.octets(), &new.octets());
            prop_assert_eq!(s1, fold(pseudo_header_v4(new, dst, 6, len)));
            let s2 = update_seed_bytes(s1, &dst.octets(), &src.octets());
            prop_assert_eq!(s2, fold(pseudo_header_v4(new, src, 6, len)));
            prop_assert_eq!(
                update_seed32(seed, u32::from(dst), u32::from(new)),
                fold(pseudo_header_v4(src, new, 6, len))
            );
            // A port is not part of the pseudo header: a seed changes only if the word changes.
            let t = update_seed16(seed, port_old, port_new);
            prop_assert_eq!(fold(u32::from(t) + u32::from(port_old)), fold(u32::from(seed) + u32::from(port_new)));
        }

        #[test]
        fn seed_update_matches_recompute_v6(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new in any::<[u8; 16]>(), len in any::<u32>(),
        ) {
            let (src, dst, new) = (Ipv6Addr::from(src), Ipv6Addr::from(dst), Ipv6Addr::from(new));
            let seed = fold(pseudo_header_v6(&src, &dst, 17, len));
            let s1 = update_seed_bytes(seed, &dst.octets(), &new.octets());
            prop_assert_eq!(s1, fold(pseudo_header_v6(&src, &new, 17, len)));
        }
    }
}
