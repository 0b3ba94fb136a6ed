//! The data path worker: one thread owning the [`Director`] and the AF_PACKET sockets.
//!
//! Loop: wait for frames on any served interface (or a command), hand each frame to the
//! core, queue what it says to transmit, flush in batches; between batches apply control
//! requests (so every change is atomic with respect to packets) and run the expiry timers.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use lvs_api::{ConnInfo, CountersInfo, DestInfo, Reply, Request, ServiceInfo};
use lvs_core::director::{CsumOffload, Gso, GsoKind, RxMeta, Tx, Verdict};
use lvs_core::net::NetTable;
use lvs_core::{Director, DropReason, Time};
use lvs_io::backend::{
    VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP,
};
use lvs_io::gso::{Segment, segment_tcp_ipv4};
use lvs_io::{AfPacket, PacketTx, RxFrame, TxQueue, VnetHdr};
use tracing::{info, warn};

use crate::steering::Spec;

/// A request for the worker.
pub enum Command {
    /// A control request; the answer (and, after a change, the new steering) goes back.
    Api(Request, Sender<(Reply, Option<Spec>)>),
    /// A fresh view of interfaces, routes and neighbours, with the local addresses.
    Net(Box<NetTable>, BTreeSet<IpAddr>),
}

/// `PACKET_HOST`: addressed to this host.
const PACKET_HOST: u8 = 0;
/// How often connection timers run.
const TICK: Duration = Duration::from_millis(250);
/// Largest number of segments one super-frame is cut into.
const MAX_SEGS: usize = 64;

/// The worker's state.
pub struct Dataplane {
    director: Director,
    sockets: Vec<AfPacket>,
    commands: Receiver<Command>,
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    start: Instant,
    local: BTreeSet<IpAddr>,
    resolve: Sender<(u32, IpAddr)>,
    arena: Vec<u8>,
    segs: Vec<Segment>,
    tx_errors: u64,
}

impl Dataplane {
    /// A worker for these sockets.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        director: Director,
        local: BTreeSet<IpAddr>,
        sockets: Vec<AfPacket>,
        commands: Receiver<Command>,
        wake: UnixStream,
        stop: Arc<AtomicBool>,
        start: Instant,
        resolve: Sender<(u32, IpAddr)>,
    ) -> Dataplane {
        Dataplane {
            director,
            sockets,
            commands,
            wake,
            stop,
            start,
            local,
            resolve,
            arena: vec![0u8; 256 * 1024],
            segs: vec![Segment::default(); MAX_SEGS],
            tx_errors: 0,
        }
    }

    fn now(&self) -> Time {
        Time::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    /// Run until the stop flag is set.
    pub fn run(mut self) {
        let _ = self.wake.set_nonblocking(true);
        let mut next_tick = Instant::now() + TICK;
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = next_tick
                .saturating_duration_since(Instant::now())
                .min(TICK);
            self.wait(timeout);
            let now = self.now();
            let mut sockets = std::mem::take(&mut self.sockets);
            for sock in &mut sockets {
                if let Err(e) = self.poll_socket(sock, now) {
                    warn!(ifindex = sock.ifindex(), error = %e, "receive failed");
                }
            }
            self.sockets = sockets;
            for (ifindex, addr) in self.director.net.take_unresolved() {
                let _ = self.resolve.send((ifindex, addr));
            }
            if Instant::now() >= next_tick {
                self.director.expire(self.now());
                next_tick = Instant::now() + TICK;
            }
            self.drain_commands();
        }
        info!("data path stopped");
    }

    /// Sleep until a socket is readable, a command arrives, or the timeout passes.
    fn wait(&mut self, timeout: Duration) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds: Vec<PollFd<'_>> = self
            .sockets
            .iter()
            .map(|s| PollFd::new(s, PollFlags::IN))
            .collect();
        fds.push(PollFd::from_borrowed_fd(self.wake.as_fd(), PollFlags::IN));
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let _ = poll(&mut fds, Some(&ts));
        drop(fds);
        let mut sink = [0u8; 64];
        while matches!(self.wake.read(&mut sink), Ok(n) if n > 0) {}
    }

    fn poll_socket(&mut self, sock: &mut AfPacket, now: Time) -> std::io::Result<()> {
        let director = &mut self.director;
        let arena = &mut self.arena;
        let segs = &mut self.segs;
        let tx_errors = &mut self.tx_errors;
        sock.rx_batch_tx(Duration::ZERO, |frame, tx| {
            handle_frame(director, now, frame, tx, arena, segs, tx_errors);
        })?;
        sock.tx_queue_flush();
        Ok(())
    }

    fn drain_commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Api(req, reply)) => {
                    let changes = is_change(&req);
                    self.warn_if_vip_not_local(&req);
                    let answer = self.api(req);
                    let spec = (changes && matches!(answer, Reply::Ok))
                        .then(|| Spec::of(&self.director, &self.local));
                    let _ = reply.send((answer, spec));
                }
                Ok(Command::Net(table, local)) => {
                    self.director.net = *table;
                    self.local = local;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// As with IPVS, the VIP is an address the operator (or keepalived) puts on the
    /// director; without it nobody answers ARP for it and no traffic arrives.
    fn warn_if_vip_not_local(&self, req: &Request) {
        let keys: Vec<&lvs_core::types::ServiceKey> = match req {
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
        for key in keys {
            if let lvs_core::types::ServiceKey::Addr { addr, .. } = key
                && !self.local.contains(addr)
            {
                warn!(vip = %addr, "virtual IP is not an address of this host: add it (ip addr add {addr}/32 dev IFACE) or no traffic will reach the service");
            }
        }
    }

    fn api(&mut self, req: Request) -> Reply {
        match req {
            Request::Batch { requests } => {
                // All or none: rehearse on a copy of the configuration first.
                let mut rehearsal = crate::config::shadow(&self.director);
                for r in &requests {
                    if let Err(e) = apply_change(&mut rehearsal, r.clone()) {
                        return Reply::Error {
                            message: format!("batch refused, nothing applied: {e}"),
                        };
                    }
                }
                for r in requests {
                    if let Err(e) = apply_change(&mut self.director, r) {
                        // Cannot happen after a successful rehearsal; say so loudly.
                        return Reply::Error {
                            message: format!("batch failed half-way (bug): {e}"),
                        };
                    }
                }
                Reply::Ok
            }
            r if is_change(&r) => match apply_change(&mut self.director, r) {
                Ok(()) => Reply::Ok,
                Err(e) => Reply::Error { message: e },
            },
            Request::Version => Reply::Version {
                protocol: lvs_api::VERSION,
                daemon: env!("CARGO_PKG_VERSION").to_string(),
            },
            Request::List => Reply::Services {
                table_size: self.director.conns().limit(),
                services: list(&self.director),
            },
            Request::Connections => {
                let now = self.now();
                let conns = self
                    .director
                    .conns()
                    .iter()
                    .map(|(_, c)| ConnInfo {
                        proto: c.proto,
                        caddr: c.caddr,
                        cport: c.cport,
                        vaddr: c.vaddr,
                        vport: c.vport,
                        daddr: c.daddr,
                        dport: c.dport,
                        state: c.state.name().to_string(),
                        expires_secs: c.remaining(now).as_secs(),
                        method: c.method,
                        template: c.is_template(),
                    })
                    .collect();
                Reply::Connections { conns }
            }
            Request::Counters => {
                let c = self.director.counters();
                Reply::Counters(CountersInfo {
                    rx_frames: c.rx_frames,
                    forwarded: c.forwarded,
                    passed: c.passed,
                    icmp_sent: c.icmp_sent,
                    conns: self.director.conns().len(),
                    conn_limit: self.director.conns().limit(),
                    drops: DropReason::ALL
                        .iter()
                        .map(|r| (r.name().to_string(), c.drops(*r)))
                        .collect(),
                    tx_errors: self.tx_errors,
                })
            }
            Request::Timeouts => {
                let (tcp, fin, udp) = self.director.timeouts().get();
                Reply::Timeouts {
                    tcp: tcp.as_secs(),
                    tcpfin: fin.as_secs(),
                    udp: udp.as_secs(),
                }
            }
            Request::Zero => {
                self.director.zero_stats();
                Reply::Ok
            }
            _ => Reply::Error {
                message: "request not handled".into(),
            },
        }
    }
}

/// Whether a request changes the service table.
pub fn is_change(r: &Request) -> bool {
    matches!(
        r,
        Request::AddService { .. }
            | Request::EditService { .. }
            | Request::DeleteService { .. }
            | Request::Clear
            | Request::AddDest { .. }
            | Request::EditDest { .. }
            | Request::DeleteDest { .. }
            | Request::SetTimeouts { .. }
            | Request::Batch { .. }
    )
}

/// Apply one change request to a director.
pub fn apply_change(d: &mut Director, r: Request) -> Result<(), String> {
    let res = match r {
        Request::AddService { service } => d.add_service(service),
        Request::EditService { service } => d.edit_service(service),
        Request::DeleteService { key } => d.delete_service(&key),
        Request::Clear => {
            d.clear();
            Ok(())
        }
        Request::AddDest { key, dest } => d.add_dest(&key, dest),
        Request::EditDest { key, dest } => d.edit_dest(&key, dest),
        Request::DeleteDest { key, addr, port } => d.delete_dest(&key, addr, port),
        Request::SetTimeouts { tcp, tcpfin, udp } => {
            d.set_timeouts(
                Duration::from_secs(tcp),
                Duration::from_secs(tcpfin),
                Duration::from_secs(udp),
            );
            Ok(())
        }
        Request::Batch { .. } => return Err("a batch cannot contain a batch".into()),
        other => return Err(format!("{other:?} is not a change")),
    };
    res.map_err(|e| e.to_string())
}

/// The service table as the API lists it.
pub fn list(d: &Director) -> Vec<ServiceInfo> {
    d.services()
        .iter()
        .map(|(_, s)| ServiceInfo {
            config: *s.config(),
            stats: s.stats,
            dests: s
                .dests()
                .iter()
                .map(|x| DestInfo {
                    config: x.config,
                    active: x.active,
                    inactive: x.inactive,
                    persistent: x.persistent,
                    overloaded: x.overloaded,
                    stats: x.stats,
                })
                .collect(),
        })
        .collect()
}

fn gso_of(v: &VnetHdr) -> Option<Gso> {
    let kind = match v.gso_type & !lvs_io::backend::VNET_GSO_ECN {
        VNET_GSO_NONE => return None,
        VNET_GSO_TCPV4 => GsoKind::Tcpv4,
        VNET_GSO_TCPV6 => GsoKind::Tcpv6,
        VNET_GSO_UDP => GsoKind::Udp,
        _ => GsoKind::Udp,
    };
    Some(Gso {
        kind,
        size: v.gso_size,
    })
}

/// The vnet header for a transmitted frame: the received one with checksum offsets made
/// relative to the new frame start, or a plain one for frames the core built.
fn tx_vnet(rx: &VnetHdr, rx_head: usize, tx: &Tx) -> VnetHdr {
    let mut v = VnetHdr::default();
    if let Some(CsumOffload { start, offset }) = tx.csum {
        v.flags = VNET_F_NEEDS_CSUM;
        v.csum_start = start;
        v.csum_offset = offset;
    }
    if tx.gso.is_some() {
        let delta = rx_head as i64 - tx.start as i64;
        v.gso_type = rx.gso_type;
        v.gso_size = rx.gso_size;
        v.hdr_len = (i64::from(rx.hdr_len) + delta).clamp(0, i64::from(u16::MAX)) as u16;
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
    tx_errors: &mut u64,
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
    };
    let (head, len, vnet) = (frame.head, frame.len, frame.vnet);
    let verdict = director.process(now, &meta, frame.buf, head, len);
    match verdict {
        Verdict::Transmit(t) => {
            let v = tx_vnet(&vnet, head, &t);
            if !tx.push(t.ifindex, &v, &frame.buf[t.start..t.start + t.len]) {
                *tx_errors += 1;
            }
        }
        Verdict::Segment { mss } => {
            let f = frame.frame_mut();
            let n = match segment_tcp_ipv4(f, 14, usize::from(mss), 64, arena, segs) {
                Ok(n) => n,
                Err(_) => {
                    *tx_errors += 1;
                    return;
                }
            };
            let seg_meta = RxMeta {
                csum_partial: false,
                gso: None,
                ..meta
            };
            for s in segs.iter().take(n) {
                let (start, slen) = (s.start, s.len);
                if let Verdict::Transmit(t) = director.process(now, &seg_meta, arena, start, slen)
                    && !tx.push(
                        t.ifindex,
                        &VnetHdr::default(),
                        &arena[t.start..t.start + t.len],
                    )
                {
                    *tx_errors += 1;
                }
            }
        }
        Verdict::Pass | Verdict::Drop(_) => {}
    }
}

/// Extension used above: flush the socket's own TX queue.
trait FlushTx {
    fn tx_queue_flush(&mut self);
}

impl FlushTx for AfPacket {
    fn tx_queue_flush(&mut self) {
        use lvs_io::PacketIo;
        self.flush();
    }
}
