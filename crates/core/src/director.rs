//! The director: service table, connection table and the forwarding decision for every frame.
//!
//! [`Director::process`] is the whole data path, in two steps: [`Director::decide`] parses
//! the frame, finds or schedules its connection, moves its state and returns an [`Action`];
//! [`Director::apply`] has [`crate::action::apply`] rewrite the frame in place accordingly and
//! counts the outcome.
//! [`Director::expire`] runs the timers. Both take the time from the caller.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use lvs_wire::ethernet::{self, EthernetFrame};
use lvs_wire::icmpv4::{self, FragNeededRepr, Icmpv4ErrorRepr, Icmpv4Packet};
use lvs_wire::ipv4::Ipv4Packet;
use lvs_wire::protocol;
use lvs_wire::tcp::{self, TcpPacket, flags as tcp_flags};
use lvs_wire::udp;

use crate::action::{self, TUN_OVERHEAD};
use crate::conn::state::tcp_next_state;
use crate::conn::{Conn, ConnFlags, ConnId, ConnTable, Direction, FlowKey, TcpState, Timeouts};
use crate::counters::{Counters, DropReason};
use crate::net::{HopError, NetTable, NextHop};
use crate::rewrite::End;
use crate::sched::SchedCtx;
use crate::service::{ConfigError, DestConfig, ServiceConfig, ServiceTable};
use crate::stats::Stats;
use crate::time::Time;
use crate::types::{Family, ForwardMethod, Protocol, ServiceKey};

mod hold;
mod offload;
mod validate;
pub use crate::action::{Action, CsumOffload, Gso, GsoKind, RxMeta, Tx, Verdict};
pub use hold::{
    Held, MAX_NEIGHBOURS as HOLD_NEIGHBOURS, QUEUE_BYTES as HOLD_QUEUE_BYTES, RESOLVE_TIMEOUT,
};
pub use offload::{AdoptError, Adoptee, Journal, OffloadedDest, OffloadedService};
pub use validate::{martian as martian_source, refused as refused_sources};

/// Tunables, with IPVS's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Most connection entries (flows + templates) the table holds.
    pub conn_limit: usize,
    /// Entries reserved up front.
    pub conn_prealloc: usize,
    /// Key for the connection hash maps (random in production).
    pub hash_seed: u64,
    /// Seed for randomised schedulers.
    pub sched_seed: u64,
    /// `expire_nodest_conn`: drop (and expire) a connection's packets once its real server is
    /// removed, so the client retries and gets a new server. Off by default, as in IPVS.
    pub expire_nodest_conn: bool,
    /// `expire_quiescent_template`: a persistence template whose real server has weight 0 is
    /// not used for new connections. Off by default.
    pub expire_quiescent_template: bool,
    /// `conn_reuse_mode`: bit 0 reschedules a SYN that hits a TIME_WAIT entry; bit 1 also a
    /// FIN_WAIT entry of a DR/Tun connection. Default 1.
    pub conn_reuse_mode: u8,
    /// `sloppy_tcp`: a TCP packet without SYN of a flow the table does not know, to a
    /// service whose scheduler maps a flow to a real server by its addresses alone (mh, sh,
    /// dh), is scheduled and forwarded instead of dropped, so an established connection that
    /// the upstream router's ECMP moved to this director (another died, one was added)
    /// continues on the same real server. A RST is never scheduled. Off by default, as in
    /// IPVS (whose sysctl applies to every scheduler; only these three can find the same
    /// server again).
    pub sloppy_tcp: bool,
    /// Most TCP entries that have not got past SYN_RECV (`None`: an eighth of `conn_limit`).
    /// Past it, and whenever the table is full, a new connection takes the place of the
    /// oldest such entry: a SYN flood cannot crowd out established connections nor keep new
    /// clients out, and holds at most this many entries (see [`Director::make_room`]).
    pub embryonic_limit: Option<usize>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            conn_limit: 1 << 20,
            conn_prealloc: 1 << 12,
            hash_seed: 0x6c76_7364,
            sched_seed: 0x7363_6864,
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            conn_reuse_mode: 1,
            sloppy_tcp: false,
            embryonic_limit: None,
        }
    }
}

impl Settings {
    /// The embryonic limit in force.
    pub fn embryonic_limit(&self) -> usize {
        self.embryonic_limit
            .unwrap_or(self.conn_limit / 8)
            .clamp(1, self.conn_limit.max(1))
    }
}

/// Parsed essentials of an IPv4 TCP/UDP packet.
#[derive(Clone, Copy, Debug)]
struct Flow {
    proto: Protocol,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    ip_len: usize,
    ihl: usize,
}

const ETH: usize = ethernet::HEADER_LEN;
/// How often expiry asks the connection table to give memory back.
const SHRINK_PERIOD: Duration = Duration::from_secs(10);

/// The director.
#[derive(Debug)]
pub struct Director {
    services: ServiceTable,
    conns: ConnTable,
    /// Interfaces, routes and neighbours (filled by the caller).
    pub net: NetTable,
    timeouts: Timeouts,
    settings: Settings,
    counters: Counters,
    /// Reused by `expire` so that expiring does not allocate once warmed up.
    expired: Vec<Conn>,
    /// When the rate estimators tick next.
    next_estimate: Time,
    /// When the connection table is next asked to give memory back.
    next_shrink: Time,
    /// Connection changes for a fast path below the core (see [`offload`]); `None` unless
    /// one asked for them.
    journal: Option<Journal>,
    /// Frames waiting for their next hop's MAC address.
    hold: hold::HoldQueues,
    /// The unresolved neighbour the frame being processed waits for: set by the last
    /// `next_hop` of a `process` call when that hop had no MAC.
    waiting_for: Option<IpAddr>,
    /// The sources new connections are refused from (see `director/validate.rs`).
    sources: validate::SourceFilter,
    /// The frame being processed was answered with "time exceeded": its `Transmit` is the
    /// answer, and the frame itself counts as a `ttl_exceeded` drop.
    ttl_answered: bool,
    /// The time of the frame being processed.
    now: Time,
    /// The ICMP errors the director sends (time exceeded, fragmentation needed), limited as
    /// the kernel's `icmp_send` is.
    icmp_limit: IcmpLimit,
}

/// A token bucket for the ICMP errors the director generates: the kernel's global limit
/// (`net.ipv4.icmp_msgs_per_sec` 1000, `icmp_msgs_burst` 50), so that spoofed packets cannot
/// make the director an ICMP reflector at line rate. An error over the limit is not sent;
/// its packet is counted under its drop reason as any other.
#[derive(Debug)]
struct IcmpLimit {
    tokens: u32,
    last: Time,
}

impl IcmpLimit {
    const PER_SEC: u64 = 1000;
    const BURST: u32 = 50;

    fn new(now: Time) -> IcmpLimit {
        IcmpLimit {
            tokens: IcmpLimit::BURST,
            last: now,
        }
    }

    fn allow(&mut self, now: Time) -> bool {
        let earned = now.saturating_since(self.last).as_micros() as u64 * Self::PER_SEC / 1_000_000;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(u64::from(Self::BURST)) as u32;
            self.last = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Director {
    /// A director with no services, starting at `now`.
    pub fn new(settings: Settings, now: Time) -> Director {
        Director {
            services: ServiceTable::new(settings.sched_seed),
            conns: ConnTable::new(
                settings.conn_limit,
                settings.conn_prealloc,
                settings.hash_seed,
                now,
            ),
            net: NetTable::default(),
            timeouts: Timeouts::default(),
            settings,
            counters: Counters::default(),
            expired: Vec::with_capacity(1024),
            next_estimate: now + crate::stats::ESTIMATOR_PERIOD,
            next_shrink: now + SHRINK_PERIOD,
            journal: None,
            hold: hold::HoldQueues::default(),
            waiting_for: None,
            sources: validate::SourceFilter::default(),
            ttl_answered: false,
            now,
            icmp_limit: IcmpLimit::new(now),
        }
    }

    // ---- configuration -------------------------------------------------------------------

    /// The service table (read-only; change it through the methods below).
    pub fn services(&self) -> &ServiceTable {
        &self.services
    }

    /// The connection table.
    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// Director-wide counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Change the `expire_*` and reuse settings (table sizes and seeds are fixed at creation).
    pub fn set_policy(
        &mut self,
        expire_nodest_conn: bool,
        expire_quiescent_template: bool,
        conn_reuse_mode: u8,
    ) {
        self.settings.expire_nodest_conn = expire_nodest_conn;
        self.settings.expire_quiescent_template = expire_quiescent_template;
        self.settings.conn_reuse_mode = conn_reuse_mode;
    }

    /// `sloppy_tcp` (see [`Settings::sloppy_tcp`]).
    pub fn set_sloppy_tcp(&mut self, on: bool) {
        self.settings.sloppy_tcp = on;
    }

    /// Connection timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// `--set tcp tcpfin udp` (zero keeps a value).
    pub fn set_timeouts(&mut self, tcp: Duration, tcpfin: Duration, udp: Duration) {
        self.timeouts.set(tcp, tcpfin, udp);
    }

    /// Set the timeout of one TCP state (every state's, beyond the three of `--set`:
    /// SYN_RECV for a flood, TIME_WAIT, CLOSE, ...). Entries pick it up at their next state
    /// change.
    pub fn set_tcp_timeout(&mut self, state: TcpState, timeout: Duration) {
        self.timeouts.set_tcp(state, timeout);
    }

    /// `-A`.
    pub fn add_service(&mut self, cfg: ServiceConfig) -> Result<(), ConfigError> {
        self.sources.invalidate();
        self.services.add(cfg).map(|_| ())
    }

    /// `-E`.
    pub fn edit_service(&mut self, cfg: ServiceConfig) -> Result<(), ConfigError> {
        self.sources.invalidate();
        self.services.edit(cfg)
    }

    /// `-D`.
    pub fn delete_service(&mut self, key: &ServiceKey) -> Result<(), ConfigError> {
        self.sources.invalidate();
        self.services.delete(key)
    }

    /// `-C`: delete every service (connections finish as with `-D`).
    pub fn clear(&mut self) {
        self.sources.invalidate();
        for key in self.services.keys() {
            let _ = self.services.delete(&key);
        }
    }

    /// `-a`.
    pub fn add_dest(&mut self, key: &ServiceKey, cfg: DestConfig) -> Result<(), ConfigError> {
        self.sources.invalidate();
        self.services.add_dest(key, cfg).map(|_| ())
    }

    /// `-e`.
    pub fn edit_dest(&mut self, key: &ServiceKey, cfg: DestConfig) -> Result<(), ConfigError> {
        self.sources.invalidate();
        self.services.edit_dest(key, cfg)
    }

    /// `-d`.
    pub fn delete_dest(
        &mut self,
        key: &ServiceKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), ConfigError> {
        self.sources.invalidate();
        self.services.del_dest(key, addr, port)
    }

    /// `-Z`: zero the counters of every service and real server, or of one service.
    pub fn zero_stats(&mut self, key: Option<&ServiceKey>) -> Result<(), ConfigError> {
        match key {
            Some(k) => {
                let slot = self
                    .services
                    .find(k)
                    .ok_or(ConfigError::NoSuchService(*k))?;
                if let Some(s) = self.services.get_mut(slot) {
                    s.zero();
                }
            }
            None => {
                let slots: Vec<u32> = self.services.iter().map(|(s, _)| s).collect();
                for slot in slots {
                    if let Some(s) = self.services.get_mut(slot) {
                        s.zero();
                    }
                }
            }
        }
        Ok(())
    }

    /// Totals over every service.
    pub fn total_stats(&self) -> Stats {
        let mut t = Stats::default();
        for (_, s) in self.services.iter() {
            t.add(&s.stats);
        }
        t
    }

    // ---- timers --------------------------------------------------------------------------

    /// Expire the connections whose time has come. Call it regularly (every tick, 250 ms).
    pub fn expire(&mut self, now: Time) -> usize {
        self.expire_with(now, |_| None)
    }

    /// As [`Director::expire`], for a director with a fast path below it: `last_seen` says
    /// when the fast path last forwarded a packet of a connection that is due (`None`: it
    /// has not, or holds no entry for it), and the connection lives on for its timeout from
    /// then.
    pub fn expire_with(
        &mut self,
        now: Time,
        last_seen: impl FnMut(&Conn) -> Option<Time>,
    ) -> usize {
        while now >= self.next_estimate {
            self.services.tick_estimators();
            self.next_estimate = self.next_estimate + crate::stats::ESTIMATOR_PERIOD;
        }
        let mut gone = std::mem::take(&mut self.expired);
        self.conns.expire(now, last_seen, |_, c| gone.push(c));
        let n = gone.len();
        for c in gone.drain(..) {
            self.unbind(&c);
        }
        self.expired = gone;
        self.counters.conns_expired += n as u64;
        // Memory a flood took comes back once its entries are gone (looked at every 10 s).
        if now >= self.next_shrink {
            self.next_shrink = now + SHRINK_PERIOD;
            self.shrink();
        }
        n
    }

    /// Give back the memory of a connection table that has emptied to a quarter of its room
    /// (and of the journal's buffers): cheap when there is nothing to give back.
    pub fn shrink(&mut self) {
        let mut moved = self.conns.shrink();
        // Entries moved to lower slots: the journal names them by their new handles.
        if !moved.is_empty()
            && let Some(j) = &mut self.journal
        {
            let key = |id: &ConnId| (id.index, id.generation);
            moved.sort_unstable_by_key(|(old, _)| key(old));
            for id in &mut j.touched {
                if let Ok(i) = moved.binary_search_by_key(&key(id), |(old, _)| key(old)) {
                    *id = moved[i].1;
                }
            }
        }
        self.expired.shrink_to(1024);
        self.shrink_journal();
    }

    /// Remove every connection now (e.g. on shutdown or `--flush-connections`).
    pub fn flush_connections(&mut self) {
        let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.remove_conn(id);
        }
    }

    fn remove_conn(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(id) {
            self.unbind(&c);
        }
    }

    /// Undo what binding a connection to its real server did.
    fn unbind(&mut self, c: &Conn) {
        if let Some(j) = &mut self.journal
            && !c.is_template()
        {
            j.removed.push(c.clone());
        }
        if let Some(ctl) = c.controller
            && let Some(t) = self.conns.get_mut(ctl)
        {
            t.n_control = t.n_control.saturating_sub(1);
        }
        if let Some(svc) = self.services.get_mut(c.svc)
            && let Some(d) = svc.dest_mut(c.dest)
        {
            if c.is_template() {
                d.persistent = d.persistent.saturating_sub(1);
            } else if c.is_active() {
                d.active = d.active.saturating_sub(1);
            } else {
                d.inactive = d.inactive.saturating_sub(1);
            }
            let total = d.active + d.inactive;
            let cfg = d.config;
            if cfg.lower_threshold != 0 {
                if total < cfg.lower_threshold {
                    d.overloaded = false;
                }
            } else if cfg.upper_threshold != 0 {
                if u64::from(total) * 4 < u64::from(cfg.upper_threshold) * 3 {
                    d.overloaded = false;
                }
            } else {
                d.overloaded = false;
            }
        }
        self.services.release(c.svc, c.dest);
    }

    // ---- the data path -------------------------------------------------------------------

    /// Decide what to do with the frame `buf[start..start + len]` and do it, rewriting the
    /// frame in place: [`Director::decide`], then [`Director::apply`].
    ///
    /// Bytes before `start` are headroom the tunnel header may use. Never panics, whatever
    /// the bytes.
    pub fn process(
        &mut self,
        now: Time,
        meta: &RxMeta,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> Verdict {
        let action = match start.checked_add(len).and_then(|end| buf.get(start..end)) {
            Some(frame) => self.decide(now, meta, frame),
            None => {
                self.counters.rx_frames += 1;
                Action::Drop(DropReason::Malformed)
            }
        };
        self.apply(&action, meta, buf, start, len)
    }

    /// What to do with `frame` (Ethernet onwards): find or schedule its connection, move the
    /// connection's state and counters, and say how the frame is to be rewritten and sent.
    /// The frame itself is not touched; [`Director::apply`] does that, and must follow with
    /// the same frame before the next `decide`. Never panics, whatever the bytes.
    pub fn decide(&mut self, now: Time, meta: &RxMeta, frame: &[u8]) -> Action {
        self.counters.rx_frames += 1;
        self.waiting_for = None;
        self.now = now;
        self.decide_frame(now, meta, frame)
    }

    /// Carry out `action`, the one [`Director::decide`] just returned for the frame
    /// `buf[start..start + len]` (see [`action::apply`]), keep the result for its next hop
    /// if that is not resolved yet, and count the frame by its outcome.
    pub fn apply(
        &mut self,
        action: &Action,
        meta: &RxMeta,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> Verdict {
        let v = action::apply(action, meta, buf, start, len);
        let waiting_for = self.waiting_for.take();
        self.ttl_answered = false;
        let v = match (v, action) {
            (Verdict::Transmit(_), Action::Answer { error, .. }) => {
                self.counters.icmp_sent += 1;
                self.ttl_answered = error.msg_type == icmpv4::msg_type::TIME_EXCEEDED;
                v
            }
            (Verdict::Transmit(t), _) => match waiting_for {
                Some(addr) => self.hold(self.now, addr, buf, t),
                None => v,
            },
            (v, _) => v,
        };
        match v {
            Verdict::Transmit(_) if self.ttl_answered => {
                self.counters.drop(DropReason::TtlExceeded);
            }
            Verdict::Transmit(_) => self.counters.forwarded += 1,
            Verdict::Pass => self.counters.passed += 1,
            Verdict::Drop(r) => self.counters.drop(r),
            Verdict::Segment { .. } => self.counters.segment_requests += 1,
            Verdict::Held => {
                self.counters.held += 1;
                self.counters.held_total += 1;
            }
        }
        v
    }

    /// Keep the rewritten frame `t` until `addr` is resolved. A segmentation super-frame is
    /// dropped instead: its offload state belongs to the driver, and the first frames
    /// towards a new neighbour are handshakes anyway.
    fn hold(&mut self, now: Time, addr: IpAddr, buf: &[u8], t: Tx) -> Verdict {
        let Some(frame) = buf.get(t.start..t.start + t.len) else {
            return Verdict::Drop(DropReason::NeighbourUnresolved);
        };
        if t.gso.is_some() {
            return Verdict::Drop(DropReason::NeighbourUnresolved);
        }
        let held = Held {
            ifindex: t.ifindex,
            csum: t.csum,
            frame: frame.to_vec(),
        };
        let Some(older) = self.hold.push(now, addr, held) else {
            return Verdict::Drop(DropReason::NeighbourUnresolved);
        };
        // Frames dropped to make room were held: they leave `held` for the drop counter.
        self.counters.held = self.counters.held.saturating_sub(older);
        self.counters.drops[DropReason::NeighbourUnresolved as usize] += older;
        Verdict::Held
    }

    /// The driver could not send a frame [`Director::release_held`] gave it: it moves from
    /// `forwarded` to `tx_errors`.
    pub fn held_send_failed(&mut self) {
        let c = &mut self.counters;
        c.forwarded = c.forwarded.saturating_sub(1);
        c.tx_errors += 1;
    }

    /// The frames held for neighbours that are resolved now (after the caller updated
    /// [`Director::net`]), with their MAC addresses written, in arrival order per
    /// neighbour; the caller sends them. Frames whose neighbour stayed unresolved for
    /// [`RESOLVE_TIMEOUT`] are dropped (`neighbour_unresolved`). Call it after every table
    /// update and on the timer tick.
    pub fn release_held(&mut self, now: Time, out: &mut Vec<Held>) {
        let before = out.len();
        let dropped = self.hold.release(now, &self.net, out);
        let sent = (out.len() - before) as u64;
        let c = &mut self.counters;
        c.held = c.held.saturating_sub(sent + dropped);
        c.forwarded += sent;
        c.drops[DropReason::NeighbourUnresolved as usize] += dropped;
    }

    /// The driver could not carry out `verdict`, returned by the [`Director::process`] call
    /// just before (call it before the next one): the frame moves from `forwarded` (or
    /// `segment_requests`) to `tx_errors`, so that the counters hold each frame once
    /// whichever side failed; an unsent "time exceeded" answer leaves its frame a
    /// `ttl_exceeded` drop and is taken off `icmp_sent`. Other verdicts are ignored.
    pub fn send_failed(&mut self, verdict: &Verdict) {
        let c = &mut self.counters;
        // The "time exceeded" answer of the last frame: that frame stays a ttl_exceeded
        // drop, only the answer was not sent.
        if self.ttl_answered && matches!(verdict, Verdict::Transmit(_)) {
            c.icmp_sent = c.icmp_sent.saturating_sub(1);
            return;
        }
        let from = match verdict {
            Verdict::Transmit(_) => &mut c.forwarded,
            Verdict::Segment { .. } => &mut c.segment_requests,
            Verdict::Pass | Verdict::Drop(_) | Verdict::Held => return,
        };
        *from = from.saturating_sub(1);
        c.tx_errors += 1;
    }

    fn decide_frame(&mut self, now: Time, meta: &RxMeta, frame: &[u8]) -> Action {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Action::Pass;
        };
        // A tagged frame is the VLAN interface's (served there, if at all), whether the tag
        // is still in the bytes or was taken off into metadata.
        if !eth.dst_addr().is_unicast() || eth.vlan_id().is_some() || meta.vlan {
            return Action::Pass;
        }
        match eth.ethertype() {
            ethernet::ethertype::IPV4 => {}
            ethernet::ethertype::IPV6 => return self.ipv6(frame),
            _ => return Action::Pass,
        }
        let Ok(ip) = Ipv4Packet::new_checked(&frame[ETH..]) else {
            return Action::Drop(DropReason::Malformed);
        };
        let ip_len = usize::from(ip.total_len());
        let ihl = ip.header_len();
        let (src, dst, proto_no) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
        if proto_no == protocol::ICMP {
            return self.icmp_v4(meta, frame);
        }
        let Some(proto) = Protocol::from_number(proto_no) else {
            return Action::Pass;
        };
        if ip.is_fragment() {
            // Not reassembled. Only a first fragment has ports to tell whether it is ours.
            return if ip.frag_offset() == 0 && self.first_fragment_is_ours(proto, ip.payload(), dst)
            {
                Action::Drop(DropReason::Fragment)
            } else {
                Action::Pass
            };
        }
        if meta.truncated {
            return Action::Drop(DropReason::Truncated);
        }
        let l4 = ip.payload();
        let Some((sport, dport)) = lvs_wire::transport_ports(l4) else {
            return self.malformed_or_pass(proto, dst, 0);
        };
        let tcp_flags = match proto {
            Protocol::Tcp if l4.len() >= tcp::HEADER_LEN => TcpPacket::new_unchecked(l4).flags(),
            Protocol::Tcp => return self.malformed_or_pass(proto, dst, dport),
            Protocol::Udp if l4.len() < udp::HEADER_LEN => {
                return self.malformed_or_pass(proto, dst, dport);
            }
            _ => 0,
        };
        let flow = Flow {
            proto,
            src,
            dst,
            sport,
            dport,
            tcp_flags,
            ip_len,
            ihl,
        };
        self.flow_v4(now, meta, frame, flow)
    }

    fn malformed_or_pass(&self, proto: Protocol, dst: Ipv4Addr, dport: u16) -> Action {
        if self
            .services
            .lookup(proto, IpAddr::V4(dst), dport)
            .is_some()
        {
            Action::Drop(DropReason::Malformed)
        } else {
            Action::Pass
        }
    }

    fn first_fragment_is_ours(&self, proto: Protocol, l4: &[u8], dst: Ipv4Addr) -> bool {
        let dport = lvs_wire::transport_ports(l4).map_or(0, |(_, d)| d);
        self.services
            .lookup(proto, IpAddr::V4(dst), dport)
            .is_some()
    }

    fn ipv6(&mut self, frame: &[u8]) -> Action {
        // IPv6 services can be configured; forwarding them comes with the IPv6 rewrites.
        let Ok(ip) = lvs_wire::ipv6::Ipv6Packet::new_checked(&frame[ETH..]) else {
            return Action::Pass;
        };
        let dst = IpAddr::V6(ip.dst_addr());
        if let Ok((next, off, _)) = ip.upper_layer()
            && let Some(proto) = Protocol::from_number(next)
        {
            let dport = frame
                .get(ETH + off..)
                .and_then(lvs_wire::transport_ports)
                .map_or(0, |(_, d)| d);
            if self.services.lookup(proto, dst, dport).is_some() {
                return Action::Drop(DropReason::Unsupported);
            }
        }
        Action::Pass
    }

    fn flow_v4(&mut self, now: Time, meta: &RxMeta, frame: &[u8], f: Flow) -> Action {
        let key = FlowKey::new(
            f.proto,
            IpAddr::V4(f.src),
            f.sport,
            IpAddr::V4(f.dst),
            f.dport,
        );
        enum Ours {
            In(ConnId),
            Out(ConnId),
            New(u32),
        }
        let ours = if let Some(id) = self.conns.lookup_in(&key) {
            Ours::In(id)
        } else if let Some(id) = self.conns.lookup_out(&key) {
            Ours::Out(id)
        } else {
            match self.services.lookup(f.proto, IpAddr::V4(f.dst), f.dport) {
                Some(s) => Ours::New(s),
                None => match self.services.lookup_fwmark(meta.fwmark, Family::V4) {
                    Some(s) => Ours::New(s),
                    None => return Action::Pass,
                },
            }
        };
        // Nothing of a packet that fails here reaches a table.
        let ip = Ipv4Packet::new_unchecked(&frame[ETH..ETH + f.ip_len]);
        if let Err(r) = validate::ip_header(&ip).and(validate::transport(f.proto, ip.payload())) {
            return Action::Drop(r);
        }
        // A source no client can have gets no entry, and no answer either (one to a
        // broadcast address would go to a whole subnet).
        if let Ours::New(_) = ours
            && let Err(r) = self.sources.check(f.src, &self.net, &self.services)
        {
            return Action::Drop(r);
        }
        // A TTL that runs out here is answered for a packet that would be forwarded: one of a
        // connection now, a new one once it would be scheduled (`new_conn`).
        if ip.ttl() <= 1 {
            match ours {
                Ours::In(_) => return self.time_exceeded(meta.ifindex, f.dst),
                Ours::Out(_) => {
                    // From the address the director would answer the real server with.
                    let Some(from) = self.source_towards(IpAddr::V4(f.src)) else {
                        return Action::Drop(DropReason::TtlExceeded);
                    };
                    return self.time_exceeded(meta.ifindex, from);
                }
                Ours::New(_) => {}
            }
        }
        match ours {
            Ours::In(id) => self.established_in(now, meta, frame, f, id),
            Ours::Out(id) => self.nat_out(now, meta, f, id),
            Ours::New(svc) => self.new_conn(now, meta, frame, f, svc),
        }
    }

    fn new_conn(
        &mut self,
        now: Time,
        meta: &RxMeta,
        frame: &[u8],
        f: Flow,
        svc_slot: u32,
    ) -> Action {
        // IPVS schedules TCP only on a SYN without RST; with sloppy_tcp any packet but a
        // RST of a service whose scheduler finds the same server again.
        if f.proto == Protocol::Tcp
            && (f.tcp_flags & tcp_flags::RST != 0
                || (f.tcp_flags & tcp_flags::SYN == 0 && !self.sloppy(svc_slot)))
        {
            return Action::Drop(DropReason::NoConnection);
        }
        // Its TTL runs out here: answered (from the virtual address, as the kernel's
        // icmp_send for a packet to a local address), no entry made.
        let ttl = frame.get(ETH + 8).copied().unwrap_or(0);
        if ttl <= 1 {
            return self.time_exceeded(meta.ifindex, f.dst);
        }
        let (client, vaddr) = (IpAddr::V4(f.src), IpAddr::V4(f.dst));
        let ctx = SchedCtx {
            now,
            proto: f.proto,
            src: client,
            sport: f.sport,
            dst: vaddr,
            dport: f.dport,
        };
        let Some(svc) = self.services.get(svc_slot) else {
            return Action::Pass;
        };
        let cfg = *svc.config();
        let fwmark = match cfg.key {
            ServiceKey::Fwmark { mark, .. } => mark,
            ServiceKey::Addr { .. } => 0,
        };
        if !(cfg.one_packet && f.proto == Protocol::Udp) {
            self.make_room(
                1 + usize::from(cfg.persistence.is_some()),
                f.proto == Protocol::Tcp,
            );
        }
        let (dest_slot, controller) = match cfg.persistence {
            Some(p) => match self.persistent_dest(now, svc_slot, &cfg, p, &ctx, fwmark) {
                Ok(x) => x,
                Err(r) => return Action::Drop(r),
            },
            None => match self
                .services
                .get_mut(svc_slot)
                .and_then(|s| s.schedule(&ctx))
            {
                Some(d) => (d, None),
                None => return Action::Drop(DropReason::NoRealServer),
            },
        };
        let Some(dest) = self.services.get(svc_slot).and_then(|s| s.dest(dest_slot)) else {
            return Action::Drop(DropReason::NoRealServer);
        };
        let dcfg = dest.config;
        // A service port of 0 means "the port the client asked for".
        let dport = if dcfg.port == 0 { f.dport } else { dcfg.port };
        let mut conn = Conn::new(
            f.proto,
            (client, f.sport),
            (vaddr, f.dport),
            (dcfg.addr, dport),
            svc_slot,
            dest_slot,
            dcfg.method,
        );
        conn.fwmark = fwmark;
        conn.controller = controller;
        conn.timeout = self.timeouts.initial(f.proto);
        if cfg.one_packet && f.proto == Protocol::Udp {
            // One-packet scheduling: count the connection, forward, keep no entry.
            self.count_new_conn(svc_slot, dest_slot);
            self.count_in(svc_slot, dest_slot, f.ip_len);
            return self.transmit_in(meta, frame, f, &conn);
        }
        let id = match self.conns.insert(conn, now) {
            Ok(id) => id,
            Err(_) => {
                // A template made for this connection alone is not left behind.
                if let Some(t) = controller
                    && self.conns.get(t).is_some_and(|t| t.n_control == 0)
                {
                    self.remove_conn(t);
                }
                return Action::Drop(DropReason::TableFull);
            }
        };
        self.counters.conns_created += 1;
        self.services.acquire(svc_slot);
        if let Some(ctl) = controller
            && let Some(t) = self.conns.get_mut(ctl)
        {
            t.n_control += 1;
        }
        self.bind(svc_slot, dest_slot, false);
        self.count_new_conn(svc_slot, dest_slot);
        self.established_in(now, meta, frame, f, id)
    }

    /// Whether `sloppy_tcp` takes a non-SYN packet of an unknown flow to service `svc`.
    fn sloppy(&self, svc: u32) -> bool {
        use crate::types::SchedulerKind as S;
        self.settings.sloppy_tcp
            && self
                .services
                .get(svc)
                .is_some_and(|s| matches!(s.config().scheduler, S::Mh | S::Sh | S::Dh))
    }

    /// Make room for `n` new entries (`embryonic`: the first is a TCP flow starting its
    /// handshake). When the table is full, or an embryonic one would pass the embryonic
    /// limit, the oldest entries that never got past SYN_RECV go, as a SYN queue drops its
    /// oldest requests; nothing else is ever evicted. Each eviction is counted.
    pub(crate) fn make_room(&mut self, n: usize, embryonic: bool) {
        let cap = self.settings.embryonic_limit();
        // Each eviction frees one entry, or two with the template it leaves idle.
        for _ in 0..2 * n.max(1) {
            let full = self.conns.len() + n > self.conns.limit();
            let crowded = embryonic && self.conns.embryonic() >= cap;
            if !(full || crowded) {
                return;
            }
            let Some(victim) = self.conns.oldest_embryonic() else {
                return;
            };
            let template = self.conns.get(victim).and_then(|c| c.controller);
            self.remove_conn(victim);
            self.counters.embryonic_evicted += 1;
            // A persistence template the evicted connection leaves controlling nothing
            // goes with it: a flood's templates would fill the table for their timeout.
            if let Some(t) = template
                && self.conns.get(t).is_some_and(|t| t.n_control == 0)
            {
                self.remove_conn(t);
            }
        }
    }

    fn count_new_conn(&mut self, svc: u32, dest: u32) {
        if let Some(s) = self.services.get_mut(svc) {
            s.stats.conns += 1;
            if let Some(d) = s.dest_mut(dest) {
                d.stats.conns += 1;
            }
        }
    }

    /// Count a new entry on its real server (inactive, or persistent for a template) and
    /// apply the upper threshold.
    fn bind(&mut self, svc: u32, dest: u32, template: bool) {
        if let Some(d) = self.services.get_mut(svc).and_then(|s| s.dest_mut(dest)) {
            if template {
                d.persistent += 1;
            } else {
                d.inactive += 1;
            }
            let u = d.config.upper_threshold;
            if u != 0 && d.active + d.inactive >= u {
                d.overloaded = true;
            }
        }
    }

    /// Find or create the persistence template for this client and return its real server.
    fn persistent_dest(
        &mut self,
        now: Time,
        svc_slot: u32,
        cfg: &ServiceConfig,
        p: crate::types::Persistence,
        ctx: &SchedCtx,
        fwmark: u32,
    ) -> Result<(u32, Option<ConnId>), DropReason> {
        let masked = p.netmask.apply(ctx.src);
        let (tvaddr, tvport) = match cfg.key {
            ServiceKey::Addr { addr, port, .. } => (addr, port),
            ServiceKey::Fwmark { .. } => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        };
        let tkey = FlowKey::template(ctx.proto, fwmark, masked, tvaddr, tvport);
        if let Some(tid) = self.conns.lookup_in(&tkey)
            && let Some(t) = self.conns.get(tid)
        {
            let dest_slot = t.dest;
            let svc = self.services.get(svc_slot);
            let usable = svc.is_some_and(|s| {
                s.is_live(dest_slot)
                    && !(self.settings.expire_quiescent_template
                        && s.dest(dest_slot).is_some_and(|d| d.weight() == 0))
            });
            if usable {
                return Ok((dest_slot, Some(tid)));
            }
            self.remove_conn(tid);
        }
        let dest_slot = self
            .services
            .get_mut(svc_slot)
            .and_then(|s| s.schedule(ctx))
            .ok_or(DropReason::NoRealServer)?;
        let daddr = self
            .services
            .get(svc_slot)
            .and_then(|s| s.dest(dest_slot))
            .map(|d| (d.addr(), d.port()));
        let Some((daddr, dport)) = daddr else {
            return Err(DropReason::NoRealServer);
        };
        let mut t = Conn::new(
            ctx.proto,
            (masked, 0),
            (tvaddr, tvport),
            (daddr, dport),
            svc_slot,
            dest_slot,
            ForwardMethod::DirectRoute,
        );
        t.flags = ConnFlags::TEMPLATE;
        t.fwmark = fwmark;
        t.timeout = p.timeout;
        let tid = self
            .conns
            .insert(t, now)
            .map_err(|_| DropReason::TableFull)?;
        self.services.acquire(svc_slot);
        self.bind(svc_slot, dest_slot, true);
        Ok((dest_slot, Some(tid)))
    }

    fn count_in(&mut self, svc: u32, dest: u32, bytes: usize) {
        if let Some(s) = self.services.get_mut(svc) {
            s.stats.count_in(bytes);
            if let Some(d) = s.dest_mut(dest) {
                d.stats.count_in(bytes);
            }
        }
    }

    fn count_out(&mut self, svc: u32, dest: u32, bytes: usize) {
        if let Some(s) = self.services.get_mut(svc) {
            s.stats.count_out(bytes);
            if let Some(d) = s.dest_mut(dest) {
                d.stats.count_out(bytes);
            }
        }
    }

    /// Move a connection's TCP state for a packet and keep the real server's active/inactive
    /// counts in step; refresh its timer.
    fn transition(&mut self, now: Time, id: ConnId, dir: Direction, tcp_flags: u8) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if dir == Direction::Output {
            c.flags.clear(ConnFlags::NO_OUTPUT);
        }
        let sees_output = !c.flags.has(ConnFlags::NO_OUTPUT);
        let state = tcp_next_state(c.state, dir, sees_output, tcp_flags);
        self.set_state(now, id, state);
        if let Some(j) = &mut self.journal {
            j.touched.push(id);
        }
    }

    /// Put a connection in `state` (TCP; other protocols keep theirs) with that state's
    /// timeout from `now`, keeping its real server's active/inactive counts in step.
    fn set_state(&mut self, now: Time, id: ConnId, state: TcpState) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let was_active = c.is_active();
        if c.proto == Protocol::Tcp {
            c.state = state;
            c.timeout = self.timeouts.tcp(c.state);
            if c.state == TcpState::Established {
                c.flags.clear(ConnFlags::INACTIVE);
            } else {
                c.flags.set(ConnFlags::INACTIVE);
            }
        }
        c.expires = now + c.timeout;
        let (is_active, svc, dest) = (c.is_active(), c.svc, c.dest);
        // A shorter timeout (a FIN, a RST) must move the entry's timer too.
        self.conns.expiry_moved(id);
        self.conns.state_changed(id);
        if was_active != is_active
            && let Some(d) = self.services.get_mut(svc).and_then(|s| s.dest_mut(dest))
        {
            if is_active {
                d.inactive = d.inactive.saturating_sub(1);
                d.active += 1;
            } else {
                d.active = d.active.saturating_sub(1);
                d.inactive += 1;
            }
        }
    }

    fn established_in(
        &mut self,
        now: Time,
        meta: &RxMeta,
        frame: &[u8],
        f: Flow,
        id: ConnId,
    ) -> Action {
        let Some(c) = self.conns.get(id) else {
            return Action::Drop(DropReason::NoConnection);
        };
        let (svc, dest, method, state) = (c.svc, c.dest, c.method, c.state);
        let nooutput = c.flags.has(ConnFlags::NO_OUTPUT);
        let dest_live = self.services.get(svc).is_some_and(|s| s.is_live(dest));
        // A new SYN on a finished connection starts a new one (conn_reuse_mode).
        if f.proto == Protocol::Tcp
            && f.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
        {
            let reuse = self.settings.conn_reuse_mode;
            let finished = state == TcpState::TimeWait
                || (reuse & 2 != 0 && state == TcpState::FinWait && nooutput)
                || state == TcpState::Close;
            if reuse & 1 != 0 && (finished || !dest_live) {
                self.remove_conn(id);
                return match self.services.lookup(f.proto, IpAddr::V4(f.dst), f.dport) {
                    Some(s) => self.new_conn(now, meta, frame, f, s),
                    None => Action::Drop(DropReason::NoConnection),
                };
            }
        }
        if !dest_live && self.settings.expire_nodest_conn {
            self.remove_conn(id);
            return Action::Drop(DropReason::DestRemoved);
        }
        if method == ForwardMethod::Tunnel
            && let Some(g) = meta.gso
        {
            // The encapsulated super-frame must be cut here (the kernel would not segment
            // an IP-in-IP frame we build): only TCP over IPv4 is, any other kind is refused
            // rather than handed to a segmenter that cannot cut it.
            if g.kind != GsoKind::Tcpv4 || f.proto != Protocol::Tcp {
                return Action::Drop(DropReason::GsoUnsupported);
            }
            let mtu = self.mtu_towards(c_daddr(&self.conns, id));
            let hdrs = f.ihl + tcp_header_len(frame, f.ihl);
            let mss = mtu
                .saturating_sub(TUN_OVERHEAD + hdrs)
                .max(8)
                .min(usize::from(g.size).max(8));
            return Action::Segment { mss: mss as u16 };
        }
        self.transition(now, id, Direction::Input, f.tcp_flags);
        self.count_in(svc, dest, f.ip_len);
        let Some(c) = self.conns.get(id) else {
            return Action::Drop(DropReason::NoConnection);
        };
        let conn = c.clone();
        self.transmit_in(meta, frame, f, &conn)
    }

    fn mtu_towards(&self, addr: Option<IpAddr>) -> usize {
        addr.and_then(|a| self.net.route(a))
            .and_then(|r| self.net.interface(r.ifindex))
            .map_or(1500, |i| usize::from(i.mtu))
    }

    /// The next hop towards `dst`. One whose MAC is unknown is given with an all-zero MAC
    /// when the frame can be held for it: `apply` then keeps the frame it transmits (the
    /// last `next_hop` of a frame is the one whose MACs it carries).
    fn next_hop(&mut self, dst: IpAddr) -> Result<NextHop, DropReason> {
        self.waiting_for = None;
        match self.net.next_hop(dst) {
            Ok(hop) => Ok(hop),
            Err(HopError::NoRoute | HopError::UnknownInterface) => Err(DropReason::NoRoute),
            Err(HopError::Unresolved { addr, hop, .. }) if self.hold.has_room(addr) => {
                self.waiting_for = Some(addr);
                Ok(hop)
            }
            Err(HopError::Unresolved { .. }) => Err(DropReason::NeighbourUnresolved),
        }
    }

    /// Send a client → real server packet by the connection's method.
    fn transmit_in(&mut self, meta: &RxMeta, frame: &[u8], f: Flow, conn: &Conn) -> Action {
        let IpAddr::V4(rip) = conn.daddr else {
            return Action::Drop(DropReason::Unsupported);
        };
        let hop = match self.next_hop(conn.daddr) {
            Ok(h) => h,
            Err(r) => return Action::Drop(r),
        };
        let too_big = f.ip_len > usize::from(hop.mtu) && meta.gso.is_none();
        match conn.method {
            ForwardMethod::Masq if too_big => self.too_big(meta.ifindex, frame, f, hop.mtu),
            ForwardMethod::Masq => Action::Nat {
                end: End::Destination,
                addr: rip,
                port: conn.dport,
                hop,
            },
            ForwardMethod::DirectRoute if !hop.on_link => Action::Drop(DropReason::NotOnLink),
            ForwardMethod::DirectRoute if too_big => self.too_big(meta.ifindex, frame, f, hop.mtu),
            ForwardMethod::DirectRoute => Action::Route { hop },
            ForwardMethod::Tunnel => self.tunnel(meta, frame, f, rip, hop),
        }
    }

    /// Answer a too-big DF packet with "fragmentation needed" for `mtu`; drop one without DF.
    fn too_big(&mut self, ifindex: u32, frame: &[u8], f: Flow, mtu: u16) -> Action {
        // The answer goes back the way the packet came, with its MACs swapped: it does not
        // wait for the next hop it was going to.
        self.waiting_for = None;
        let df = frame
            .get(ETH..)
            .and_then(|ip| Ipv4Packet::new_checked_truncated(ip).ok())
            .is_some_and(|ip| ip.dont_frag());
        if !df || !self.icmp_limit.allow(self.now) {
            return Action::Drop(DropReason::TooBig);
        }
        Action::Answer {
            ifindex,
            from: f.dst,
            error: FragNeededRepr { mtu }.error(),
        }
    }

    /// Answer a packet whose TTL ran out with "time exceeded in transit" from `from`; the
    /// frame counts as a `ttl_exceeded` drop (no answer if it cannot be built).
    fn time_exceeded(&mut self, ifindex: u32, from: Ipv4Addr) -> Action {
        self.waiting_for = None;
        if !self.icmp_limit.allow(self.now) {
            return Action::Drop(DropReason::TtlExceeded);
        }
        Action::Answer {
            ifindex,
            from,
            error: Icmpv4ErrorRepr {
                msg_type: icmpv4::msg_type::TIME_EXCEEDED,
                msg_code: icmpv4::time_exceeded_code::TTL,
                rest_of_header: 0,
            },
        }
    }

    fn tunnel(
        &mut self,
        meta: &RxMeta,
        frame: &[u8],
        f: Flow,
        rip: Ipv4Addr,
        hop: NextHop,
    ) -> Action {
        if f.ip_len + TUN_OVERHEAD > usize::from(hop.mtu) {
            let mtu = hop.mtu.saturating_sub(TUN_OVERHEAD as u16);
            return self.too_big(meta.ifindex, frame, f, mtu);
        }
        match hop.src_ip.or_else(|| self.interface_v4(hop.ifindex)) {
            Some(IpAddr::V4(dip)) => Action::Encap {
                src: dip,
                dst: rip,
                hop,
            },
            Some(IpAddr::V6(_)) | None => Action::Drop(DropReason::NoRoute),
        }
    }

    /// The source the director answers `dst` from: its route's preferred source, else an
    /// address of the route's interface.
    fn source_towards(&self, dst: IpAddr) -> Option<Ipv4Addr> {
        let r = self.net.route(dst)?;
        match r.src.or_else(|| self.interface_v4(r.ifindex))? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    fn interface_v4(&self, ifindex: u32) -> Option<IpAddr> {
        self.net
            .interface(ifindex)?
            .addrs
            .iter()
            .copied()
            .find(IpAddr::is_ipv4)
    }

    /// A reply from a NAT real server: source back to the virtual address, out to the client.
    fn nat_out(&mut self, now: Time, meta: &RxMeta, f: Flow, id: ConnId) -> Action {
        self.transition(now, id, Direction::Output, f.tcp_flags);
        let Some(c) = self.conns.get(id) else {
            return Action::Drop(DropReason::NoConnection);
        };
        let (svc, dest, vaddr, vport, caddr) = (c.svc, c.dest, c.vaddr, c.vport, c.caddr);
        self.count_out(svc, dest, f.ip_len);
        let IpAddr::V4(vip) = vaddr else {
            return Action::Drop(DropReason::Unsupported);
        };
        let hop = match self.next_hop(caddr) {
            Ok(h) => h,
            Err(r) => return Action::Drop(r),
        };
        if f.ip_len > usize::from(hop.mtu) && meta.gso.is_none() {
            return Action::Drop(DropReason::TooBig);
        }
        Action::Nat {
            end: End::Source,
            addr: vip,
            port: vport,
            hop,
        }
    }

    /// ICMP: errors quoting a tracked connection go to the right side; the rest is the
    /// kernel's (ping to the VIP included).
    fn icmp_v4(&mut self, meta: &RxMeta, frame: &[u8]) -> Action {
        let Ok(ip) = Ipv4Packet::new_checked(&frame[ETH..]) else {
            return Action::Drop(DropReason::Malformed);
        };
        let ihl = ip.header_len();
        if ip.is_fragment() {
            return Action::Pass;
        }
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            return Action::Pass;
        };
        if !icmp.is_error() {
            return Action::Pass;
        }
        let Ok(inner) = Ipv4Packet::new_checked_truncated(icmp.data()) else {
            return Action::Pass;
        };
        let Some(proto) = Protocol::from_number(inner.protocol()) else {
            return Action::Pass;
        };
        let Some((isport, idport)) = lvs_wire::transport_ports(inner.payload()) else {
            return Action::Pass;
        };
        let (isrc, idst) = (inner.src_addr(), inner.dst_addr());
        let ip_len = usize::from(ip.total_len());
        let key = FlowKey::new(proto, IpAddr::V4(idst), idport, IpAddr::V4(isrc), isport);
        let ours = self.conns.lookup_in(&key).is_some() || self.conns.lookup_out(&key).is_some();
        if ours {
            // Verified before it is translated: a rewrite would make a bad checksum good.
            if meta.truncated {
                return Action::Drop(DropReason::Truncated);
            }
            if let Err(r) = validate::ip_header(&ip) {
                return Action::Drop(r);
            }
            if lvs_wire::checksum::checksum(ip.payload()) != 0 {
                return Action::Drop(DropReason::BadChecksum);
            }
            if ip.ttl() <= 1 {
                // No error is sent about an error.
                return Action::Drop(DropReason::TtlExceeded);
            }
        }
        if let Some(id) = self.conns.lookup_in(&key) {
            // About traffic the client got from the VIP: on to the real server.
            let Some(c) = self.conns.get(id) else {
                return Action::Pass;
            };
            let conn = c.clone();
            self.count_in(conn.svc, conn.dest, ip_len);
            if conn.method == ForwardMethod::Masq {
                let IpAddr::V4(rip) = conn.daddr else {
                    return Action::Drop(DropReason::Unsupported);
                };
                return self.nat_icmp(End::Source, (rip, conn.dport), conn.daddr);
            }
            let f = Flow {
                proto: Protocol::Udp,
                src: ip.src_addr(),
                dst: ip.dst_addr(),
                sport: 0,
                dport: 0,
                tcp_flags: 0,
                ip_len,
                ihl,
            };
            let no_offload = RxMeta {
                csum_partial: false,
                gso: None,
                ..*meta
            };
            return self.transmit_in(&no_offload, frame, f, &conn);
        }
        if let Some(id) = self.conns.lookup_out(&key) {
            // About a packet we forwarded to a NAT real server: back to the client.
            let Some(c) = self.conns.get(id) else {
                return Action::Pass;
            };
            let conn = c.clone();
            let IpAddr::V4(vip) = conn.vaddr else {
                return Action::Drop(DropReason::Unsupported);
            };
            self.count_out(conn.svc, conn.dest, ip_len);
            return self.nat_icmp(End::Destination, (vip, conn.vport), conn.caddr);
        }
        Action::Pass
    }

    /// A NAT connection's ICMP error: the quoted packet's `end` becomes `to`, and the error
    /// leaves towards `via`.
    fn nat_icmp(&mut self, end: End, to: (Ipv4Addr, u16), via: IpAddr) -> Action {
        match self.next_hop(via) {
            Ok(hop) => Action::NatIcmp {
                end,
                addr: to.0,
                port: to.1,
                hop,
            },
            Err(r) => Action::Drop(r),
        }
    }
}

fn c_daddr(conns: &ConnTable, id: ConnId) -> Option<IpAddr> {
    conns.get(id).map(|c| c.daddr)
}

fn tcp_header_len(frame: &[u8], ihl: usize) -> usize {
    frame
        .get(ETH + ihl + 12)
        .map_or(20, |b| usize::from(b >> 4) * 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{self, PacketSpec, addr, tcp_flags};
    use crate::types::SchedulerKind;

    /// Every change to a TCP state with a shorter timeout than the one before moves the
    /// entry's expiry (virtual time, the timers run every 250 ms as in lvsd): for each pair of
    /// states (`from`, `to`) with `timeout(to) < timeout(from)` — every shortening transition
    /// the state tables have and more — an entry that sat in `from` past `timeout(to)` and
    /// then moves to `to` is still there just before `timeout(to)` has passed and gone just
    /// after, not at `from`'s deadline.
    #[test]
    fn every_shortening_state_change_expires_on_time() {
        let t = Timeouts::default();
        let tick = Duration::from_millis(250);
        let mut pairs = 0;
        for from in TcpState::ALL {
            for to in TcpState::ALL {
                let (long, short) = (t.tcp(from), t.tcp(to));
                if short >= long {
                    continue;
                }
                pairs += 1;
                let mut d =
                    sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
                let (mut f, len) =
                    PacketSpec::tcp((addr::CLIENT, 40000), (addr::VIP, 80), tcp_flags::SYN).frame();
                let meta = RxMeta {
                    ifindex: addr::FRONT,
                    ..RxMeta::default()
                };
                let t0 = Time::from_secs(1);
                assert!(matches!(
                    d.process(t0, &meta, &mut f, sim::HEADROOM, len),
                    Verdict::Transmit(_)
                ));
                let id = d.conns.iter().map(|(id, _)| id).next().unwrap();
                d.set_state(t0, id, from);
                // Time passes in `from` (ticks running), past what `to` would allow.
                let mut now = t0;
                let sat = (long - short).min(short) + tick;
                while now < t0 + sat {
                    now = now + tick;
                    d.expire(now);
                }
                assert_eq!(d.conns.len(), 1, "{from:?} kept its entry for {sat:?}");
                let t1 = now;
                d.set_state(t1, id, to);
                while now + tick < t1 + short {
                    now = now + tick;
                    d.expire(now);
                }
                assert_eq!(
                    d.conns.len(),
                    1,
                    "{from:?} -> {to:?}: gone before its {short:?}"
                );
                now = t1 + short + tick;
                d.expire(now);
                assert_eq!(
                    d.conns.len(),
                    0,
                    "{from:?} -> {to:?}: still there {short:?} + a tick after the change \
                     (its old deadline was {long:?})"
                );
            }
        }
        assert!(pairs >= 20, "{pairs} shortening pairs");
    }
}
