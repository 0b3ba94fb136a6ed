//! Weighted least connection (`ip_vs_wlc.c`), ipvsadm's default.

use super::{SchedCtx, Scheduler, weighted_least_conn};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Weighted least connection: the server with the smallest `overhead / weight`, where
/// overhead is `256 * active + inactive`, compared as `a_oh * b_w > b_oh * a_w` in integers.
/// The first available server (weight > 0, not overloaded) is the starting candidate and a
/// later one replaces it only when strictly better, so ties go to the first in list order.
#[derive(Debug, Default)]
pub struct WeightedLeastConnection;

impl WeightedLeastConnection {
    /// A weighted least-connection scheduler.
    pub fn new() -> WeightedLeastConnection {
        WeightedLeastConnection
    }
}

impl Scheduler for WeightedLeastConnection {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wlc
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        weighted_least_conn(dests)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sched::testutil::*;

    #[test]
    fn picks_by_overhead_over_weight() {
        let mut ds = dests(&[1, 3, 2]);
        ds[0].active = 1; // 256 / 1 = 256
        ds[1].active = 2; // 512 / 3 ≈ 170.7
        ds[2].active = 1; // 256 / 2 = 128
        let mut s = WeightedLeastConnection::new();
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(2));
        ds[2].inactive = 100; // 356 / 2 = 178 > 170.7
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(1));
        // Tie (all zero): first available wins, quiescent and overloaded skipped.
        let mut ds = dests(&[0, 5, 1]);
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(1));
        ds[1].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), Some(2));
        ds[2].overloaded = true;
        assert_eq!(s.schedule(&any_ctx(), &ds), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// Connections that never close (each pick adds one active connection), n picks,
        /// weights w_i summing to W, deviation `dev_i = a_i * W - n * w_i` (W times the
        /// distance from the exact share). Bounds tested at every prefix n, with proofs:
        ///
        /// - upper: `dev_i < W`, i.e. never a whole connection above the exact share. When
        ///   i was last picked (at step m <= n) it minimised a/w, so
        ///   `(a_i - 1) * w_k <= a_k * w_i` for all k; summing over k,
        ///   `(a_i - 1) * W <= (m - 1) * w_i < n * w_i`.
        /// - lower: `dev_i >= -(N - 1) * w_i`. Every other server k was last picked while
        ///   its ratio was <= i's, so `a_k <= a_i * w_k / w_i + 1`; summing,
        ///   `n <= a_i * W / w_i + N - 1`. (wlc is Adams' apportionment method, which
        ///   respects upper quota but not lower quota, so a symmetric ±1 bound is false.)
        /// - exact: at every multiple of W, `a_i = n * w_i / W` (follows from the upper
        ///   bound, since the deviations sum to zero).
        #[test]
        fn never_closing_connections_converge_to_weights(
            weights in proptest::collection::vec(1u32..20, 1..8),
            n in 1usize..400,
        ) {
            let mut ds = dests(&weights);
            let big_n = weights.len() as i64;
            let w_total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
            let mut s = WeightedLeastConnection::new();
            for step in 1..=n as i64 {
                let i = s.schedule(&any_ctx(), &ds).unwrap();
                ds[i].active += 1;
                for d in &ds {
                    let w = i64::from(d.weight());
                    let dev = i64::from(d.active) * w_total - step * w;
                    prop_assert!(dev < w_total && dev >= -(big_n - 1) * w,
                        "step {} weights {:?} active {:?}", step, weights,
                        ds.iter().map(|d| d.active).collect::<Vec<_>>());
                    if step % w_total == 0 {
                        prop_assert_eq!(dev, 0);
                    }
                }
            }
        }
    }
}
