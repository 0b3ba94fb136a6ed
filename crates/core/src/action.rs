//! What the director does with a frame, as a value, and doing it to the bytes.
//!
//! [`Director::decide`](crate::director::Director::decide) reads a frame and the tables
//! (and moves the connection's state) and returns an [`Action`]; [`apply`] then carries the
//! action out on the frame, in place, with the primitives of [`crate::rewrite`]. Deciding
//! never writes to the frame and applying never looks at a table. The kernel program has the
//! same split (`classify` fills its `struct plan`, `rewrite_tc`/`rewrite_xdp` apply it), and
//! the differential test compares the program's action with the core's as well as the bytes.

use std::net::Ipv4Addr;

use lvs_wire::ethernet;
use lvs_wire::icmpv4::{self, Icmpv4ErrorRepr};
use lvs_wire::ipv4::{self, Ipv4Packet};
use lvs_wire::protocol;
use lvs_wire::tcp;
use lvs_wire::udp;

use crate::counters::DropReason;
use crate::net::NextHop;
use crate::rewrite::{self, End};

/// Segmentation offload information of a received super-frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// Kind of segmentation.
    pub kind: GsoKind,
    /// Payload bytes per segment.
    pub size: u16,
}

/// Segmentation kinds (virtio-net's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4.
    Tcpv4,
    /// TCP over IPv6.
    Tcpv6,
    /// UDP (fragmentation offload / UDP GSO).
    Udp,
    /// Any other kind (SCTP, tunnels, ...): carried as it is where the frame is not
    /// re-encapsulated, refused (`GsoUnsupported`) where it would have to be cut.
    Other,
}

/// Where a checksum the NIC must finish lies, relative to the frame start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsumOffload {
    /// Start of the region to sum (the transport header).
    pub start: u16,
    /// Offset of the checksum field from `start`.
    pub offset: u16,
}

/// What the caller knows about a received frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// Interface it arrived on.
    pub ifindex: u32,
    /// The transport checksum is partial (`CHECKSUM_PARTIAL`): the field holds the
    /// pseudo-header seed, to be completed on transmit.
    pub csum_partial: bool,
    /// A segmentation-offload super-frame.
    pub gso: Option<Gso>,
    /// Firewall mark, if the caller knows one (0 = none).
    pub fwmark: u32,
    /// The capture cut the frame short.
    pub truncated: bool,
    /// The frame carried a VLAN tag that the kernel (or NIC) moved out of the bytes into
    /// metadata before the capture: it belongs to a VLAN interface, not to this one.
    pub vlan: bool,
}

/// A frame to transmit: `buf[start..start + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tx {
    /// Outgoing interface.
    pub ifindex: u32,
    /// Start of the frame in the buffer (may be before the received start: the tunnel header
    /// takes headroom).
    pub start: usize,
    /// Frame length.
    pub len: usize,
    /// A checksum the NIC must finish.
    pub csum: Option<CsumOffload>,
    /// Segmentation the NIC (or kernel) must do.
    pub gso: Option<Gso>,
}

/// The forwarding decision for one frame, carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the rewritten frame.
    Transmit(Tx),
    /// Not for the director: let the kernel have it.
    Pass,
    /// Dropped, for this reason (counted).
    Drop(DropReason),
    /// Rewritten, and kept by the core until its next hop's MAC address is known (see
    /// [`Director::release_held`](crate::director::Director::release_held)).
    Held,
    /// A TCP/IPv4 super-frame that must be cut into segments of at most `mss` payload bytes,
    /// each handed to [`Director::process`](crate::director::Director::process) again
    /// (IP-in-IP has no offload type).
    Segment {
        /// Largest payload per segment.
        mss: u16,
    },
}

/// What to do with one frame: the outcome of
/// [`Director::decide`](crate::director::Director::decide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Not for the director: the kernel's.
    Pass,
    /// Dropped, for this reason.
    Drop(DropReason),
    /// A TCP/IPv4 super-frame to be cut into segments of at most `mss` payload bytes first
    /// (each is decided again).
    Segment {
        /// Largest payload per segment.
        mss: u16,
    },
    /// NAT: the packet's `end` becomes `addr:port` (checksums updated incrementally), its TTL
    /// drops by one, and it leaves through `hop`. `Destination` on the way to a real server,
    /// `Source` on a real server's reply back to the client.
    Nat {
        /// The end rewritten.
        end: End,
        /// Its new address.
        addr: Ipv4Addr,
        /// Its new port.
        port: u16,
        /// Where the packet goes.
        hop: NextHop,
    },
    /// Direct routing: TTL down by one, the next hop's MAC address, nothing else.
    Route {
        /// Where the packet goes (the real server, on the link).
        hop: NextHop,
    },
    /// IP-in-IP: TTL down by one, then an outer IPv4 header from `src` to `dst`.
    Encap {
        /// Outer source: the director's address towards the real server.
        src: Ipv4Addr,
        /// Outer destination: the real server.
        dst: Ipv4Addr,
        /// Where the packet goes.
        hop: NextHop,
    },
    /// An ICMP error quoting a packet of a NAT connection: the quoted packet's `end` becomes
    /// `addr:port`, the outer header's opposite end `addr` (the error comes from the virtual
    /// address, or goes to the real server), TTL down by one, out through `hop`.
    NatIcmp {
        /// The end of the quoted packet rewritten.
        end: End,
        /// Its new address.
        addr: Ipv4Addr,
        /// Its new port.
        port: u16,
        /// Where the error goes.
        hop: NextHop,
    },
    /// Not forwarded but answered: the ICMP error `error` from `from` to the frame's sender,
    /// out of `ifindex` (the interface it came in on) with the frame's MAC addresses swapped.
    Answer {
        /// Interface the answer leaves through.
        ifindex: u32,
        /// Its source address.
        from: Ipv4Addr,
        /// The error sent.
        error: Icmpv4ErrorRepr,
    },
}

impl Action {
    /// The next hop of an action that forwards the frame.
    pub fn hop(&self) -> Option<&NextHop> {
        match self {
            Action::Nat { hop, .. }
            | Action::Route { hop }
            | Action::Encap { hop, .. }
            | Action::NatIcmp { hop, .. } => Some(hop),
            Action::Pass | Action::Drop(_) | Action::Segment { .. } | Action::Answer { .. } => None,
        }
    }
}

const ETH: usize = ethernet::HEADER_LEN;
/// The outer header IP-in-IP adds.
pub(crate) const TUN_OVERHEAD: usize = ipv4::HEADER_LEN;

/// The IPv4 header fields applying needs, read again from the frame `decide` checked.
#[derive(Clone, Copy)]
struct Header {
    ip_len: usize,
    ihl: usize,
    proto: u8,
}

impl Header {
    /// The fields, with the lengths checked against the frame (`decide` validated the rest).
    #[inline]
    fn read(frame: &[u8]) -> Option<Header> {
        let ip = frame.get(ETH..ETH + ipv4::HEADER_LEN)?;
        let ip = Ipv4Packet::new_unchecked(ip);
        let (ip_len, ihl) = (usize::from(ip.total_len()), ip.header_len());
        if ihl < ipv4::HEADER_LEN || ip_len < ihl || ETH + ip_len > frame.len() {
            return None;
        }
        Some(Header {
            ip_len,
            ihl,
            proto: ip.protocol(),
        })
    }
}

/// Carry out `action` (decided for this frame) on the frame `buf[start..start + len]`, in
/// place. Bytes before `start` are headroom that an outer header or a long ICMP answer may
/// use. Returns what to send, or why nothing is; never [`Verdict::Held`] (holding a frame
/// for its neighbour is the director's). Never panics, whatever the bytes.
#[inline]
pub fn apply(action: &Action, meta: &RxMeta, buf: &mut [u8], start: usize, len: usize) -> Verdict {
    match *action {
        Action::Pass => return Verdict::Pass,
        Action::Drop(r) => return Verdict::Drop(r),
        Action::Segment { mss } => return Verdict::Segment { mss },
        _ => {}
    }
    let Some(h) = start
        .checked_add(len)
        .and_then(|end| buf.get(start..end))
        .and_then(Header::read)
    else {
        return Verdict::Drop(DropReason::Malformed);
    };
    // Offload state belongs to a TCP/UDP packet; an ICMP error goes out complete.
    let meta = if h.proto == protocol::ICMP {
        RxMeta {
            csum_partial: false,
            gso: None,
            ..*meta
        }
    } else {
        *meta
    };
    match *action {
        Action::Nat {
            end,
            addr,
            port,
            hop,
        } => nat(&meta, buf, start, h, (end, addr, port), &hop),
        Action::Route { hop } => {
            decrement_ttl(buf, start);
            set_macs(buf, start, &hop);
            Verdict::Transmit(tx(hop.ifindex, start, ETH + h.ip_len, &meta, h))
        }
        Action::Encap { src, dst, hop } => encap(&meta, buf, start, h, (src, dst), &hop),
        Action::NatIcmp {
            end,
            addr,
            port,
            hop,
        } => nat_icmp(buf, start, h, (end, addr, port), &hop),
        Action::Answer {
            ifindex,
            from,
            error,
        } => answer(buf, start, h, ifindex, from, error),
        Action::Pass | Action::Drop(_) | Action::Segment { .. } => Verdict::Pass,
    }
}

#[inline]
fn tx(ifindex: u32, start: usize, len: usize, meta: &RxMeta, h: Header) -> Tx {
    let csum = meta.csum_partial.then(|| CsumOffload {
        start: (ETH + h.ihl) as u16,
        offset: match h.proto {
            protocol::TCP => tcp::CHECKSUM_OFFSET as u16,
            _ => udp::CHECKSUM_OFFSET as u16,
        },
    });
    Tx {
        ifindex,
        start,
        len,
        csum,
        gso: meta.gso,
    }
}

/// NAT, both directions: one end to `addr:port`, the TTL, the Ethernet header for `hop`.
#[inline]
fn nat(
    meta: &RxMeta,
    buf: &mut [u8],
    start: usize,
    h: Header,
    (end, addr, port): (End, Ipv4Addr, u16),
    hop: &NextHop,
) -> Verdict {
    let frame_len = ETH + h.ip_len;
    let Some(ip) = buf.get_mut(start + ETH..start + frame_len) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    if rewrite::rewrite_v4(ip, h.proto, end, addr, port, meta.csum_partial).is_none() {
        return Verdict::Drop(DropReason::Malformed);
    }
    decrement_ttl(buf, start);
    set_macs(buf, start, hop);
    Verdict::Transmit(tx(hop.ifindex, start, frame_len, meta, h))
}

/// IP-in-IP: the outer header goes into the headroom (or the packet slides back when there
/// is none).
fn encap(
    meta: &RxMeta,
    buf: &mut [u8],
    start: usize,
    h: Header,
    (dip, rip): (Ipv4Addr, Ipv4Addr),
    hop: &NextHop,
) -> Verdict {
    // The outer header copies the inner TTL after this, as IPVS's ipip transmitter.
    decrement_ttl(buf, start);
    let inner_start = start + ETH;
    let inner_end = inner_start + h.ip_len;
    let new_start = if start >= TUN_OVERHEAD {
        start - TUN_OVERHEAD
    } else if buf.len() >= inner_end + TUN_OVERHEAD {
        buf.copy_within(inner_start..inner_end, inner_start + TUN_OVERHEAD);
        start
    } else {
        return Verdict::Drop(DropReason::NoHeadroom);
    };
    let inner_at = new_start + ETH + TUN_OVERHEAD;
    if meta.csum_partial {
        // The receiver decapsulates; no NIC will finish this checksum after us.
        let l4 = &mut buf[inner_at + h.ihl..inner_at + h.ip_len];
        rewrite::complete_partial_checksum(l4, h.proto);
    }
    let (head, inner) = buf.split_at_mut(inner_at);
    if rewrite::write_tunnel_header(&mut head[new_start + ETH..], dip, rip, &inner[..h.ip_len])
        .is_none()
    {
        return Verdict::Drop(DropReason::Malformed);
    }
    complete_out(buf, new_start, ETH + TUN_OVERHEAD + h.ip_len, hop)
}

/// A NAT connection's ICMP error: the quoted packet's `end` to `to`, the outer header's
/// opposite end to the same address, checksums fixed (the ICMP message is short: recomputed
/// whole), out through `hop`. A quote that cannot be rewritten is the kernel's.
fn nat_icmp(
    buf: &mut [u8],
    start: usize,
    h: Header,
    (end, addr, port): (End, Ipv4Addr, u16),
    hop: &NextHop,
) -> Verdict {
    let frame_end = start + ETH + h.ip_len;
    let icmp_at = start + ETH + h.ihl;
    let inner_at = icmp_at + icmpv4::HEADER_LEN;
    let Some(inner) = buf
        .get(inner_at..frame_end)
        .and_then(|q| Ipv4Packet::new_checked_truncated(q).ok())
    else {
        return Verdict::Pass;
    };
    let (inner_ihl, inner_proto) = (inner.header_len(), inner.protocol());
    let quoted = &mut buf[inner_at..frame_end];
    if rewrite::rewrite_v4(quoted, inner_proto, end, addr, port, false).is_none() {
        return Verdict::Pass;
    }
    if let Some(ih) = quoted.get_mut(..inner_ihl) {
        Ipv4Packet::new_unchecked(ih).fill_checksum();
    }
    rewrite::fill_icmp_checksum(&mut buf[icmp_at..frame_end]);
    let mut p = Ipv4Packet::new_unchecked(&mut buf[start + ETH..frame_end]);
    match end {
        End::Source => p.set_dst_addr_incremental(addr),
        End::Destination => p.set_src_addr_incremental(addr),
    }
    let _ = p.decrement_ttl_incremental();
    complete_out(buf, start, ETH + h.ip_len, hop)
}

/// The Ethernet header for `hop`, and the frame `buf[start..start + len]` out through it,
/// complete (nothing left for the NIC to finish).
fn complete_out(buf: &mut [u8], start: usize, len: usize, hop: &NextHop) -> Verdict {
    set_macs(buf, start, hop);
    Verdict::Transmit(Tx {
        ifindex: hop.ifindex,
        start,
        len,
        csum: None,
        gso: None,
    })
}

#[inline]
fn set_macs(buf: &mut [u8], start: usize, hop: &NextHop) {
    if let Some(frame) = buf.get_mut(start..) {
        rewrite::write_ethernet(frame, hop.src_mac, hop.dst_mac, ethernet::ethertype::IPV4);
    }
}

/// The frame becomes the ICMP error about it, back to its sender.
fn answer(
    buf: &mut [u8],
    start: usize,
    h: Header,
    ifindex: u32,
    from: Ipv4Addr,
    error: Icmpv4ErrorRepr,
) -> Verdict {
    let failed = if error.msg_type == icmpv4::msg_type::TIME_EXCEEDED {
        DropReason::TtlExceeded
    } else {
        DropReason::TooBig
    };
    // The error is longer than a short packet it quotes: it starts earlier in the headroom
    // when the buffer ends too soon after the packet.
    let need = ETH + ipv4::HEADER_LEN + icmpv4::HEADER_LEN + h.ip_len.min(icmpv4::MAX_QUOTE_LEN);
    let short = need.saturating_sub(buf.len().saturating_sub(start));
    let start = if short == 0 {
        start
    } else if start >= short {
        buf.copy_within(start..start + ETH + h.ip_len, start - short);
        start - short
    } else {
        return Verdict::Drop(failed);
    };
    let Some(frame) = buf.get_mut(start..) else {
        return Verdict::Drop(failed);
    };
    match rewrite::icmp_error_in_place(frame, h.ip_len, from, error) {
        Some(len) => Verdict::Transmit(Tx {
            ifindex,
            start,
            len,
            csum: None,
            gso: None,
        }),
        None => Verdict::Drop(failed),
    }
}

/// Take one off the TTL of the IPv4 packet at `buf[start + ETH..]`, fixing its header
/// checksum; checked to be above 1 by `decide`, as IPVS's `decrement_ttl`.
#[inline]
fn decrement_ttl(buf: &mut [u8], start: usize) {
    if let Some(ip) = buf.get_mut(start + ETH..start + ETH + ipv4::HEADER_LEN) {
        let _ = Ipv4Packet::new_unchecked(ip).decrement_ttl_incremental();
    }
}
