//! Locality-based least connection with replication (`ip_vs_lblcr.c`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::lblc::LazyGc;
use super::{DestRef, SchedCtx, Scheduler, SeededSip, locality_overloaded, weighted_least_conn};
use crate::service::Dest;
use crate::time::Time;
use crate::types::SchedulerKind;

/// Default age of a server set after which its most loaded member is dropped, and lifetime
/// of an unused entry (`lblcr_expiration` sysctl), 24 h.
pub const DEFAULT_LBLCR_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A destination address's server set.
#[derive(Debug)]
struct Entry {
    /// Members in insertion order; the kernel's list order (newest first) is the reverse.
    set: Vec<DestRef>,
    /// Last time a member was added or removed.
    lastmod: Time,
    /// Last time the entry was looked up.
    lastuse: Time,
}

impl Entry {
    /// `ip_vs_dest_set_min`: the weighted least-loaded available member, in list order
    /// (newest first), replaced only when strictly better.
    fn min(&self, dests: &[Dest]) -> Option<usize> {
        let mut members = self.set.iter().rev().filter_map(|r| r.resolve(dests));
        let first = members.find(|&i| dests[i].available())?;
        let (mut least, mut loh, mut lw) = (first, dests[first].overhead(), dests[first].weight());
        for i in members {
            let d = &dests[i];
            if d.overloaded {
                continue;
            }
            let doh = d.overhead();
            if u128::from(loh) * u128::from(d.weight()) > u128::from(doh) * u128::from(lw)
                && d.weight() > 0
            {
                (least, loh, lw) = (i, doh, d.weight());
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`: the weighted most-loaded member with weight > 0 (the threshold
    /// flag does not matter here), in list order, replaced only when strictly worse.
    fn max(&self, dests: &[Dest]) -> Option<usize> {
        let mut members = self.set.iter().rev().filter_map(|r| r.resolve(dests));
        let first = members.find(|&i| dests[i].weight() > 0)?;
        let (mut most, mut moh, mut mw) = (first, dests[first].overhead(), dests[first].weight());
        for i in members {
            let d = &dests[i];
            let doh = d.overhead();
            if u128::from(moh) * u128::from(d.weight()) < u128::from(doh) * u128::from(mw)
                && d.weight() > 0
            {
                (most, moh, mw) = (i, doh, d.weight());
            }
        }
        Some(most)
    }

    /// `ip_vs_dest_set_insert` with the duplicate check.
    fn insert(&mut self, dest: DestRef, now: Time) {
        if self.set.iter().any(|r| r.key == dest.key) {
            return;
        }
        self.set.push(dest);
        self.lastmod = now;
    }
}

/// Locality-based least connection with replication: each destination address (`ctx.dst`)
/// maps to a *set* of servers. A connection goes to the set's weighted least-loaded member;
/// if there is none, or it is overloaded in lblc's sense (active > weight while some server
/// has fewer than half its weight), a server is chosen by weighted least connection over
/// the whole service and added to the set. When a set with more than one member has not
/// changed for the expiration time (default 24 h), its most loaded member is dropped.
///
/// Entries unused for the expiration time are collected by the same lazily run collector as
/// lblc. When a server is removed (`update()`), it is taken out of every set at once (the
/// kernel keeps a reference until the set's expiry drops it; since it is unavailable it is
/// never chosen either way).
#[derive(Debug)]
pub struct LocalityLeastConnectionReplicated {
    table: HashMap<IpAddr, Entry, SeededSip>,
    expiration: Duration,
    gc: LazyGc,
}

impl LocalityLeastConnectionReplicated {
    /// An lblcr scheduler with the default 24 h expiration; `seed` keys the table's hasher.
    pub fn new(seed: u64) -> LocalityLeastConnectionReplicated {
        LocalityLeastConnectionReplicated::with_expiration(seed, DEFAULT_LBLCR_EXPIRATION)
    }

    /// An lblcr scheduler with the given set/entry expiration
    /// (`net.ipv4.vs.lblcr_expiration`).
    pub fn with_expiration(seed: u64, expiration: Duration) -> LocalityLeastConnectionReplicated {
        LocalityLeastConnectionReplicated {
            table: HashMap::with_hasher(SeededSip::new(seed)),
            expiration,
            gc: LazyGc::new(),
        }
    }

    /// Number of destination addresses remembered.
    pub fn entries(&self) -> usize {
        self.table.len()
    }

    /// Size of the server set remembered for `dst` (0 when there is no entry).
    pub fn set_size(&self, dst: IpAddr) -> usize {
        self.table.get(&dst).map_or(0, |e| e.set.len())
    }
}

impl Scheduler for LocalityLeastConnectionReplicated {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblcr
    }

    fn update(&mut self, dests: &[Dest]) {
        for e in self.table.values_mut() {
            e.set.retain_mut(|r| r.refresh(dests).is_some());
        }
    }

    fn schedule(&mut self, ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let now = ctx.now;
        self.gc
            .run(now, &mut self.table, |e| e.lastuse, self.expiration);
        if let Some(en) = self.table.get_mut(&ctx.dst) {
            en.lastuse = now;
            let dest = en.min(dests);
            // More than one member and unchanged for long enough: drop the most loaded.
            if en.set.len() > 1
                && now > en.lastmod + self.expiration
                && let Some(m) = en.max(dests)
            {
                let key = (dests[m].addr(), dests[m].port());
                en.set.retain(|r| r.key != key);
                en.lastmod = now;
            }
            if let Some(i) = dest
                && !locality_overloaded(&dests[i], dests)
            {
                return Some(i);
            }
            let i = weighted_least_conn(dests)?;
            en.insert(DestRef::new(dests, i)?, now);
            return Some(i);
        }
        let i = weighted_least_conn(dests)?;
        let dest = DestRef::new(dests, i)?;
        self.table.insert(
            ctx.dst,
            Entry {
                set: vec![dest],
                lastmod: now,
                lastuse: now,
            },
        );
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sched::testutil::*;

    fn dst(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
    }

    fn to(n: u8, now: Time) -> SchedCtx {
        SchedCtx {
            dst: dst(n),
            now,
            ..any_ctx()
        }
    }

    #[test]
    fn set_grows_when_member_overloaded_and_picks_least_loaded_member() {
        let mut ds = dests(&[2, 2, 2]);
        let mut s = LocalityLeastConnectionReplicated::new(3);
        s.update(&ds);
        let t = Time::ZERO;
        assert_eq!(s.schedule(&to(1, t), &ds), Some(0));
        ds[0].active = 2; // not > weight: stays
        assert_eq!(s.schedule(&to(1, t), &ds), Some(0));
        ds[0].active = 3; // > weight and server 1 is under half: add wlc's choice (1)
        assert_eq!(s.schedule(&to(1, t), &ds), Some(1));
        assert_eq!(s.set_size(dst(1)), 2);
        // Now the set {1, 0} (newest first) gives its least loaded member.
        assert_eq!(s.schedule(&to(1, t), &ds), Some(1));
        ds[1].active = 4;
        ds[0].active = 1;
        assert_eq!(s.schedule(&to(1, t), &ds), Some(0));
        // A quiescent member is skipped inside the set.
        ds[0].config.weight = 0;
        ds[1].active = 1;
        assert_eq!(s.schedule(&to(1, t), &ds), Some(1));
        // Every member unavailable: wlc over the service adds server 2.
        ds[1].overloaded = true;
        assert_eq!(s.schedule(&to(1, t), &ds), Some(2));
        assert_eq!(s.set_size(dst(1)), 3);
        // Other destinations have their own sets.
        assert_eq!(s.schedule(&to(2, t), &ds), Some(2));
        assert_eq!(s.set_size(dst(2)), 1);
    }

    #[test]
    fn most_loaded_member_dropped_after_expiration() {
        let mut ds = dests(&[1, 1]);
        let mut s = LocalityLeastConnectionReplicated::with_expiration(3, Duration::from_secs(600));
        let t0 = Time::from_secs(10);
        assert_eq!(s.schedule(&to(1, t0), &ds), Some(0));
        ds[0].active = 2;
        assert_eq!(s.schedule(&to(1, t0), &ds), Some(1)); // set {1, 0}, lastmod t0
        ds[1].active = 1;
        // Not yet expired (exactly lastmod + expiration is not "after").
        let t1 = t0 + Duration::from_secs(600);
        assert_eq!(s.schedule(&to(1, t1), &ds), Some(1));
        assert_eq!(s.set_size(dst(1)), 2);
        // After: server 0 (overhead 512) is dropped; the choice made before the drop stands.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(s.schedule(&to(1, t2), &ds), Some(1));
        assert_eq!(s.set_size(dst(1)), 1);
        // A single-member set is never shrunk.
        let t3 = t2 + Duration::from_secs(300);
        assert_eq!(s.schedule(&to(1, t3), &ds), Some(1));
        assert_eq!(s.set_size(dst(1)), 1);
    }

    #[test]
    fn removed_member_leaves_sets() {
        let mut ds = dests(&[1, 1]);
        let mut s = LocalityLeastConnectionReplicated::new(3);
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds), Some(0));
        ds[0].active = 2;
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds), Some(1));
        let ds2 = vec![ds[0].clone()];
        s.update(&ds2);
        assert_eq!(s.set_size(dst(1)), 1);
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds2), Some(0));
        assert_eq!(s.schedule(&to(1, Time::ZERO), &[]), None);
    }
}
