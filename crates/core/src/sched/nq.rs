//! Never queue (`ip_vs_nq.c`).

use super::sed::sed_overhead;
use super::{SchedCtx, Scheduler};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Never queue: the first available server with no active connection; if every server is
/// busy, the shortest-expected-delay rule `(active + 1) / weight` (ties to the first).
#[derive(Debug, Default)]
pub struct NeverQueue;

impl NeverQueue {
    /// A never-queue scheduler.
    pub fn new() -> NeverQueue {
        NeverQueue
    }
}

impl Scheduler for NeverQueue {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Nq
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let mut least: Option<(usize, u64, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if d.overloaded || d.weight() == 0 {
                continue;
            }
            // An idle server is taken at once.
            if d.active == 0 {
                return Some(i);
            }
            let doh = sed_overhead(d);
            let dw = u64::from(d.weight());
            if least.is_none_or(|(_, loh, lw)| loh * dw > doh * lw) {
                least = Some((i, doh, dw));
            }
        }
        least.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::*;

    #[test]
    fn idle_server_first_then_sed() {
        let mut ds = dests(&[10, 1, 1, 0]);
        ds[0].active = 1;
        ds[1].active = 0;
        ds[1].inactive = 50; // idle means no *active* connection
        let mut s = NeverQueue::new();
        // Server 0 has the best SED ratio (2/10) but server 1 is idle.
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(1));
        ds[1].active = 1;
        // No idle server among available ones (3 is quiescent, 2 is idle!).
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(2));
        ds[2].active = 4;
        // All busy: SED, 2/10 < 2/1 < 5/1.
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(0));
        ds[0].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(1));
        ds[1].overloaded = true;
        ds[2].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), None);
    }
}
