//! The services' scheduler tables in the program's maps: which services the program
//! schedules new flows for (`lvs_svcs`), their compiled tables (ranges of `lvs_slots`) and the
//! real servers the entries name (`lvs_dests`).
//!
//! A table is replaced, never rewritten in place: the new one goes into a free range, then
//! the service entry flips to it in one map update (a hash map update is atomic for the
//! program), and the old range is reused only after a whole tick (two calls of
//! [`Tables::release_retired`]), when no program run can still be reading it.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use lvs_core::Director;
use lvs_core::director::OffloadedService;
use lvs_core::sched::Compiled;
use lvs_core::types::{Protocol, ServiceKey};

use crate::maps::{SvcEntry, SvcKey};
use crate::{Datapath, Error, compile};

/// A service's table as installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Installed {
    base: u32,
    len: u32,
    generation: u32,
}

/// What an installed table was made from: the same again means the same table.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MadeFrom {
    table: OffloadedService,
    max_len: u16,
    /// The core's service slot and its real servers' `lvs_dests` indexes (a service
    /// deleted and added again has new ones).
    svc: u32,
    ids: Vec<u32>,
}

/// The ranges of `lvs_slots` in use, and what each service has.
#[derive(Debug)]
pub struct Tables {
    /// Free ranges `(start, len)`, sorted by start, never adjacent.
    free: Vec<(u32, u32)>,
    /// Ranges replaced since the last [`release_retired`](Self::release_retired).
    retired: Vec<(u32, u32)>,
    /// Ranges replaced before that: free at the next call.
    cooling: Vec<(u32, u32)>,
    installed: HashMap<SvcKey, Option<Installed>>,
    /// What each service's table was made from, so an unchanged one is not rewritten.
    made_from: HashMap<SvcKey, MadeFrom>,
    next_generation: u32,
}

/// A service whose new flows the program schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InKernel {
    /// Its key in `lvs_svcs`.
    pub key: SvcKey,
    /// Its table's generation.
    pub generation: u32,
    /// The core's service slot.
    pub svc: u32,
    /// A sequence (rr, wrr, fo): the core's scheduler must move with the program's
    /// position, so a choice the core makes itself calls for a new table.
    pub sequence: bool,
}

/// What [`Tables::sync`] did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Services whose new flows the program schedules.
    pub in_kernel: Vec<InKernel>,
    /// Services left to the core (stateful scheduler, persistence, thresholds, or a table
    /// that did not fit).
    pub in_core: usize,
    /// Errors met (the services concerned are left to the core where possible).
    pub errors: Vec<Error>,
}

impl Tables {
    /// Nothing installed, `capacity` entries of `lvs_slots` free.
    pub fn new(capacity: u32) -> Tables {
        Tables {
            free: if capacity > 0 {
                vec![(0, capacity)]
            } else {
                Vec::new()
            },
            retired: Vec::new(),
            cooling: Vec::new(),
            installed: HashMap::new(),
            made_from: HashMap::new(),
            next_generation: 1,
        }
    }

    /// First fit.
    fn alloc(&mut self, len: u32) -> Option<u32> {
        let i = self.free.iter().position(|&(_, l)| l >= len)?;
        let (start, l) = self.free[i];
        if l == len {
            self.free.remove(i);
        } else {
            self.free[i] = (start + len, l - len);
        }
        Some(start)
    }

    fn free_range(&mut self, start: u32, len: u32) {
        if len == 0 {
            return;
        }
        let i = self.free.partition_point(|&(s, _)| s < start);
        self.free.insert(i, (start, len));
        // Merge with the next, then with the previous.
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }

    /// Install service `key`: with `table` (and a `max_len` above 0), the program schedules
    /// its new flows following it, `ids[i]` being the `lvs_dests` index of the service's
    /// `i`-th real server (written here too); without, the core does. Returns the generation
    /// new-flow events from this table carry (`None` when the core schedules). On an error
    /// (a table that does not fit, a failed map update) the service is left to the core if
    /// that can be done; if not, the table installed before stays.
    pub fn install(
        &mut self,
        dp: &Datapath,
        key: SvcKey,
        table: Option<(&OffloadedService, &[u32])>,
        max_len: u16,
    ) -> Result<Option<u32>, Error> {
        let Some((svc, ids)) = table.filter(|_| max_len > 0) else {
            self.leave_to_core(dp, &key)?;
            return Ok(None);
        };
        match self.flip(dp, key, svc, ids, max_len) {
            Ok(generation) => Ok(Some(generation)),
            Err(e) => {
                let _ = self.leave_to_core(dp, &key);
                Err(e)
            }
        }
    }

    /// Leave `key`'s new flows to the core; its table's range is retired once the program
    /// no longer finds it.
    fn leave_to_core(&mut self, dp: &Datapath, key: &SvcKey) -> Result<(), Error> {
        dp.set_service(key, &SvcEntry::CORE)?;
        self.retire(key);
        self.installed.insert(*key, None);
        Ok(())
    }

    /// Write a new table into a free range and point the service at it.
    fn flip(
        &mut self,
        dp: &Datapath,
        key: SvcKey,
        svc: &OffloadedService,
        ids: &[u32],
        max_len: u16,
    ) -> Result<u32, Error> {
        for (d, &id) in svc.dests.iter().zip(ids) {
            dp.set_dest(id, &compile::dest_entry(d))?;
        }
        let (sched, flags, entries) = compile::sched_table(svc, ids);
        let len = u32::try_from(entries.len()).map_err(|_| Error::Map {
            map: "lvs_slots",
            error: "table too long".into(),
        })?;
        let base = self.alloc(len).ok_or_else(|| Error::Map {
            map: "lvs_slots",
            error: format!("no room for a table of {len} entries"),
        })?;
        let generation = self.next_generation;
        let entry = SvcEntry {
            sched,
            flags,
            max_len,
            generation,
            base,
            len,
        };
        if let Err(e) = dp
            .write_slots(base, &entries)
            .and_then(|()| dp.set_service(&key, &entry))
        {
            self.free_range(base, len);
            return Err(e);
        }
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        // Only now is the old table out of the program's reach.
        self.retire(&key);
        self.installed.insert(
            key,
            Some(Installed {
                base,
                len,
                generation,
            }),
        );
        Ok(generation)
    }

    /// Bring the program's services in line with `director`'s: every IPv4 TCP/UDP service
    /// gets an entry (a compiled table where [`Director::offloadable`] gives one, else "ask
    /// the core"), services gone are removed. `dest_id(svc, dest)` names the `lvs_dests`
    /// index of a real server (its stats slot); a service with a server that has none is
    /// left to the core. A table equal to the one installed is left as it is (its sequence
    /// position too). Call after the routes change too: they bound the size of the new
    /// flows the program takes ([`compile::new_flow_limit`]).
    pub fn sync(
        &mut self,
        dp: &Datapath,
        director: &Director,
        mut dest_id: impl FnMut(u32, u32) -> Option<u32>,
    ) -> SyncReport {
        let mut report = SyncReport::default();
        let mut seen = HashSet::new();
        let routes = compile::routes(&director.net);
        for (svc, s) in director.services().iter() {
            let ServiceKey::Addr {
                proto: proto @ (Protocol::Tcp | Protocol::Udp),
                addr: IpAddr::V4(vip),
                port,
            } = s.config().key
            else {
                continue;
            };
            if s.is_deleted() {
                continue;
            }
            let key = compile::svc_key(proto, vip, port);
            seen.insert(key);
            let off = director.offloadable(svc).and_then(|o| {
                let ids = o
                    .dests
                    .iter()
                    .map(|d| dest_id(svc, d.slot))
                    .collect::<Option<Vec<u32>>>()?;
                Some((o, ids))
            });
            let max_len = off
                .as_ref()
                .map_or(0, |(o, _)| compile::new_flow_limit(&routes, o));
            // Moved, not copied: an mh table is 65,537 entries.
            let made = off.filter(|_| max_len > 0).map(|(table, ids)| MadeFrom {
                table,
                max_len,
                svc,
                ids,
            });
            let unchanged = match (&made, self.installed.get(&key)) {
                (Some(m), Some(Some(_))) => self.made_from.get(&key) == Some(m),
                (None, Some(None)) => true,
                _ => false,
            };
            if !unchanged {
                self.made_from.remove(&key);
                let table = made.as_ref().map(|m| (&m.table, m.ids.as_slice()));
                match self.install(dp, key, table, max_len) {
                    Ok(Some(_)) => {
                        if let Some(m) = made {
                            self.made_from.insert(key, m);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => report.errors.push(e),
                }
            }
            // What the program has now (after a failure, maybe the table from before).
            match (self.installed.get(&key), self.made_from.get(&key)) {
                (Some(Some(i)), Some(m)) => report.in_kernel.push(InKernel {
                    key,
                    generation: i.generation,
                    svc,
                    sequence: matches!(m.table.table, Compiled::Sequence(_)),
                }),
                (Some(Some(i)), None) => report.in_kernel.push(InKernel {
                    key,
                    generation: i.generation,
                    svc,
                    sequence: true,
                }),
                _ => report.in_core += 1,
            }
        }
        let gone: Vec<SvcKey> = self
            .installed
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.made_from.remove(&key);
            if let Err(e) = self.remove(dp, &key) {
                report.errors.push(e);
            }
        }
        report
    }

    /// The range of `key`'s table (if any) goes to the retired list.
    fn retire(&mut self, key: &SvcKey) {
        if let Some(Some(old)) = self.installed.get(key) {
            self.retired.push((old.base, old.len));
        }
        self.installed.remove(key);
    }

    /// Remove service `key` from the program.
    pub fn remove(&mut self, dp: &Datapath, key: &SvcKey) -> Result<(), Error> {
        dp.remove_service(key)?;
        self.retire(key);
        Ok(())
    }

    /// Call once a tick: ranges replaced before the previous call become reusable (so a
    /// whole tick has passed since the program could last have read them).
    pub fn release_retired(&mut self) {
        for (start, len) in std::mem::take(&mut self.cooling) {
            self.free_range(start, len);
        }
        self.cooling = std::mem::take(&mut self.retired);
    }

    /// Entries of `lvs_slots` free now.
    #[cfg(test)]
    fn free_entries(&self) -> u64 {
        self.free.iter().map(|&(_, l)| u64::from(l)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_first_fit_and_merge_back() {
        let mut t = Tables::new(100);
        let a = t.alloc(30).unwrap();
        let b = t.alloc(30).unwrap();
        let c = t.alloc(30).unwrap();
        assert_eq!((a, b, c), (0, 30, 60));
        assert_eq!(t.alloc(11), None);
        t.free_range(b, 30);
        assert_eq!(t.alloc(31), None, "not merged with anything yet");
        t.free_range(a, 30);
        t.free_range(c, 30);
        assert_eq!(t.free, vec![(0, 100)]);
        assert_eq!(t.alloc(100), Some(0));
        assert_eq!(t.free_entries(), 0);
    }
}
