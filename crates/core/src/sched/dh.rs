//! Destination hashing (`ip_vs_dh.c`).

use super::{ASK_CORE, Compiled, SchedCtx, Scheduler, addr_fold, is_available};
use crate::service::Dest;
use crate::types::SchedulerKind;

/// Buckets in the hash table (`IP_VS_DH_TAB_BITS` = 8).
const DH_TAB_SIZE: usize = 256;
/// Empty bucket.
const EMPTY: u32 = u32::MAX;

/// Destination hashing: a static 256-bucket table maps a hash of the packet's destination
/// address to a server. The kernel fills the buckets with the servers in list order, one
/// bucket each, round and round (weights play no part in the table); the hash is
/// `(addr_fold * 2654435761) & 255`. A bucket whose server is quiescent or overloaded
/// yields no server (no fallback, as in IPVS).
#[derive(Debug)]
pub struct DestinationHashing {
    buckets: [u32; DH_TAB_SIZE],
}

impl Default for DestinationHashing {
    fn default() -> DestinationHashing {
        DestinationHashing {
            buckets: [EMPTY; DH_TAB_SIZE],
        }
    }
}

impl DestinationHashing {
    /// A destination-hashing scheduler for a service without servers.
    pub fn new() -> DestinationHashing {
        DestinationHashing::default()
    }
}

/// `ip_vs_dh_hashkey`: the bucket of a destination address (the kernel program's too).
#[inline]
pub(crate) fn bucket(fold: u32) -> usize {
    (fold.wrapping_mul(2_654_435_761) as usize) & (DH_TAB_SIZE - 1)
}

impl Scheduler for DestinationHashing {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Dh
    }

    fn update(&mut self, dests: &[Dest]) {
        let n = dests.len();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            *b = if n == 0 { EMPTY } else { (i % n) as u32 };
        }
    }

    fn schedule(&mut self, ctx: &SchedCtx, dests: &[Dest]) -> Option<usize> {
        let i = self.buckets[bucket(addr_fold(ctx.dst))] as usize;
        is_available(dests, i).then_some(i)
    }

    /// Each bucket's server, or "ask the core" where it is unavailable (no fallback).
    fn compile(&self, dests: &[Dest]) -> Option<Compiled> {
        let buckets = self
            .buckets
            .iter()
            .map(|&b| match b {
                EMPTY => ASK_CORE,
                b if is_available(dests, b as usize) => b,
                _ => ASK_CORE,
            })
            .collect();
        Some(Compiled::DestHash { buckets })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::sched::testutil::*;

    fn to(dst: IpAddr) -> SchedCtx {
        SchedCtx { dst, ..any_ctx() }
    }

    #[test]
    fn same_destination_same_server_and_kernel_buckets() {
        let mut ds = dests(&[1, 5, 1]);
        let mut s = DestinationHashing::new();
        s.update(&ds);
        // 0.0.0.1 * 2654435761 = 0x9E3779B1 -> bucket 0xB1 = 177 -> 177 % 3 = 0.
        let a = IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1));
        assert_eq!(s.schedule(&to(a), &ds), Some(0));
        // 0.0.0.2 -> 0x3C6EF362 -> bucket 0x62 = 98 -> 98 % 3 = 2.
        let b = IpAddr::V4(Ipv4Addr::new(0, 0, 0, 2));
        assert_eq!(s.schedule(&to(b), &ds), Some(2));
        for n in 0..200u32 {
            let d = client(n);
            let first = s.schedule(&to(d), &ds);
            assert_eq!(first, s.schedule(&to(d), &ds));
            // The client address does not matter.
            assert_eq!(
                first,
                s.schedule(
                    &SchedCtx {
                        src: client(n + 1),
                        ..to(d)
                    },
                    &ds
                )
            );
        }
        // Quiescent or overloaded server: no server, no fallback.
        ds[0].config.weight = 0;
        assert_eq!(s.schedule(&to(a), &ds), None);
        ds[0].config.weight = 1;
        ds[2].overloaded = true;
        assert_eq!(s.schedule(&to(b), &ds), None);
        s.update(&[]);
        assert_eq!(s.schedule(&to(a), &ds), None);
    }
}
