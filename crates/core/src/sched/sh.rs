//! Source hashing (`ip_vs_sh.c`), with the `sh-fallback` and `sh-port` flags.

use super::{ASK_CORE, Compiled, SchedCtx, Scheduler, addr_fold, is_available};
use crate::service::Dest;
use crate::types::{SchedFlags, SchedulerKind};

/// Bits of the bucket index (`IP_VS_SH_TAB_BITS` = 8).
const SH_TAB_BITS: u32 = 8;
/// Buckets in the hash table.
const SH_TAB_SIZE: usize = 1 << SH_TAB_BITS;
/// Empty bucket.
const EMPTY: u32 = u32::MAX;
/// The kernel's `GOLDEN_RATIO_32` used by `hash_32`.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// Source hashing: a 256-bucket table maps a hash of the client address (and with
/// `sh-port` the client port) to a server.
///
/// The table is filled as `ip_vs_sh_reassign` does: servers in list order, each taking
/// `weight` consecutive buckets (at least one, so a quiescent server still owns a bucket),
/// round and round until the 256 buckets are full. The hash is
/// `(offset + hash_32(port + addr_fold, 8)) & 255`. A bucket whose server is unavailable
/// (weight 0 or overloaded) yields no server, unless `sh-fallback` is set: then the kernel's
/// deterministic probe sequence (offsets `ihash, ihash+1, ...`) finds another server.
#[derive(Debug)]
pub struct SourceHashing {
    flags: SchedFlags,
    buckets: [u32; SH_TAB_SIZE],
}

impl SourceHashing {
    /// A source-hashing scheduler with the service's flags (`FALLBACK`, `PORT`).
    pub fn new(flags: SchedFlags) -> SourceHashing {
        SourceHashing {
            flags,
            buckets: [EMPTY; SH_TAB_SIZE],
        }
    }
}

/// `ip_vs_sh_hashkey`.
#[inline]
fn sh_hash(fold: u32, port: u16, offset: u32) -> usize {
    let h = u32::from(port)
        .wrapping_add(fold)
        .wrapping_mul(GOLDEN_RATIO_32)
        >> (32 - SH_TAB_BITS);
    (offset.wrapping_add(h) as usize) & (SH_TAB_SIZE - 1)
}

/// The bucket of a client (`ihash`): what the kernel program computes too.
#[inline]
pub(crate) fn bucket(fold: u32, port: u16) -> usize {
    sh_hash(fold, port, 0)
}

impl SourceHashing {
    /// The server for clients hashing to bucket `ihash`: the bucket's own if available,
    /// else (with `sh-fallback`) the first available one on the kernel's probe sequence,
    /// which depends on `ihash` alone (`(offset + 2 * ihash) & 255`, offsets 0, 1, ...).
    fn pick(&self, ihash: usize, dests: &[Dest]) -> Option<usize> {
        let first = self.buckets[ihash];
        if first == EMPTY {
            return None;
        }
        if is_available(dests, first as usize) {
            return Some(first as usize);
        }
        if !self.flags.contains(SchedFlags::FALLBACK) {
            return None;
        }
        for offset in 0..SH_TAB_SIZE {
            let roffset = (offset + ihash) % SH_TAB_SIZE;
            let i = self.buckets[(roffset + ihash) & (SH_TAB_SIZE - 1)];
            if i == EMPTY {
                break;
            }
            if is_available(dests, i as usize) {
                return Some(i as usize);
            }
        }
        None
    }
}

impl Scheduler for SourceHashing {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sh
    }

    fn update(&mut self, dests: &[Dest]) {
        if dests.is_empty() {
            self.buckets = [EMPTY; SH_TAB_SIZE];
            return;
        }
        let mut p = 0usize;
        let mut count = 0u32;
        for b in self.buckets.iter_mut() {
            *b = p as u32;
            count += 1;
            if count >= dests[p].weight() {
                p = (p + 1) % dests.len();
                count = 0;
            }
        }
    }

    fn schedule(&mut self, ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let port = if self.flags.contains(SchedFlags::PORT) {
            ctx.sport
        } else {
            0
        };
        self.pick(bucket(addr_fold(ctx.src), port), dests)
    }

    /// Each bucket's answer, fallback included.
    fn compile(&self, dests: &[Dest]) -> Option<Compiled> {
        let buckets = (0..SH_TAB_SIZE)
            .map(|h| self.pick(h, dests).map_or(ASK_CORE, |i| i as u32))
            .collect();
        Some(Compiled::SourceHash {
            port: self.flags.contains(SchedFlags::PORT),
            buckets,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::sched::testutil::*;

    #[test]
    fn table_filled_by_weight_in_list_order() {
        let ds = dests(&[3, 0, 2]);
        let mut s = SourceHashing::new(SchedFlags::default());
        s.update(&ds);
        // A A A B C C | A A A B C C | ... (the quiescent B keeps one bucket)
        assert_eq!(&s.buckets[..12], &[0, 0, 0, 1, 2, 2, 0, 0, 0, 1, 2, 2]);
        // 256 = 42 * 6 + 4: A gets 42*3 + 3, B 42, C 42*2 + 0... last bucket index 255.
        let count = |i| s.buckets.iter().filter(|&&b| b == i).count();
        assert_eq!((count(0), count(1), count(2)), (129, 43, 84));
    }

    #[test]
    fn kernel_hash_values() {
        // hash_32(1, 8) = (1 * 0x61C88647) >> 24 = 0x61 = 97.
        assert_eq!(sh_hash(1, 0, 0), 97);
        // With port 1 and address 0 it is the same input.
        assert_eq!(sh_hash(0, 1, 0), 97);
        assert_eq!(sh_hash(1, 0, 200), (200 + 97) & 255);
    }

    #[test]
    fn same_client_same_server_fallback_only_with_flag() {
        let mut ds = dests(&[1, 1, 1, 1]);
        let mut plain = SourceHashing::new(SchedFlags::default());
        let mut fb = SourceHashing::new(SchedFlags::FALLBACK);
        plain.update(&ds);
        fb.update(&ds);
        let c = client(42);
        let home = plain.schedule(&ctx(c, 1000), &ds).unwrap();
        for port in [1, 2, 3000, 65535] {
            assert_eq!(plain.schedule(&ctx(c, port), &ds), Some(home));
            assert_eq!(fb.schedule(&ctx(c, port), &ds), Some(home));
        }
        // The home server goes quiescent (without a table rebuild, as while draining).
        ds[home].config.weight = 0;
        assert_eq!(plain.schedule(&ctx(c, 1000), &ds), None);
        let other = fb.schedule(&ctx(c, 1000), &ds).unwrap();
        assert_ne!(other, home);
        assert_eq!(fb.schedule(&ctx(c, 1000), &ds), Some(other)); // deterministic
        ds[home].config.weight = 1;
        ds[home].overloaded = true;
        assert_eq!(plain.schedule(&ctx(c, 1000), &ds), None);
        assert!(fb.schedule(&ctx(c, 1000), &ds).is_some());
        for d in &mut ds {
            d.overloaded = true;
        }
        assert_eq!(fb.schedule(&ctx(c, 1000), &ds), None);
    }

    #[test]
    fn port_flag_spreads_one_client() {
        let ds = dests(&[1, 1, 1, 1, 1, 1, 1, 1]);
        let mut s = SourceHashing::new(SchedFlags::PORT);
        s.update(&ds);
        let c = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        let mut seen = [false; 8];
        for port in 1024..1088 {
            let i = s.schedule(&ctx(c, port), &ds).unwrap();
            assert_eq!(s.schedule(&ctx(c, port), &ds), Some(i));
            seen[i] = true;
        }
        assert!(seen.iter().filter(|&&x| x).count() >= 6, "{seen:?}");
        // Without the flag every port maps to one server.
        let mut s = SourceHashing::new(SchedFlags::default());
        s.update(&ds);
        let home = s.schedule(&ctx(c, 1), &ds);
        assert!((1024..1088).all(|p| s.schedule(&ctx(c, p), &ds) == home));
    }

    #[test]
    fn ipv6_clients() {
        let ds = dests(&[1, 2]);
        let mut s = SourceHashing::new(SchedFlags::default());
        s.update(&ds);
        let c: IpAddr = "2001:db8::42".parse().unwrap();
        let i = s.schedule(&ctx(c, 1), &ds);
        assert!(i.is_some());
        assert_eq!(s.schedule(&ctx(c, 2), &ds), i);
    }
}
