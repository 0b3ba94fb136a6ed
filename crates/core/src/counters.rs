//! Why packets were dropped, and the director-wide counters.

use core::fmt;

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// Why the director dropped a frame. Each reason is also a counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = DropReason::ALL.len();

            /// A stable snake_case name (metrics label, logs).
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// The frame is too short for the headers it claims, or a header field is invalid.
    Malformed => "malformed",
    /// The capture truncated the frame (snap length), so it cannot be forwarded whole.
    Truncated => "truncated",
    /// An IP fragment addressed to a virtual service (fragments are not reassembled).
    Fragment => "fragment",
    /// A TCP segment without SYN for a virtual service, matching no connection.
    NoConnection => "no_connection",
    /// The scheduler found no available real server (all quiescent, overloaded or none).
    NoRealServer => "no_real_server",
    /// The connection table is full.
    TableFull => "table_full",
    /// No route to the next hop.
    NoRoute => "no_route",
    /// The next hop's MAC address could not be found: its resolution failed (3 s), or the
    /// frame did not fit the queue held for it (see `director/hold.rs`).
    NeighbourUnresolved => "neighbour_unresolved",
    /// A direct-routing real server is not on a directly connected network.
    NotOnLink => "not_on_link",
    /// The packet is larger than the outgoing MTU and may be fragmented, which the director
    /// does not do.
    TooBig => "too_big",
    /// No room in the buffer to add the tunnel header.
    NoHeadroom => "no_headroom",
    /// The connection's real server was removed and `expire_nodest_conn` is on.
    DestRemoved => "dest_removed",
    /// The packet's time to live ran out (1 or 0 on arrival): the director answered "time
    /// exceeded" (not for an ICMP error), as IPVS does.
    TtlExceeded => "ttl_exceeded",
    /// An encapsulation the director does not handle (VLAN tags on the served interface,
    /// IPv6 forwarding in this version).
    Unsupported => "unsupported",
    /// A segmentation-offload super-frame that this path cannot pass on as one frame.
    GsoUnsupported => "gso_unsupported",
    /// A packet for a virtual service or a connection whose IPv4 header checksum, or an ICMP
    /// error whose ICMP checksum, is wrong (see `director/validate.rs`).
    BadChecksum => "bad_checksum",
    /// A packet for a virtual service carrying a source-route option (LSRR, SSRR), which the
    /// kernel refuses for a local address by default (`accept_source_route` 0).
    SourceRoute => "source_route",
    /// A new connection from a source no client can have: 0/8, 127/8, 169.254/16, 224/4,
    /// 240/4 (limited broadcast included).
    MartianSource => "martian_source",
    /// A new connection from one of the director's own addresses: a VIP, an address of an
    /// interface (as the kernel's `fib_validate_source` refuses a local source).
    SpoofedSource => "spoofed_source",
    /// A new connection from a connected subnet's broadcast address (its replies would go
    /// to the whole subnet).
    BroadcastSource => "broadcast_source",
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Director-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed to the core.
    pub rx_frames: u64,
    /// Frames forwarded to a real server or a client: `Transmit` verdicts, less those the
    /// driver reported it could not send (`Director::send_failed`), which count as
    /// `tx_errors` instead. Each frame is counted once, here.
    pub forwarded: u64,
    /// Frames (or super-frames) the core said to send that the driver could not take: a
    /// frame its send queue refuses (shorter than an Ethernet header or larger than the
    /// queue's buffer), a super-frame it could not cut. A send syscall that fails later, for
    /// a whole batch, is the io layer's to count (`lvs_io::TxCounters`).
    pub tx_errors: u64,
    /// Frames left to the kernel.
    pub passed: u64,
    /// ICMP errors the director generated (fragmentation needed / packet too big).
    pub icmp_sent: u64,
    /// Super-frames returned to the caller for segmentation (less those it could not cut,
    /// counted as `tx_errors`); each segment is then counted as a frame of its own.
    pub segment_requests: u64,
    /// Frames waiting now for their next hop's MAC address (a gauge): each leaves as
    /// `forwarded` once the neighbour is resolved or as a `neighbour_unresolved` drop.
    pub held: u64,
    /// Frames that had to wait for their next hop's MAC address, since the start.
    pub held_total: u64,
    /// Connections created.
    pub conns_created: u64,
    /// Connections expired.
    pub conns_expired: u64,
    /// Entries that never got past SYN_RECV removed to make room for a new connection
    /// (the table full, or the embryonic limit reached: a SYN flood).
    pub embryonic_evicted: u64,
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    /// Count one drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// The count for one drop reason.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}
