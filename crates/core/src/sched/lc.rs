//! Least connection (`ip_vs_lc.c`).

use super::{SchedCtx, Scheduler};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Least connection: the server with the smallest overhead `256 * active + inactive`,
/// ignoring weights except that weight 0 (quiescent) and overloaded servers are skipped.
/// Ties go to the first in list order.
#[derive(Debug, Default)]
pub struct LeastConnection;

impl LeastConnection {
    /// A least-connection scheduler.
    pub fn new() -> LeastConnection {
        LeastConnection
    }
}

impl Scheduler for LeastConnection {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lc
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        // Skipped servers get an overhead no real one reaches (at most 2^40 + 2^32), so
        // the loop is a plain strict minimum: first wins ties, as in the kernel.
        let mut least = usize::MAX;
        let mut loh = u64::MAX;
        for (i, d) in dests.iter().enumerate() {
            let doh = if d.overloaded || d.weight() == 0 {
                u64::MAX
            } else {
                d.overhead()
            };
            if doh < loh {
                least = i;
                loh = doh;
            }
        }
        (least != usize::MAX).then_some(least)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::*;

    #[test]
    fn picks_least_overhead_first_on_ties() {
        let mut ds = dests(&[1, 100, 1, 1]);
        ds[0].active = 1; // 256
        ds[1].inactive = 300; // 300
        ds[2].inactive = 200; // 200
        ds[3].inactive = 200; // 200, tie with 2: first wins
        let mut s = LeastConnection::new();
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(2));
        ds[2].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(3));
        ds[3].config.weight = 0;
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(0));
        ds[0].overloaded = true;
        ds[1].config.weight = 0;
        assert_eq!(s.schedule(&any_ctx(), &ds), None);
    }
}
