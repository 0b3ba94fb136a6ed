//! Round robin (`ip_vs_rr.c`).

use super::{Compiled, DestRef, SchedCtx, Scheduler, sequence};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Round robin: the next available server after the one picked last, in list order,
/// wrapping around; weights only matter as "0 = quiescent".
///
/// As in the kernel, the cursor survives additions and re-weighting, and when the server
/// it points at is removed it moves to the server before it, so the rotation continues
/// with the server that followed the removed one.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    /// Last server picked; `None` is the list head (nothing picked yet).
    cursor: Option<DestRef>,
}

impl RoundRobin {
    /// A round-robin scheduler positioned at the list head.
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Scheduler for RoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Rr
    }

    fn update(&mut self, dests: &[Dest]) {
        let Some(mut c) = self.cursor else { return };
        if c.refresh(dests).is_some() {
            self.cursor = Some(c);
            return;
        }
        // ip_vs_rr_del_dest: the cursor's server went away; step back to its predecessor.
        self.cursor = match c.idx.checked_sub(1) {
            Some(prev) if !dests.is_empty() => DestRef::new(dests, prev.min(dests.len() - 1)),
            _ => None,
        };
    }

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let n = dests.len();
        // Start after the cursor; a cursor that no longer fits `dests` counts as the head.
        let start = match self.cursor {
            Some(c) if c.idx < n => c.idx + 1,
            _ => 0,
        };
        // One full circle: start..n, then 0..start (the kernel stops after re-checking the
        // cursor's own server).
        let hit = (start..n)
            .chain(0..start.min(n))
            .find(|&i| dests[i].available())?;
        self.cursor = DestRef::new(dests, hit);
        Some(hit)
    }

    /// One round: every available server once, from after the cursor.
    fn compile(&self, dests: &[Dest]) -> Option<Compiled> {
        let n = dests.iter().filter(|d| d.available()).count();
        if n == 0 {
            return Some(Compiled::Sequence(Vec::new()));
        }
        sequence(self, dests, n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sched::testutil::*;

    fn run(s: &mut RoundRobin, ds: &[Dest], k: usize) -> Vec<Option<usize>> {
        (0..k).map(|_| s.schedule(&any_ctx(), ds)).collect()
    }

    #[test]
    fn rotates_and_skips_quiescent_and_overloaded() {
        let mut ds = dests(&[1, 0, 5, 1]);
        ds[3].overloaded = true;
        let mut s = RoundRobin::new();
        s.update(&ds);
        assert_eq!(
            run(&mut s, &ds, 5),
            [Some(0), Some(2), Some(0), Some(2), Some(0)]
        );
        ds[2].overloaded = true;
        assert_eq!(run(&mut s, &ds, 2), [Some(0), Some(0)]);
        ds[0].config.weight = 0;
        assert_eq!(run(&mut s, &ds, 1), [None]);
        assert_eq!(run(&mut s, &[], 1), [None]);
    }

    #[test]
    fn resumes_after_last_pick_across_updates() {
        let ds = dests(&[1, 1, 1, 1]);
        let mut s = RoundRobin::new();
        s.update(&ds);
        assert_eq!(run(&mut s, &ds, 2), [Some(0), Some(1)]);
        // Remove the cursor's server (index 1): rotation continues with the next one.
        let mut ds2 = ds.clone();
        ds2.remove(1);
        s.update(&ds2);
        assert_eq!(run(&mut s, &ds2, 3), [Some(1), Some(2), Some(0)]);
        // Add a server at the end: the cursor stays on its server.
        let mut ds3 = ds2.clone();
        ds3.push(dest_at(9, 9, 1));
        s.update(&ds3);
        assert_eq!(run(&mut s, &ds3, 4), [Some(1), Some(2), Some(3), Some(0)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Over `k` full rounds every available server is picked exactly `k` times and
        /// unavailable ones never.
        #[test]
        fn visits_every_available_server_equally(
            weights in proptest::collection::vec(0u32..4, 1..10),
            over in proptest::collection::vec(any::<bool>(), 10),
            k in 1usize..5,
        ) {
            let mut ds = dests(&weights);
            for (d, &o) in ds.iter_mut().zip(&over) { d.overloaded = o; }
            let avail = ds.iter().filter(|d| d.available()).count();
            let mut s = RoundRobin::new();
            s.update(&ds);
            let mut counts = vec![0usize; ds.len()];
            for _ in 0..k * avail {
                counts[s.schedule(&any_ctx(), &ds).unwrap()] += 1;
            }
            for (i, d) in ds.iter().enumerate() {
                prop_assert_eq!(counts[i], if d.available() { k } else { 0 });
            }
            if avail == 0 { prop_assert_eq!(s.schedule(&any_ctx(), &ds), None); }
        }
    }
}
