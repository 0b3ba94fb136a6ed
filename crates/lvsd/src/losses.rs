//! What the io layer loses, counted per socket: frames the kernel dropped because a capture
//! ring was full, ring freezes (`TPACKET_V3`), ring slots skipped as malformed, and frames a
//! send (`sendmmsg`) failed for.
//!
//! The kernel's ring statistics (`PACKET_STATISTICS`) reset on every read, and a socket's send
//! counters ([`TxCounters`]) go with the socket. So each worker reads its own sockets on its
//! timer (every [`PUBLISH_EVERY`]), when it closes a socket and when it stops, and adds what
//! changed to totals that outlive the socket: the atomics of a [`SocketLosses`], which only
//! that worker writes and which the metrics and `lvsadm --drops` read ([`Registry::totals`]).
//! Nothing here is on the packet path: the [`Registry`]'s lock is taken when a socket is
//! opened and when the totals are read, never by a worker between two batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lvs_api::DropRow;
use lvs_bpf::maps::Counter;
use lvs_core::{Counters, DropReason};
use lvs_io::{RingStats, TxCounters};

/// How often a worker reads its sockets' statistics.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The kernel program's counters that count frames it lost (the others count what it did).
pub const KERNEL_LOSSES: [Counter; 3] = [Counter::Error, Counter::NewDropped, Counter::EventLost];

/// The rows of `lvsadm --drops`: every drop reason of the core, the frames the core said to
/// send that could not be queued, then each socket's capture ring (`sockets`, by interface
/// and worker), each worker's sends (summed over its sockets), and the kernel program's
/// losses out of `kernel` (its counters by name; empty without the fast path).
pub fn rows(core: &Counters, sockets: &[SocketTotals], kernel: &[(String, u64)]) -> Vec<DropRow> {
    let row = |layer: &str, reason: &str, interface: &str, worker: Option<usize>, count| DropRow {
        layer: layer.into(),
        reason: reason.into(),
        interface: interface.into(),
        worker: worker.map(|w| u32::try_from(w).unwrap_or(u32::MAX)),
        count,
    };
    let mut v: Vec<DropRow> = DropReason::ALL
        .iter()
        .map(|r| row("core", r.name(), "", None, core.drops(*r)))
        .collect();
    v.push(row("send", "not_queued", "", None, core.tx_errors));
    for s in sockets {
        let w = Some(s.worker);
        v.push(row("ring", "full", &s.interface, w, s.ring_drops));
        v.push(row("ring", "freezes", &s.interface, w, s.ring_freezes));
        v.push(row(
            "ring",
            "malformed_slot",
            &s.interface,
            w,
            s.ring_malformed,
        ));
    }
    let mut workers: Vec<usize> = sockets.iter().map(|s| s.worker).collect();
    workers.sort_unstable();
    workers.dedup();
    for w in workers {
        let of = |f: fn(&SocketTotals) -> u64| -> u64 {
            sockets.iter().filter(|s| s.worker == w).map(f).sum()
        };
        v.push(row("send", "enobufs", "", Some(w), of(|s| s.tx_enobufs)));
        v.push(row("send", "eagain", "", Some(w), of(|s| s.tx_eagain)));
        v.push(row("send", "error", "", Some(w), of(|s| s.tx_errors)));
    }
    for c in KERNEL_LOSSES {
        if let Some((_, n)) = kernel.iter().find(|(name, _)| name == c.name()) {
            v.push(row("kernel", c.name(), "", None, *n));
        }
    }
    v
}

/// The totals of one (worker, interface) socket since lvsd started, its successors on the
/// same interface included (an interface that goes and comes back continues its counts).
#[derive(Debug, Default)]
pub struct SocketLosses {
    /// Frames the kernel offered to the capture ring, dropped ones included (`tp_packets`).
    ring_packets: AtomicU64,
    /// Frames the kernel dropped because the ring had no free slot (`tp_drops`).
    ring_drops: AtomicU64,
    /// Times the ring froze: every block held by lvsd (`tp_freeze_q_cnt`, `TPACKET_V3` only).
    ring_freezes: AtomicU64,
    /// Ring slots skipped because their offsets did not lie inside their block.
    ring_malformed: AtomicU64,
    /// Frames the kernel accepted from the socket's sends.
    tx_sent: AtomicU64,
    /// Frames lost to `ENOBUFS` (qdisc or device queue full).
    tx_enobufs: AtomicU64,
    /// Frames lost to `EAGAIN` (socket send buffer full).
    tx_eagain: AtomicU64,
    /// Frames lost to any other send error.
    tx_errors: AtomicU64,
}

/// A copy of one socket's totals, as the metrics and `lvsadm --drops` show them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketTotals {
    /// The data path worker (0-based).
    pub worker: usize,
    /// The interface the socket receives on.
    pub interface: String,
    /// See [`SocketLosses`].
    pub ring_packets: u64,
    /// Frames dropped, ring full.
    pub ring_drops: u64,
    /// Ring freezes.
    pub ring_freezes: u64,
    /// Malformed ring slots.
    pub ring_malformed: u64,
    /// Frames sent.
    pub tx_sent: u64,
    /// Frames lost to `ENOBUFS`.
    pub tx_enobufs: u64,
    /// Frames lost to `EAGAIN`.
    pub tx_eagain: u64,
    /// Frames lost to other send errors.
    pub tx_errors: u64,
}

impl SocketLosses {
    fn totals(&self, worker: usize, interface: &str) -> SocketTotals {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SocketTotals {
            worker,
            interface: interface.to_string(),
            ring_packets: get(&self.ring_packets),
            ring_drops: get(&self.ring_drops),
            ring_freezes: get(&self.ring_freezes),
            ring_malformed: get(&self.ring_malformed),
            tx_sent: get(&self.tx_sent),
            tx_enobufs: get(&self.tx_enobufs),
            tx_eagain: get(&self.tx_eagain),
            tx_errors: get(&self.tx_errors),
        }
    }
}

/// Every socket's totals, by worker and interface.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Mutex<Vec<(usize, String, Arc<SocketLosses>)>>,
}

impl Registry {
    /// The tally a worker keeps for its socket on `interface` (a new socket: nothing read from
    /// it yet), adding to the totals of earlier sockets of the same worker and interface.
    pub fn tally(&self, worker: usize, interface: &str) -> Tally {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let losses = match entries
            .iter()
            .find(|(w, i, _)| *w == worker && i == interface)
        {
            Some((_, _, l)) => Arc::clone(l),
            None => {
                let l = Arc::new(SocketLosses::default());
                entries.push((worker, interface.to_string(), Arc::clone(&l)));
                l
            }
        };
        Tally {
            interface: interface.to_string(),
            losses,
            tx: TxCounters::default(),
            malformed: 0,
        }
    }

    /// Every socket's totals, sorted by interface, then worker.
    pub fn totals(&self) -> Vec<SocketTotals> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<SocketTotals> = entries.iter().map(|(w, i, l)| l.totals(*w, i)).collect();
        v.sort_by(|a, b| (&a.interface, a.worker).cmp(&(&b.interface, b.worker)));
        v
    }
}

/// A worker's handle on one socket's totals, with what it has already added of the socket's
/// own running counters.
#[derive(Debug)]
pub struct Tally {
    /// The socket's interface.
    interface: String,
    losses: Arc<SocketLosses>,
    /// The socket's send counters when last published.
    tx: TxCounters,
    /// The socket's malformed-slot count when last published.
    malformed: u64,
}

impl Tally {
    /// Add one reading: `ring` as `AfPacket::stats` returns it (the kernel's counts since the
    /// previous read, and the socket's malformed slots since it opened) and `tx`, the socket's
    /// send counters since it opened.
    pub fn publish(&mut self, ring: RingStats, tx: TxCounters) {
        let l = &self.losses;
        let add = |a: &AtomicU64, n: u64| {
            if n > 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&l.ring_packets, u64::from(ring.packets));
        add(&l.ring_drops, u64::from(ring.drops));
        add(&l.ring_freezes, u64::from(ring.freeze_count));
        add(
            &l.ring_malformed,
            ring.malformed.saturating_sub(self.malformed),
        );
        add(&l.tx_sent, tx.sent.saturating_sub(self.tx.sent));
        add(&l.tx_enobufs, tx.enobufs.saturating_sub(self.tx.enobufs));
        add(&l.tx_eagain, tx.eagain.saturating_sub(self.tx.eagain));
        add(&l.tx_errors, tx.errors.saturating_sub(self.tx.errors));
        self.malformed = ring.malformed;
        self.tx = tx;
    }

    /// Count this socket's losses under a new interface name from now on (its interface was
    /// renamed): what it lost so far stays under the old name, and what its running counters
    /// had reached is not counted again.
    pub fn rename(&mut self, registry: &Registry, worker: usize, interface: &str) {
        let fresh = registry.tally(worker, interface);
        self.interface = fresh.interface;
        self.losses = fresh.losses;
    }

    /// The socket's interface.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Frames this socket's ring dropped so far (all sockets of its worker and interface).
    pub fn ring_drops(&self) -> u64 {
        self.losses.ring_drops.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(packets: u32, drops: u32, freeze_count: u32, malformed: u64) -> RingStats {
        RingStats {
            packets,
            drops,
            freeze_count,
            malformed,
        }
    }

    fn tx(sent: u64, enobufs: u64, eagain: u64, errors: u64) -> TxCounters {
        TxCounters {
            sent,
            enobufs,
            eagain,
            errors,
            ..TxCounters::default()
        }
    }

    #[test]
    fn ring_readings_add_up_and_running_counters_add_only_what_changed() {
        let reg = Registry::default();
        let mut t = reg.tally(0, "eth0");
        // PACKET_STATISTICS resets on read: each reading is new frames. The malformed count
        // and the send counters run since the socket opened: only the difference is new.
        t.publish(ring(10, 2, 1, 3), tx(5, 1, 0, 0));
        t.publish(ring(7, 0, 0, 3), tx(9, 1, 2, 1));
        t.publish(ring(0, 4, 0, 4), tx(9, 1, 2, 1));
        assert_eq!(
            reg.totals(),
            [SocketTotals {
                worker: 0,
                interface: "eth0".into(),
                ring_packets: 17,
                ring_drops: 6,
                ring_freezes: 1,
                ring_malformed: 4,
                tx_sent: 9,
                tx_enobufs: 1,
                tx_eagain: 2,
                tx_errors: 1,
            }]
        );
        assert_eq!(t.ring_drops(), 6);
    }

    #[test]
    fn a_new_socket_on_the_same_interface_continues_the_totals() {
        let reg = Registry::default();
        let mut first = reg.tally(1, "eth1");
        first.publish(ring(100, 10, 0, 2), tx(50, 0, 0, 3));
        drop(first);
        // The interface went and came back: a fresh socket, whose counters start from 0.
        let mut second = reg.tally(1, "eth1");
        second.publish(ring(5, 1, 0, 1), tx(4, 0, 0, 1));
        let t = &reg.totals()[0];
        assert_eq!(
            (t.ring_packets, t.ring_drops, t.ring_malformed),
            (105, 11, 3)
        );
        assert_eq!((t.tx_sent, t.tx_errors), (54, 4));
    }

    #[test]
    fn a_renamed_interface_counts_on_under_its_new_name() {
        let reg = Registry::default();
        let mut t = reg.tally(0, "eth9");
        t.publish(ring(10, 3, 0, 1), tx(20, 2, 0, 0));
        t.rename(&reg, 0, "eth8");
        // The same socket: its running counters go on from where they were.
        t.publish(ring(5, 1, 0, 1), tx(25, 2, 0, 0));
        let totals = reg.totals();
        let get = |name: &str| totals.iter().find(|x| x.interface == name).unwrap();
        assert_eq!((get("eth9").ring_drops, get("eth9").tx_sent), (3, 20));
        assert_eq!((get("eth8").ring_packets, get("eth8").ring_drops), (5, 1));
        assert_eq!(
            (
                get("eth8").tx_sent,
                get("eth8").tx_enobufs,
                get("eth8").ring_malformed
            ),
            (5, 0, 0)
        );
        assert_eq!(t.interface(), "eth8");
    }

    #[test]
    fn totals_are_per_worker_and_interface_sorted() {
        let reg = Registry::default();
        reg.tally(1, "eth0")
            .publish(ring(1, 1, 0, 0), tx(0, 0, 0, 0));
        reg.tally(0, "eth1")
            .publish(ring(2, 0, 0, 0), tx(0, 0, 0, 0));
        reg.tally(0, "eth0")
            .publish(ring(3, 0, 0, 0), tx(0, 0, 0, 0));
        let keys: Vec<(String, usize, u64)> = reg
            .totals()
            .into_iter()
            .map(|t| (t.interface, t.worker, t.ring_packets))
            .collect();
        assert_eq!(
            keys,
            [
                ("eth0".into(), 0, 3),
                ("eth0".into(), 1, 1),
                ("eth1".into(), 0, 2)
            ]
        );
    }

    #[test]
    fn rows_name_every_drop_reason_every_ring_every_worker_and_the_kernel_losses() {
        let mut core = Counters::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            core.drops[*r as usize] = i as u64 + 1;
        }
        core.tx_errors = 7;
        let sock = |worker, interface: &str, drops, errors| SocketTotals {
            worker,
            interface: interface.into(),
            ring_drops: drops,
            tx_errors: errors,
            tx_eagain: 1,
            ..SocketTotals::default()
        };
        let sockets = [
            sock(0, "eth0", 5, 1),
            sock(1, "eth0", 0, 0),
            sock(0, "eth1", 2, 2),
        ];
        let kernel: Vec<(String, u64)> = [("rx", 100), ("error", 3), ("event_lost", 4)]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        let rows = rows(&core, &sockets, &kernel);
        let find = |layer: &str, reason: &str, interface: &str, worker: Option<u32>| {
            rows.iter()
                .find(|r| {
                    r.layer == layer
                        && r.reason == reason
                        && r.interface == interface
                        && r.worker == worker
                })
                .map(|r| r.count)
        };
        // Every reason of the core, whatever the list holds now, with its own count.
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(find("core", r.name(), "", None), Some(i as u64 + 1), "{r}");
        }
        assert_eq!(find("send", "not_queued", "", None), Some(7));
        assert_eq!(find("ring", "full", "eth0", Some(0)), Some(5));
        assert_eq!(find("ring", "full", "eth0", Some(1)), Some(0));
        assert_eq!(find("ring", "full", "eth1", Some(0)), Some(2));
        assert_eq!(find("ring", "freezes", "eth1", Some(0)), Some(0));
        // Sends by worker, over its sockets.
        assert_eq!(find("send", "error", "", Some(0)), Some(3));
        assert_eq!(find("send", "eagain", "", Some(0)), Some(2));
        assert_eq!(find("send", "eagain", "", Some(1)), Some(1));
        // The kernel's losses only, as many as it reports.
        assert_eq!(find("kernel", "error", "", None), Some(3));
        assert_eq!(find("kernel", "event_lost", "", None), Some(4));
        assert_eq!(find("kernel", "rx", "", None), None);
        assert_eq!(find("kernel", "new_flows_dropped", "", None), None);
        assert_eq!(
            rows.len(),
            DropReason::ALL.len() + 1 + 3 * 3 + 2 * 3 + 2,
            "{rows:#?}"
        );
    }

    #[test]
    fn a_running_counter_that_went_back_adds_nothing_then_counts_on() {
        // Running counters never go back; if one did (restarted), the totals must not, and
        // what it counts from its new start is added.
        let reg = Registry::default();
        let mut t = reg.tally(0, "eth0");
        t.publish(ring(0, 0, 0, 5), tx(10, 2, 0, 0));
        t.publish(ring(0, 0, 0, 1), tx(3, 0, 0, 0));
        assert_eq!(reg.totals()[0].ring_malformed, 5);
        assert_eq!(reg.totals()[0].tx_sent, 10);
        t.publish(ring(0, 0, 0, 6), tx(12, 2, 0, 0));
        let totals = &reg.totals()[0];
        assert_eq!(totals.ring_malformed, 10);
        assert_eq!((totals.tx_sent, totals.tx_enobufs), (19, 4));
    }
}
