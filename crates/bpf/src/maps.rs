//! Rust mirrors of the structs in `src/bpf/lvs.h`, encoded by hand to the exact bytes the
//! kernel program reads (addresses and ports in network order, other fields native-endian).
//! Each `LEN` is also asserted in `lvs.h` (`_Static_assert`), so the C build fails when a
//! struct and its mirror disagree.

use std::net::Ipv4Addr;

use lvs_core::types::Protocol;

/// Key of `lvs_conns`: a packet's five-tuple as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
}

impl Flow {
    /// Encoded size (`struct lvs_flow`).
    pub const LEN: usize = 16;

    /// A flow of `proto` from `src:sport` to `dst:dport`.
    pub fn new(proto: Protocol, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Flow {
        Flow {
            src,
            dst,
            sport,
            dport,
            proto: proto.number(),
        }
    }

    /// The bytes of `struct lvs_flow`.
    pub fn to_bytes(&self) -> [u8; Flow::LEN] {
        let mut b = [0u8; Flow::LEN];
        b[0..4].copy_from_slice(&self.src.octets());
        b[4..8].copy_from_slice(&self.dst.octets());
        b[8..10].copy_from_slice(&self.sport.to_be_bytes());
        b[10..12].copy_from_slice(&self.dport.to_be_bytes());
        b[12] = self.proto;
        b
    }

    /// Decode `struct lvs_flow`; `None` if `b` is not 16 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Flow> {
        if b.len() != Flow::LEN {
            return None;
        }
        Some(Flow {
            src: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            dst: Ipv4Addr::new(b[4], b[5], b[6], b[7]),
            sport: u16::from_be_bytes([b[8], b[9]]),
            dport: u16::from_be_bytes([b[10], b[11]]),
            proto: b[12],
        })
    }
}

/// `enum lvs_action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    /// Destination becomes the real server (client → real server).
    NatIn = 1,
    /// Source becomes the virtual address (real server → client).
    NatOut = 2,
    /// Only the MAC changes.
    DirectRoute = 3,
    /// IP-in-IP to the real server.
    Tunnel = 4,
}

impl Action {
    fn from_u8(v: u8) -> Option<Action> {
        Some(match v {
            1 => Action::NatIn,
            2 => Action::NatOut,
            3 => Action::DirectRoute,
            4 => Action::Tunnel,
            _ => return None,
        })
    }
}

/// `LVS_F_NO_OUTPUT`: the input-only TCP table applies (DR, Tun).
pub const F_NO_OUTPUT: u8 = 1;

/// Value of `lvs_conns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    /// What to do.
    pub action: Action,
    /// IPVS TCP state (index of `TcpState`).
    pub state: u8,
    /// `F_*` flags.
    pub flags: u8,
    /// Real server (NAT in, DR, Tun) or virtual address (NAT out).
    pub addr: Ipv4Addr,
    /// Real server port (NAT in) or virtual port (NAT out).
    pub port: u16,
    /// Slot in `lvs_stats`.
    pub stats: u32,
    /// The program's route cache (written by the program; zero when installed).
    pub route: RouteCache,
    /// Kernel monotonic (coarse) time of the last packet, ns.
    pub seen_ns: u64,
}

/// The route a connection entry caches, valid for one generation of `lvs_routes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteCache {
    /// MTU of the outgoing interface.
    pub mtu: u16,
    /// Outgoing interface (0: not cached).
    pub ifindex: u32,
    /// Next hop.
    pub nexthop: Ipv4Addr,
    /// Tunnel source.
    pub src: Ipv4Addr,
    /// Generation of `lvs_routes` it was read from.
    pub generation: u32,
}

impl Default for RouteCache {
    fn default() -> RouteCache {
        RouteCache {
            mtu: 0,
            ifindex: 0,
            nexthop: Ipv4Addr::UNSPECIFIED,
            src: Ipv4Addr::UNSPECIFIED,
            generation: 0,
        }
    }
}

impl ConnEntry {
    /// Encoded size (`struct lvs_conn`).
    pub const LEN: usize = 40;

    /// The bytes of `struct lvs_conn`.
    pub fn to_bytes(&self) -> [u8; ConnEntry::LEN] {
        let mut b = [0u8; ConnEntry::LEN];
        b[0] = self.action as u8;
        b[1] = self.state;
        b[2] = self.flags;
        b[4..8].copy_from_slice(&self.addr.octets());
        b[8..10].copy_from_slice(&self.port.to_be_bytes());
        b[10..12].copy_from_slice(&self.route.mtu.to_ne_bytes());
        b[12..16].copy_from_slice(&self.stats.to_ne_bytes());
        b[16..20].copy_from_slice(&self.route.ifindex.to_ne_bytes());
        b[20..24].copy_from_slice(&self.route.nexthop.octets());
        b[24..28].copy_from_slice(&self.route.src.octets());
        b[28..32].copy_from_slice(&self.route.generation.to_ne_bytes());
        b[32..40].copy_from_slice(&self.seen_ns.to_ne_bytes());
        b
    }

    /// Decode `struct lvs_conn`.
    pub fn from_bytes(b: &[u8]) -> Option<ConnEntry> {
        if b.len() != ConnEntry::LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let ip_at = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        Some(ConnEntry {
            action: Action::from_u8(b[0])?,
            state: b[1],
            flags: b[2],
            addr: ip_at(4),
            port: u16::from_be_bytes([b[8], b[9]]),
            stats: u32_at(12),
            route: RouteCache {
                mtu: u16::from_ne_bytes([b[10], b[11]]),
                ifindex: u32_at(16),
                nexthop: ip_at(20),
                src: ip_at(24),
                generation: u32_at(28),
            },
            seen_ns: u64::from_ne_bytes(b[32..40].try_into().ok()?),
        })
    }
}

/// Key of `lvs_routes` (an LPM trie key: prefix length, then the address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteKey {
    /// Prefix length, 0..=32.
    pub len: u8,
    /// Network address.
    pub addr: Ipv4Addr,
}

impl RouteKey {
    /// Encoded size.
    pub const LEN: usize = 8;

    /// The bytes of `struct lvs_route_key`.
    pub fn to_bytes(&self) -> [u8; RouteKey::LEN] {
        let mut b = [0u8; RouteKey::LEN];
        b[0..4].copy_from_slice(&u32::from(self.len.min(32)).to_ne_bytes());
        b[4..8].copy_from_slice(&self.addr.octets());
        b
    }
}

/// Value of `lvs_routes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// Outgoing interface.
    pub ifindex: u32,
    /// Gateway, or `None` when directly connected.
    pub gateway: Option<Ipv4Addr>,
    /// Source address of tunnel headers sent this way.
    pub src: Option<Ipv4Addr>,
    /// MTU of the outgoing interface.
    pub mtu: u32,
}

impl RouteEntry {
    /// Encoded size.
    pub const LEN: usize = 16;

    /// The bytes of `struct lvs_route`.
    pub fn to_bytes(&self) -> [u8; RouteEntry::LEN] {
        let mut b = [0u8; RouteEntry::LEN];
        b[0..4].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[4..8].copy_from_slice(&self.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
        b[8..12].copy_from_slice(&self.src.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
        b[12..16].copy_from_slice(&self.mtu.to_ne_bytes());
        b
    }
}

/// Value of `lvs_neigh` (key: the next hop's IPv4 address): where `lvs_xdp` sends a frame
/// for that next hop, with the link-layer addresses `bpf_redirect_neigh` would have written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighEntry {
    /// The interface the neighbour is on.
    pub ifindex: u32,
    /// The neighbour's MAC.
    pub mac: [u8; 6],
    /// Ours on that interface.
    pub src_mac: [u8; 6],
}

impl NeighEntry {
    /// Encoded size.
    pub const LEN: usize = 16;

    /// The bytes of `struct lvs_neigh`.
    pub fn to_bytes(&self) -> [u8; NeighEntry::LEN] {
        let mut b = [0u8; NeighEntry::LEN];
        b[0..4].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[4..10].copy_from_slice(&self.mac);
        b[10..16].copy_from_slice(&self.src_mac);
        b
    }
}

/// Packets and bytes of one real server on one CPU (`struct lvs_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsEntry {
    /// Packets client → real server.
    pub pkts_in: u64,
    /// Packets real server → client (NAT).
    pub pkts_out: u64,
    /// IP bytes in.
    pub bytes_in: u64,
    /// IP bytes out.
    pub bytes_out: u64,
}

impl StatsEntry {
    /// Encoded size.
    pub const LEN: usize = 32;

    /// Decode one CPU's value.
    pub fn from_bytes(b: &[u8]) -> Option<StatsEntry> {
        let f = |i: usize| -> Option<u64> {
            Some(u64::from_ne_bytes(
                b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(StatsEntry {
            pkts_in: f(0)?,
            pkts_out: f(1)?,
            bytes_in: f(2)?,
            bytes_out: f(3)?,
        })
    }

    /// Add another CPU's value.
    pub fn add(&mut self, o: &StatsEntry) {
        self.pkts_in += o.pkts_in;
        self.pkts_out += o.pkts_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// What an event reports (`enum lvs_event_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A TCP state change of a known connection.
    State,
    /// A new flow the program scheduled: `dest` says where it went.
    New {
        /// The table that chose (`SvcEntry::generation`).
        generation: u32,
        /// How it is forwarded.
        action: Action,
        /// The real server.
        addr: Ipv4Addr,
        /// Its port (NAT; 0 otherwise).
        port: u16,
    },
}

/// An event the program reported (`struct lvs_event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The connection's client-side key.
    pub flow: Flow,
    /// What happened.
    pub kind: EventKind,
    /// State before.
    pub old_state: u8,
    /// State after.
    pub new_state: u8,
    /// The entry's flags after the packet ([`F_NO_OUTPUT`] cleared once a reply passed).
    pub flags: u8,
    /// Kernel monotonic time (ns).
    pub ns: u64,
}

impl Event {
    /// Encoded size.
    pub const LEN: usize = 40;

    /// Decode one ring buffer record.
    pub fn from_bytes(b: &[u8]) -> Option<Event> {
        if b.len() < Event::LEN {
            return None;
        }
        let kind = match b[19] {
            0 => EventKind::State,
            1 => EventKind::New {
                generation: u32::from_ne_bytes(b[20..24].try_into().ok()?),
                addr: Ipv4Addr::new(b[32], b[33], b[34], b[35]),
                port: u16::from_be_bytes([b[36], b[37]]),
                action: Action::from_u8(b[38])?,
            },
            _ => return None,
        };
        Some(Event {
            flow: Flow::from_bytes(&b[0..16])?,
            kind,
            old_state: b[16],
            new_state: b[17],
            flags: b[18],
            ns: u64::from_ne_bytes(b[24..32].try_into().ok()?),
        })
    }
}

/// Key of `lvs_svcs` (`struct lvs_svc_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SvcKey {
    /// Virtual address.
    pub addr: Ipv4Addr,
    /// Virtual port (0: any).
    pub port: u16,
    /// IP protocol number.
    pub proto: u8,
}

impl SvcKey {
    /// Encoded size.
    pub const LEN: usize = 8;

    /// The bytes of `struct lvs_svc_key`.
    pub fn to_bytes(&self) -> [u8; SvcKey::LEN] {
        let mut b = [0u8; SvcKey::LEN];
        b[0..4].copy_from_slice(&self.addr.octets());
        b[4..6].copy_from_slice(&self.port.to_be_bytes());
        b[6] = self.proto;
        b
    }
}

/// `enum lvs_sched`: how the program picks a new flow's real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Sched {
    /// The core decides (the program hands new flows to user space).
    Core = 0,
    /// Entry `position++ % len` (rr, wrr, fo).
    Sequence = 1,
    /// Source hashing.
    SourceHash = 2,
    /// Destination hashing.
    DestHash = 3,
    /// Maglev.
    Maglev = 4,
}

/// `LVS_SVC_HASH_PORT`.
pub const SVC_HASH_PORT: u8 = 1;
/// `LVS_NO_DEST`: a table entry that asks the core.
pub const NO_DEST: u32 = u32::MAX;

/// Value of `lvs_svcs` (`struct lvs_svc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvcEntry {
    /// Scheduler kind.
    pub sched: Sched,
    /// `SVC_*` flags.
    pub flags: u8,
    /// Largest IPv4 packet of a new flow the program schedules ([`compile::new_flow_limit`](crate::compile::new_flow_limit)).
    pub max_len: u16,
    /// Names this table in new-flow events.
    pub generation: u32,
    /// First entry in `lvs_slots`.
    pub base: u32,
    /// Number of entries.
    pub len: u32,
}

impl SvcEntry {
    /// Encoded size.
    pub const LEN: usize = 24;

    /// An entry that leaves new flows to the core.
    pub const CORE: SvcEntry = SvcEntry {
        sched: Sched::Core,
        flags: 0,
        max_len: 0,
        generation: 0,
        base: 0,
        len: 0,
    };

    /// The bytes of `struct lvs_svc`, position 0.
    pub fn to_bytes(&self) -> [u8; SvcEntry::LEN] {
        let mut b = [0u8; SvcEntry::LEN];
        b[0] = self.sched as u8;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.max_len.to_ne_bytes());
        b[4..8].copy_from_slice(&self.generation.to_ne_bytes());
        b[8..12].copy_from_slice(&self.base.to_ne_bytes());
        b[12..16].copy_from_slice(&self.len.to_ne_bytes());
        b
    }
}

/// Value of `lvs_dests` (`struct lvs_dest`): where a new flow goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestEntry {
    /// `NatIn`, `DirectRoute` or `Tunnel`.
    pub action: Action,
    /// NAT: the real server's port; 0 keeps the client's destination port.
    pub port: u16,
    /// The real server.
    pub addr: Ipv4Addr,
}

impl DestEntry {
    /// Encoded size.
    pub const LEN: usize = 8;

    /// The bytes of `struct lvs_dest`.
    pub fn to_bytes(&self) -> [u8; DestEntry::LEN] {
        let mut b = [0u8; DestEntry::LEN];
        b[0] = self.action as u8;
        b[2..4].copy_from_slice(&self.port.to_be_bytes());
        b[4..8].copy_from_slice(&self.addr.octets());
        b
    }
}

/// `enum lvs_counter`: the program's per-CPU counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    /// Frames the programs looked at, each once: all that tc saw, and those `lvs_xdp`
    /// forwarded before tc could.
    Rx = 0,
    /// Forwarded NAT client → real server.
    NatIn = 1,
    /// Forwarded NAT real server → client.
    NatOut = 2,
    /// Forwarded by direct routing.
    DirectRoute = 3,
    /// Forwarded through the tunnel.
    Tunnel = 4,
    /// Left for user space (unknown flow, new SYN, too big, partial checksum on Tun, ...).
    ToUser = 5,
    /// Not unicast IPv4 TCP/UDP: the kernel's.
    NotOurs = 6,
    /// A helper failed after the packet was changed: dropped.
    Error = 7,
    /// TCP state changes reported.
    StateChange = 8,
    /// Events lost because the ring was full.
    EventLost = 9,
    /// New flows the program scheduled.
    New = 10,
    /// New flows it scheduled but could not send or record: dropped.
    NewDropped = 11,
    /// Of the forwarded, those `lvs_xdp` sent (the rest went through tc).
    Xdp = 12,
    /// Frames `lvs_xdp` handed on to the stack (and so to `lvs_tc_ingress`).
    XdpPass = 13,
}

impl Counter {
    /// Every counter.
    pub const ALL: [Counter; 14] = [
        Counter::Rx,
        Counter::NatIn,
        Counter::NatOut,
        Counter::DirectRoute,
        Counter::Tunnel,
        Counter::ToUser,
        Counter::NotOurs,
        Counter::Error,
        Counter::StateChange,
        Counter::EventLost,
        Counter::New,
        Counter::NewDropped,
        Counter::Xdp,
        Counter::XdpPass,
    ];

    /// Metric-style name.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Rx => "rx",
            Counter::NatIn => "nat_in",
            Counter::NatOut => "nat_out",
            Counter::DirectRoute => "direct_route",
            Counter::Tunnel => "tunnel",
            Counter::ToUser => "to_user",
            Counter::NotOurs => "not_ours",
            Counter::Error => "error",
            Counter::StateChange => "state_change",
            Counter::EventLost => "event_lost",
            Counter::New => "new_flows",
            Counter::NewDropped => "new_flows_dropped",
            Counter::Xdp => "xdp_forwarded",
            Counter::XdpPass => "xdp_pass",
        }
    }
}

/// The layout of `lvs_conns`: what its keys and values (`Flow`, `ConnEntry`) mean. Bump it
/// with any change of `struct lvs_flow` or `struct lvs_conn` or of how a field is read, even
/// one that keeps the sizes: a successor lvsd adopts a predecessor's connection table only
/// when the predecessor wrote the same number into `lvs_config` (0, from a program before
/// layouts were numbered, is layout 1).
pub const LAYOUT: u32 = 1;

/// Size of `struct lvs_tcp_table`.
pub const TCP_TABLE_LEN: usize = 168;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_round_trip() {
        let f = Flow::new(
            Protocol::Tcp,
            Ipv4Addr::new(10, 0, 0, 1),
            40000,
            Ipv4Addr::new(192, 0, 2, 1),
            80,
        );
        let b = f.to_bytes();
        assert_eq!(&b[0..4], &[10, 0, 0, 1]);
        assert_eq!(&b[8..10], &40000u16.to_be_bytes());
        assert_eq!(b[12], 6);
        assert_eq!(Flow::from_bytes(&b), Some(f));
    }

    #[test]
    fn conn_round_trip() {
        let c = ConnEntry {
            action: Action::Tunnel,
            state: 3,
            flags: F_NO_OUTPUT,
            addr: Ipv4Addr::new(10, 0, 1, 2),
            port: 8080,
            stats: 77,
            route: RouteCache {
                mtu: 1480,
                ifindex: 3,
                nexthop: Ipv4Addr::new(10, 0, 1, 1),
                src: Ipv4Addr::new(10, 0, 1, 254),
                generation: 9,
            },
            seen_ns: 123_456_789,
        };
        assert_eq!(ConnEntry::from_bytes(&c.to_bytes()), Some(c));
        assert_eq!(
            ConnEntry::from_bytes(&[0u8; 24]),
            None,
            "action 0 is invalid"
        );
    }
}

/// `struct lvs_test_out`: where and how the program forwarded the last frame (test mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestOut {
    /// Egress interface.
    pub ifindex: u32,
    /// The neighbour the frame went to.
    pub nexthop: Ipv4Addr,
    /// What the program did.
    pub action: Action,
    /// The connection entry's address: the real server, or the VIP for `NatOut`.
    pub addr: Ipv4Addr,
    /// `Tunnel`: the outer source.
    pub src: Ipv4Addr,
    /// NAT: the port written.
    pub port: u16,
}

impl TestOut {
    /// Bytes in the map value.
    pub const LEN: usize = 20;

    /// Decode one CPU's record; `None` when nothing was forwarded.
    pub fn decode(b: &[u8]) -> Option<TestOut> {
        let b: &[u8; Self::LEN] = b.get(..Self::LEN)?.try_into().ok()?;
        let ip = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        let ifindex = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        (ifindex != 0).then_some(())?;
        Some(TestOut {
            ifindex,
            nexthop: ip(4),
            addr: ip(8),
            src: ip(12),
            port: u16::from_be_bytes([b[16], b[17]]),
            action: Action::from_u8(b[18])?,
        })
    }

    /// The program's action in the core's terms ([`lvs_core::Action`]), leaving through
    /// `hop`: the kernel program and the core describe a forwarded frame with one type.
    pub fn core_action(&self, hop: lvs_core::net::NextHop) -> lvs_core::Action {
        use lvs_core::rewrite::End;
        match self.action {
            Action::NatIn => lvs_core::Action::Nat {
                end: End::Destination,
                addr: self.addr,
                port: self.port,
                hop,
            },
            Action::NatOut => lvs_core::Action::Nat {
                end: End::Source,
                addr: self.addr,
                port: self.port,
                hop,
            },
            Action::DirectRoute => lvs_core::Action::Route { hop },
            Action::Tunnel => lvs_core::Action::Encap {
                src: self.src,
                dst: self.addr,
                hop,
            },
        }
    }
}
