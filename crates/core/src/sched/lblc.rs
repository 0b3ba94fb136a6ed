//! Locality-based least connection (`ip_vs_lblc.c`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::{DestRef, SchedCtx, Scheduler, SeededSip, locality_overloaded, weighted_least_conn};
use crate::service::Dest;
use crate::time::Time;
use crate::types::SchedulerKind;

/// Default lifetime of an unused lblc table entry (`lblc_expiration` sysctl), 24 h.
pub const DEFAULT_LBLC_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Interval of the kernel's garbage-collection timer (`CHECK_EXPIRE_INTERVAL`).
pub(crate) const CHECK_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);
/// Age after which an entry may be collected when the table is over its size
/// (`ENTRY_TIMEOUT`).
pub(crate) const ENTRY_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// Every this many timer ticks without a size-driven collection, a full expiration check
/// (`COUNT_FOR_FULL_EXPIRATION`).
pub(crate) const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// Entries above which the timer collects (`IP_VS_LBLC_TAB_SIZE * 16`).
pub(crate) const MAX_SIZE: usize = 1024 * 16;

/// The kernel's periodic table collector, run lazily from `schedule()`.
///
/// The kernel arms a 60 s timer; each tick either does a full expiration check (every 30th
/// tick: drop entries unused for the expiration time), or, when the table holds more than
/// 16384 entries, drops entries unused for 6 minutes until `(entries - max) * 4/3` (at most
/// `max / 2`) are gone. Here the ticks that fell due since the last call are replayed at
/// the current time (at most 31 of them, enough to include a full check).
#[derive(Debug)]
pub(crate) struct LazyGc {
    next_tick: Option<Time>,
    counter: u32,
}

impl LazyGc {
    pub(crate) fn new() -> LazyGc {
        LazyGc {
            next_tick: None,
            counter: 1,
        }
    }

    /// Run the ticks due at `now` over `table`, whose entries were last used at `lastuse(e)`.
    pub(crate) fn run<E>(
        &mut self,
        now: Time,
        table: &mut HashMap<IpAddr, E, SeededSip>,
        lastuse: impl Fn(&E) -> Time,
        expiration: Duration,
    ) {
        let Some(next) = self.next_tick else {
            // The timer is armed when the first connection is seen.
            self.next_tick = Some(now + CHECK_EXPIRE_INTERVAL);
            return;
        };
        if now < next {
            return;
        }
        let interval = CHECK_EXPIRE_INTERVAL.as_nanos() as u64;
        let due = (now.as_nanos() - next.as_nanos()) / interval + 1;
        self.next_tick = Some(Time::from_nanos(
            next.as_nanos().saturating_add(due.saturating_mul(interval)),
        ));
        for _ in 0..due.min(u64::from(COUNT_FOR_FULL_EXPIRATION) + 1) {
            if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
                table.retain(|_, e| now < lastuse(e) + expiration);
                self.counter = 1;
            } else if table.len() <= MAX_SIZE {
                self.counter += 1;
            } else {
                let mut goal = ((table.len() - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
                table.retain(|_, e| {
                    if goal > 0 && now >= lastuse(e) + ENTRY_TIMEOUT {
                        goal -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    dest: DestRef,
    lastuse: Time,
}

/// Locality-based least connection: remembers, per destination address (`ctx.dst`, the
/// address the client targeted, as for cache clusters), the server last chosen for it and
/// keeps using it unless it is gone, quiescent (weight 0), or "overloaded" in lblc's sense:
/// more active connections than its weight while some server has fewer than half its weight.
/// Otherwise a new server is chosen by weighted least connection and remembered.
///
/// As in the kernel, the remembered server's threshold `overloaded` flag is not consulted
/// (only the choice of a new server skips flagged servers). Entries unused for the
/// expiration time (default 24 h) are collected by a lazily run version of the kernel's
/// 60 s timer (see the module source). When a server is removed (`update()`), entries that
/// point at it are dropped at once; the kernel keeps them until they are looked up and
/// finds the server unavailable, which schedules a new one: the same choices.
#[derive(Debug)]
pub struct LocalityLeastConnection {
    table: HashMap<IpAddr, Entry, SeededSip>,
    expiration: Duration,
    gc: LazyGc,
}

impl LocalityLeastConnection {
    /// An lblc scheduler with the default 24 h expiration; `seed` keys the table's hasher.
    pub fn new(seed: u64) -> LocalityLeastConnection {
        LocalityLeastConnection::with_expiration(seed, DEFAULT_LBLC_EXPIRATION)
    }

    /// An lblc scheduler whose unused entries expire after `expiration`
    /// (`net.ipv4.vs.lblc_expiration`).
    pub fn with_expiration(seed: u64, expiration: Duration) -> LocalityLeastConnection {
        LocalityLeastConnection {
            table: HashMap::with_hasher(SeededSip::new(seed)),
            expiration,
            gc: LazyGc::new(),
        }
    }

    /// Number of destination addresses remembered.
    pub fn entries(&self) -> usize {
        self.table.len()
    }
}

impl Scheduler for LocalityLeastConnection {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblc
    }

    fn update(&mut self, dests: &[Dest]) {
        self.table.retain(|_, e| e.dest.refresh(dests).is_some());
    }

    fn schedule(&mut self, ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        self.gc
            .run(ctx.now, &mut self.table, |e| e.lastuse, self.expiration);
        if let Some(en) = self.table.get_mut(&ctx.dst) {
            en.lastuse = ctx.now;
            if let Some(i) = en.dest.refresh(dests) {
                let d = &dests[i];
                if d.weight() > 0 && !locality_overloaded(d, dests) {
                    return Some(i);
                }
            }
        }
        let i = weighted_least_conn(dests)?;
        let dest = DestRef::new(dests, i)?;
        match self.table.get_mut(&ctx.dst) {
            Some(en) => {
                if en.dest.key != dest.key {
                    *en = Entry {
                        dest,
                        lastuse: ctx.now,
                    };
                }
            }
            None => {
                self.table.insert(
                    ctx.dst,
                    Entry {
                        dest,
                        lastuse: ctx.now,
                    },
                );
            }
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sched::testutil::*;

    fn to(dst: u8, now: Time) -> SchedCtx {
        SchedCtx {
            dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, dst)),
            now,
            ..any_ctx()
        }
    }

    #[test]
    fn sticks_per_destination_address() {
        let mut ds = dests(&[1, 1, 1]);
        let mut s = LocalityLeastConnection::new(1);
        s.update(&ds);
        let t = Time::ZERO;
        // Destination 1 -> server 0 (wlc, all idle, first wins); it keeps it even when it
        // is no longer the least loaded.
        assert_eq!(s.schedule(&to(1, t), &ds), Some(0));
        ds[0].active = 1;
        assert_eq!(s.schedule(&to(2, t), &ds), Some(1));
        ds[1].active = 1;
        assert_eq!(s.schedule(&to(3, t), &ds), Some(2));
        ds[2].active = 1;
        assert_eq!(s.schedule(&to(1, t), &ds), Some(0));
        assert_eq!(s.schedule(&to(2, t), &ds), Some(1));
        assert_eq!(s.entries(), 3);
        // The threshold flag does not move a cached destination (kernel behaviour)...
        ds[0].overloaded = true;
        assert_eq!(s.schedule(&to(1, t), &ds), Some(0));
        // ...but quiescing it does.
        ds[0].overloaded = false;
        ds[0].config.weight = 0;
        assert_eq!(s.schedule(&to(1, t), &ds), Some(1));
        assert_eq!(s.schedule(&to(1, t), &ds), Some(1));
    }

    #[test]
    fn moves_when_overloaded_in_lblc_sense() {
        let mut ds = dests(&[2, 4]);
        let mut s = LocalityLeastConnection::new(1);
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds), Some(0));
        // active 3 > weight 2, and server 1 has 1*2 < 4: move to wlc's choice.
        ds[0].active = 3;
        ds[1].active = 1;
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds), Some(1));
        // Server 0 over its weight but nobody under half: stay on server 1 anyway; and a
        // new destination goes to wlc's choice.
        ds[1].active = 2;
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds), Some(1));
        ds[0].active = 0;
        ds[1].active = 5; // 5 > 4 and server 0 has 0 < 2: move back
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds), Some(0));
    }

    #[test]
    fn removed_server_and_empty_service() {
        let ds = dests(&[1, 1]);
        let mut s = LocalityLeastConnection::new(1);
        s.update(&ds);
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds), Some(0));
        let ds2 = vec![ds[1].clone()];
        s.update(&ds2);
        assert_eq!(s.entries(), 0);
        assert_eq!(s.schedule(&to(1, Time::ZERO), &ds2), Some(0));
        assert_eq!(s.schedule(&to(1, Time::ZERO), &[]), None);
    }

    #[test]
    fn entries_expire_lazily_after_24h() {
        let mut ds = dests(&[1, 1]);
        let mut s = LocalityLeastConnection::new(1);
        let t0 = Time::from_secs(1000);
        assert_eq!(s.schedule(&to(1, t0), &ds), Some(0));
        ds[0].active = 1; // so a fresh choice would be server 1
        // Used again after 23 h: still there, lastuse refreshed.
        let t1 = t0 + Duration::from_secs(23 * 3600);
        assert_eq!(s.schedule(&to(1, t1), &ds), Some(0));
        // 23 h after that: still there (its last use was t1).
        let t2 = t1 + Duration::from_secs(23 * 3600);
        assert_eq!(s.schedule(&to(2, t2), &ds), Some(1));
        assert_eq!(s.entries(), 2);
        // 25 h after t1 with other traffic only: the full check drops destination 1.
        let t3 = t1 + Duration::from_secs(25 * 3600);
        assert_eq!(s.schedule(&to(3, t3), &ds), Some(1));
        assert_eq!(s.entries(), 2); // destinations 2 and 3
        assert_eq!(s.schedule(&to(1, t3), &ds), Some(1)); // rescheduled by wlc
    }
}
