//! Weighted round robin (`ip_vs_wrr.c`).

use super::{Compiled, SchedCtx, Scheduler, gcd, sequence};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Weighted round robin exactly as the kernel walks it.
///
/// State: `cw` (current weight), `mw` (max weight reduced by `di - 1`), `di` (gcd of the
/// positive weights) and the cursor `cl`. Each pass walks the list from after the cursor and
/// picks the first non-overloaded server with `weight >= cw`; at the end of the list `cw`
/// drops by `di`, and when it reaches zero it restarts at `mw`. With weights 4/3/2 one cycle
/// is `A A B A B C A B C`.
///
/// `update()` is the kernel's `ip_vs_wrr_dest_changed`: the cursor goes back to the list
/// head and `cw` is kept (clamped/realigned to the new `di`), so a service built by adding
/// servers one at a time starts its first cycle wherever `cw` was left, as in IPVS.
#[derive(Clone, Debug, Default)]
pub struct WeightedRoundRobin {
    /// Last server picked; `None` is the list head.
    cl: Option<usize>,
    cw: i64,
    mw: i64,
    di: i64,
}

impl WeightedRoundRobin {
    /// A weighted round-robin scheduler for a service without servers.
    pub fn new() -> WeightedRoundRobin {
        WeightedRoundRobin {
            cl: None,
            cw: 0,
            mw: 0,
            di: 1,
        }
    }
}

impl Scheduler for WeightedRoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wrr
    }

    fn update(&mut self, dests: &[Dest]) {
        let g = dests
            .iter()
            .map(|d| u64::from(d.weight()))
            .filter(|&w| w > 0)
            .fold(0, gcd);
        let max = dests
            .iter()
            .map(|d| i64::from(d.weight()))
            .max()
            .unwrap_or(0);
        self.cl = None;
        self.di = if g == 0 { 1 } else { g as i64 };
        self.mw = max - (self.di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let n = dests.len();
        // A cursor that no longer fits `dests` counts as the head.
        let mut pos = self.cl.filter(|&i| i < n);
        if self.mw <= 0 {
            self.cl = pos;
            return None;
        }
        let last = pos;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let from = pos.map_or(0, |i| i + 1);
            for (i, d) in dests.iter().enumerate().skip(from) {
                if !d.overloaded && i64::from(d.weight()) >= self.cw {
                    self.cl = Some(i);
                    return Some(i);
                }
                if stop == Some(i) {
                    // "all destinations are overloaded"
                    self.cl = Some(i);
                    return None;
                }
            }
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                // Stop if the last pass (weight >= 1) already covered every server.
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                // The first pass for weight >= 1 only covered servers after `last`; now
                // cover those up to it.
                stop = last;
            }
        }
    }

    /// One cycle from the present state: each available server `weight / gcd` times.
    fn compile(&self, dests: &[Dest]) -> Option<Compiled> {
        let di = u64::try_from(self.di).ok().filter(|&d| d > 0)?;
        let len: u64 = dests
            .iter()
            .filter(|d| d.available())
            .map(|d| u64::from(d.weight()) / di)
            .sum();
        if len == 0 {
            return Some(Compiled::Sequence(Vec::new()));
        }
        sequence(self, dests, usize::try_from(len).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sched::testutil::*;

    fn run(s: &mut WeightedRoundRobin, ds: &[Dest], k: usize) -> Vec<Option<usize>> {
        (0..k).map(|_| s.schedule(&any_ctx(), ds)).collect()
    }

    /// Weights 4/3/2, by hand from the kernel algorithm: di = 1, mw = 4.
    /// cw=4: A | cw=3: A B | cw=2: A B C | cw=1: A B C | restart.
    #[test]
    fn kernel_sequence_4_3_2() {
        let ds = dests(&[4, 3, 2]);
        let mut s = WeightedRoundRobin::new();
        s.update(&ds);
        let cycle = [0, 0, 1, 0, 1, 2, 0, 1, 2].map(Some);
        assert_eq!(run(&mut s, &ds, 9), cycle);
        assert_eq!(run(&mut s, &ds, 9), cycle);
    }

    /// Weights 6/4/2: di = 2, mw = 6 - 1 = 5. cw=5: A | cw=3: A B | cw=1: A B C.
    #[test]
    fn kernel_sequence_with_gcd() {
        let ds = dests(&[6, 4, 2]);
        let mut s = WeightedRoundRobin::new();
        s.update(&ds);
        let cycle = [0, 0, 1, 0, 1, 2].map(Some);
        assert_eq!(run(&mut s, &ds, 6), cycle);
        assert_eq!(run(&mut s, &ds, 6), cycle);
    }

    /// Adding servers one at a time leaves cw where the kernel leaves it: after adding
    /// A(4) cw = mw = 1; adding B(3) keeps cw = 1; adding C(2) keeps it. So the first round
    /// is the weight >= 1 pass (A B C), then cw restarts at 4.
    #[test]
    fn incremental_adds_keep_cw_like_kernel() {
        let ds = dests(&[4, 3, 2]);
        let mut s = WeightedRoundRobin::new();
        for k in 1..=3 {
            s.update(&ds[..k]);
        }
        assert_eq!(run(&mut s, &ds, 3), [0, 1, 2].map(Some));
        assert_eq!(run(&mut s, &ds, 9), [0, 0, 1, 0, 1, 2, 0, 1, 2].map(Some));
    }

    #[test]
    fn skips_quiescent_and_overloaded() {
        let mut ds = dests(&[0, 2, 1, 3]);
        ds[3].overloaded = true;
        let mut s = WeightedRoundRobin::new();
        s.update(&ds);
        // di = 1, mw = 3: cw=3 nothing (D overloaded) | cw=2: B | cw=1: B C.
        assert_eq!(run(&mut s, &ds, 6), [1, 1, 2, 1, 1, 2].map(Some));
        ds[1].overloaded = true;
        ds[2].overloaded = true;
        assert_eq!(run(&mut s, &ds, 2), [None, None]);
        let zero = dests(&[0, 0]);
        s.update(&zero);
        assert_eq!(run(&mut s, &zero, 2), [None, None]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// Over one full cycle (sum of weights picks) each server is picked exactly
        /// `weight` times, whatever the weights (0..20, 1..8 servers), and so over any
        /// whole number of cycles.
        #[test]
        fn full_cycle_matches_weights_exactly(
            weights in proptest::collection::vec(0u32..20, 1..8),
            cycles in 1usize..3,
        ) {
            let ds = dests(&weights);
            let mut s = WeightedRoundRobin::new();
            s.update(&ds);
            let total: u32 = weights.iter().sum();
            let mut counts = vec![0u32; ds.len()];
            for _ in 0..cycles * total as usize {
                counts[s.schedule(&any_ctx(), &ds).unwrap()] += 1;
            }
            let want: Vec<u32> = weights.iter().map(|w| w * cycles as u32).collect();
            prop_assert_eq!(counts, want);
            if total == 0 { prop_assert_eq!(s.schedule(&any_ctx(), &ds), None); }
        }
    }
}
