//! The kernel fast path as lvsd drives it (`--datapath tc|xdp|auto`): the BPF programs of
//! `lvs-bpf` attached at tc ingress of every served interface (and at XDP in front of it where
//! [`XdpPolicy`] says so), and as the filter of every AF_PACKET socket, kept in step with the
//! core.
//!
//! The core stays the owner of every connection. New flows of a service whose scheduler
//! compiles into a table (rr, wrr, fo, sh, dh, mh; no persistence, no thresholds) are
//! scheduled by the kernel program following the core's own table
//! ([`FastPath::services_changed`] installs them after every change), and reported; the core
//! takes each into its table ([`Director::adopt_new`]) and, for rr/wrr, moves its scheduler
//! in step. Other new flows go through `Director::process` (user space schedules them);
//! [`FastPath::sync`] then installs the connection's entries from the core's journal, and the
//! kernel forwards the rest of the flow without a copy. Back from the kernel come TCP state
//! changes (ring buffer, applied to the core so ActiveConn/InActConn and timeouts stay exact),
//! per-real-server packets and bytes (folded into the core's counters each tick, so listings,
//! rates and metrics include them) and each entry's last-seen time (consulted when the core's
//! timer says a connection is due). What the core removes leaves the maps in the same pass.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lvs_bpf::maps::{Action, ConnEntry, Counter, Event, EventKind, F_NO_OUTPUT, Flow, StatsEntry};
use lvs_bpf::services::Tables;
use lvs_bpf::{Datapath, Options, Prog, TcAttachment, XdpAttachment, compile};
use lvs_core::conn::{Conn, ConnId, FlowKey, TcpState};
use lvs_core::director::{AdoptError, Adoptee, Journal};
use lvs_core::net::NetTable;
use lvs_core::stats::Stats;
use lvs_core::types::ForwardMethod;
use lvs_core::types::Protocol;
use lvs_core::{Director, Time};
use lvs_io::AfPacket;
use tracing::{info, warn};

/// Real-server counter slots in the kernel's per-CPU stats map.
const STATS_SLOTS: u32 = 1 << 16;
/// Entries for the services' compiled scheduler tables (8 MiB): an mh service takes 65537
/// (twice while its table is replaced), a rr/wrr one its cycle.
const SCHED_SLOTS: u32 = 1 << 21;
/// The slot of entries no real server of this core owns yet (adopted from a predecessor and
/// not matched to a service): never handed out, never folded.
const UNATTRIBUTED: u32 = STATS_SLOTS - 1;
/// The least time between two searches of the connection map for flows whose report was
/// lost (each reads the whole map).
const LOST_SCAN: std::time::Duration = std::time::Duration::from_secs(5);
/// How often entries left by a predecessor and not adopted are checked for idleness.
const ORPHAN_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The kernel's per-real-server counters for one (service, real server) of the core.
struct Slot {
    index: u32,
    /// What the kernel had counted when last folded into the core.
    folded: StatsEntry,
}

/// Where `lvs_xdp` goes in front of `lvs_tc_ingress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpPolicy {
    /// Nowhere (`--datapath tc`).
    Off,
    /// On every interface that is no virtual link (a NIC) and takes a native XDP program
    /// (`--datapath auto`). A veth is left to tc: frames from a local stack reach XDP with
    /// partial checksums it cannot finish.
    Nics,
    /// On every interface, or lvsd does not start (`--datapath xdp`).
    Everywhere,
}

/// The fast path's programs on one interface.
#[derive(Debug)]
pub struct Attachment {
    /// At tc ingress: always (it handles what XDP passes up).
    pub tc: TcAttachment,
    /// At XDP, in front.
    pub xdp: Option<XdpAttachment>,
}

impl Attachment {
    /// The interface.
    pub fn ifindex(&self) -> u32 {
        self.tc.ifindex
    }

    /// Which programs forward here (for the logs and `lvsadm`).
    pub fn datapath(&self) -> &'static str {
        if self.xdp.is_some() { "xdp" } else { "tc" }
    }

    /// Remove both programs (XDP first, so that nothing is forwarded without tc behind it),
    /// and the clsact qdisc if attaching created it.
    pub fn detach(self) -> Result<()> {
        let ifindex = self.ifindex();
        let xdp = self.xdp.map(XdpAttachment::detach).transpose();
        let tc = self.tc.detach();
        xdp.with_context(|| format!("interface {ifindex}"))?;
        tc.with_context(|| format!("interface {ifindex}"))?;
        Ok(())
    }
}

/// What the kernel fast path did since start, for `lvsadm`'s counters and the metrics.
pub type KernelCounters = Vec<(String, u64)>;

/// The loaded programs, where they are attached, and the bookkeeping between the maps and
/// the core.
pub struct FastPath {
    dp: Datapath,
    xdp: XdpPolicy,
    /// The interfaces `lvs_xdp` is attached to: the only ones it may redirect to (a device
    /// without XDP of its own — a veth whose peer has neither XDP nor GRO, a VLAN, many
    /// NIC drivers — drops a redirected frame after the program returned).
    xdp_on: std::cell::RefCell<BTreeSet<u32>>,
    /// The neighbours last given to `lvs_xdp`.
    neighbours: Option<std::collections::BTreeMap<std::net::Ipv4Addr, lvs_bpf::maps::NeighEntry>>,
    journal: Journal,
    touched: HashSet<ConnId>,
    events: Vec<Event>,
    /// The services' scheduler tables in the kernel.
    tables: Tables,
    /// The routes last given to the program.
    routes: Option<Vec<(lvs_bpf::maps::RouteKey, lvs_bpf::maps::RouteEntry)>>,
    /// Generations of the tables installed now: a new flow chosen from one of them moves
    /// the core's scheduler on (it was compiled from the scheduler's present state).
    current_tables: HashSet<u32>,
    /// Services (core slots) the kernel schedules from a sequence (rr, wrr, fo): a new
    /// connection the core schedules itself moves the core's position, so their tables are
    /// made again.
    sequences: HashSet<u32>,
    /// New flows the kernel scheduled that the core could not take (its service or server
    /// went meanwhile, or its table is full): their entries are removed.
    new_not_adopted: u64,
    /// Events lost so far (ring full): when this grows, the map is searched for flows the
    /// core does not know (at most every `LOST_SCAN`).
    events_lost_seen: u64,
    next_lost_scan: Time,
    /// Services in the kernel / in the core, as last logged.
    split_logged: (usize, usize),
    slots: HashMap<(u32, u32), Slot>,
    free_slots: Vec<u32>,
    next_slot: u32,
    /// `CLOCK_MONOTONIC` (the kernel program's clock) at the core's `Time::ZERO`.
    origin_ns: u64,
    /// Entries the kernel map refused (full, or an error): those connections stay on the
    /// user-space path.
    install_failures: u64,
    /// Map operations that failed otherwise (logged once each kind).
    errors_logged: std::cell::Cell<bool>,
    /// Client-side entries a predecessor left in the adopted map that no connection of
    /// this core matches yet (their service may not be configured yet).
    orphans: Vec<(Flow, ConnEntry)>,
    /// Connections taken over from a predecessor.
    adopted: u64,
    next_orphan_check: Time,
}

/// Nanoseconds of `CLOCK_MONOTONIC` now.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

impl FastPath {
    /// Load and verify the programs (the kernel's verifier runs here), sized for a core
    /// holding `conn_limit` connections; `now` is the core's time at this moment. If a
    /// predecessor's program is still attached to one of `served` (it was killed, or kept
    /// forwarding on exit), its connection map becomes this one's: the flows in it keep
    /// going through the switch-over and are adopted once their services exist here.
    pub fn load(conn_limit: usize, now: Time, served: &[u32], xdp: XdpPolicy) -> Result<FastPath> {
        let entries = u32::try_from(conn_limit.saturating_mul(2)).unwrap_or(u32::MAX);
        let dp = Datapath::load(&Options {
            conn_entries: entries,
            stats_slots: STATS_SLOTS,
            sched_slots: SCHED_SLOTS,
            test_mode: false,
            adopt_from: served,
        })
        .context("cannot load the kernel fast path")?;
        let mut orphans = Vec::new();
        if let Some(layout) = dp.foreign_layout() {
            warn!(
                predecessor_layout = layout,
                ours = lvs_bpf::maps::LAYOUT,
                "the kernel fast path left by the previous lvsd keeps its connections in another layout: they are not adopted, so its flows break"
            );
        }
        if let Some(ifindex) = dp.adopted_from() {
            for (flow, mut entry) in dp.entries() {
                if entry.action == Action::NatOut {
                    continue; // rewritten or removed with its client-side entry
                }
                // Until it is matched, its traffic is nobody's here.
                entry.stats = UNATTRIBUTED;
                let _ = dp.insert(&flow, &entry);
                orphans.push((flow, entry));
            }
            info!(
                ifindex,
                connections = orphans.len(),
                "kernel fast path: took over the connection map of the previous lvsd; its flows keep being forwarded and are adopted as their services are configured"
            );
        }
        Ok(FastPath {
            xdp,
            xdp_on: std::cell::RefCell::new(BTreeSet::new()),
            neighbours: None,
            tables: Tables::new(dp.sched_slots()),
            routes: None,
            current_tables: HashSet::new(),
            sequences: HashSet::new(),
            new_not_adopted: 0,
            events_lost_seen: 0,
            next_lost_scan: now,
            split_logged: (0, 0),
            orphans,
            adopted: 0,
            next_orphan_check: now + ORPHAN_CHECK,
            dp,
            journal: Journal::default(),
            touched: HashSet::new(),
            events: Vec::new(),
            slots: HashMap::new(),
            free_slots: Vec::new(),
            next_slot: 0,
            origin_ns: monotonic_ns().saturating_sub(now.as_nanos()),
            install_failures: 0,
            errors_logged: std::cell::Cell::new(false),
        })
    }

    /// Filter an AF_PACKET socket so it receives only what the kernel will not forward.
    pub fn filter(&self, sock: &AfPacket) -> Result<()> {
        self.dp
            .with_program_fd(Prog::SockFilter, |fd| sock.attach_bpf_filter(fd))?
            .with_context(|| {
                format!(
                    "cannot attach {} to the AF_PACKET socket of interface {}",
                    Prog::SockFilter.name(),
                    sock.ifindex()
                )
            })
    }

    /// Attach the forwarding program at tc ingress of `ifindex`, and `lvs_xdp` in front of it
    /// as the [`XdpPolicy`] says. The attachment stays with the caller (the thread that made
    /// it): pass it to [`detach`] at the end.
    pub fn attach(&self, ifindex: u32, name: &str) -> Result<Attachment> {
        let tc = self
            .dp
            .attach_tc(ifindex)
            .with_context(|| format!("cannot attach the fast path to {name}"))?;
        // `None`: not known (no XDP for `auto`); `Some(None)`: a NIC; `Some(Some(kind))`: a
        // virtual link.
        let link = lvs_io::netlink::dump()
            .ok()
            .and_then(|s| s.link(ifindex).map(|l| l.kind.clone()));
        let kind = link.clone().flatten();
        let xdp = match self.xdp {
            XdpPolicy::Off => None,
            XdpPolicy::Nics if link.is_none() => {
                info!(
                    interface = name,
                    "netlink did not tell what kind of link this is: forwarding at tc ingress, not XDP"
                );
                None
            }
            XdpPolicy::Nics if kind.is_some() => {
                info!(
                    interface = name,
                    kind = kind.as_deref().unwrap_or(""),
                    "a virtual link: forwarding at tc ingress, not XDP"
                );
                None
            }
            XdpPolicy::Nics => match self.dp.attach_xdp(ifindex) {
                Ok(x) => Some(x),
                Err(e) => {
                    info!(interface = name, reason = %e, "no native XDP here: forwarding at tc ingress");
                    None
                }
            },
            XdpPolicy::Everywhere => match self.dp.attach_xdp(ifindex) {
                Ok(x) => {
                    if kind.as_deref() == Some("veth") {
                        warn!(
                            interface = name,
                            "XDP on a veth: frames a local stack sends through it carry partial checksums XDP cannot finish (the receiver drops them) unless the sender has checksum offload off (ethtool -K <peer> tx off)"
                        );
                    }
                    Some(x)
                }
                Err(e) => {
                    let _ = tc.detach();
                    return Err(anyhow::Error::new(e)).with_context(|| {
                        format!("--datapath xdp: cannot attach XDP to {name} (use --datapath tc or auto there)")
                    });
                }
            },
        };
        if xdp.is_none() {
            remove_predecessor_xdp(ifindex, name);
        }
        let a = Attachment { tc, xdp };
        if a.xdp.is_some() {
            self.xdp_on.borrow_mut().insert(ifindex);
        }
        info!(
            interface = name,
            datapath = a.datapath(),
            created_qdisc = a.tc.created_qdisc,
            "kernel fast path attached"
        );
        Ok(a)
    }

    /// Remove `a` (see [`Attachment::detach`]); `lvs_xdp` no longer redirects to its
    /// interface once the neighbours are set again ([`FastPath::set_neighbours`]).
    pub fn detach(&self, a: Attachment) -> Result<()> {
        self.xdp_on.borrow_mut().remove(&a.ifindex());
        a.detach()
    }

    /// The data path's name for listings: `xdp` while `lvs_xdp` forwards somewhere, else `tc`.
    pub fn name(&self) -> &'static str {
        if self.xdp_on.borrow().is_empty() {
            "tc"
        } else {
            "xdp"
        }
    }

    /// Give `lvs_xdp` the core's neighbours on the interfaces it is attached to (after every
    /// change of the network view and of the attachments); only what changed is written.
    pub fn set_neighbours(&mut self, net: &NetTable) {
        let mut n = compile::neighbours(net);
        let on = self.xdp_on.borrow().clone();
        n.retain(|_, e| on.contains(&e.ifindex));
        let macs = on
            .iter()
            .filter_map(|&i| Some((i, net.interface(i)?.mac.0)))
            .collect();
        if let Err(e) = self.dp.set_interface_macs(&macs) {
            // lvs_xdp passes the frames of an interface it has no MAC for up to tc.
            warn!(error = %e, "cannot give the XDP program its interfaces' MACs");
        }
        if self.neighbours.as_ref() == Some(&n) {
            return;
        }
        match self.dp.set_neighbours(&n) {
            Ok(()) => self.neighbours = Some(n),
            Err(e) => {
                // Tried again at the next update; meanwhile lvs_xdp passes what it cannot
                // send to tc, which needs no MAC.
                self.neighbours = None;
                warn!(error = %e, "cannot update the XDP program's neighbours");
            }
        }
    }

    /// The neighbours `lvs_xdp` sends to that the kernel has not confirmed lately (interface,
    /// address). Frames sent from XDP never pass the kernel's neighbour code, so nothing
    /// would ever re-check them: a next hop that changed its MAC without a gratuitous ARP
    /// would get the old one for good. The caller asks the kernel to re-check them
    /// (`NTF_USE`: STALE → DELAY → PROBE, as for its own traffic); one whose probes fail
    /// leaves the table, and with it `lvs_neigh`, so tc resolves it anew.
    pub fn stale_neighbours(&self, net: &NetTable) -> Vec<(u32, std::net::IpAddr)> {
        self.neighbours
            .iter()
            .flatten()
            .map(|(addr, e)| (e.ifindex, std::net::IpAddr::V4(*addr)))
            .filter(|(_, addr)| !net.confirmed(*addr))
            .collect()
    }

    /// Give the program the core's routes (after every change of the network view).
    /// Returns whether they changed (a neighbour-only update changes nothing here, and
    /// leaves every entry's cached route valid).
    pub fn set_routes(&mut self, net: &NetTable) -> bool {
        let routes = compile::routes(net);
        if self.routes.as_ref() == Some(&routes) {
            return false;
        }
        if let Err(e) = self.dp.set_routes(&routes) {
            warn!(error = %e, "cannot update the fast path's routes; flows needing them stay in user space");
            // Tried again at the next update; the service tables are remade from what the
            // core knows, so a new flow the kernel cannot route still reaches the core.
            self.routes = None;
            return true;
        }
        self.routes = Some(routes);
        true
    }

    fn core_time(&self, kernel_ns: u64) -> Time {
        Time::from_nanos(kernel_ns.saturating_sub(self.origin_ns))
    }

    /// Exchange what changed since the last call: the kernel's TCP state changes into the
    /// core, then the core's new, moved and removed connections into the maps.
    pub fn sync(&mut self, director: &mut Director, now: Time) {
        let mut rescheduled = false;
        self.events.clear();
        if let Err(e) = self.dp.drain_events(&mut self.events) {
            self.log_error("cannot read the fast path's state changes", &e);
        }
        let events = std::mem::take(&mut self.events);
        for e in &events {
            let Some(state) = TcpState::from_index(usize::from(e.new_state)) else {
                continue;
            };
            let at = self.core_time(e.ns).min(now);
            match e.kind {
                EventKind::State => {
                    let output_seen = e.flags & F_NO_OUTPUT == 0;
                    if let Some(key) = flow_key(&e.flow) {
                        director.observe_state(&key, state, output_seen, at);
                    }
                }
                EventKind::New {
                    generation,
                    action,
                    addr,
                    port,
                } => self.take_new(director, e, state, generation, action, addr, port, now),
            }
        }
        self.events = events;
        director.swap_journal(&mut self.journal);
        if self.journal.is_empty() {
            return;
        }
        for c in &self.journal.removed {
            for f in compile::flows(c) {
                if let Err(e) = self.dp.remove(&f) {
                    self.log_error("cannot remove a fast path entry", &e);
                }
            }
        }
        let seen_ns = self.origin_ns.saturating_add(now.as_nanos());
        let mut touched = std::mem::take(&mut self.touched);
        touched.clear();
        let ids = std::mem::take(&mut self.journal.touched);
        for &id in &ids {
            if !touched.insert(id) {
                continue;
            }
            let Some(c) = director.conns().get(id) else {
                continue;
            };
            let Some(slot) = self.slot(c.svc, c.dest) else {
                self.install_failures += 1;
                continue;
            };
            let Some(entries) = compile::conn_entries(c, slot, seen_ns) else {
                continue;
            };
            // A connection of a kernel-sequence service new to the kernel: the core chose
            // (the packet was too big for the kernel, ...) and its position moved.
            if self.sequences.contains(&c.svc)
                && entries
                    .first()
                    .is_some_and(|(f, _)| matches!(self.dp.entry(f), Ok(None)))
            {
                rescheduled = true;
            }
            for (flow, entry) in entries {
                if self.dp.insert(&flow, &entry).is_err() {
                    // Full map (or out of memory): the connection stays on the user path.
                    self.install_failures += 1;
                }
            }
        }
        self.touched = touched;
        self.journal.touched = ids;
        self.journal.clear();
        if rescheduled {
            self.services_changed(director);
        }
        // After the journal: what the core removed in this pass is gone from the map too.
        self.find_unreported(director, now);
    }

    /// A new flow the kernel scheduled joins the core.
    #[allow(clippy::too_many_arguments)]
    fn take_new(
        &mut self,
        director: &mut Director,
        e: &Event,
        state: TcpState,
        generation: u32,
        action: Action,
        addr: std::net::Ipv4Addr,
        port: u16,
        now: Time,
    ) {
        let entry = ConnEntry {
            action,
            state: state as u8,
            flags: e.flags,
            addr,
            port,
            stats: 0,
            route: Default::default(),
            seen_ns: e.ns,
        };
        let Some(a) = self.adoptee(&e.flow, &entry) else {
            return;
        };
        let step = self.current_tables.contains(&generation);
        match director.adopt_new(&a, now, step) {
            Ok(_) => {}
            Err(AdoptError::Known) => {
                // The core has this flow already (it scheduled a retransmitted SYN itself
                // before this report came): its entries win; a NAT reply entry towards
                // another server the kernel chose would be left over.
                let id = flow_key(&e.flow).and_then(|k| director.conns().lookup_in(&k));
                let core_dest = id
                    .and_then(|id| director.conns().get(id))
                    .map(|c| (c.daddr, c.dport));
                if action == Action::NatIn && core_dest != Some((IpAddr::V4(addr), port)) {
                    let _ = self.dp.remove(&Flow {
                        src: addr,
                        sport: port,
                        dst: e.flow.src,
                        dport: e.flow.sport,
                        proto: e.flow.proto,
                    });
                    if let Some(id) = id {
                        director.touch(id);
                    }
                }
            }
            Err(_) => {
                self.new_not_adopted += 1;
                self.remove_entries(&e.flow, &entry);
            }
        }
    }

    /// When the kernel lost events (its ring was full), look through its map for flows it
    /// scheduled that the core never heard of, and take them in (their scheduler is not
    /// moved: the choices are already past).
    fn find_unreported(&mut self, director: &mut Director, now: Time) {
        let lost = self.dp.counter(Counter::EventLost).unwrap_or(0);
        if lost == self.events_lost_seen || now < self.next_lost_scan {
            return;
        }
        self.events_lost_seen = lost;
        self.next_lost_scan = now + LOST_SCAN;
        let mut found = 0u64;
        for (flow, entry) in self.dp.entries() {
            // Reply entries go with their client side; a predecessor's entries wait in
            // `orphans` for their service.
            if entry.action == Action::NatOut || entry.stats == UNATTRIBUTED {
                continue;
            }
            let known = flow_key(&flow).is_some_and(|k| director.conns().lookup_in(&k).is_some());
            if known {
                continue;
            }
            let Some(a) = self.adoptee(&flow, &entry) else {
                continue;
            };
            match director.adopt_new(&a, now, false) {
                Ok(_) => found += 1,
                Err(AdoptError::Known) => {}
                Err(_) => {
                    self.new_not_adopted += 1;
                    self.remove_entries(&flow, &entry);
                }
            }
        }
        warn!(
            lost,
            found,
            "kernel fast path: its event ring overflowed; connections it made meanwhile were found in its map"
        );
    }

    /// Remove a client-side entry and, for NAT, its reply entry.
    fn remove_entries(&self, flow: &Flow, entry: &ConnEntry) {
        let _ = self.dp.remove(flow);
        if entry.action == Action::NatIn {
            let _ = self.dp.remove(&Flow {
                src: entry.addr,
                sport: entry.port,
                dst: flow.src,
                dport: flow.sport,
                proto: flow.proto,
            });
        }
    }

    /// Install the core's schedulers as they are now (after every applied change): the
    /// kernel schedules new flows of the services whose scheduler compiles.
    pub fn services_changed(&mut self, director: &Director) {
        self.refused_changed(director);
        // Every real server of every service gets its stats slot (its lvs_dests index).
        for (svc, s) in director.services().iter() {
            for &dest in s.dest_slots() {
                let _ = self.slot(svc, dest);
            }
        }
        let slots = &self.slots;
        let report = self.tables.sync(&self.dp, director, |svc, dest| {
            slots.get(&(svc, dest)).map(|s| s.index)
        });
        for e in &report.errors {
            self.log_error(
                "cannot install a service's scheduler in the kernel; the core schedules it",
                e,
            );
        }
        self.current_tables = report.in_kernel.iter().map(|k| k.generation).collect();
        self.sequences = report
            .in_kernel
            .iter()
            .filter(|k| k.sequence)
            .map(|k| k.svc)
            .collect();
        let split = (report.in_kernel.len(), report.in_core);
        if split != self.split_logged {
            self.split_logged = split;
            info!(
                in_kernel = split.0,
                in_core = split.1,
                "kernel fast path: services whose new flows the kernel schedules (rr, wrr, fo, sh, dh, mh without persistence or thresholds) and the core's"
            );
        }
    }

    /// Give the program the sources the core refuses new connections from (after every
    /// change of the services or of the network view): it leaves such flows to the core,
    /// which drops and counts them.
    pub fn refused_changed(&mut self, director: &Director) {
        let set = lvs_core::director::refused_sources(&director.net, director.services())
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        if let Err(e) = self.dp.set_refused(&set) {
            self.log_error(
                "cannot update the fast path's refused sources; it may schedule flows the core would drop",
                &e,
            );
        }
    }

    /// Give back the spare capacity of the buffers a burst of flows grew (a SYN flood's
    /// reports), the core's journal included.
    pub fn shrink(&mut self, director: &mut Director) {
        self.events.shrink_to(1024);
        self.dp.shrink_buffers();
        self.touched.shrink_to(1024);
        self.orphans.shrink_to(64);
        self.journal.touched.shrink_to(1024);
        self.journal.removed.shrink_to(1024);
        director.shrink_journal();
    }

    /// Every tick: table ranges replaced since the last tick (at least one tick ago by the
    /// next) become reusable; no program run reads them any more.
    pub fn release_retired_tables(&mut self) {
        self.tables.release_retired();
    }

    /// The kernel's event ring, readable when reports wait.
    pub fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dp.events_fd()
    }

    /// Adopt what a predecessor left and this core can now place (call after configuration
    /// changes and on every tick); entries still unplaced are removed once idle for the
    /// timeout of their state.
    pub fn adopt(&mut self, director: &mut Director, now: Time) {
        if self.orphans.is_empty() {
            return;
        }
        let before = self.adopted;
        let mut orphans = std::mem::take(&mut self.orphans);
        orphans.retain(|(flow, entry)| {
            let Some(a) = self.adoptee(flow, entry) else {
                return false;
            };
            match director.adopt(&a, now) {
                Ok(_) => {
                    self.adopted += 1;
                    false
                }
                Err(AdoptError::Known) => false,
                Err(_) => true,
            }
        });
        if now >= self.next_orphan_check {
            self.next_orphan_check = now + ORPHAN_CHECK;
            orphans.retain(|(flow, entry)| self.orphan_alive(director, flow, entry, now));
        }
        self.orphans = orphans;
        if self.adopted != before {
            info!(
                adopted = self.adopted - before,
                waiting = self.orphans.len(),
                "kernel fast path: adopted connections of the previous lvsd"
            );
        }
    }

    /// Whether an unadopted entry is still in use; removes it (and its NAT reply entry) if not.
    fn orphan_alive(&self, director: &Director, flow: &Flow, entry: &ConnEntry, now: Time) -> bool {
        let Ok(Some(current)) = self.dp.entry(flow) else {
            return false;
        };
        let state = TcpState::from_index(usize::from(current.state)).unwrap_or(TcpState::Close);
        let timeout = match Protocol::from_number(flow.proto) {
            Some(Protocol::Tcp) => director.timeouts().tcp(state),
            _ => director.timeouts().udp,
        };
        if self.core_time(current.seen_ns) + timeout > now {
            return true;
        }
        // Gone idle. Unless the core made its own connection on this key meanwhile.
        if flow_key(flow).is_some_and(|k| director.conns().lookup_in(&k).is_some()) {
            return false;
        }
        self.remove_entries(flow, entry);
        false
    }

    fn adoptee(&self, flow: &Flow, entry: &ConnEntry) -> Option<Adoptee> {
        let (method, port) = match entry.action {
            Action::NatIn => (ForwardMethod::Masq, Some(entry.port)),
            Action::DirectRoute => (ForwardMethod::DirectRoute, None),
            Action::Tunnel => (ForwardMethod::Tunnel, None),
            Action::NatOut => return None,
        };
        Some(Adoptee {
            proto: Protocol::from_number(flow.proto)?,
            client: (IpAddr::V4(flow.src), flow.sport),
            vip: (IpAddr::V4(flow.dst), flow.dport),
            dest: (IpAddr::V4(entry.addr), port),
            method,
            state: TcpState::from_index(usize::from(entry.state))?,
            no_output: entry.flags & F_NO_OUTPUT != 0,
            seen: self.core_time(entry.seen_ns),
        })
    }

    /// When the kernel last forwarded a packet of `c` (for the core's expiry).
    pub fn last_seen(&self, c: &Conn) -> Option<Time> {
        let IpAddr::V4(src) = c.caddr else {
            return None;
        };
        let IpAddr::V4(dst) = c.vaddr else {
            return None;
        };
        let flow = Flow::new(c.proto, src, c.cport, dst, c.vport);
        let entry = self.dp.entry(&flow).ok().flatten()?;
        Some(self.core_time(entry.seen_ns))
    }

    /// Add what the kernel forwarded since the last fold to the core's per-service and
    /// per-real-server counters; slots of real servers the core no longer has are freed.
    pub fn fold_stats(&mut self, director: &mut Director) {
        let mut gone = Vec::new();
        for (&(svc, dest), slot) in self.slots.iter_mut() {
            let Ok(now) = self.dp.stats(slot.index) else {
                continue;
            };
            let delta = Stats {
                conns: 0,
                inpkts: now.pkts_in.wrapping_sub(slot.folded.pkts_in),
                outpkts: now.pkts_out.wrapping_sub(slot.folded.pkts_out),
                inbytes: now.bytes_in.wrapping_sub(slot.folded.bytes_in),
                outbytes: now.bytes_out.wrapping_sub(slot.folded.bytes_out),
            };
            slot.folded = now;
            let exists = director
                .services()
                .get(svc)
                .and_then(|s| s.dest(dest))
                .is_some();
            if !exists {
                gone.push((svc, dest));
                continue;
            }
            if delta != Stats::default() {
                director.add_offloaded(svc, dest, &delta);
            }
        }
        for k in gone {
            if let Some(s) = self.slots.remove(&k) {
                self.free_slots.push(s.index);
            }
        }
    }

    /// The stats slot of a real server, allocated on first use.
    fn slot(&mut self, svc: u32, dest: u32) -> Option<u32> {
        if let Some(s) = self.slots.get(&(svc, dest)) {
            return Some(s.index);
        }
        let index = match self.free_slots.pop() {
            Some(i) => i,
            None if self.next_slot < UNATTRIBUTED => {
                self.next_slot += 1;
                self.next_slot - 1
            }
            None => return None,
        };
        // A reused slot keeps what it counted before: start from there.
        let folded = self.dp.stats(index).unwrap_or_default();
        self.slots.insert((svc, dest), Slot { index, folded });
        Some(index)
    }

    /// The program's counters (summed over CPUs) and the loader's own.
    pub fn counters(&self) -> KernelCounters {
        let mut v: KernelCounters = Counter::ALL
            .iter()
            .map(|c| (c.name().to_string(), self.dp.counter(*c).unwrap_or(0)))
            .collect();
        v.push(("install_failed".into(), self.install_failures));
        v.push(("new_flows_not_adopted".into(), self.new_not_adopted));
        v.push(("adopted".into(), self.adopted));
        v.push(("adoption_waiting".into(), self.orphans.len() as u64));
        v
    }

    fn log_error(&self, what: &str, e: &lvs_bpf::Error) {
        if !self.errors_logged.replace(true) {
            warn!(error = %e, "{what} (further map errors are not logged)");
        }
    }
}

/// Where lvsd runs no XDP program of its own: take away the `lvs_xdp` a predecessor left on
/// `ifindex`, which would go on forwarding in front on its old maps (logged either way).
pub fn remove_predecessor_xdp(ifindex: u32, name: &str) {
    match lvs_bpf::remove_predecessor_xdp(ifindex) {
        Ok(true) => info!(interface = name, "removed the previous lvsd's XDP program"),
        Ok(false) => {}
        Err(e) => {
            warn!(interface = name, error = %e, "the previous lvsd's XDP program stays in front")
        }
    }
}

/// Remove attachments (and the clsact qdiscs lvsd created): the kernel stops forwarding.
/// Then the record of created qdiscs (`qdiscs`, see [`qdiscs_file`]) goes too.
pub fn detach(attached: Vec<Attachment>, qdiscs: &Path) {
    for a in attached {
        let ifindex = a.ifindex();
        if let Err(e) = a.detach() {
            warn!(
                ifindex,
                error = format!("{e:#}"),
                "cannot detach the kernel fast path"
            );
        }
    }
    let _ = std::fs::remove_file(qdiscs);
}

/// Where lvsd notes the interfaces on which it created a clsact qdisc, so that a successor
/// started after a crash (`kill -9`) removes them on its own clean stop: beside the control
/// socket, which names the instance.
pub fn qdiscs_file(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".qdiscs");
    PathBuf::from(name)
}

/// The interface indexes a predecessor noted (none if there is no record).
pub fn read_qdiscs(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Note the interfaces whose qdisc is lvsd's to remove.
pub fn write_qdiscs(path: &Path, attached: &[Attachment]) {
    let text: String = attached
        .iter()
        .filter(|a| a.tc.created_qdisc)
        .map(|a| format!("{}\n", a.ifindex()))
        .collect();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, text) {
        warn!(path = %path.display(), error = %e, "cannot note the qdiscs lvsd created; after a crash a restarted lvsd will leave them");
    }
}

fn flow_key(f: &Flow) -> Option<FlowKey> {
    Some(FlowKey::new(
        Protocol::from_number(f.proto)?,
        IpAddr::V4(f.src),
        f.sport,
        IpAddr::V4(f.dst),
        f.dport,
    ))
}
