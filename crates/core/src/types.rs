//! Vocabulary types shared by the service table, the schedulers and the connection table.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;
use std::time::Duration;

/// Transport protocol of a virtual service (`-t`, `-u`, `--sctp-service`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
    /// SCTP (IP protocol 132). Services can be declared; forwarding treats it like UDP
    /// (no state machine) until SCTP state tracking is added.
    Sctp,
}

impl Protocol {
    /// IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lvs_wire::protocol::TCP,
            Protocol::Udp => lvs_wire::protocol::UDP,
            Protocol::Sctp => lvs_wire::protocol::SCTP,
        }
    }

    /// The protocol for an IP protocol number, if the director balances it.
    pub const fn from_number(n: u8) -> Option<Protocol> {
        match n {
            lvs_wire::protocol::TCP => Some(Protocol::Tcp),
            lvs_wire::protocol::UDP => Some(Protocol::Udp),
            lvs_wire::protocol::SCTP => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Name as ipvsadm prints it (`TCP`, `UDP`, `SCTP`).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// Address family, needed where no address says it (firewall-mark services).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// What identifies a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// Protocol, virtual IP and port (`-t VIP:port`, `-u VIP:port`).
    Addr {
        /// Transport protocol.
        proto: Protocol,
        /// Virtual IP.
        addr: IpAddr,
        /// Virtual port; 0 with persistence means "all ports".
        port: u16,
    },
    /// A firewall mark set on incoming packets (`-f mark`).
    Fwmark {
        /// The mark.
        mark: u32,
        /// Address family of the service.
        family: Family,
    },
}

impl ServiceKey {
    /// Address family of the service.
    pub fn family(&self) -> Family {
        match *self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { family, .. } => family,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ServiceKey::Addr { proto, addr, port } => match addr {
                IpAddr::V4(a) => write!(f, "{} {}:{}", proto.name(), a, port),
                IpAddr::V6(a) => write!(f, "{} [{}]:{}", proto.name(), a, port),
            },
            ServiceKey::Fwmark { mark, .. } => write!(f, "FWM {mark}"),
        }
    }
}

/// Packet-forwarding method of a real server (`-m`, `-g`, `-i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ForwardMethod {
    /// NAT (`-m`, "Masq"): rewrite destination address and port; replies come back through us.
    Masq,
    /// Direct routing (`-g`, "Route"): rewrite only the destination MAC. ipvsadm's default.
    #[default]
    DirectRoute,
    /// IP-in-IP tunnelling (`-i`, "Tunnel").
    Tunnel,
}

impl ForwardMethod {
    /// Name in ipvsadm's listing.
    pub const fn name(self) -> &'static str {
        match self {
            ForwardMethod::Masq => "Masq",
            ForwardMethod::DirectRoute => "Route",
            ForwardMethod::Tunnel => "Tunnel",
        }
    }
}

/// The scheduling algorithms of IPVS (`-s name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SchedulerKind {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection (ipvsadm's default).
    #[default]
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Maglev hashing.
    Mh,
    /// Weighted random twos choice.
    Twos,
}

impl SchedulerKind {
    /// Every scheduler, in ipvsadm's documentation order.
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Mh,
        SchedulerKind::Twos,
    ];

    /// The name ipvsadm uses.
    pub const fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Twos => "twos",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown scheduler name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScheduler(pub String);

impl fmt::Display for UnknownScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown scheduler '{}' (one of: rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos)",
            self.0
        )
    }
}

impl std::error::Error for UnknownScheduler {}

impl FromStr for SchedulerKind {
    type Err = UnknownScheduler;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchedulerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownScheduler(s.to_string()))
    }
}

/// Scheduler flags (`-b`): IPVS's `IP_VS_SVC_F_SCHED1..3`, whose meaning depends on the
/// scheduler (`sh-fallback` and `mh-fallback` are flag 1, `sh-port` and `mh-port` flag 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SchedFlags(pub u8);

impl SchedFlags {
    /// `flag-1`: `sh-fallback` / `mh-fallback`.
    pub const FLAG1: SchedFlags = SchedFlags(1);
    /// `flag-2`: `sh-port` / `mh-port`.
    pub const FLAG2: SchedFlags = SchedFlags(2);
    /// `flag-3`.
    pub const FLAG3: SchedFlags = SchedFlags(4);
    /// Fall back to another real server when the hashed one is unavailable (sh, mh).
    pub const FALLBACK: SchedFlags = SchedFlags::FLAG1;
    /// Include the source port in the hash (sh, mh).
    pub const PORT: SchedFlags = SchedFlags::FLAG2;

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: SchedFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union of two flag sets.
    pub const fn union(self, other: SchedFlags) -> SchedFlags {
        SchedFlags(self.0 | other.0)
    }
}

/// Persistence (`-p [timeout] [-M netmask]`): connections from one client (or client
/// network) stick to one real server while a template entry lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Persistence {
    /// Template lifetime after its last connection ends (`-p`, default 300 s).
    pub timeout: Duration,
    /// IPv4 netmask (`-M`, default 255.255.255.255) or IPv6 prefix length (default 128)
    /// applied to the client address to find the template.
    pub netmask: Netmask,
}

/// Client-address mask of a persistent service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// IPv4 mask, as a prefix length 0..=32.
    V4(u8),
    /// IPv6 prefix length 0..=128.
    V6(u8),
}

impl Netmask {
    /// Prefix length.
    pub fn prefix_len(self) -> u8 {
        match self {
            Netmask::V4(p) | Netmask::V6(p) => p,
        }
    }

    /// Apply the mask to an address (addresses of the other family pass unchanged).
    pub fn apply(self, addr: IpAddr) -> IpAddr {
        match (self, addr) {
            (Netmask::V4(p), IpAddr::V4(a)) => {
                let bits = u32::from(a);
                let mask = if p == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(p.min(32)))
                };
                IpAddr::V4((bits & mask).into())
            }
            (Netmask::V6(p), IpAddr::V6(a)) => {
                let bits = u128::from(a);
                let mask = if p == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(p.min(128)))
                };
                IpAddr::V6((bits & mask).into())
            }
            (_, other) => other,
        }
    }
}

/// Default persistence timeout (`-p` without a value), 300 s.
pub const DEFAULT_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(300);
