//! The data path workers: threads sharing the [`Director`], each with AF_PACKET sockets.
//!
//! Loop: wait for frames on any served interface (or a command), hand each frame to the
//! core, queue what it says to transmit, flush in batches; between batches apply control
//! requests (so every change is atomic with respect to packets) and run the expiry timers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lvs_api::{CountersInfo, Reply, Request};
use lvs_core::director::{CsumOffload, Gso, GsoKind, RxMeta, Tx, Verdict};
use lvs_core::net::NetTable;
use lvs_core::{Director, DropReason, Time};
use lvs_io::backend::{
    VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP,
};
use lvs_io::gso::{Segment, segment_tcp_ipv4};
use lvs_io::{AfPacket, PacketTx, RxFrame, TxQueue, VnetHdr};
use tracing::{info, warn};

use crate::fastpath::FastPath;
use crate::handover::Pending;
use crate::ifaces::{Follow, SocketChange};
use crate::losses::{self, Tally};
use crate::steering::{self, Spec, Versioned};

/// A request for the worker.
pub enum Command {
    /// A control request; the answer (and, after a change, the new steering) goes back.
    Api(Request, Sender<(Reply, Option<Versioned>)>),
    /// A fresh view of interfaces, routes and neighbours, with the local addresses.
    Net(Box<NetTable>, BTreeSet<IpAddr>),
    /// The interfaces to serve from now on (index, name), sorted by index.
    Interfaces(Vec<(u32, String)>),
    /// A reloaded configuration's `[settings]`.
    Settings(lvs_config::Settings),
}

/// `PACKET_HOST`: addressed to this host.
const PACKET_HOST: u8 = 0;
/// How often connection timers run.
const TICK: Duration = Duration::from_millis(250);
/// How often the stale neighbours lvs_xdp sends to are re-checked (the kernel's own
/// `delay_first_probe_time`).
const RECHECK: Duration = Duration::from_secs(5);
/// Largest number of segments one super-frame is cut into.
const MAX_SEGS: usize = 64;

/// State shared by the workers.
pub struct Shared {
    /// The core. Workers lock it for one receive batch at a time.
    pub director: Mutex<Director>,
    /// Frames each worker's sockets received (all packet types), indexed by worker id; one
    /// add per receive batch.
    pub worker_packets: Vec<AtomicU64>,
    /// What the workers' sockets lost (capture rings, sends), published by each worker on
    /// its timer.
    pub losses: losses::Registry,
    /// The core's clock ([`Shared::now`], nanoseconds) when each worker last read its
    /// sockets' statistics, indexed by worker id: a worker whose loop turns does so every
    /// [`losses::PUBLISH_EVERY`] (the watchdog checks it).
    pub worker_beat: Vec<AtomicU64>,
    /// Origin of the core's clock.
    pub start: Instant,
    /// Set to stop every worker.
    pub stop: Arc<AtomicBool>,
    /// How long a worker keeps polling its rings after the last frame before it sleeps.
    pub busy_poll: Duration,
}

impl Shared {
    pub fn now(&self) -> Time {
        Time::from_nanos(self.start.elapsed().as_nanos() as u64)
    }
}

/// What only the first worker has: the control channel and the timers.
pub struct ControlPart {
    /// Requests from the control socket and the netlink thread.
    pub commands: Receiver<Command>,
    /// Written to when a command is queued.
    pub wake: UnixStream,
    /// Addresses of this host.
    pub local: BTreeSet<IpAddr>,
    /// Next hops the core could not resolve: the worker asks the kernel to resolve them and
    /// tells the netlink thread, which then reads the tables again soon.
    pub resolve: Sender<(u32, IpAddr)>,
    /// Next hops to resolve once the core's lock is released (reused).
    pub to_resolve: Vec<(u32, IpAddr)>,
    /// Neighbours lvs_xdp sends to that the kernel should re-check (see
    /// [`FastPath::stale_neighbours`]), asked for once the core's lock is released.
    pub to_recheck: Vec<(u32, IpAddr)>,
    /// When the stale neighbours are next looked for.
    pub next_recheck: Instant,
    /// Held frames whose neighbour became known, to send (reused).
    pub released: Vec<lvs_core::director::Held>,
    /// The kernel fast path, when lvsd runs with one (`--datapath tc`).
    pub fast: Option<FastPath>,
    /// Steering that follows the expiry of lingering connections and the served interfaces
    /// (not a control request): to the thread that applies it.
    pub steer: Sender<steering::Change>,
    /// The served interfaces.
    pub follow: Follow,
    /// Connections a predecessor handed over, waiting for their services.
    pub handover: Pending,
    /// Sequence number of the last spec made.
    pub seq: u64,
    /// [`lvs_core::service::ServiceTable::freed`] when the last spec was made.
    pub freed: u64,
    /// When memory a burst of connections took is given back.
    pub trim: Trim,
}

/// Gives memory back once the connection table has shrunk to a quarter of its peak (a SYN
/// flood over): the core shrinks its own table on its expiry tick (`ConnTable::shrink`);
/// this shrinks the fast path's buffers and asks the C allocator to return its free pages,
/// which it otherwise keeps. Looked at every 10 s, on worker 0's tick.
#[derive(Debug)]
pub struct Trim {
    peak: usize,
    next: Instant,
    /// The table shrank: the allocator is asked once the lock is released.
    pending: bool,
    /// The table's size at the last trim since the peak (`usize::MAX`: none yet).
    trimmed_at: usize,
}

impl Default for Trim {
    fn default() -> Trim {
        Trim {
            peak: 0,
            next: Instant::now() + Trim::EVERY,
            pending: false,
            trimmed_at: usize::MAX,
        }
    }
}

impl Trim {
    const EVERY: Duration = Duration::from_secs(10);
    /// Below this many entries at the peak there is little to give back.
    const WORTH: usize = 16_384;

    fn tick(&mut self, director: &mut Director, fast: Option<&mut FastPath>) {
        let len = director.conns().len();
        self.peak = self.peak.max(len);
        if Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + Trim::EVERY;
        // Once at a quarter of the peak, then each time the table halved again, down to
        // empty: what the last entries of a flood held comes back too.
        if self.peak < Trim::WORTH || len * 4 > self.peak || len * 2 > self.trimmed_at {
            return;
        }
        if let Some(fp) = fast {
            fp.shrink(director);
        }
        director.shrink();
        if self.trimmed_at == usize::MAX {
            info!(
                entries = len,
                peak = self.peak,
                "the connection table shrank to a quarter of its peak: memory given back"
            );
        }
        self.pending = true;
        if len == 0 {
            // Done: the next burst starts from here.
            self.peak = 0;
            self.trimmed_at = usize::MAX;
        } else {
            self.trimmed_at = len;
        }
    }

    /// After the director's lock is released (the allocator walks its free lists, which
    /// must not hold up the other workers): give the allocator's free pages back.
    fn release(&mut self) {
        if std::mem::take(&mut self.pending) {
            let _ = lvs_io::trim_heap();
        }
    }
}

impl ControlPart {
    /// The steering the director needs now, numbered.
    fn spec(&mut self, director: &Director) -> Versioned {
        self.seq += 1;
        self.freed = director.services().freed();
        let mut spec = Spec::of(director, &self.local);
        self.handover.extend(&mut spec);
        Versioned {
            seq: self.seq,
            spec,
        }
    }
}

/// What worker 0 hands back when it stops.
pub struct Leftovers {
    /// The kernel fast path, closed when the stop is complete (its attachments are
    /// detached apart, or kept for the next lvsd).
    pub _fast: Option<FastPath>,
    /// Handed-over connections still waiting, to hand over again.
    pub handover: Pending,
}

/// One data path worker: its own socket on each served interface. All workers' sockets on
/// an interface form one fanout group hashed by flow (symmetric over addresses and ports),
/// which keeps one direction of a flow on one worker but not a NAT connection's replies:
/// those carry the real server's address, so they may reach another worker. Nothing relies
/// on it: every worker locks the one `Director` for its batch.
pub struct Worker {
    id: usize,
    shared: Arc<Shared>,
    sockets: Vec<AfPacket>,
    control: Option<ControlPart>,
    /// Sockets to add or close (the served interfaces changed).
    changes: Receiver<SocketChange>,
    epoll: std::os::fd::OwnedFd,
    arena: Vec<u8>,
    segs: Vec<Segment>,
    /// Each socket's share of [`Shared::losses`], by interface index.
    tallies: BTreeMap<u32, Tally>,
}

impl Worker {
    /// A worker with `sockets` on the interfaces `names` (index, name); give `control` to
    /// exactly one of them.
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        (sockets, names): (Vec<AfPacket>, &[(u32, String)]),
        control: Option<ControlPart>,
        changes: Receiver<SocketChange>,
    ) -> std::io::Result<Worker> {
        use rustix::event::epoll;
        // One epoll set for the worker's sockets (and the wake-up pipe), made once, so
        // waiting costs one syscall and no allocation.
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        for s in &sockets {
            epoll::add(&ep, s, socket_tag(s), epoll::EventFlags::IN)?;
        }
        if let Some(c) = &control {
            epoll::add(
                &ep,
                &c.wake,
                epoll::EventData::new_u64(1),
                epoll::EventFlags::IN,
            )?;
            // The kernel's reports (new flows it scheduled, state changes) wake it too, when
            // the program asks for a wake-up (edge-triggered: a ring that merely holds
            // reports does not keep the worker from sleeping; every pass drains it anyway).
            if let Some(fp) = &c.fast {
                epoll::add(
                    &ep,
                    fp.events_fd(),
                    epoll::EventData::new_u64(2),
                    epoll::EventFlags::IN | epoll::EventFlags::ET,
                )?;
            }
        }
        let tallies = sockets
            .iter()
            .map(|s| {
                let index = s.ifindex();
                let name = names
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map_or_else(|| index.to_string(), |(_, n)| n.clone());
                (index, shared.losses.tally(id, &name))
            })
            .collect();
        Ok(Worker {
            id,
            shared,
            sockets,
            tallies,
            control,
            changes,
            epoll: ep,
            arena: vec![0u8; 256 * 1024],
            segs: vec![Segment::default(); MAX_SEGS],
        })
    }

    /// Run until the stop flag is set; worker 0 gives back what outlives it.
    pub fn run(mut self) -> Option<Leftovers> {
        if let Some(c) = &self.control {
            let _ = c.wake.set_nonblocking(true);
        }
        let mut next_tick = Instant::now() + TICK;
        let mut next_publish = Instant::now();
        let mut busy = false;
        let mut last_frames = Instant::now();
        let spin = self.shared.busy_poll;
        // One handle for the whole run (not a reference-count bump per batch).
        let shared = Arc::clone(&self.shared);
        while !shared.stop.load(Ordering::Relaxed) {
            // Under load, go straight back to the rings: a pass that found frames is likely
            // followed by more, and skipping `poll` saves a syscall per batch.
            if !busy {
                let timeout = next_tick
                    .saturating_duration_since(Instant::now())
                    .min(TICK);
                self.wait(timeout);
            }
            let Ok(mut director) = shared.director.lock() else {
                warn!("data path state poisoned; stopping");
                shared.stop.store(true, Ordering::Relaxed);
                break;
            };
            let now = shared.now();
            let mut frames = 0;
            for sock in &mut self.sockets {
                let (arena, segs) = (&mut self.arena, &mut self.segs);
                let res = sock.rx_batch_tx(Duration::ZERO, |frame, tx| {
                    handle_frame(&mut director, now, frame, tx, arena, segs);
                });
                match res {
                    Ok(n) => frames += n,
                    Err(e) => {
                        warn!(worker = self.id, ifindex = sock.ifindex(), error = %e, "receive failed")
                    }
                }
            }
            if frames > 0 {
                last_frames = Instant::now();
            }
            // Keep polling the rings for `--busy-poll-us` after the last frame: trades CPU for
            // fewer sleeps and wake-ups at moderate rates.
            busy = frames > 0 || (!spin.is_zero() && last_frames.elapsed() < spin);
            if frames > 0
                && let Some(c) = shared.worker_packets.get(self.id)
            {
                c.fetch_add(frames as u64, Ordering::Relaxed);
            }
            if let Some(c) = &mut self.control {
                c.to_resolve.extend(director.net.take_unresolved());
                if Instant::now() >= next_tick {
                    let now = shared.now();
                    match &mut c.fast {
                        Some(fp) => {
                            fp.release_retired_tables();
                            fp.adopt(&mut director, now);
                            fp.fold_stats(&mut director);
                            director.expire_with(now, |conn| fp.last_seen(conn));
                        }
                        None => {
                            director.expire(now);
                        }
                    }
                    // The last connection of a removed real server or a deleted service
                    // ended: its entries leave the steering (applied off this thread).
                    // Handed-over connections whose service is back are taken over; when
                    // none waits any more, their inherited entries leave the steering.
                    let ended = c.handover.adopt(&mut director, now);
                    if ended || director.services().freed() != c.freed {
                        let v = c.spec(&director);
                        let _ = c.steer.send(steering::Change::Spec(v));
                    }
                    // Held frames whose neighbour never answered are dropped.
                    director.release_held(now, &mut c.released);
                    c.trim.tick(&mut director, c.fast.as_mut());
                    if let Some(fp) = &c.fast
                        && Instant::now() >= c.next_recheck
                    {
                        c.to_recheck = fp.stale_neighbours(&director.net);
                        c.next_recheck = Instant::now() + RECHECK;
                    }
                    next_tick = Instant::now() + TICK;
                }
                drain_commands(c, &mut director, &shared);
                send_released(c, &mut director, &mut self.sockets);
                // What this pass changed reaches the kernel's maps before the next frames.
                if let Some(fp) = &mut c.fast {
                    fp.sync(&mut director, shared.now());
                }
            }
            drop(director);
            if let Some(c) = &mut self.control {
                resolve(c);
                c.trim.release();
            }
            // Send outside the lock so another worker can process meanwhile.
            for sock in &mut self.sockets {
                use lvs_io::PacketIo;
                sock.flush();
            }
            // The kernel's ring statistics and the send counters, after the flush; then a
            // socket closed here takes no queued frame and no uncounted loss with it.
            if Instant::now() >= next_publish {
                self.publish();
                next_publish = Instant::now() + losses::PUBLISH_EVERY;
            }
            self.change_sockets();
        }
        self.publish();
        for t in self.tallies.values() {
            if t.ring_drops() > 0 {
                warn!(
                    worker = self.id,
                    interface = t.interface(),
                    drops = t.ring_drops(),
                    "the capture ring dropped frames while lvsd ran (see lvsadm --drops; a larger --rx-frames or --rx-blocks makes room)"
                );
            }
        }
        info!(worker = self.id, "data path worker stopped");
        self.control.map(|c| Leftovers {
            _fast: c.fast,
            handover: c.handover,
        })
    }

    /// Add the sockets of new interfaces, close those of interfaces no longer served.
    fn change_sockets(&mut self) {
        use rustix::event::epoll;
        while let Ok(change) = self.changes.try_recv() {
            match change {
                SocketChange::Add(s, name) => {
                    if let Err(e) =
                        epoll::add(&self.epoll, &s, socket_tag(&s), epoll::EventFlags::IN)
                    {
                        warn!(worker = self.id, ifindex = s.ifindex(), error = %e, "cannot wait on a new socket");
                        continue;
                    }
                    let tally = self.shared.losses.tally(self.id, &name);
                    self.tallies.insert(s.ifindex(), tally);
                    self.sockets.push(*s);
                }
                // Closing the socket takes it out of the epoll set; what it lost is counted
                // first.
                SocketChange::Remove(ifindex) => {
                    for s in self.sockets.iter_mut().filter(|s| s.ifindex() == ifindex) {
                        publish(self.id, s, &mut self.tallies);
                    }
                    self.tallies.remove(&ifindex);
                    self.sockets.retain(|s| s.ifindex() != ifindex);
                }
                // What the socket lost so far stays under the old name.
                SocketChange::Rename(ifindex, name) => {
                    for s in self.sockets.iter_mut().filter(|s| s.ifindex() == ifindex) {
                        publish(self.id, s, &mut self.tallies);
                    }
                    if let Some(t) = self.tallies.get_mut(&ifindex) {
                        t.rename(&self.shared.losses, self.id, &name);
                    }
                }
            }
        }
    }

    /// Add every socket's ring statistics and send counters to [`Shared::losses`], and note
    /// that this worker's loop turns ([`Shared::worker_beat`]).
    fn publish(&mut self) {
        for s in &mut self.sockets {
            publish(self.id, s, &mut self.tallies);
        }
        if let Some(b) = self.shared.worker_beat.get(self.id) {
            b.store(self.shared.now().as_nanos(), Ordering::Relaxed);
        }
    }

    /// Sleep until a socket is readable, a command arrives, or the timeout passes.
    fn wait(&mut self, timeout: Duration) {
        use rustix::event::{Timespec, epoll};
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut events = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 8];
        if let Ok((ready, _)) = epoll::wait(&self.epoll, &mut events, Some(&ts)) {
            // A socket with a pending error (its interface is down) stays ready until the
            // error is read: read it, or the worker would spin.
            for e in ready.iter() {
                let (flags, data) = (e.flags, e.data);
                if !flags.contains(epoll::EventFlags::ERR) {
                    continue;
                }
                let tag = data.u64();
                if let Some(s) = self.sockets.iter().find(|s| socket_tag(s).u64() == tag)
                    && let Some(err) = s.take_error()
                {
                    tracing::debug!(worker = self.id, ifindex = s.ifindex(), error = %err, "socket error");
                }
            }
        }
        if let Some(c) = &mut self.control {
            let mut sink = [0u8; 64];
            while matches!(c.wake.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
}

/// Read one socket's ring statistics (which resets them) and send counters into its tally.
fn publish(worker: usize, sock: &mut AfPacket, tallies: &mut BTreeMap<u32, Tally>) {
    use lvs_io::PacketIo;
    let Some(t) = tallies.get_mut(&sock.ifindex()) else {
        return;
    };
    match sock.stats() {
        Ok(ring) => t.publish(ring, sock.tx_queue().counters()),
        Err(e) => {
            tracing::debug!(worker, ifindex = sock.ifindex(), error = %e, "cannot read the ring statistics")
        }
    }
}

/// The epoll data of a socket: its interface index above the tags of the wake-up pipe (1)
/// and the fast path's ring (2).
fn socket_tag(s: &AfPacket) -> rustix::event::epoll::EventData {
    rustix::event::epoll::EventData::new_u64(16 + u64::from(s.ifindex()))
}

fn drain_commands(c: &mut ControlPart, director: &mut Director, shared: &Shared) {
    let mut got = false;
    loop {
        let next = c.commands.try_recv();
        if next.is_ok() && !got {
            // Empty the wake-up pipe too: a busy worker does not go through `wait`.
            got = true;
            let mut sink = [0u8; 256];
            while matches!(c.wake.read(&mut sink), Ok(n) if n > 0) {}
        }
        match next {
            Ok(Command::Api(req, reply)) => {
                // Answer with what the kernel did up to now: its state changes and counters.
                if let Some(fp) = &mut c.fast {
                    fp.sync(director, shared.now());
                    fp.fold_stats(director);
                }
                let changes = req.is_change();
                warn_if_vip_not_local(&c.local, &req);
                let answer = api(director, shared, c.fast.as_ref(), req);
                let applied = changes && matches!(answer, Reply::Ok);
                // A service configured now may own connections a predecessor left, and the
                // kernel follows the schedulers as they are now.
                if let (true, Some(fp)) = (applied, &mut c.fast) {
                    fp.services_changed(director);
                    fp.adopt(director, shared.now());
                }
                if applied {
                    c.handover.adopt(director, shared.now());
                }
                let spec = applied.then(|| c.spec(director));
                let _ = reply.send((answer, spec));
            }
            Ok(Command::Net(table, local)) => {
                director.net = *table;
                c.local = local;
                director.release_held(shared.now(), &mut c.released);
                // Routes bound which new flows the kernel may schedule itself; addresses
                // which sources it must leave to the core.
                if let Some(fp) = &mut c.fast {
                    fp.set_neighbours(&director.net);
                    if fp.set_routes(&director.net) {
                        fp.services_changed(director);
                    } else {
                        fp.refused_changed(director);
                    }
                }
            }
            Ok(Command::Settings(s)) => {
                director.set_policy(
                    s.expire_nodest_conn,
                    s.expire_quiescent_template,
                    s.conn_reuse_mode,
                );
                director.set_sloppy_tcp(s.sloppy_tcp);
            }
            Ok(Command::Interfaces(wanted)) => {
                let changed = c.follow.change(wanted, c.fast.as_ref());
                // lvs_xdp redirects only to interfaces it is attached to.
                if let (Some(_), Some(fp)) = (&changed, &mut c.fast) {
                    fp.set_neighbours(&director.net);
                }
                if let Some(devices) = changed {
                    let v = c.spec(director);
                    let _ = c.steer.send(steering::Change::Devices(devices, v));
                }
            }
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                shared.stop.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Queue the frames that waited for a neighbour on the first socket (any socket sends on
/// any interface); one that cannot be queued counts as a transmit error.
fn send_released(c: &mut ControlPart, director: &mut Director, sockets: &mut [AfPacket]) {
    use lvs_io::PacketIo;
    if c.released.is_empty() {
        return;
    }
    let Some(sock) = sockets.first_mut() else {
        for _ in c.released.drain(..) {
            director.held_send_failed();
        }
        return;
    };
    for h in c.released.drain(..) {
        let v = csum_vnet(h.csum);
        if !sock.tx_queue().push(h.ifindex, &v, &h.frame) {
            director.held_send_failed();
        }
    }
}

/// Ask the kernel to resolve the next hops the core missed (it sends ARP or neighbour
/// solicitations; the netlink monitor sees the answer) and tell the netlink thread.
fn resolve(c: &mut ControlPart) {
    for (ifindex, addr) in c.to_resolve.drain(..) {
        if let Err(e) = lvs_io::netlink::resolve(ifindex, addr) {
            tracing::debug!(%addr, error = %e, "neighbour resolution request failed");
        }
        let _ = c.resolve.send((ifindex, addr));
    }
    // The same request re-checks a stale entry; its state changes reach the netlink thread
    // by themselves.
    for (ifindex, addr) in c.to_recheck.drain(..) {
        if let Err(e) = lvs_io::netlink::resolve(ifindex, addr) {
            tracing::debug!(%addr, error = %e, "neighbour re-check request failed");
        }
    }
}

/// As with IPVS, the VIP is an address the operator (or keepalived) puts on the
/// director; without it nobody answers ARP for it and no traffic arrives.
fn warn_if_vip_not_local(local: &BTreeSet<IpAddr>, req: &Request) {
    let keys: Vec<&lvs_api::ServiceKey> = match req {
        Request::AddService { service } | Request::EditService { service } => {
            vec![&service.key]
        }
        Request::Batch { requests } => requests
            .iter()
            .filter_map(|r| match r {
                Request::AddService { service } => Some(&service.key),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let missing: BTreeSet<IpAddr> = keys
        .into_iter()
        .filter_map(|k| match k {
            lvs_api::ServiceKey::Addr { addr, .. } if !local.contains(addr) => Some(*addr),
            _ => None,
        })
        .collect();
    // One line per VIP, but a restore of thousands of services gets one summary line.
    if missing.len() > 5 {
        let first = missing
            .iter()
            .next()
            .map(|a| a.to_string())
            .unwrap_or_default();
        warn!(count = missing.len(), example = %first, "virtual IPs are not addresses of this host: add them (ip addr add VIP/32 dev IFACE) or no traffic will reach those services");
    } else {
        for addr in missing {
            warn!(vip = %addr, "virtual IP is not an address of this host: add it (ip addr add {addr}/32 dev IFACE) or no traffic will reach the service");
        }
    }
}

fn api(director: &mut Director, shared: &Shared, fast: Option<&FastPath>, req: Request) -> Reply {
    match req {
        Request::Batch { requests } => match lvs_config::table::apply_batch(director, requests) {
            Ok(()) => Reply::Ok,
            Err(message) => Reply::Error { message },
        },
        r if r.is_change() => match apply_change(director, r) {
            Ok(()) => Reply::Ok,
            Err(e) => Reply::Error { message: e },
        },
        Request::Version => Reply::Version {
            protocol: lvs_api::VERSION,
            daemon: env!("CARGO_PKG_VERSION").to_string(),
        },
        Request::List => Reply::Services {
            table_size: director.conns().limit(),
            services: list(director),
        },
        Request::Connections { cursor, limit } => {
            crate::listing::page(director, shared.now(), fast, cursor, limit)
        }
        Request::Counters => {
            let c = director.counters();
            Reply::Counters(CountersInfo {
                rx_frames: c.rx_frames,
                forwarded: c.forwarded,
                passed: c.passed,
                icmp_sent: c.icmp_sent,
                conns: director.conns().len(),
                conn_limit: director.conns().limit(),
                drops: DropReason::ALL
                    .iter()
                    .map(|r| (r.name().to_string(), c.drops(*r)))
                    .collect(),
                tx_errors: c.tx_errors,
                held: c.held,
                held_total: c.held_total,
                embryonic_evicted: c.embryonic_evicted,
                datapath: fast.map_or("afpacket", FastPath::name).to_string(),
                kernel: fast.map(FastPath::counters).unwrap_or_default(),
            })
        }
        Request::Drops => Reply::Drops(lvs_api::DropsInfo {
            datapath: fast.map_or("afpacket", FastPath::name).to_string(),
            rows: losses::rows(
                director.counters(),
                &shared.losses.totals(),
                &fast.map(FastPath::counters).unwrap_or_default(),
            ),
        }),
        Request::Timeouts => {
            let (tcp, fin, udp) = director.timeouts().get();
            Reply::Timeouts {
                tcp: tcp.as_secs(),
                tcpfin: fin.as_secs(),
                udp: udp.as_secs(),
            }
        }
        Request::Zero { key } => match director.zero_stats(key.map(Into::into).as_ref()) {
            Ok(()) => Reply::Ok,
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        },
        _ => Reply::Error {
            message: "request not handled".into(),
        },
    }
}

pub use lvs_config::table::{apply_change, listing as list};

fn gso_of(v: &VnetHdr) -> Option<Gso> {
    let kind = match v.gso_type & !lvs_io::backend::VNET_GSO_ECN {
        VNET_GSO_NONE => return None,
        VNET_GSO_TCPV4 => GsoKind::Tcpv4,
        VNET_GSO_TCPV6 => GsoKind::Tcpv6,
        VNET_GSO_UDP | lvs_io::backend::VNET_GSO_UDP_L4 => GsoKind::Udp,
        _ => GsoKind::Other,
    };
    Some(Gso {
        kind,
        size: v.gso_size,
    })
}

/// The vnet header for a transmitted frame: the received one with checksum offsets made
/// relative to the new frame start, or a plain one for frames the core built.
fn tx_vnet(rx: &VnetHdr, rx_head: usize, tx: &Tx) -> VnetHdr {
    let mut v = csum_vnet(tx.csum);
    if tx.gso.is_some() {
        let delta = rx_head as i64 - tx.start as i64;
        v.gso_type = rx.gso_type;
        v.gso_size = rx.gso_size;
        v.hdr_len = (i64::from(rx.hdr_len) + delta).clamp(0, i64::from(u16::MAX)) as u16;
    }
    v
}

/// A vnet header asking for `csum` to be finished, and nothing else.
fn csum_vnet(csum: Option<CsumOffload>) -> VnetHdr {
    let mut v = VnetHdr::default();
    if let Some(CsumOffload { start, offset }) = csum {
        v.flags = VNET_F_NEEDS_CSUM;
        v.csum_start = start;
        v.csum_offset = offset;
    }
    v
}

fn handle_frame(
    director: &mut Director,
    now: Time,
    mut frame: RxFrame<'_>,
    tx: &mut PacketTx,
    arena: &mut [u8],
    segs: &mut [Segment],
) {
    if frame.pkt_type != PACKET_HOST {
        return;
    }
    let meta = RxMeta {
        ifindex: frame.ifindex,
        csum_partial: frame.vnet.needs_csum() || frame.csum_not_ready,
        gso: gso_of(&frame.vnet),
        fwmark: 0,
        truncated: frame.truncated(),
        vlan: frame.vlan_tagged,
    };
    let (head, len, vnet) = (frame.head, frame.len, frame.vnet);
    let verdict = director.process(now, &meta, frame.buf, head, len);
    match verdict {
        Verdict::Transmit(t) => {
            let v = tx_vnet(&vnet, head, &t);
            if !tx.push(t.ifindex, &v, &frame.buf[t.start..t.start + t.len]) {
                director.send_failed(&verdict);
            }
        }
        Verdict::Segment { mss } => {
            let f = frame.frame_mut();
            let Ok(n) = segment_tcp_ipv4(f, 14, usize::from(mss), 64, arena, segs) else {
                director.send_failed(&verdict);
                return;
            };
            let seg_meta = RxMeta {
                csum_partial: false,
                gso: None,
                ..meta
            };
            for s in segs.iter().take(n) {
                let (start, slen) = (s.start, s.len);
                let v = director.process(now, &seg_meta, arena, start, slen);
                if let Verdict::Transmit(t) = v
                    && !tx.push(
                        t.ifindex,
                        &VnetHdr::default(),
                        &arena[t.start..t.start + t.len],
                    )
                {
                    director.send_failed(&v);
                }
            }
        }
        // A held frame is sent by the worker once its neighbour is resolved.
        Verdict::Pass | Verdict::Drop(_) | Verdict::Held => {}
    }
}
