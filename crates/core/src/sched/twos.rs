//! Weighted random twos choice (`ip_vs_twos.c`).

use super::{SchedCtx, Scheduler};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// The splitmix64 generator: tiny, fast, and good enough to draw servers; seeded, so a
/// director run is reproducible.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A 32-bit draw, as `prandom_u32()`.
    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// Power of two choices, weighted: draw two servers at random with probability
/// proportional to weight (two independent draws in `[0, total_weight]`, walked down the
/// list of available servers), and take the second if its `overhead / weight` is strictly
/// lower than the first's (`w2 * oh1 > w1 * oh2`). Overloaded and weight-0 servers are never
/// drawn. Random numbers come from a splitmix64 generator seeded at creation.
///
/// As in the kernel, each draw is uniform over `total_weight + 1` values, so the first
/// available server is slightly favoured (one extra value).
#[derive(Debug)]
pub struct TwoChoices {
    rng: SplitMix64,
}

impl TwoChoices {
    /// A twos scheduler whose random draws are seeded with `seed`.
    pub fn new(seed: u64) -> TwoChoices {
        TwoChoices {
            rng: SplitMix64::new(seed),
        }
    }
}

impl Scheduler for TwoChoices {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Twos
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, _ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let total: u64 = dests
            .iter()
            .filter(|d| d.available())
            .map(|d| u64::from(d.weight()))
            .sum();
        if total == 0 {
            return None;
        }
        let modulus = total + 1;
        let mut r1 = (u64::from(self.rng.next_u32()) % modulus) as i64;
        let mut r2 = (u64::from(self.rng.next_u32()) % modulus) as i64;
        let mut c1: Option<usize> = None;
        let mut c2: Option<usize> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            let w = i64::from(d.weight());
            r1 -= w;
            r2 -= w;
            if r1 <= 0 && c1.is_none() {
                c1 = Some(i);
            }
            if r2 <= 0 && c2.is_none() {
                c2 = Some(i);
            }
            if c1.is_some() && c2.is_some() {
                break;
            }
        }
        // Both draws are at most total_weight, so both land; keep the fallbacks total.
        let c1 = c1.or(c2)?;
        let Some(c2) = c2 else { return Some(c1) };
        let (d1, d2) = (&dests[c1], &dests[c2]);
        let lhs = u128::from(d2.weight()) * u128::from(d1.overhead());
        let rhs = u128::from(d1.weight()) * u128::from(d2.overhead());
        Some(if lhs > rhs { c2 } else { c1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::*;

    #[test]
    fn only_available_servers() {
        let mut ds = dests(&[3, 0, 2, 5]);
        ds[3].overloaded = true;
        let mut s = TwoChoices::new(42);
        for _ in 0..2000 {
            let i = s.schedule(&any_ctx(), &ds).unwrap();
            assert!(i == 0 || i == 2, "{i}");
        }
        ds[0].overloaded = true;
        ds[2].config.weight = 0;
        assert_eq!(s.schedule(&any_ctx(), &ds), None);
    }

    /// With no connection counts the pick is the first draw, so picks follow weights:
    /// draw values are uniform over total+1 = 11 values, the first server owning values
    /// 0..=1 (2/11), the second 3/11... We check each share within ±0.02 of
    /// (w + [i == first]) / (W + 1) over 40,000 draws (standard deviation ≈ 0.0025).
    #[test]
    fn respects_weights_statistically() {
        let ds = dests(&[1, 2, 3, 4]);
        let mut s = TwoChoices::new(7);
        let n = 40_000;
        let mut counts = [0u32; 4];
        for _ in 0..n {
            counts[s.schedule(&any_ctx(), &ds).unwrap()] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let want = (f64::from(ds[i].weight()) + if i == 0 { 1.0 } else { 0.0 }) / 11.0;
            let got = f64::from(c) / f64::from(n);
            assert!(
                (got - want).abs() < 0.02,
                "server {i}: {got} vs {want} ({counts:?})"
            );
        }
    }

    /// With live connection counts the second choice wins when less loaded, which pulls
    /// loads towards weight proportions: simulate never-closing connections and check
    /// every server's share of 20,000 within ±0.03 of w/W.
    #[test]
    fn balances_towards_weights_with_load() {
        let mut ds = dests(&[1, 2, 3, 4]);
        let mut s = TwoChoices::new(9);
        let n = 20_000;
        for _ in 0..n {
            let i = s.schedule(&any_ctx(), &ds).unwrap();
            ds[i].active += 1;
        }
        for d in &ds {
            let got = f64::from(d.active) / f64::from(n);
            let want = f64::from(d.weight()) / 10.0;
            assert!((got - want).abs() < 0.03, "{got} vs {want}");
        }
    }

    #[test]
    fn same_seed_same_choices() {
        let ds = dests(&[1, 2, 3, 4, 5]);
        let mut a = TwoChoices::new(5);
        let mut b = TwoChoices::new(5);
        for _ in 0..100 {
            assert_eq!(a.schedule(&any_ctx(), &ds), b.schedule(&any_ctx(), &ds));
        }
    }
}
