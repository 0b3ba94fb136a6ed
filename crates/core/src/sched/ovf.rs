//! Weighted overflow (`ip_vs_ovf.c`).

use super::{SchedCtx, Scheduler};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Weighted overflow: the highest-weight server (first on ties) whose active connections
/// do not exceed its weight; when it fills up (`active > weight`) new connections overflow
/// to the next-highest weight. Overloaded and weight-0 servers are skipped. Only active
/// connections count, so (as the kernel notes) it suits TCP better than UDP.
#[derive(Debug, Default)]
pub struct WeightedOverflow;

impl WeightedOverflow {
    /// A weighted-overflow scheduler.
    pub fn new() -> WeightedOverflow {
        WeightedOverflow
    }
}

impl Scheduler for WeightedOverflow {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Ovf
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut hw = 0u32;
        for (i, d) in dests.iter().enumerate() {
            let w = d.weight();
            if d.overloaded || d.active > w || w == 0 {
                continue;
            }
            if best.is_none() || w > hw {
                best = Some(i);
                hw = w;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::*;

    #[test]
    fn fills_highest_weight_then_overflows() {
        let mut ds = dests(&[2, 3, 3, 0]);
        let mut s = WeightedOverflow::new();
        let mut picks = Vec::new();
        for _ in 0..9 {
            let i = s.schedule(&any_ctx(), &ds).unwrap();
            ds[i].active += 1;
            picks.push(i);
        }
        // Server 1 takes up to active = 4 (> 3 stops it), then server 2 likewise, then 0
        // takes 1 (it still has room until active 3).
        assert_eq!(picks, [1, 1, 1, 1, 2, 2, 2, 2, 0]);
        ds[0].active = 3;
        assert_eq!(s.schedule(&any_ctx(), &ds), None);
        ds[2].active = 0;
        ds[2].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), None);
        ds[2].overloaded = false;
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(2));
    }
}
