//! The IPVS scheduling algorithms: given the live real servers of a service, pick one for a
//! new connection. Each scheduler reproduces the kernel's `net/netfilter/ipvs/ip_vs_*.c`
//! semantics (tie breaks, skip rules, weight handling).
//!
//! Conventions shared by every scheduler here:
//!
//! - The kernel's destination list order is the order of the `dests` slice.
//! - A real server is "available" when its weight is above zero and its threshold
//!   `overloaded` flag is clear ([`Dest::available`]); each scheduler applies exactly the
//!   kernel's skip rule, which is not always that one (lc skips only weight 0 and overloaded,
//!   fo compares weights, lblc ignores the threshold flag of a cached server, ...).
//! - `schedule()` never panics: an index remembered from an earlier `update()` that no
//!   longer fits `dests` is treated as an unavailable server.

use std::hash::BuildHasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

use crate::service::Dest;
use crate::time::Time;
use crate::types::{Protocol, SchedFlags, SchedulerKind};

mod dh;
mod fo;
mod lblc;
mod lblcr;
mod lc;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod twos;
mod wlc;
mod wrr;

pub use dh::DestinationHashing;
pub use fo::WeightedFailover;
pub use lblc::{DEFAULT_LBLC_EXPIRATION, LocalityLeastConnection};
pub use lblcr::{DEFAULT_LBLCR_EXPIRATION, LocalityLeastConnectionReplicated};
pub use lc::LeastConnection;
pub use mh::{DEFAULT_MH_TABLE_SIZE, MH_HASH1, Maglev};
pub use nq::NeverQueue;
pub use ovf::WeightedOverflow;
pub use rr::RoundRobin;
pub use sed::ShortestExpectedDelay;
pub use sh::SourceHashing;
pub use twos::TwoChoices;
pub use wlc::WeightedLeastConnection;
pub use wrr::WeightedRoundRobin;

/// What a scheduler may look at about the connection being scheduled.
#[derive(Clone, Copy, Debug)]
pub struct SchedCtx {
    /// Current time (lblc/lblcr expire their tables with it).
    pub now: Time,
    /// Transport protocol.
    pub proto: Protocol,
    /// Client address.
    pub src: IpAddr,
    /// Client port.
    pub sport: u16,
    /// Destination address of the packet (the VIP, or for fwmark services whatever address
    /// the client targeted).
    pub dst: IpAddr,
    /// Destination port.
    pub dport: u16,
}

/// A scheduling algorithm bound to one virtual service.
///
/// `dests` is the service's current list of real servers, in the order they were added; the
/// scheduler returns an index into it, or `None` when no server is available (the caller
/// then counts a "no real server" drop, as IPVS logs "no destination available").
pub trait Scheduler: Send + std::fmt::Debug {
    /// Which algorithm this is.
    fn kind(&self) -> SchedulerKind;

    /// Called whenever real servers are added, removed or re-weighted (and once at creation),
    /// so table-driven schedulers (wrr, sh, dh, mh) can rebuild their state.
    fn update(&mut self, dests: &[Dest]);

    /// Pick a real server for a new connection.
    fn schedule(&mut self, ctx: &SchedCtx, dests: &[Dest]) -> Option<usize>;

    /// This scheduler's choices from its present state as a [`Compiled`] table, for a
    /// packet path below the core (the kernel program) to follow on its own; `None` when
    /// the choice depends on more than a table and a position (connection counts, time,
    /// randomness). `dests` must be what the last `update()` saw.
    fn compile(&self, _dests: &[Dest]) -> Option<Compiled> {
        None
    }
}

/// A table entry that names no real server: the packet path asks the core (which then
/// applies the scheduler's own rule: a fallback probe, or "no real server").
pub const ASK_CORE: u32 = u32::MAX;

/// The longest [`Compiled::Sequence`] made (a wrr cycle is the sum of the weights divided
/// by their gcd); a longer cycle is not compiled and the core schedules.
pub const MAX_SEQUENCE: usize = 1 << 16;

/// A scheduler's decisions as a table: what the kernel program follows for new connections
/// of a service whose scheduler is a pure function of it (rr, wrr, fo, sh, dh, mh without
/// thresholds). Entries are indexes into the service's real servers, or [`ASK_CORE`].
/// [`Compiled::pick`] is the reference for the lookup the kernel program does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compiled {
    /// The n-th new connection after compiling goes to `seq[n % len]` (rr, wrr, fo);
    /// empty when no server is available.
    Sequence(Vec<u32>),
    /// 256 buckets indexed by `hash_32(port + addr_fold(client), 8)` with `port` the client
    /// port if `port` is set, else 0 (sh; the fallback probe is folded into the buckets).
    SourceHash {
        /// Hash the client port too (`sh-port`).
        port: bool,
        /// The server of each bucket.
        buckets: Vec<u32>,
    },
    /// 256 buckets indexed by `(addr_fold(destination) * 2654435761) & 255` (dh).
    DestHash {
        /// The server of each bucket.
        buckets: Vec<u32>,
    },
    /// Slots indexed by `SipHash-1-3(HASH1, le32(port + addr_fold(client))) as u32 % len`
    /// (mh; an unavailable slot asks the core, which runs the fallback probe).
    Maglev {
        /// Hash the client port too (`mh-port`).
        port: bool,
        /// The server of each slot (a prime number of them).
        slots: Vec<u32>,
    },
}

impl Compiled {
    /// The entry for the connection `ctx`, being the `n`-th one since the table was made.
    /// `None` where the core must decide.
    pub fn pick(&self, ctx: &SchedCtx, n: u64) -> Option<usize> {
        let port = |on: bool| if on { ctx.sport } else { 0 };
        let e = match self {
            Compiled::Sequence(seq) if seq.is_empty() => return None,
            Compiled::Sequence(seq) => seq[(n % seq.len() as u64) as usize],
            Compiled::SourceHash { port: p, buckets } => {
                buckets[sh::bucket(addr_fold(ctx.src), port(*p))]
            }
            Compiled::DestHash { buckets } => buckets[dh::bucket(addr_fold(ctx.dst))],
            Compiled::Maglev { slots, .. } if slots.is_empty() => return None,
            Compiled::Maglev { port: p, slots } => {
                slots[mh::slot(addr_fold(ctx.src), port(*p), slots.len())]
            }
        };
        (e != ASK_CORE).then_some(e as usize)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Compiled::Sequence(v)
            | Compiled::SourceHash { buckets: v, .. }
            | Compiled::DestHash { buckets: v }
            | Compiled::Maglev { slots: v, .. } => v.len(),
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A context for schedulers that look at none of it (rr, wrr, fo).
fn no_ctx() -> SchedCtx {
    SchedCtx {
        now: Time::ZERO,
        proto: Protocol::Tcp,
        src: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        sport: 0,
        dst: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        dport: 0,
    }
}

/// The next `len` picks of a scheduler that ignores the connection, from a copy of its
/// state; `None` unless they repeat with period `len` (checked over two periods), so the
/// sequence can be followed round and round.
pub(crate) fn sequence<S: Scheduler + Clone>(
    s: &S,
    dests: &[Dest],
    len: usize,
) -> Option<Compiled> {
    if len > MAX_SEQUENCE {
        return None;
    }
    let mut s = s.clone();
    let ctx = no_ctx();
    let picks: Vec<u32> = (0..2 * len)
        .map(|_| s.schedule(&ctx, dests).map(|i| i as u32))
        .collect::<Option<_>>()?;
    let (first, second) = picks.split_at(len);
    (first == second).then(|| Compiled::Sequence(first.to_vec()))
}

/// Build a scheduler of the given kind with the service's scheduler flags.
///
/// `seed` feeds randomised schedulers (twos) so runs are reproducible for a given seed; it
/// also keys the lblc/lblcr tables' internal hashing.
pub fn new_scheduler(kind: SchedulerKind, flags: SchedFlags, seed: u64) -> Box<dyn Scheduler> {
    match kind {
        SchedulerKind::Rr => Box::new(RoundRobin::new()),
        SchedulerKind::Wrr => Box::new(WeightedRoundRobin::new()),
        SchedulerKind::Lc => Box::new(LeastConnection::new()),
        SchedulerKind::Wlc => Box::new(WeightedLeastConnection::new()),
        SchedulerKind::Lblc => Box::new(LocalityLeastConnection::new(seed)),
        SchedulerKind::Lblcr => Box::new(LocalityLeastConnectionReplicated::new(seed)),
        SchedulerKind::Dh => Box::new(DestinationHashing::new()),
        SchedulerKind::Sh => Box::new(SourceHashing::new(flags)),
        SchedulerKind::Sed => Box::new(ShortestExpectedDelay::new()),
        SchedulerKind::Nq => Box::new(NeverQueue::new()),
        SchedulerKind::Fo => Box::new(WeightedFailover::new()),
        SchedulerKind::Ovf => Box::new(WeightedOverflow::new()),
        SchedulerKind::Mh => Box::new(Maglev::new(flags)),
        SchedulerKind::Twos => Box::new(TwoChoices::new(seed)),
    }
}

/// Identity of a real server inside a service (IPVS identifies a dest by address and port).
pub(crate) type DestKey = (IpAddr, u16);

/// The identity of `d`.
#[inline]
pub(crate) fn dest_key(d: &Dest) -> DestKey {
    (d.addr(), d.port())
}

/// The kernel's `addr_fold`: the IPv4 address as a host-order integer, or the XOR of the
/// four 32-bit words of an IPv6 address (host order after `ntohl`).
#[inline]
pub(crate) fn addr_fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// Whether `dests[i]` exists and may take a new connection (weight > 0, not overloaded).
#[inline]
pub(crate) fn is_available(dests: &[Dest], i: usize) -> bool {
    dests.get(i).is_some_and(Dest::available)
}

/// A remembered real server: its index when last seen plus its identity, so a stale index
/// (dests changed without `update()`) is detected rather than trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DestRef {
    pub(crate) idx: usize,
    pub(crate) key: DestKey,
}

impl DestRef {
    /// Remember `dests[idx]`.
    pub(crate) fn new(dests: &[Dest], idx: usize) -> Option<DestRef> {
        dests.get(idx).map(|d| DestRef {
            idx,
            key: dest_key(d),
        })
    }

    /// Where this server is in `dests` now, if it is still there. Checks the remembered
    /// index first, then searches (no allocation).
    pub(crate) fn resolve(&self, dests: &[Dest]) -> Option<usize> {
        if dests.get(self.idx).is_some_and(|d| dest_key(d) == self.key) {
            return Some(self.idx);
        }
        dests.iter().position(|d| dest_key(d) == self.key)
    }

    /// As [`resolve`](Self::resolve), also refreshing the remembered index.
    pub(crate) fn refresh(&mut self, dests: &[Dest]) -> Option<usize> {
        let i = self.resolve(dests)?;
        self.idx = i;
        Some(i)
    }
}

/// The weighted least-connection choice shared by wlc and the "schedule a new server" step
/// of lblc/lblcr (`__ip_vs_wlc_schedule`, `__ip_vs_lblc_schedule`): the first available
/// server, then any later non-overloaded one whose `overhead/weight` is strictly smaller,
/// compared as `loh * dw > doh * lw` in 64-bit integers (a weight-0 server never wins that
/// comparison).
pub(crate) fn weighted_least_conn(dests: &[Dest]) -> Option<usize> {
    let first = dests.iter().position(Dest::available)?;
    let mut least = first;
    let mut loh = dests[first].overhead();
    let mut lw = u64::from(dests[first].weight());
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        let doh = d.overhead();
        let dw = u64::from(d.weight());
        // Written as selects rather than a branch: which server wins is unpredictable, and
        // the comparison is cheap.
        let better =
            !d.overloaded && u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw);
        least = if better { i } else { least };
        loh = if better { doh } else { loh };
        lw = if better { dw } else { lw };
    }
    Some(least)
}

/// lblc/lblcr's "is this server overloaded and is there a less loaded one": more active
/// connections than its weight while some server of the service (any, as in the kernel) has
/// fewer than half its weight in active connections.
pub(crate) fn locality_overloaded(d: &Dest, dests: &[Dest]) -> bool {
    d.active > d.weight()
        && dests
            .iter()
            .any(|o| u64::from(o.active) * 2 < u64::from(o.weight()))
}

/// Greatest common divisor.
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// A [`BuildHasher`] for the lblc/lblcr tables: SipHash-1-3 keyed from the scheduler seed,
/// so table iteration order (which decides what garbage collection visits first) is
/// reproducible for a given seed without being guessable by clients.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeededSip {
    k0: u64,
    k1: u64,
}

impl SeededSip {
    pub(crate) fn new(seed: u64) -> SeededSip {
        let mut s = twos::SplitMix64::new(seed);
        SeededSip {
            k0: s.next_u64(),
            k1: s.next_u64(),
        }
    }
}

impl BuildHasher for SeededSip {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for the scheduler tests.

    use std::net::{IpAddr, Ipv4Addr};

    use super::SchedCtx;
    use crate::service::{Dest, DestConfig};
    use crate::time::Time;
    use crate::types::{ForwardMethod, Protocol};

    /// Real servers 10.0.1.1, 10.0.1.2, ... with the given weights.
    pub fn dests(weights: &[u32]) -> Vec<Dest> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1));
                Dest::new(DestConfig::new(addr, 80, ForwardMethod::Masq).with_weight(w))
            })
            .collect()
    }

    /// A real server at 10.0.<hi>.<lo> with weight `w`.
    pub fn dest_at(hi: u8, lo: u8, w: u32) -> Dest {
        let addr = IpAddr::V4(Ipv4Addr::new(10, 0, hi, lo));
        Dest::new(DestConfig::new(addr, 80, ForwardMethod::Masq).with_weight(w))
    }

    /// A TCP connection from `src:sport` to 192.0.2.1:80 at time zero.
    pub fn ctx(src: IpAddr, sport: u16) -> SchedCtx {
        SchedCtx {
            now: Time::ZERO,
            proto: Protocol::Tcp,
            src,
            sport,
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            dport: 80,
        }
    }

    /// A connection from 198.51.100.7:40000 to 192.0.2.1:80 at time zero.
    pub fn any_ctx() -> SchedCtx {
        ctx(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 40000)
    }

    /// Client number `n` (distinct IPv4 addresses in 100.64.0.0/10-ish space).
    pub fn client(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(
            0x6440_0000u32.wrapping_add(n.wrapping_mul(2_654_435_761)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    /// Every scheduler: empty dests, all-unavailable dests, and dests that grew or shrank
    /// without `update()` never panic.
    #[test]
    fn no_panic_on_empty_or_stale_dests() {
        for kind in SchedulerKind::ALL {
            let mut s = new_scheduler(kind, SchedFlags::FALLBACK.union(SchedFlags::PORT), 7);
            assert_eq!(s.kind(), kind);
            assert_eq!(s.schedule(&any_ctx(), &[]), None, "{kind}");
            let mut ds = dests(&[3, 1, 2, 5]);
            s.update(&ds);
            for n in 0..50u32 {
                let _ = s.schedule(&ctx(client(n), n as u16), &ds);
            }
            // Shrink without update.
            ds.truncate(1);
            for n in 0..50u32 {
                if let Some(i) = s.schedule(&ctx(client(n), n as u16), &ds) {
                    assert!(i < ds.len(), "{kind}");
                }
            }
            assert_eq!(s.schedule(&any_ctx(), &[]), None, "{kind}");
            // All quiescent / overloaded.
            let mut ds = dests(&[0, 2, 0]);
            s.update(&ds);
            ds[1].overloaded = true;
            for n in 0..20u32 {
                assert_eq!(s.schedule(&ctx(client(n), 1), &ds), None, "{kind}");
            }
            // Grow without update.
            let ds = dests(&[1, 1, 1, 1, 1, 1, 1]);
            for n in 0..50u32 {
                if let Some(i) = s.schedule(&ctx(client(n), n as u16), &ds) {
                    assert!(i < ds.len(), "{kind}");
                }
            }
        }
    }

    /// Literal transcription of the kernel loops (branches, `goto nextstage`) for
    /// lc / wlc / sed, to check the branch-free versions against.
    fn kernel_lc(ds: &[Dest]) -> Option<usize> {
        let mut least: Option<usize> = None;
        for (i, d) in ds.iter().enumerate() {
            if d.overloaded || d.weight() == 0 {
                continue;
            }
            if least.is_none() || d.overhead() < ds[least.unwrap()].overhead() {
                least = Some(i);
            }
        }
        least
    }

    fn kernel_weighted(ds: &[Dest], oh: fn(&Dest) -> u64) -> Option<usize> {
        let mut it = ds.iter().enumerate();
        let mut least = loop {
            let (i, d) = it.next()?;
            if !d.overloaded && d.weight() > 0 {
                break i;
            }
        };
        for (i, d) in it {
            if d.overloaded {
                continue;
            }
            let l = &ds[least];
            if u128::from(oh(l)) * u128::from(d.weight())
                > u128::from(oh(d)) * u128::from(l.weight())
            {
                least = i;
            }
        }
        Some(least)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn least_conn_family_matches_kernel_loops(
            servers in proptest::collection::vec((0u32..4, 0u32..6, 0u32..300, proptest::bool::weighted(0.2)), 0..12),
        ) {
            let mut ds = dests(&servers.iter().map(|s| s.0).collect::<Vec<_>>());
            for (d, &(_, a, ina, over)) in ds.iter_mut().zip(&servers) {
                d.active = a;
                d.inactive = ina;
                d.overloaded = over;
            }
            let ctx = any_ctx();
            proptest::prop_assert_eq!(LeastConnection::new().schedule(&ctx, &ds), kernel_lc(&ds));
            proptest::prop_assert_eq!(
                WeightedLeastConnection::new().schedule(&ctx, &ds),
                kernel_weighted(&ds, Dest::overhead)
            );
            proptest::prop_assert_eq!(
                ShortestExpectedDelay::new().schedule(&ctx, &ds),
                kernel_weighted(&ds, |d| u64::from(d.active) + 1)
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// Whatever a compiled table says, the scheduler itself says too: the n-th new
        /// connection after compiling gets the same server from `Compiled::pick` as from
        /// `schedule`, for random weights, quiescent servers, flags and clients. Sequences
        /// (rr, wrr, fo) never ask the core while a server is available; the hash tables ask
        /// only where the scheduler would fall back or find nobody.
        #[test]
        fn compiled_tables_choose_what_the_scheduler_chooses(
            kind in proptest::sample::select(SchedulerKind::ALL.to_vec()),
            weights in proptest::collection::vec(0u32..6, 0..9),
            fallback in proptest::bool::ANY,
            port in proptest::bool::ANY,
            picks in 0usize..8,
            clients in proptest::collection::vec((proptest::num::u32::ANY, proptest::num::u16::ANY), 1..40),
        ) {
            let mut flags = SchedFlags::default();
            if fallback { flags = flags.union(SchedFlags::FALLBACK); }
            if port { flags = flags.union(SchedFlags::PORT); }
            let ds = dests(&weights);
            let mut s = new_scheduler(kind, flags, 7);
            s.update(&ds);
            // Some picks first, so a table is made from a state other than the initial one.
            for n in 0..picks as u32 {
                let _ = s.schedule(&ctx(client(n), n as u16), &ds);
            }
            let Some(table) = s.compile(&ds) else {
                proptest::prop_assert!(!matches!(
                    kind,
                    SchedulerKind::Rr | SchedulerKind::Wrr | SchedulerKind::Fo
                        | SchedulerKind::Sh | SchedulerKind::Dh | SchedulerKind::Mh
                ), "{kind} compiles");
                return Ok(());
            };
            let any_available = ds.iter().any(Dest::available);
            for (n, &(c, p)) in clients.iter().enumerate() {
                let cx = SchedCtx {
                    dst: IpAddr::V4(std::net::Ipv4Addr::from(c.rotate_left(7))),
                    ..ctx(IpAddr::V4(std::net::Ipv4Addr::from(c)), p)
                };
                let want = s.schedule(&cx, &ds);
                match table.pick(&cx, n as u64) {
                    Some(i) => proptest::prop_assert_eq!(Some(i), want, "{} entry {}", kind, n),
                    None => proptest::prop_assert!(
                        !matches!(table, Compiled::Sequence(_)) || !any_available,
                        "{kind}: a sequence asked the core"
                    ),
                }
            }
        }
    }

    #[test]
    fn addr_fold_matches_kernel() {
        assert_eq!(addr_fold("10.0.0.1".parse().unwrap()), 0x0a00_0001);
        assert_eq!(addr_fold("2001:db8::1".parse().unwrap()), 0x2001_0db8 ^ 1);
    }
}
