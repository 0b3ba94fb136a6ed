//! Shortest expected delay (`ip_vs_sed.c`).

use super::{SchedCtx, Scheduler};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Shortest expected delay: the server with the smallest `(active + 1) / weight`,
/// compared in integers as `(a_act+1) * b_w > (b_act+1) * a_w`. Inactive connections do not
/// count. The first available server is the starting candidate; later ones replace it only
/// when strictly better (ties go first in list order).
#[derive(Debug, Default)]
pub struct ShortestExpectedDelay;

impl ShortestExpectedDelay {
    /// A shortest-expected-delay scheduler.
    pub fn new() -> ShortestExpectedDelay {
        ShortestExpectedDelay
    }
}

/// `ip_vs_sed_dest_overhead`: active connections plus one.
#[inline]
pub(crate) fn sed_overhead(d: &Dest) -> u64 {
    u64::from(d.active) + 1
}

impl Scheduler for ShortestExpectedDelay {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sed
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let first = dests.iter().position(Dest::available)?;
        let mut least = first;
        let mut loh = sed_overhead(&dests[first]);
        let mut lw = u64::from(dests[first].weight());
        for (i, d) in dests.iter().enumerate().skip(first + 1) {
            let doh = sed_overhead(d);
            let dw = u64::from(d.weight());
            // (active + 1) <= 2^32 and weight < 2^32: the products fit in u64. Selects, not
            // a branch (the winner is unpredictable).
            let better = !d.overloaded && loh * dw > doh * lw;
            least = if better { i } else { least };
            loh = if better { doh } else { loh };
            lw = if better { dw } else { lw };
        }
        Some(least)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::*;

    #[test]
    fn picks_min_active_plus_one_over_weight() {
        let mut ds = dests(&[1, 3, 0]);
        let mut s = ShortestExpectedDelay::new();
        // (0+1)/1 = 1 vs (0+1)/3: the heavier server.
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(1));
        ds[1].active = 2; // 3/3 = 1, tie with server 0: first wins
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(0));
        ds[0].inactive = 1000; // inactive does not count
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(0));
        ds[0].active = 1; // 2/1 vs 3/3
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(1));
        ds[1].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(0));
        ds[0].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), None); // server 2 is quiescent
    }
}
