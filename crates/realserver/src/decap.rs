//! Pure IP-in-IP (RFC 2003) decapsulation checks, free of I/O so they can be tested on bytes.
//!
//! The decapsulator reads frames from an AF_PACKET socket (with their offload header, so a
//! checksum the sender left for the hardware to finish is known as such); [`inner_range`]
//! validates an outer IPv4 packet and locates the inner one to inject into the TUN device,
//! [`finish_checksum`] completes a partial checksum first. A packet tunnelled by the kernel
//! fast path of a director fed by a local stack arrives like that (`CHECKSUM_PARTIAL` kept
//! through the encapsulation, as the kernel's own `ipip` decapsulation would keep it).

use std::fmt;
use std::net::Ipv4Addr;

use lvs_wire::ipv4::Ipv4Packet;
use lvs_wire::protocol;

/// IP protocol number of IPv4-in-IPv4 encapsulation (RFC 2003).
pub const IPPROTO_IPIP: u8 = protocol::IPIP;

/// Why a received packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The outer header is shorter than 20 bytes, has a bad IHL or a total length past the buffer.
    OuterMalformed,
    /// The outer protocol is not 4 (IP-in-IP).
    OuterNotIpip,
    /// The inner packet is not a well-formed IPv4 packet (version, IHL or total length).
    InnerMalformed,
    /// The inner packet is addressed to something other than the VIP.
    InnerNotVip,
    /// Writing the inner packet into the TUN device failed.
    TunWrite,
    /// A partial checksum's offsets lie outside the inner packet's transport header.
    BadOffload,
    /// A segmentation-offload super-frame that is not TCP/IPv4 (or cannot be cut).
    GsoUnsupported,
}

impl DropReason {
    /// Every reason, in the order used for counters and summaries.
    pub const ALL: [DropReason; 7] = [
        DropReason::OuterMalformed,
        DropReason::OuterNotIpip,
        DropReason::InnerMalformed,
        DropReason::InnerNotVip,
        DropReason::TunWrite,
        DropReason::BadOffload,
        DropReason::GsoUnsupported,
    ];

    /// Short snake_case name used in the exit summary.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::OuterMalformed => "outer_malformed",
            DropReason::OuterNotIpip => "outer_not_ipip",
            DropReason::InnerMalformed => "inner_malformed",
            DropReason::InnerNotVip => "inner_not_vip",
            DropReason::TunWrite => "tun_write",
            DropReason::BadOffload => "bad_offload",
            DropReason::GsoUnsupported => "gso_unsupported",
        }
    }
}

/// Counters of the decapsulator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// IP-in-IP packets received.
    pub received: u64,
    /// Of those, packets whose partial checksum was finished here.
    pub checksums_finished: u64,
    /// Of those, super-frames cut into segments here.
    pub super_frames: u64,
    /// Inner packets written into the TUN device.
    pub delivered: u64,
    /// Dropped: outer header malformed.
    pub outer_malformed: u64,
    /// Dropped: outer protocol not IPIP.
    pub outer_not_ipip: u64,
    /// Dropped: inner packet malformed.
    pub inner_malformed: u64,
    /// Dropped: inner destination is not the VIP.
    pub inner_not_vip: u64,
    /// Dropped: TUN write failed.
    pub tun_write: u64,
    /// Dropped: partial checksum offsets out of bounds.
    pub bad_offload: u64,
    /// Dropped: super-frame that cannot be segmented.
    pub gso_unsupported: u64,
}

impl Counters {
    /// Count one drop for `reason`.
    pub fn drop(&mut self, reason: DropReason) {
        *self.slot(reason) += 1;
    }

    /// Current value of the drop counter for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::OuterMalformed => self.outer_malformed,
            DropReason::OuterNotIpip => self.outer_not_ipip,
            DropReason::InnerMalformed => self.inner_malformed,
            DropReason::InnerNotVip => self.inner_not_vip,
            DropReason::TunWrite => self.tun_write,
            DropReason::BadOffload => self.bad_offload,
            DropReason::GsoUnsupported => self.gso_unsupported,
        }
    }

    fn slot(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::OuterMalformed => &mut self.outer_malformed,
            DropReason::OuterNotIpip => &mut self.outer_not_ipip,
            DropReason::InnerMalformed => &mut self.inner_malformed,
            DropReason::InnerNotVip => &mut self.inner_not_vip,
            DropReason::TunWrite => &mut self.tun_write,
            DropReason::BadOffload => &mut self.bad_offload,
            DropReason::GsoUnsupported => &mut self.gso_unsupported,
        }
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} delivered={} checksums_finished={} super_frames={}",
            self.received, self.delivered, self.checksums_finished, self.super_frames
        )?;
        for r in DropReason::ALL {
            write!(f, " dropped_{}={}", r.name(), self.dropped(r))?;
        }
        Ok(())
    }
}

/// Validates one IPv4 header at the start of `buf` (the wire crate's view: version 4, IHL at
/// least 5, header and total length within `buf`) and returns the view.
fn ipv4(buf: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    Ipv4Packet::new_checked(buf).ok()
}

/// Returns the inner IPv4 packet of an IP-in-IP packet `outer` (starting at the outer IPv4
/// header, as a raw socket delivers it) if it is a well-formed IPv4 packet addressed to `vip`.
///
/// Bytes past the outer total length (link padding) are ignored; the returned slice is exactly
/// the inner packet's total length.
pub fn inner_packet(outer: &[u8], vip: Ipv4Addr) -> Result<&[u8], DropReason> {
    inner_range(outer, vip).map(|r| &outer[r])
}

/// As [`inner_packet`], the inner packet's place in `outer`.
pub fn inner_range(outer: &[u8], vip: Ipv4Addr) -> Result<std::ops::Range<usize>, DropReason> {
    let o = ipv4(outer).ok_or(DropReason::OuterMalformed)?;
    if o.protocol() != IPPROTO_IPIP {
        return Err(DropReason::OuterNotIpip);
    }
    let inner = ipv4(o.payload()).ok_or(DropReason::InnerMalformed)?;
    if inner.dst_addr() != vip {
        return Err(DropReason::InnerNotVip);
    }
    let ohl = o.header_len();
    Ok(ohl..ohl + usize::from(inner.total_len()))
}

/// Finish the transport checksum of the IPv4 packet `pkt` that its sender left partial for
/// the hardware (`CHECKSUM_PARTIAL`): the field at `start + offset` holds the pseudo-header
/// sum, and the checksum of everything from `start` to the end goes there. Offsets are from
/// the start of `pkt`; they must point inside its transport header.
pub fn finish_checksum(pkt: &mut [u8], start: usize, offset: usize) -> Result<(), DropReason> {
    let ip = ipv4(pkt).ok_or(DropReason::InnerMalformed)?;
    let (ihl, total, proto) = (ip.header_len(), usize::from(ip.total_len()), ip.protocol());
    let field = start.checked_add(offset).ok_or(DropReason::BadOffload)?;
    if start < ihl || field + 2 > total {
        return Err(DropReason::BadOffload);
    }
    let mut c = lvs_wire::checksum::checksum(&pkt[start..total]);
    if c == 0 && proto == protocol::UDP {
        c = 0xffff; // UDP: zero means "no checksum"
    }
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_checksum_is_finished_as_the_hardware_would() {
        // A TCP segment with a valid checksum...
        let src = Ipv4Addr::new(198, 51, 100, 10);
        let dst = Ipv4Addr::new(192, 0, 2, 1);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x10;
        tcp.extend_from_slice(b"some payload bytes!");
        let len = tcp.len() as u32;
        let pseudo = lvs_wire::checksum::pseudo_header_v4(src, dst, 6, len);
        let mut full = tcp.clone();
        let c = !lvs_wire::checksum::fold(lvs_wire::checksum::combine(
            pseudo,
            lvs_wire::checksum::sum(&full),
        ));
        full[16..18].copy_from_slice(&c.to_be_bytes());
        let good = ipv4(6, src.octets(), dst.octets(), &full);
        // ...and the same with only the pseudo-header seed in the field.
        let mut partial_tcp = tcp;
        let seed = lvs_wire::checksum::fold(pseudo);
        partial_tcp[16..18].copy_from_slice(&seed.to_be_bytes());
        let mut partial = ipv4(6, src.octets(), dst.octets(), &partial_tcp);
        finish_checksum(&mut partial, 20, 16).unwrap();
        assert_eq!(partial, good);
        // Offsets outside the transport header are refused, the packet left alone.
        let before = partial.clone();
        assert_eq!(
            finish_checksum(&mut partial, 10, 16),
            Err(DropReason::BadOffload)
        );
        assert_eq!(
            finish_checksum(&mut partial, 20, 1000),
            Err(DropReason::BadOffload)
        );
        assert_eq!(
            finish_checksum(&mut partial, 20, usize::MAX),
            Err(DropReason::BadOffload)
        );
        assert_eq!(partial, before);
    }

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + payload.len()).unwrap();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 100);

    #[test]
    fn good_packet_is_unwrapped() {
        let inner = ipv4(
            1,
            [10, 201, 1, 2],
            [10, 201, 2, 100],
            &[8, 0, 0, 0, 0, 1, 0, 1],
        );
        let outer = ipv4(4, [10, 201, 3, 2], [10, 201, 3, 11], &inner);
        assert_eq!(inner_packet(&outer, VIP), Ok(&inner[..]));
        // Trailing padding beyond the outer total length is ignored.
        let mut padded = outer.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(inner_packet(&padded, VIP), Ok(&inner[..]));
    }

    #[test]
    fn wrong_destination_and_protocol() {
        let inner = ipv4(17, [10, 201, 1, 2], [10, 201, 2, 101], &[0; 8]);
        let outer = ipv4(4, [1, 1, 1, 1], [2, 2, 2, 2], &inner);
        assert_eq!(inner_packet(&outer, VIP), Err(DropReason::InnerNotVip));
        let outer = ipv4(41, [1, 1, 1, 1], [2, 2, 2, 2], &inner);
        assert_eq!(inner_packet(&outer, VIP), Err(DropReason::OuterNotIpip));
    }

    #[test]
    fn malformed_never_panics() {
        assert_eq!(inner_packet(&[], VIP), Err(DropReason::OuterMalformed));
        assert_eq!(
            inner_packet(&[0x45; 19], VIP),
            Err(DropReason::OuterMalformed)
        );
        let outer = ipv4(4, [1, 1, 1, 1], [2, 2, 2, 2], &[0x60; 40]);
        assert_eq!(inner_packet(&outer, VIP), Err(DropReason::InnerMalformed));
        let outer = ipv4(4, [1, 1, 1, 1], [2, 2, 2, 2], &[0x45, 0, 0, 10]);
        assert_eq!(inner_packet(&outer, VIP), Err(DropReason::InnerMalformed));
        // Every prefix and every single-byte corruption of a good packet is handled.
        let inner = ipv4(6, [10, 201, 1, 2], [10, 201, 2, 100], &[0; 20]);
        let outer = ipv4(4, [1, 1, 1, 1], [2, 2, 2, 2], &inner);
        for n in 0..outer.len() {
            let _ = inner_packet(&outer[..n], VIP);
            for v in [0u8, 0x0f, 0x45, 0xff] {
                let mut c = outer.clone();
                c[n] = v;
                let _ = inner_packet(&c, VIP);
            }
        }
    }

    #[test]
    fn counters_summary() {
        let mut c = Counters {
            received: 3,
            delivered: 1,
            ..Default::default()
        };
        c.drop(DropReason::InnerNotVip);
        c.drop(DropReason::InnerNotVip);
        assert_eq!(c.dropped(DropReason::InnerNotVip), 2);
        let s = c.to_string();
        assert!(s.starts_with("received=3 delivered=1 "), "{s}");
        assert!(s.contains("dropped_inner_not_vip=2"), "{s}");
    }
}
