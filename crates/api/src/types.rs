//! The vocabulary of protocol version 1: services, real servers, counters.
//!
//! These are the wire schema, defined here and nowhere else: the core has types of the same
//! names (`lvs_core::types`, `lvs_core::service`, `lvs_core::stats`) that it is free to
//! change, and `crate::core_map` is the one place where the two are converted. A change to
//! a type here is a change of the protocol, checked byte for byte by `tests/doc_examples.rs`.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Transport protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP (`-t`).
    Tcp,
    /// UDP (`-u`).
    Udp,
    /// SCTP (`--sctp-service`).
    Sctp,
}

/// Address family of a firewall-mark service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// What identifies a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ServiceKey {
    /// Protocol, virtual address and port (`-t`/`-u`/`--sctp-service`).
    Addr {
        /// Protocol.
        proto: Protocol,
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port (0: every port, with persistence).
        port: u16,
    },
    /// A firewall mark (`-f`).
    Fwmark {
        /// The mark.
        mark: u32,
        /// Its address family.
        family: Family,
    },
}

/// How packets reach a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ForwardMethod {
    /// NAT (`-m`).
    Masq,
    /// Direct routing (`-g`).
    DirectRoute,
    /// IP-in-IP tunnelling (`-i`).
    Tunnel,
}

/// Scheduling algorithm (`-s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)] // ipvsadm's names, lower-cased: rr, wrr, lc, ...
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Fo,
    Ovf,
    Mh,
    Twos,
}

/// Scheduler flags (`-b`): bit 0 `flag-1`, bit 1 `flag-2`, bit 2 `flag-3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SchedFlags(pub u8);

/// Persistence (`-p`, `-M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persistence {
    /// Template lifetime (`{"secs":…,"nanos":…}`).
    pub timeout: Duration,
    /// Client-address mask.
    pub netmask: Netmask,
}

/// Client-address mask of a persistent service, as a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Netmask {
    /// IPv4, 0..=32.
    V4(u8),
    /// IPv6, 0..=128.
    V6(u8),
}

/// A virtual service's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Which service.
    pub key: ServiceKey,
    /// Scheduler.
    pub scheduler: SchedulerKind,
    /// Scheduler flags.
    pub flags: SchedFlags,
    /// Persistence, when on.
    pub persistence: Option<Persistence>,
    /// One-packet scheduling (`-o`, UDP only).
    pub one_packet: bool,
}

/// A real server's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DestConfig {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight, 0 to 65535 (0: quiescent).
    pub weight: u32,
    /// Forwarding method.
    pub method: ForwardMethod,
    /// Upper connection threshold (`-x`, 0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`, 0: none).
    pub lower_threshold: u32,
}

/// Traffic counters of a service or real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in (client to server).
    pub inpkts: u64,
    /// Packets out (server to client, NAT only).
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
}

/// Rates from IPVS's estimator (per second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// Connections.
    pub cps: u64,
    /// Packets in.
    pub inpps: u64,
    /// Packets out.
    pub outpps: u64,
    /// Bytes in.
    pub inbps: u64,
    /// Bytes out.
    pub outbps: u64,
}
