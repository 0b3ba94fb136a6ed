//! The connection table: one entry per client flow (and one per persistence template), found
//! by the client-side tuple and, for NAT, by the real-server-side tuple of the replies.
//!
//! Entries live in a slab (`Vec` + free list) so their indices are stable; two hash maps index
//! them; a [`TimerWheel`] expires them. Nothing here knows about services or packets: the
//! director binds entries to real servers and moves their state.

pub mod state;
pub mod wheel;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use foldhash::fast::FixedState;

use crate::time::Time;
use crate::types::{ForwardMethod, Protocol};
pub use state::{Direction, TcpState, Timeouts};
use wheel::{Due, TimerWheel};

/// Index of an entry plus the generation it had, so a stale handle is detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// Slab index.
    pub index: u32,
    /// Generation of the slot when the handle was taken.
    pub generation: u32,
}

/// Connection flags (a subset of IPVS's `IP_VS_CONN_F_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnFlags(pub u8);

impl ConnFlags {
    /// Not established: counted in the real server's InActConn.
    pub const INACTIVE: ConnFlags = ConnFlags(1);
    /// The director has not seen (DR, Tun: will never see) a reply.
    pub const NO_OUTPUT: ConnFlags = ConnFlags(2);
    /// A persistence template, not a flow.
    pub const TEMPLATE: ConnFlags = ConnFlags(4);
    /// Indexed by the reply tuple too (NAT).
    pub const OUT_HASHED: ConnFlags = ConnFlags(8);
    /// A TCP flow that has not got past SYN_RECV: a SYN flood's entries are these, and the
    /// first to go when they crowd the table ([`ConnTable::oldest_embryonic`]).
    pub const EMBRYONIC: ConnFlags = ConnFlags(16);

    /// Whether all of `f` is set.
    #[inline]
    pub fn has(self, f: ConnFlags) -> bool {
        self.0 & f.0 == f.0
    }
    /// Set `f`.
    #[inline]
    pub fn set(&mut self, f: ConnFlags) {
        self.0 |= f.0;
    }
    /// Clear `f`.
    #[inline]
    pub fn clear(&mut self, f: ConnFlags) {
        self.0 &= !f.0;
    }
}

/// A connection (or persistence template) entry.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Transport protocol.
    pub proto: Protocol,
    /// Client address (masked client network for templates).
    pub caddr: IpAddr,
    /// Client port (0 for templates).
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
    /// Firewall mark of the service (0 for address services).
    pub fwmark: u32,
    /// Service slot.
    pub svc: u32,
    /// Real-server slot within the service.
    pub dest: u32,
    /// Forwarding method copied from the real server when scheduled.
    pub method: ForwardMethod,
    /// State (TCP state machine; `None` for UDP and templates).
    pub state: TcpState,
    /// Flags.
    pub flags: ConnFlags,
    /// Timeout of the current state.
    pub timeout: Duration,
    /// When the entry expires unless refreshed.
    pub expires: Time,
    /// The persistence template this connection belongs to.
    pub controller: Option<ConnId>,
    /// Connections controlled by this template.
    pub n_control: u32,
    generation: u32,
    live: bool,
    /// Sequence of the entry's one valid timer (see [`wheel::Timer`]).
    timer_seq: u32,
    /// The deadline that timer is filed under.
    filed: Time,
}

impl Conn {
    /// A new flow entry (state `None`, inactive, as IPVS creates them).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        proto: Protocol,
        (caddr, cport): (IpAddr, u16),
        (vaddr, vport): (IpAddr, u16),
        (daddr, dport): (IpAddr, u16),
        svc: u32,
        dest: u32,
        method: ForwardMethod,
    ) -> Conn {
        let mut flags = ConnFlags::INACTIVE;
        if method != ForwardMethod::Masq {
            flags.set(ConnFlags::NO_OUTPUT);
        }
        Conn {
            proto,
            caddr,
            cport,
            vaddr,
            vport,
            daddr,
            dport,
            fwmark: 0,
            svc,
            dest,
            method,
            state: TcpState::None,
            flags,
            timeout: Duration::from_secs(2),
            expires: Time::ZERO,
            controller: None,
            n_control: 0,
            generation: 0,
            live: false,
            timer_seq: 0,
            filed: Time::ZERO,
        }
    }

    /// Whether this is a persistence template.
    #[inline]
    pub fn is_template(&self) -> bool {
        self.flags.has(ConnFlags::TEMPLATE)
    }

    /// Whether the entry counts as active (TCP ESTABLISHED).
    #[inline]
    pub fn is_active(&self) -> bool {
        !self.flags.has(ConnFlags::INACTIVE)
    }

    /// Time left before expiry.
    pub fn remaining(&self, now: Time) -> Duration {
        self.expires.saturating_since(now)
    }

    /// The key this entry is found by from the client side.
    pub fn in_key(&self) -> FlowKey {
        if self.is_template() {
            FlowKey::template(self.proto, self.fwmark, self.caddr, self.vaddr, self.vport)
        } else {
            FlowKey::new(self.proto, self.caddr, self.cport, self.vaddr, self.vport)
        }
    }

    /// The key replies from the real server are found by (NAT).
    pub fn out_key(&self) -> FlowKey {
        FlowKey::new(self.proto, self.daddr, self.dport, self.caddr, self.cport)
    }
}

/// A lookup key: protocol plus source and destination address and port of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
    template: bool,
    fwmark: u32,
}

impl FlowKey {
    /// Key of a packet `src:sport → dst:dport`.
    #[inline]
    pub fn new(proto: Protocol, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> FlowKey {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto: proto.number(),
            template: false,
            fwmark: 0,
        }
    }

    /// Key of a persistence template: masked client, service address/port or mark.
    pub fn template(
        proto: Protocol,
        fwmark: u32,
        client: IpAddr,
        vaddr: IpAddr,
        vport: u16,
    ) -> FlowKey {
        FlowKey {
            src: client,
            dst: vaddr,
            sport: 0,
            dport: vport,
            proto: if fwmark != 0 { 0 } else { proto.number() },
            template: true,
            fwmark,
        }
    }
}

/// Whether a TCP flow in `state` has not got past the handshake.
fn is_embryonic_state(state: TcpState) -> bool {
    matches!(state, TcpState::None | TcpState::SynRecv)
}

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

type Map = HashMap<FlowKey, u32, FixedState>;

/// The connection table.
#[derive(Debug)]
pub struct ConnTable {
    entries: Vec<Conn>,
    /// Free slots, lowest first: live entries gather at the start of `entries`, so that the
    /// end can be given back when the table empties ([`ConnTable::shrink`]).
    free: BinaryHeap<Reverse<u32>>,
    by_in: Map,
    by_out: Map,
    wheel: TimerWheel,
    len: usize,
    limit: usize,
    /// Entries reserved up front, never given back.
    reserved: usize,
    /// Embryonic entries (slot, generation), oldest first. Lazy: one that got past SYN_RECV
    /// or left stays until it reaches the front (or the queue is compacted).
    embryonic: VecDeque<(u32, u32)>,
    /// Live entries with [`ConnFlags::EMBRYONIC`].
    n_embryonic: usize,
    /// The generation a slot pushed anew starts at: above every generation a slot given
    /// back by [`ConnTable::shrink`] had, so no handle to a forgotten entry finds a new one.
    generation_floor: u32,
}

/// Wheel slots: 4096 ticks of 250 ms cover the longest default timeout (900 s) in one turn.
const WHEEL_SLOTS: usize = 4096;
const WHEEL_TICK_NANOS: u64 = 250_000_000;

impl ConnTable {
    /// A table holding at most `limit` entries, with room for `preallocate` of them reserved
    /// up front (so the packet path does not allocate until that many exist). `hash_seed`
    /// keys the hash maps: pass a random value in production (flooding defence) and a fixed
    /// one in tests.
    pub fn new(limit: usize, preallocate: usize, hash_seed: u64, now: Time) -> ConnTable {
        let pre = preallocate.min(limit);
        ConnTable {
            entries: Vec::with_capacity(pre),
            free: BinaryHeap::with_capacity(pre),
            by_in: Map::with_capacity_and_hasher(pre, FixedState::with_seed(hash_seed)),
            by_out: Map::with_capacity_and_hasher(
                pre,
                FixedState::with_seed(hash_seed ^ 0x9e37_79b9_7f4a_7c15),
            ),
            wheel: TimerWheel::new(WHEEL_SLOTS, WHEEL_TICK_NANOS, now),
            len: 0,
            limit,
            reserved: pre,
            embryonic: VecDeque::new(),
            n_embryonic: 0,
            generation_floor: 0,
        }
    }

    /// Entries the slab has room for now (memory held, whether used or not).
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Live TCP flows that have not got past SYN_RECV.
    pub fn embryonic(&self) -> usize {
        self.n_embryonic
    }

    /// The oldest live embryonic entry, taken off the queue (the caller removes it).
    pub fn oldest_embryonic(&mut self) -> Option<ConnId> {
        while let Some((index, generation)) = self.embryonic.pop_front() {
            let id = ConnId { index, generation };
            if self
                .get(id)
                .is_some_and(|c| c.flags.has(ConnFlags::EMBRYONIC))
            {
                return Some(id);
            }
        }
        None
    }

    /// After `id`'s TCP state changed: an entry past SYN_RECV is no longer embryonic.
    #[inline]
    pub fn state_changed(&mut self, id: ConnId) {
        let Some(c) = self.get_mut(id) else {
            return;
        };
        if c.flags.has(ConnFlags::EMBRYONIC) && !is_embryonic_state(c.state) {
            c.flags.clear(ConnFlags::EMBRYONIC);
            self.n_embryonic -= 1;
        }
    }

    /// Give memory back once the table holds a quarter of what it has room for: slots past
    /// the last live entry, and the indexes' spare capacity (never below the reservation).
    /// Live entries near the end of the slab are moved into free slots nearer the start
    /// first, so that a few long-lived ones a burst left at high slots do not keep its
    /// memory: each moved entry's old and new handle is returned, for the owner to rename
    /// the handles it keeps (templates' `controller` fields are renamed here). Cheap when
    /// there is nothing to give back; call it from the timer tick.
    pub fn shrink(&mut self) -> Vec<(ConnId, ConnId)> {
        let cap = self.entries.capacity();
        if cap <= self.reserved.max(1024) || self.len * 4 > cap {
            return Vec::new();
        }
        let last_live = |e: &[Conn]| e.iter().rposition(|c| c.live).map_or(0, |i| i + 1);
        let mut keep = last_live(&self.entries);
        let mut moved = Vec::new();
        // Live entries spread far beyond what they need: gather them at the start.
        if keep > (self.len * 2).max(self.reserved).max(1024) {
            moved = self.relocate();
            keep = last_live(&self.entries);
        }
        // Nothing worth the rebuild below.
        if keep + keep / 3 >= cap {
            return moved;
        }
        if let Some(g) = self.entries[keep..].iter().map(|c| c.generation).max() {
            self.generation_floor = self.generation_floor.max(g.wrapping_add(1));
        }
        self.entries.truncate(keep);
        self.entries.shrink_to(self.reserved.max(keep));
        let free: Vec<_> = std::mem::take(&mut self.free)
            .into_iter()
            .filter(|Reverse(i)| (*i as usize) < keep)
            .collect();
        self.free = BinaryHeap::from(free);
        self.free.shrink_to(self.reserved);
        let want = self.reserved.max(self.len);
        self.by_in.shrink_to(want);
        self.by_out.shrink_to(want);
        self.embryonic.retain(|&(i, _)| (i as usize) < keep);
        self.embryonic.shrink_to(self.n_embryonic);
        self.wheel.shrink();
        moved
    }

    /// Move live entries from the end of the slab into the lowest free slots, as long as a
    /// free slot lies below the last live entry. A moved entry gets the next generation of
    /// its new slot (handles to the slot's earlier entry stay stale) and a new timer there
    /// (the old one is stale with the old slot); the indexes, the embryonic queue and the
    /// templates' `controller` fields follow it.
    fn relocate(&mut self) -> Vec<(ConnId, ConnId)> {
        let mut moved = Vec::new();
        let mut hi = self.entries.len();
        loop {
            while hi > 0 && !self.entries[hi - 1].live {
                hi -= 1;
            }
            let Some(&Reverse(low)) = self.free.peek() else {
                break;
            };
            if hi == 0 || low as usize >= hi - 1 {
                break;
            }
            self.free.pop();
            let from = hi - 1;
            let mut c = self.entries[from].clone();
            let old = ConnId {
                index: from as u32,
                generation: c.generation,
            };
            c.generation = self.entries[low as usize].generation.wrapping_add(1);
            c.timer_seq = c.timer_seq.wrapping_add(1);
            let new = ConnId {
                index: low,
                generation: c.generation,
            };
            if self.by_in.get(&c.in_key()) == Some(&old.index) {
                self.by_in.insert(c.in_key(), low);
            }
            if c.flags.has(ConnFlags::OUT_HASHED)
                && self.by_out.get(&c.out_key()) == Some(&old.index)
            {
                self.by_out.insert(c.out_key(), low);
            }
            self.wheel
                .schedule((low, new.generation, c.timer_seq), c.filed);
            self.entries[low as usize] = c;
            self.entries[from].live = false;
            self.free.push(Reverse(old.index));
            moved.push((old, new));
        }
        if moved.is_empty() {
            return moved;
        }
        let mut renamed: HashMap<ConnId, ConnId, FixedState> =
            HashMap::with_hasher(FixedState::with_seed(0));
        renamed.extend(moved.iter().copied());
        for c in self.entries.iter_mut().filter(|c| c.live) {
            if let Some(ctl) = c.controller
                && let Some(&new) = renamed.get(&ctl)
            {
                c.controller = Some(new);
            }
        }
        for e in &mut self.embryonic {
            let id = ConnId {
                index: e.0,
                generation: e.1,
            };
            if let Some(new) = renamed.get(&id) {
                *e = (new.index, new.generation);
            }
        }
        moved
    }

    /// Entries in use (flows and templates).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of entries.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Find an entry by its client-side key.
    #[inline]
    pub fn lookup_in(&self, key: &FlowKey) -> Option<ConnId> {
        self.by_in.get(key).map(|&i| self.id_of(i))
    }

    /// Find a NAT entry by the key of a reply from its real server.
    #[inline]
    pub fn lookup_out(&self, key: &FlowKey) -> Option<ConnId> {
        self.by_out.get(key).map(|&i| self.id_of(i))
    }

    fn id_of(&self, index: u32) -> ConnId {
        let generation = self.entries.get(index as usize).map_or(0, |c| c.generation);
        ConnId { index, generation }
    }

    /// The entry behind a handle, if it is still the same entry.
    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.entries
            .get(id.index as usize)
            .filter(|c| c.live && c.generation == id.generation)
    }

    /// Mutable access to the entry behind a handle.
    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.entries
            .get_mut(id.index as usize)
            .filter(|c| c.live && c.generation == id.generation)
    }

    /// Insert an entry expiring `conn.timeout` after `now`; NAT entries are also indexed by
    /// their reply tuple. An entry with the same client key is replaced in the index (the
    /// caller removes the old one first).
    pub fn insert(&mut self, mut conn: Conn, now: Time) -> Result<ConnId, TableFull> {
        if self.len >= self.limit {
            return Err(TableFull);
        }
        conn.live = true;
        conn.expires = now + conn.timeout;
        if conn.method == ForwardMethod::Masq && !conn.is_template() {
            conn.flags.set(ConnFlags::OUT_HASHED);
        }
        let embryonic =
            conn.proto == Protocol::Tcp && !conn.is_template() && is_embryonic_state(conn.state);
        if embryonic {
            conn.flags.set(ConnFlags::EMBRYONIC);
        }
        let index = match self.free.pop().map(|Reverse(i)| i) {
            Some(i) => {
                conn.generation = self.entries[i as usize].generation.wrapping_add(1);
                self.entries[i as usize] = conn;
                i
            }
            None => {
                let i = u32::try_from(self.entries.len()).map_err(|_| TableFull)?;
                conn.generation = self.generation_floor;
                self.entries.push(conn);
                i
            }
        };
        let c = &self.entries[index as usize];
        self.by_in.insert(c.in_key(), index);
        if c.flags.has(ConnFlags::OUT_HASHED) {
            self.by_out.insert(c.out_key(), index);
        }
        let id = ConnId {
            index,
            generation: c.generation,
        };
        let (expires, seq) = (c.expires, c.timer_seq);
        self.entries[index as usize].filed = expires;
        self.wheel.schedule((index, id.generation, seq), expires);
        self.len += 1;
        if embryonic {
            self.n_embryonic += 1;
            self.embryonic.push_back((index, id.generation));
            // Entries that moved on leave from the front as new ones come in; a front that
            // stays embryonic (an old SYN_RECV) would let the rest pile up, so the queue is
            // compacted when it is twice the table's size.
            for _ in 0..2 {
                match self.embryonic.front() {
                    Some(&(i, g))
                        if !self.is_embryonic(ConnId {
                            index: i,
                            generation: g,
                        }) =>
                    {
                        self.embryonic.pop_front();
                    }
                    _ => break,
                }
            }
            if self.embryonic.len() > 2 * self.len.max(512) {
                let mut q = std::mem::take(&mut self.embryonic);
                q.retain(|&(i, g)| {
                    self.is_embryonic(ConnId {
                        index: i,
                        generation: g,
                    })
                });
                self.embryonic = q;
            }
        }
        Ok(id)
    }

    fn is_embryonic(&self, id: ConnId) -> bool {
        self.get(id)
            .is_some_and(|c| c.flags.has(ConnFlags::EMBRYONIC))
    }

    /// After `id`'s `expires` moved: when it is now earlier than the deadline its timer is
    /// filed under (a state with a shorter timeout, e.g. ESTABLISHED to TIME_WAIT), file a
    /// new timer for it and make the old one stale, so the entry goes when it is due and not
    /// at the old deadline. Later deadlines need nothing: the timer re-files itself.
    #[inline]
    pub fn expiry_moved(&mut self, id: ConnId) {
        let Some(c) = self.get_mut(id) else {
            return;
        };
        if c.expires >= c.filed {
            return;
        }
        c.timer_seq = c.timer_seq.wrapping_add(1);
        c.filed = c.expires;
        let (seq, at) = (c.timer_seq, c.expires);
        self.wheel.schedule((id.index, id.generation, seq), at);
    }

    /// Remove an entry now, returning it.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let c = self.get(id)?;
        let (in_key, out_key, out) = (c.in_key(), c.out_key(), c.flags.has(ConnFlags::OUT_HASHED));
        if self.by_in.get(&in_key) == Some(&id.index) {
            self.by_in.remove(&in_key);
        }
        if out && self.by_out.get(&out_key) == Some(&id.index) {
            self.by_out.remove(&out_key);
        }
        let slot = &mut self.entries[id.index as usize];
        slot.live = false;
        if slot.flags.has(ConnFlags::EMBRYONIC) {
            self.n_embryonic -= 1;
        }
        let gone = slot.clone();
        self.free.push(Reverse(id.index));
        self.len -= 1;
        Some(gone)
    }

    /// Expire what is due at `now`: every removed entry is handed to `expired`. A template
    /// still controlling connections is kept for another period, as in IPVS; so is an entry
    /// whose packets `last_seen` says were forwarded elsewhere (a fast path) within its
    /// timeout.
    pub fn expire(
        &mut self,
        now: Time,
        mut last_seen: impl FnMut(&Conn) -> Option<Time>,
        mut expired: impl FnMut(ConnId, Conn),
    ) -> usize {
        let mut wheel = std::mem::take(&mut self.wheel);
        let n = wheel.advance(now, |(index, generation, seq)| {
            let id = ConnId { index, generation };
            let Some(c) = self.get_mut(id) else {
                return Due::Stale;
            };
            if c.timer_seq != seq {
                return Due::Stale; // replaced by an earlier timer
            }
            let later = |c: &mut Conn, at: Time| {
                c.filed = at;
                Due::Later(at)
            };
            if c.expires > now {
                let at = c.expires;
                return later(c, at);
            }
            if c.is_template() && c.n_control > 0 {
                c.expires = now + c.timeout;
                let at = c.expires;
                return later(c, at);
            }
            if let Some(seen) = last_seen(c)
                && seen + c.timeout > now
            {
                c.expires = seen + c.timeout;
                let at = c.expires;
                return later(c, at);
            }
            match self.remove(id) {
                Some(conn) => {
                    expired(id, conn);
                    Due::Expired
                }
                None => Due::Stale,
            }
        });
        self.wheel = wheel;
        n
    }

    /// Every live entry from slot `start` on, in slab order (a listing's next page starts
    /// where the last one ended: entries never move between slots).
    pub fn iter_from(&self, start: u32) -> impl Iterator<Item = (ConnId, &Conn)> {
        let start = (start as usize).min(self.entries.len());
        self.entries[start..]
            .iter()
            .enumerate()
            .filter(|(_, c)| c.live)
            .map(move |(i, c)| {
                (
                    ConnId {
                        index: (start + i) as u32,
                        generation: c.generation,
                    },
                    c,
                )
            })
    }

    /// Every live entry, in slab order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, c)| c.live)
            .map(|(i, c)| {
                (
                    ConnId {
                        index: i as u32,
                        generation: c.generation,
                    },
                    c,
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, a))
    }

    fn conn(cport: u16, method: ForwardMethod, secs: u64) -> Conn {
        let mut c = Conn::new(
            Protocol::Tcp,
            (ip(1), cport),
            (ip(100), 80),
            (ip(10), 8080),
            0,
            0,
            method,
        );
        c.timeout = Duration::from_secs(secs);
        c
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = ConnTable::new(10, 10, 1, Time::ZERO);
        let id = t
            .insert(conn(1000, ForwardMethod::Masq, 60), Time::ZERO)
            .unwrap();
        let k = FlowKey::new(Protocol::Tcp, ip(1), 1000, ip(100), 80);
        assert_eq!(t.lookup_in(&k), Some(id));
        let ko = FlowKey::new(Protocol::Tcp, ip(10), 8080, ip(1), 1000);
        assert_eq!(t.lookup_out(&ko), Some(id));
        assert!(t.remove(id).is_some());
        assert_eq!(t.lookup_in(&k), None);
        assert_eq!(t.lookup_out(&ko), None);
        assert!(t.get(id).is_none(), "stale handle must not resolve");
        let id2 = t
            .insert(conn(1001, ForwardMethod::DirectRoute, 60), Time::ZERO)
            .unwrap();
        assert_eq!(id2.index, id.index);
        assert_ne!(id2.generation, id.generation);
        let ko2 = FlowKey::new(Protocol::Tcp, ip(10), 8080, ip(1), 1001);
        assert_eq!(
            t.lookup_out(&ko2),
            None,
            "DR entries are not indexed by reply tuple"
        );
    }

    #[test]
    fn a_handle_from_before_a_shrink_finds_nothing_after_it() {
        let now = Time::ZERO;
        let mut t = ConnTable::new(100_000, 0, 1, now);
        let ids: Vec<_> = (0..5_000u16)
            .map(|p| {
                t.insert(conn(p + 1, ForwardMethod::DirectRoute, 60), now)
                    .unwrap()
            })
            .collect();
        for id in &ids[1..] {
            t.remove(*id);
        }
        let before = t.capacity();
        t.shrink();
        assert!(t.capacity() < before, "{} -> {}", before, t.capacity());
        let fresh = t
            .insert(conn(9, ForwardMethod::DirectRoute, 60), now)
            .unwrap();
        assert_eq!(fresh.index, ids[1].index, "the slot is pushed anew");
        assert!(t.get(ids[1]).is_none(), "the old handle finds nothing");
        assert!(t.get(fresh).is_some());
        assert!(t.get(ids[0]).is_some());
    }

    /// A few live entries a burst left at the end of the slab (a NAT flow, a template and a
    /// connection it controls) do not keep the slab's memory: shrinking moves them to low
    /// slots, where lookups, timers and the template link still find them, and the old
    /// handles find nothing.
    #[test]
    fn entries_left_at_the_end_are_moved_so_the_slab_shrinks() {
        let now = Time::ZERO;
        let mut t = ConnTable::new(100_000, 0, 1, now);
        let ids: Vec<_> = (0..20_000u16)
            .map(|p| {
                t.insert(conn(p + 1, ForwardMethod::DirectRoute, 60), now)
                    .unwrap()
            })
            .collect();
        // The last three slots: a template, a NAT flow it controls, and another NAT flow.
        let mut tpl = conn(0, ForwardMethod::Masq, 300);
        tpl.cport = 0;
        tpl.flags.set(ConnFlags::TEMPLATE);
        let tpl_id = t.insert(tpl, now).unwrap();
        let mut ctl = conn(40_000, ForwardMethod::Masq, 30);
        ctl.controller = Some(tpl_id);
        let ctl_id = t.insert(ctl, now).unwrap();
        let nat_id = t
            .insert(conn(40_001, ForwardMethod::Masq, 10), now)
            .unwrap();
        for id in &ids[5..] {
            t.remove(*id);
        }
        let before = t.capacity();
        let moved = t.shrink();
        assert_eq!(moved.len(), 3, "{moved:?}");
        assert!(t.capacity() < before / 4, "{before} -> {}", t.capacity());
        for (old, new) in &moved {
            assert!(
                t.get(*old).is_none(),
                "the old handle {old:?} finds nothing"
            );
            assert!(t.get(*new).is_some());
            assert!(new.index < 10, "moved to a low slot: {new:?}");
        }
        let renamed = |id: ConnId| moved.iter().find(|(o, _)| *o == id).map(|(_, n)| *n);
        let (tpl_new, ctl_new, nat_new) = (
            renamed(tpl_id).unwrap(),
            renamed(ctl_id).unwrap(),
            renamed(nat_id).unwrap(),
        );
        assert_eq!(t.get(ctl_new).unwrap().controller, Some(tpl_new));
        let k = FlowKey::new(Protocol::Tcp, ip(1), 40_001, ip(100), 80);
        assert_eq!(t.lookup_in(&k), Some(nat_new));
        let ko = FlowKey::new(Protocol::Tcp, ip(10), 8080, ip(1), 40_001);
        assert_eq!(t.lookup_out(&ko), Some(nat_new));
        assert_eq!(t.len(), 8);
        // Timers: the 10 s flow goes at 10 s, the 30 s one at 30 s, from their new slots.
        let mut gone = Vec::new();
        t.expire(
            now + Duration::from_secs(11),
            |_| None,
            |id, _| gone.push(id),
        );
        assert_eq!(gone, vec![nat_new]);
        gone.clear();
        t.expire(
            now + Duration::from_secs(31),
            |_| None,
            |id, _| gone.push(id),
        );
        assert_eq!(gone, vec![ctl_new]);
        assert_eq!(t.lookup_in(&k), None);
    }

    #[test]
    fn iter_from_starts_at_a_slot() {
        let now = Time::ZERO;
        let mut t = ConnTable::new(100, 0, 1, now);
        let ids: Vec<_> = (0..6u16)
            .map(|p| {
                t.insert(conn(p + 1, ForwardMethod::DirectRoute, 60), now)
                    .unwrap()
            })
            .collect();
        t.remove(ids[3]);
        let from: Vec<u32> = t.iter_from(2).map(|(id, _)| id.index).collect();
        assert_eq!(from, vec![2, 4, 5]);
        assert!(t.iter_from(6).next().is_none());
        assert!(t.iter_from(u32::MAX).next().is_none());
        assert_eq!(t.iter_from(0).count(), t.iter().count());
    }

    #[test]
    fn full_table_is_refused() {
        let mut t = ConnTable::new(2, 0, 1, Time::ZERO);
        t.insert(conn(1, ForwardMethod::Masq, 60), Time::ZERO)
            .unwrap();
        t.insert(conn(2, ForwardMethod::Masq, 60), Time::ZERO)
            .unwrap();
        assert_eq!(
            t.insert(conn(3, ForwardMethod::Masq, 60), Time::ZERO),
            Err(TableFull)
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn expiry_follows_refreshed_deadlines() {
        let mut t = ConnTable::new(10, 10, 1, Time::ZERO);
        let a = t
            .insert(conn(1, ForwardMethod::Masq, 10), Time::ZERO)
            .unwrap();
        let b = t
            .insert(conn(2, ForwardMethod::Masq, 10), Time::ZERO)
            .unwrap();
        // Refresh b at t=8 for another 10 s.
        t.get_mut(b).unwrap().expires = Time::from_secs(18);
        let mut gone = Vec::new();
        for s in 1..=20 {
            t.expire(Time::from_secs(s), |_| None, |id, _| gone.push((id, s)));
        }
        assert_eq!(gone, vec![(a, 10), (b, 18)]);
        assert!(t.is_empty());
    }

    #[test]
    fn template_outlives_its_connections() {
        let mut t = ConnTable::new(10, 10, 1, Time::ZERO);
        let mut tpl = conn(0, ForwardMethod::DirectRoute, 5);
        tpl.flags.set(ConnFlags::TEMPLATE);
        tpl.n_control = 1;
        let id = t.insert(tpl, Time::ZERO).unwrap();
        for s in 1..=12 {
            t.expire(Time::from_secs(s), |_| None, |_, _| {});
        }
        assert!(t.get(id).is_some());
        t.get_mut(id).unwrap().n_control = 0;
        let mut gone_at = None;
        for s in 13..=30 {
            t.expire(
                Time::from_secs(s),
                |_| None,
                |_, _| gone_at = gone_at.or(Some(s)),
            );
        }
        assert!(gone_at.is_some_and(|s| s <= 20), "gone at {gone_at:?}");
    }
}
