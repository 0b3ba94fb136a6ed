//! Frames waiting for a next hop's MAC address.
//!
//! When the core has rewritten a frame but does not know the next hop's MAC yet, it keeps a
//! copy here instead of dropping it, as the kernel's neighbour code does (`unres_qlen_bytes`,
//! `neigh_resolve_output`): per neighbour a queue of at most [`QUEUE_BYTES`] bytes, the
//! oldest frame dropped first when a new one does not fit. The caller asks the kernel to
//! resolve the address (`NetTable::take_unresolved`), hands the core a fresh `NetTable`, and
//! then [`Director::release_held`] gives back the frames whose neighbour is now known, with
//! their destination MAC written. A queue whose neighbour stays unknown for
//! [`RESOLVE_TIMEOUT`] is dropped.
//!
//! Every frame dropped here counts as `neighbour_unresolved`; held frames are the counter
//! `held` until they leave (forwarded or dropped), so each frame is still counted once.
//!
//! [`Director::release_held`]: crate::Director::release_held

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use lvs_wire::ethernet::EthernetAddress;

use super::CsumOffload;
use crate::net::NetTable;
use crate::time::Time;

/// Bytes of frames held per neighbour: the kernel's default `unres_qlen_bytes`
/// (`SK_WMEM_MAX`, 212,992), counted here as frame bytes rather than buffer sizes.
pub const QUEUE_BYTES: usize = 212_992;
/// Neighbours with held frames at one time; a frame towards one more is dropped.
pub const MAX_NEIGHBOURS: usize = 64;
/// How long a neighbour may stay unresolved before its frames are dropped: the kernel's
/// defaults give up after `mcast_solicit` (3) probes `retrans_time` (1 s) apart.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A frame ready to send: its next hop is resolved and its MAC addresses are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Outgoing interface.
    pub ifindex: u32,
    /// A checksum the NIC must finish, relative to the frame start.
    pub csum: Option<CsumOffload>,
    /// The frame, from its Ethernet header.
    pub frame: Vec<u8>,
}

#[derive(Debug)]
struct Waiting {
    addr: IpAddr,
    since: Time,
    bytes: usize,
    frames: VecDeque<Held>,
}

/// The queues, one per unresolved neighbour.
#[derive(Debug, Default)]
pub(super) struct HoldQueues {
    // A handful of entries at most: a vector is smaller and as fast as a map.
    queues: Vec<Waiting>,
}

impl HoldQueues {
    /// Whether a frame towards `addr` could be held.
    pub fn has_room(&self, addr: IpAddr) -> bool {
        self.queues.len() < MAX_NEIGHBOURS || self.queues.iter().any(|w| w.addr == addr)
    }

    /// Frames held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queues.iter().map(|w| w.frames.len()).sum()
    }

    /// Hold `frame` until `addr` is resolved. Returns how many older frames were dropped to
    /// make room, or `None` when this one cannot be held (larger than a queue, or one
    /// neighbour too many).
    pub fn push(&mut self, now: Time, addr: IpAddr, frame: Held) -> Option<u64> {
        let len = frame.frame.len();
        if len > QUEUE_BYTES {
            return None;
        }
        let w = match self.queues.iter().position(|w| w.addr == addr) {
            Some(i) => &mut self.queues[i],
            None if self.queues.len() < MAX_NEIGHBOURS => {
                self.queues.push(Waiting {
                    addr,
                    since: now,
                    bytes: 0,
                    frames: VecDeque::new(),
                });
                self.queues.last_mut().expect("just pushed")
            }
            None => return None,
        };
        let mut dropped = 0;
        while w.bytes + len > QUEUE_BYTES {
            let Some(old) = w.frames.pop_front() else {
                break;
            };
            w.bytes -= old.frame.len();
            dropped += 1;
        }
        w.bytes += len;
        w.frames.push_back(frame);
        Some(dropped)
    }

    /// Move the frames whose neighbour `net` knows now to `out`, with their destination
    /// MAC written; drop the queues that waited longer than [`RESOLVE_TIMEOUT`]. Returns how
    /// many frames were dropped.
    pub fn release(&mut self, now: Time, net: &NetTable, out: &mut Vec<Held>) -> u64 {
        let mut dropped = 0;
        self.queues.retain_mut(|w| {
            if let Some((ifindex, mac)) = net.neighbour(w.addr) {
                // A frame routed out another interface than the one the neighbour is on
                // now (the routes changed meanwhile) is dropped rather than misdelivered.
                for mut h in w.frames.drain(..) {
                    if h.ifindex == ifindex {
                        write_dst_mac(&mut h.frame, mac);
                        out.push(h);
                    } else {
                        dropped += 1;
                    }
                }
                false
            } else if now.saturating_since(w.since) >= RESOLVE_TIMEOUT {
                dropped += w.frames.len() as u64;
                false
            } else {
                true
            }
        });
        dropped
    }
}

fn write_dst_mac(frame: &mut [u8], mac: EthernetAddress) {
    if let Some(dst) = frame.get_mut(..6) {
        dst.copy_from_slice(&mac.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn held(len: usize) -> Held {
        Held {
            ifindex: 2,
            csum: None,
            frame: vec![0; len],
        }
    }

    fn a(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn released_with_the_mac_once_resolved() {
        let mut q = HoldQueues::default();
        assert_eq!(q.push(Time::ZERO, a(1), held(60)), Some(0));
        assert_eq!(q.push(Time::ZERO, a(1), held(70)), Some(0));
        let mut net = NetTable::default();
        let mut out = Vec::new();
        assert_eq!(q.release(Time::from_secs(1), &net, &mut out), 0);
        assert!(out.is_empty());
        assert_eq!(q.len(), 2);
        net.set_neighbour(a(1), 2, EthernetAddress([2, 0, 0, 0, 0, 9]));
        assert_eq!(q.release(Time::from_secs(1), &net, &mut out), 0);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].frame.len(), 60, "in arrival order");
        assert_eq!(&out[1].frame[..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn the_oldest_frame_goes_when_the_queue_is_full() {
        let mut q = HoldQueues::default();
        let big = QUEUE_BYTES / 2;
        assert_eq!(q.push(Time::ZERO, a(1), held(big)), Some(0));
        assert_eq!(q.push(Time::ZERO, a(1), held(big)), Some(0));
        assert_eq!(q.push(Time::ZERO, a(1), held(100)), Some(1));
        assert_eq!(q.len(), 2);
        assert_eq!(q.push(Time::ZERO, a(1), held(QUEUE_BYTES + 1)), None);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn bounded_neighbours_and_a_timeout() {
        let mut q = HoldQueues::default();
        for n in 0..MAX_NEIGHBOURS {
            assert_eq!(q.push(Time::ZERO, a(n as u8), held(60)), Some(0));
        }
        assert!(!q.has_room(a(200)));
        assert!(q.has_room(a(0)));
        assert_eq!(q.push(Time::ZERO, a(200), held(60)), None);
        let mut out = Vec::new();
        let net = NetTable::default();
        assert_eq!(
            q.release(Time::ZERO + RESOLVE_TIMEOUT, &net, &mut out),
            MAX_NEIGHBOURS as u64
        );
        assert!(out.is_empty());
        assert!(q.has_room(a(200)));
    }
}
