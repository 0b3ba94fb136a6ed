//! Weighted failover (`ip_vs_fo.c`).

use super::{Compiled, SchedCtx, Scheduler, sequence};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Weighted failover: the non-overloaded server with the highest weight (the first of
/// several with the same weight); weight 0 never wins. Connection counts are ignored.
#[derive(Clone, Debug, Default)]
pub struct WeightedFailover;

impl WeightedFailover {
    /// A weighted-failover scheduler.
    pub fn new() -> WeightedFailover {
        WeightedFailover
    }
}

impl Scheduler for WeightedFailover {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Fo
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut hw = 0u32;
        for (i, d) in dests.iter().enumerate() {
            if !d.overloaded && d.weight() > hw {
                best = Some(i);
                hw = d.weight();
            }
        }
        best
    }

    /// The one server every new connection goes to.
    fn compile(&self, dests: &[Dest]) -> Option<Compiled> {
        if !dests.iter().any(Dest::available) {
            return Some(Compiled::Sequence(Vec::new()));
        }
        sequence(self, dests, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::*;

    #[test]
    fn picks_highest_weight_first_on_ties() {
        let mut ds = dests(&[2, 5, 5, 1, 0]);
        ds[1].active = 1000; // connections do not matter
        let mut s = WeightedFailover::new();
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(1));
        ds[1].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(2));
        ds[2].config.weight = 0;
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(0));
        ds[0].overloaded = true;
        ds[3].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), None);
    }
}
