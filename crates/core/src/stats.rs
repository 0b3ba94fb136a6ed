//! Typed traffic counters for services and real servers.

/// Connections, packets and bytes in both directions, as IPVS keeps per service and per
/// real server. "In" is client → real server, "out" is real server → client (seen only in
/// NAT, since DR and Tun replies bypass the director).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → real server.
    pub inpkts: u64,
    /// Packets real server → client.
    pub outpkts: u64,
    /// Bytes client → real server (IP packet length, as IPVS counts).
    pub inbytes: u64,
    /// Bytes real server → client.
    pub outbytes: u64,
}

impl Stats {
    /// Count one packet of `bytes` bytes going in.
    #[inline]
    pub fn count_in(&mut self, bytes: usize) {
        self.inpkts += 1;
        self.inbytes += bytes as u64;
    }

    /// Count one packet of `bytes` bytes going out.
    #[inline]
    pub fn count_out(&mut self, bytes: usize) {
        self.outpkts += 1;
        self.outbytes += bytes as u64;
    }

    /// Add another set of counters to this one.
    pub fn add(&mut self, other: &Stats) {
        self.conns += other.conns;
        self.inpkts += other.inpkts;
        self.outpkts += other.outpkts;
        self.inbytes += other.inbytes;
        self.outbytes += other.outbytes;
    }
}

/// Per-second rates as `ipvsadm -L --rate` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets per second in.
    pub inpps: u64,
    /// Packets per second out.
    pub outpps: u64,
    /// Bytes per second in.
    pub inbps: u64,
    /// Bytes per second out.
    pub outbps: u64,
}

/// The IPVS rate estimator (`ip_vs_est.c`): every 2 s the counters' growth is folded into an
/// exponentially weighted moving average with weight 1/4, in the kernel's fixed point
/// (connections and packets scaled by 2^10 per second, bytes by 2^5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Stats,
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

/// The estimator's period.
pub const ESTIMATOR_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

impl Estimator {
    /// Start estimating from the current counters.
    pub fn new(now: &Stats) -> Estimator {
        Estimator {
            last: *now,
            ..Estimator::default()
        }
    }

    /// One 2-second tick with the current counters.
    pub fn tick(&mut self, s: &Stats) {
        fn step(avg: &mut i64, cur: u64, last: u64, shift: u32) {
            let rate = (cur.wrapping_sub(last) as i64).wrapping_shl(shift);
            *avg += (rate - *avg) >> 2;
        }
        step(&mut self.cps, s.conns, self.last.conns, 9);
        step(&mut self.inpps, s.inpkts, self.last.inpkts, 9);
        step(&mut self.outpps, s.outpkts, self.last.outpkts, 9);
        step(&mut self.inbps, s.inbytes, self.last.inbytes, 4);
        step(&mut self.outbps, s.outbytes, self.last.outbytes, 4);
        self.last = *s;
    }

    /// The rates, rounded as the kernel reports them.
    pub fn rates(&self) -> Rates {
        let r10 = |v: i64| (v.max(0) as u64 + 0x1ff) >> 10;
        let r5 = |v: i64| (v.max(0) as u64 + 0xf) >> 5;
        Rates {
            cps: r10(self.cps),
            inpps: r10(self.inpps),
            outpps: r10(self.outpps),
            inbps: r5(self.inbps),
            outbps: r5(self.outbps),
        }
    }

    /// Forget history (`-Z`).
    pub fn reset(&mut self, now: &Stats) {
        *self = Estimator::new(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steady traffic: the estimate approaches the true rate as the IPVS formula says:
    /// after n ticks, avg = rate * (1 - (3/4)^n) in the kernel's fixed point.
    #[test]
    fn converges_like_the_kernel_formula() {
        let mut s = Stats::default();
        let mut e = Estimator::new(&s);
        // 100 conns/s, 1000 pkts/s in, 1 MB/s in, for 2-second ticks.
        let mut expect_cps: i64 = 0;
        for n in 1..=40 {
            s.conns += 200;
            s.inpkts += 2000;
            s.inbytes += 2_000_000;
            e.tick(&s);
            expect_cps += ((200i64 << 9) - expect_cps) >> 2;
            assert_eq!(e.cps, expect_cps, "tick {n}");
        }
        let r = e.rates();
        assert_eq!((r.cps, r.inpps, r.outpps), (100, 1000, 0));
        // The kernel's truncating shifts leave the byte average a hair below the true rate.
        assert!(r.inbps <= 1_000_000 && r.inbps > 999_900, "{}", r.inbps);
        // After one tick at steady 100/s from zero, IPVS shows 25/s (weight 1/4).
        let mut s2 = Stats::default();
        let mut e2 = Estimator::new(&s2);
        s2.conns += 200;
        e2.tick(&s2);
        assert_eq!(e2.rates().cps, 25);
        // Traffic stops: decays by 3/4 per tick.
        let before = e.cps;
        e.tick(&s);
        assert_eq!(e.cps, before + ((-before) >> 2));
    }
}
