//! What a frame must be before the director keeps state for it or forwards it (issue 11):
//! the checks run on every packet of a virtual service or a connection, before any lookup
//! changes a table, and each refusal is a drop reason of its own.
//!
//! - **Headers** as the kernel would accept them at `ip_rcv` (IPVS sees nothing else): a
//!   correct IPv4 header checksum, no source-route option (the kernel drops those for a local
//!   address unless `accept_source_route` is set, off by default), well-formed options; a TCP
//!   data offset of at least 5 within the segment; a UDP length of at least 8 and
//!   a UDP length no longer than the IP payload (the kernel trims what lies past it; UDP
//!   options live there). Transport checksums are not verified, as IPVS does not: NAT
//!   updates them incrementally, so a bad one stays bad and the receiver drops the segment.
//! - **Sources** no client can have (`martian_source`): unspecified (0/8), loopback (127/8),
//!   link-local (169.254/16), multicast (224/4), reserved and limited broadcast (240/4) — the
//!   kernel refuses 0/8, 127/8, 224/4 and 255.255.255.255 (`ip_route_input_slow`); link-local
//!   and the rest of 240/4 are refused here too, as no client of a virtual service has them;
//!   and ones that are the director's own (`spoofed_source`: a VIP, an address of the
//!   director, as the kernel's `fib_validate_source` refuses a local source) or the broadcast
//!   address of one of its subnets (`broadcast_source`: a server's answer would go to the
//!   whole subnet). A real server's address is a client like any other (a web tier that is a
//!   real server of one VIP and a client of another). Checked before a connection is
//!   scheduled; an entry can only exist for a source that passed.
//!
//! The kernel fast path refuses the same frames: it leaves any packet with IP options, a bad
//! header checksum, a TTL of 1 or less, a bad TCP offset or UDP length to user space (here),
//! and checks new flows' sources against the fixed ranges and against the set
//! [`SourceFilter::refused`] gives it (`lvs_refused`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use lvs_wire::ipv4::Ipv4Packet;
use lvs_wire::{tcp, udp};

use crate::counters::DropReason;
use crate::net::NetTable;
use crate::service::ServiceTable;
use crate::types::Protocol;

/// IPv4 option types (RFC 791).
mod opt {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const LSRR: u8 = 131;
    pub const SSRR: u8 = 137;
}

/// Why the IPv4 header of a packet for a service may not be forwarded, if it may not.
pub(super) fn ip_header(ip: &Ipv4Packet<&[u8]>) -> Result<(), DropReason> {
    if !ip.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    options(ip.options())
}

/// Walk the options: a source route is refused, a malformed list too.
fn options(mut o: &[u8]) -> Result<(), DropReason> {
    while let Some(&kind) = o.first() {
        match kind {
            opt::END => return Ok(()),
            opt::NOP => o = &o[1..],
            _ => {
                let len = usize::from(*o.get(1).ok_or(DropReason::Malformed)?);
                if len < 2 || len > o.len() {
                    return Err(DropReason::Malformed);
                }
                if kind == opt::LSRR || kind == opt::SSRR {
                    return Err(DropReason::SourceRoute);
                }
                o = &o[len..];
            }
        }
    }
    Ok(())
}

/// Whether the transport header `l4` (the whole IP payload) is what its protocol says it is.
pub(super) fn transport(proto: Protocol, l4: &[u8]) -> Result<(), DropReason> {
    match proto {
        Protocol::Tcp => {
            let off = l4.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
            if off < tcp::HEADER_LEN || off > l4.len() {
                return Err(DropReason::Malformed);
            }
        }
        Protocol::Udp => {
            let len = match l4 {
                [_, _, _, _, a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
                _ => 0,
            };
            if len < udp::HEADER_LEN || len > l4.len() {
                return Err(DropReason::Malformed);
            }
        }
        Protocol::Sctp => {}
    }
    Ok(())
}

/// A source address no client can have, whatever the site: the fixed martian ranges.
pub fn martian(src: Ipv4Addr) -> bool {
    let [a, b, ..] = src.octets();
    a == 0 || a == 127 || a >= 224 || (a == 169 && b == 254)
}

/// The sources this site's own configuration refuses (VIPs, the director's addresses, its
/// subnets' broadcast addresses), kept for the tables they come from.
#[derive(Debug, Default)]
pub(super) struct SourceFilter {
    /// The set, or `None` when a table it depends on changed since it was built.
    refused: Option<HashMap<Ipv4Addr, DropReason>>,
    /// [`NetTable::local_fingerprint`] of the table the set was built from.
    net_version: u64,
}

impl SourceFilter {
    /// The services changed: build the set again on next use.
    pub(super) fn invalidate(&mut self) {
        self.refused = None;
    }

    /// Why a new connection from `src` is refused, if it is.
    pub(super) fn check(
        &mut self,
        src: Ipv4Addr,
        net: &NetTable,
        services: &ServiceTable,
    ) -> Result<(), DropReason> {
        if martian(src) {
            return Err(DropReason::MartianSource);
        }
        if self.net_version != net.local_fingerprint() {
            self.refused = None;
        }
        let set = self.refused.get_or_insert_with(|| {
            let mut m = HashMap::new();
            for (a, r) in refused(net, services) {
                m.entry(a).or_insert(r);
            }
            m
        });
        self.net_version = net.local_fingerprint();
        match set.get(&src) {
            Some(&r) => Err(r),
            None => Ok(()),
        }
    }
}

/// Every source address the configuration refuses, with the reason (the first reason per
/// address wins: a VIP that is also a broadcast address is a spoofed source): the
/// director's addresses and VIPs, and its subnets' broadcast addresses.
pub fn refused(net: &NetTable, services: &ServiceTable) -> Vec<(Ipv4Addr, DropReason)> {
    let mut out = Vec::new();
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    };
    for i in net.interfaces() {
        out.extend(
            i.addrs
                .iter()
                .filter_map(|&a| v4(a))
                .map(|a| (a, DropReason::SpoofedSource)),
        );
    }
    for (_, s) in services.iter_all() {
        if let crate::types::ServiceKey::Addr { addr, .. } = s.config().key
            && let Some(a) = v4(addr)
        {
            out.push((a, DropReason::SpoofedSource));
        }
    }
    for r in net.routes() {
        // A subnet of the director's (a connected route whose interface has an address in
        // it; a device route such as a VPN's /8 is not a broadcast domain of ours) with room
        // for a broadcast address (/31 and /32 have none).
        let (IpAddr::V4(p), None, 1..=30) = (r.prefix, r.gateway, r.len) else {
            continue;
        };
        let mask = u32::MAX << (32 - r.len);
        let own = net.interface(r.ifindex).is_some_and(|i| {
            i.addrs
                .iter()
                .filter_map(|&a| v4(a))
                .any(|a| u32::from(a) & mask == u32::from(p) & mask)
        });
        if own {
            let b = Ipv4Addr::from(u32::from(p) | !mask);
            out.push((b, DropReason::BroadcastSource));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_martians() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(martian(a.parse().unwrap()), "{a}");
        }
        for a in [
            "1.0.0.0",
            "10.0.0.1",
            "169.253.1.1",
            "192.0.2.1",
            "223.255.255.255",
        ] {
            assert!(!martian(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn options_walk() {
        assert_eq!(options(&[]), Ok(()));
        assert_eq!(options(&[1, 1, 1, 0]), Ok(()));
        // Record route (7), 3 bytes.
        assert_eq!(options(&[7, 3, 4, 0]), Ok(()));
        assert_eq!(
            options(&[131, 7, 4, 0, 0, 0, 0, 0]),
            Err(DropReason::SourceRoute)
        );
        assert_eq!(options(&[1, 137, 3, 4]), Err(DropReason::SourceRoute));
        assert_eq!(options(&[7, 1, 0, 0]), Err(DropReason::Malformed));
        assert_eq!(options(&[7, 9, 0, 0]), Err(DropReason::Malformed));
        assert_eq!(options(&[7]), Err(DropReason::Malformed));
        // After END nothing counts.
        assert_eq!(options(&[0, 131, 1, 1]), Ok(()));
    }

    #[test]
    fn transport_headers() {
        let mut t = [0u8; 24];
        t[12] = 5 << 4;
        assert_eq!(transport(Protocol::Tcp, &t), Ok(()));
        t[12] = 6 << 4;
        assert_eq!(transport(Protocol::Tcp, &t), Ok(()));
        t[12] = 7 << 4;
        assert_eq!(transport(Protocol::Tcp, &t), Err(DropReason::Malformed));
        t[12] = 4 << 4;
        assert_eq!(transport(Protocol::Tcp, &t), Err(DropReason::Malformed));
        assert_eq!(
            transport(Protocol::Tcp, &t[..12]),
            Err(DropReason::Malformed)
        );
        let mut u = [0u8; 12];
        u[5] = 12;
        assert_eq!(transport(Protocol::Udp, &u), Ok(()));
        u[5] = 7;
        assert_eq!(transport(Protocol::Udp, &u), Err(DropReason::Malformed));
        u[5] = 13;
        assert_eq!(transport(Protocol::Udp, &u), Err(DropReason::Malformed));
        // Shorter than the payload: the rest is trimmed by the kernel, fine.
        u[5] = 9;
        assert_eq!(transport(Protocol::Udp, &u), Ok(()));
        u[5] = 7;
        assert_eq!(
            transport(Protocol::Udp, &u[..7]),
            Err(DropReason::Malformed)
        );
    }
}
