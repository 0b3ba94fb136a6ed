//! Virtual services and their real servers.

use std::net::IpAddr;

use crate::stats::{Estimator, Stats};
use crate::types::ForwardMethod;

/// Largest weight a real server may have (ipvsadm accepts 0..=65535).
pub const MAX_WEIGHT: u32 = 65535;

/// What the operator says about a real server (`-a -r RIP[:port] -m|-g|-i -w W -x U -y L`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DestConfig {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (for DR and Tun it must equal the virtual port; IPVS ignores it).
    pub port: u16,
    /// Weight 0..=65535; 0 means quiescent: no new connections, existing ones continue.
    pub weight: u32,
    /// Forwarding method.
    pub method: ForwardMethod,
    /// Upper connection threshold (`-x`), 0 = none.
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    pub lower_threshold: u32,
}

impl DestConfig {
    /// A real server with weight 1, no thresholds.
    pub fn new(addr: IpAddr, port: u16, method: ForwardMethod) -> DestConfig {
        DestConfig {
            addr,
            port,
            weight: 1,
            method,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    /// The same real server with another weight.
    pub fn with_weight(mut self, weight: u32) -> DestConfig {
        self.weight = weight;
        self
    }
}

/// A real server as the data path sees it: configuration plus live counts.
#[derive(Clone, Debug)]
pub struct Dest {
    /// Configuration.
    pub config: DestConfig,
    /// Connections in TCP ESTABLISHED (IPVS's ActiveConn).
    pub active: u32,
    /// All other connections (IPVS's InActConn).
    pub inactive: u32,
    /// Persistence templates pointing at this server.
    pub persistent: u32,
    /// Set when `active + inactive >= upper threshold`; cleared by the lower threshold.
    pub overloaded: bool,
    /// Traffic counters.
    pub stats: Stats,
    /// Rate estimator over `stats`.
    pub est: Estimator,
}

impl Dest {
    /// A real server with no connections.
    pub fn new(config: DestConfig) -> Dest {
        Dest {
            config,
            active: 0,
            inactive: 0,
            persistent: 0,
            overloaded: false,
            stats: Stats::default(),
            est: Estimator::default(),
        }
    }

    /// Address.
    #[inline]
    pub fn addr(&self) -> IpAddr {
        self.config.addr
    }

    /// Port.
    #[inline]
    pub fn port(&self) -> u16 {
        self.config.port
    }

    /// Weight.
    #[inline]
    pub fn weight(&self) -> u32 {
        self.config.weight
    }

    /// IPVS's connection overhead used by lc/wlc: `256 * ActiveConn + InActConn`.
    #[inline]
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }

    /// Whether a scheduler may pick this server for a new connection: weight above zero and
    /// not overloaded.
    #[inline]
    pub fn available(&self) -> bool {
        self.config.weight > 0 && !self.overloaded
    }
}

use std::collections::HashMap;
use std::fmt;

use crate::sched::{Compiled, SchedCtx, Scheduler, new_scheduler};
use crate::types::{Family, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceKey};

/// What the operator says about a virtual service (`-A -t|-u|-f ... -s sched -b flags -p -M -o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceConfig {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduling algorithm.
    pub scheduler: SchedulerKind,
    /// Scheduler flags.
    pub flags: SchedFlags,
    /// Persistence, if any.
    pub persistence: Option<Persistence>,
    /// One-packet scheduling (`-o`, UDP only): every datagram is scheduled on its own.
    pub one_packet: bool,
}

impl ServiceConfig {
    /// A service with the default scheduler (wlc), no persistence.
    pub fn new(key: ServiceKey) -> ServiceConfig {
        ServiceConfig {
            key,
            scheduler: SchedulerKind::Wlc,
            flags: SchedFlags::default(),
            persistence: None,
            one_packet: false,
        }
    }

    /// The same service with another scheduler.
    pub fn with_scheduler(mut self, scheduler: SchedulerKind) -> ServiceConfig {
        self.scheduler = scheduler;
        self
    }
}

/// A configuration change the service table refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `-A` of a service that exists.
    ServiceExists(ServiceKey),
    /// A command naming a service that does not exist.
    NoSuchService(ServiceKey),
    /// `-a` of a real server the service already has.
    DestExists(IpAddr, u16),
    /// `-e`/`-d` of a real server the service does not have.
    NoSuchDest(IpAddr, u16),
    /// Weight above 65535.
    WeightOutOfRange(u32),
    /// Lower threshold above upper threshold.
    ThresholdOrder {
        /// `-x`.
        upper: u32,
        /// `-y`.
        lower: u32,
    },
    /// A real server of another address family than its service (only tunnelling may mix).
    FamilyMismatch(IpAddr),
    /// Persistence netmask of the wrong family or length.
    BadNetmask,
    /// One-packet scheduling on a non-UDP service.
    OnePacketNotUdp,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ServiceExists(k) => write!(f, "Service already exists ({k})"),
            ConfigError::NoSuchService(k) => write!(f, "No such service ({k})"),
            ConfigError::DestExists(a, p) => {
                write!(f, "Destination already exists ({})", SockFmt(*a, *p))
            }
            ConfigError::NoSuchDest(a, p) => write!(f, "No such destination ({})", SockFmt(*a, *p)),
            ConfigError::WeightOutOfRange(w) => {
                write!(
                    f,
                    "illegal weight {w}: a weight is an integer from 0 to {MAX_WEIGHT}"
                )
            }
            ConfigError::ThresholdOrder { upper, lower } => write!(
                f,
                "lower threshold {lower} is higher than upper threshold {upper}: set -y below -x (or -x 0 for none)"
            ),
            ConfigError::FamilyMismatch(a) => write!(
                f,
                "real server {a} is of another address family than the service (only tunnelling, -i, may mix them)"
            ),
            ConfigError::BadNetmask => write!(
                f,
                "persistence netmask does not fit the service's address family"
            ),
            ConfigError::OnePacketNotUdp => {
                write!(f, "one-packet scheduling (-o) applies to UDP services only")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

struct SockFmt(IpAddr, u16);

impl fmt::Display for SockFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotPos {
    Free,
    Live(u32),
    Trash(u32),
}

/// A virtual service with its real servers, scheduler and counters.
///
/// Real servers are addressed by a stable *slot* number that connections keep. Removing a
/// real server that still has connections moves it to a trash list (as IPVS does) where its
/// connections keep working until they end; adding it back revives it with its counters.
#[derive(Debug)]
pub struct Service {
    config: ServiceConfig,
    dests: Vec<Dest>,
    dest_slots: Vec<u32>,
    trash: Vec<(u32, Dest)>,
    slot_pos: Vec<SlotPos>,
    scheduler: Box<dyn Scheduler>,
    /// Traffic counters of the service.
    pub stats: Stats,
    /// Rate estimator over `stats`.
    pub est: Estimator,
    deleted: bool,
    refs: u32,
}

impl Service {
    fn new(config: ServiceConfig, seed: u64) -> Service {
        let mut scheduler = new_scheduler(config.scheduler, config.flags, seed);
        scheduler.update(&[]);
        Service {
            config,
            dests: Vec::new(),
            dest_slots: Vec::new(),
            trash: Vec::new(),
            slot_pos: Vec::new(),
            scheduler,
            stats: Stats::default(),
            est: Estimator::default(),
            deleted: false,
            refs: 0,
        }
    }

    /// Configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Live real servers, in the order they were added.
    pub fn dests(&self) -> &[Dest] {
        &self.dests
    }

    /// Removed real servers whose connections have not ended yet.
    pub fn trash(&self) -> impl Iterator<Item = &Dest> {
        self.trash.iter().map(|(_, d)| d)
    }

    /// Slot of the first removed real server (in the trash) for which `f` holds.
    pub fn find_removed(&self, f: impl Fn(&Dest) -> bool) -> Option<u32> {
        self.trash.iter().find(|(_, d)| f(d)).map(|(s, _)| *s)
    }

    /// Whether the service was deleted and lingers only for its connections.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Slot of the live real server `addr:port`.
    pub fn find_dest(&self, addr: IpAddr, port: u16) -> Option<u32> {
        self.dests
            .iter()
            .position(|d| d.addr() == addr && d.port() == port)
            .map(|i| self.dest_slots[i])
    }

    /// A real server (live or in the trash) by slot.
    #[inline]
    pub fn dest(&self, slot: u32) -> Option<&Dest> {
        match self.slot_pos.get(slot as usize)? {
            SlotPos::Live(i) => self.dests.get(*i as usize),
            SlotPos::Trash(i) => self.trash.get(*i as usize).map(|(_, d)| d),
            SlotPos::Free => None,
        }
    }

    /// Mutable access to a real server by slot.
    #[inline]
    pub fn dest_mut(&mut self, slot: u32) -> Option<&mut Dest> {
        match *self.slot_pos.get(slot as usize)? {
            SlotPos::Live(i) => self.dests.get_mut(i as usize),
            SlotPos::Trash(i) => self.trash.get_mut(i as usize).map(|(_, d)| d),
            SlotPos::Free => None,
        }
    }

    /// Run one estimator tick over the service and its real servers.
    pub(crate) fn tick_estimators(&mut self) {
        self.est.tick(&self.stats);
        for d in &mut self.dests {
            d.est.tick(&d.stats);
        }
        for (_, d) in &mut self.trash {
            d.est.tick(&d.stats);
        }
    }

    /// Zero counters and rates of the service and its real servers (`-Z`).
    pub fn zero(&mut self) {
        self.stats = Stats::default();
        self.est = Estimator::default();
        for d in self
            .dests
            .iter_mut()
            .chain(self.trash.iter_mut().map(|(_, d)| d))
        {
            d.stats = Stats::default();
            d.est = Estimator::default();
        }
    }

    /// Whether the slot holds a live (not removed) real server.
    #[inline]
    pub fn is_live(&self, slot: u32) -> bool {
        matches!(self.slot_pos.get(slot as usize), Some(SlotPos::Live(_)))
    }

    /// Pick a real server for a new connection: its slot.
    pub fn schedule(&mut self, ctx: &SchedCtx) -> Option<u32> {
        let i = self.scheduler.schedule(ctx, &self.dests)?;
        self.dest_slots.get(i).copied()
    }

    /// The scheduler's choices from its present state as a table (see
    /// [`Scheduler::compile`]); entries index [`dests`](Self::dests).
    pub fn compile(&self) -> Option<Compiled> {
        self.scheduler.compile(&self.dests)
    }

    /// The slot of each live real server, in the order of [`dests`](Self::dests).
    pub fn dest_slots(&self) -> &[u32] {
        &self.dest_slots
    }

    /// Move the scheduler on as if it had made one choice for `ctx` (a fast path made it,
    /// following a compiled table): keeps a sequence scheduler in step with the table.
    pub(crate) fn step_scheduler(&mut self, ctx: &SchedCtx) {
        let _ = self.scheduler.schedule(ctx, &self.dests);
    }

    fn normalise(&self, mut cfg: DestConfig) -> Result<DestConfig, ConfigError> {
        if cfg.weight > MAX_WEIGHT {
            return Err(ConfigError::WeightOutOfRange(cfg.weight));
        }
        if cfg.lower_threshold > cfg.upper_threshold && cfg.upper_threshold != 0 {
            return Err(ConfigError::ThresholdOrder {
                upper: cfg.upper_threshold,
                lower: cfg.lower_threshold,
            });
        }
        if Family::of(cfg.addr) != self.config.key.family() && cfg.method != ForwardMethod::Tunnel {
            return Err(ConfigError::FamilyMismatch(cfg.addr));
        }
        // As ipvsadm does: DR and Tun cannot change the port, the real server listens on the
        // virtual port.
        if let ServiceKey::Addr { port, .. } = self.config.key
            && cfg.method != ForwardMethod::Masq
            && port != 0
        {
            cfg.port = port;
        }
        Ok(cfg)
    }

    fn reindex(&mut self) {
        for p in &mut self.slot_pos {
            *p = SlotPos::Free;
        }
        for (i, &s) in self.dest_slots.iter().enumerate() {
            self.slot_pos[s as usize] = SlotPos::Live(i as u32);
        }
        for (i, (s, _)) in self.trash.iter().enumerate() {
            self.slot_pos[*s as usize] = SlotPos::Trash(i as u32);
        }
        self.scheduler.update(&self.dests);
    }

    fn add_dest(&mut self, cfg: DestConfig) -> Result<u32, ConfigError> {
        let cfg = self.normalise(cfg)?;
        if self.find_dest(cfg.addr, cfg.port).is_some() {
            return Err(ConfigError::DestExists(cfg.addr, cfg.port));
        }
        let slot = if let Some(t) = self
            .trash
            .iter()
            .position(|(_, d)| d.addr() == cfg.addr && d.port() == cfg.port)
        {
            // Revive it, keeping counters and connections (IPVS's trash lookup).
            let (slot, mut dest) = self.trash.remove(t);
            dest.config = cfg;
            dest.overloaded = false;
            self.dests.push(dest);
            self.dest_slots.push(slot);
            slot
        } else {
            let slot = match self.slot_pos.iter().position(|p| *p == SlotPos::Free) {
                Some(s) => s as u32,
                None => {
                    self.slot_pos.push(SlotPos::Free);
                    (self.slot_pos.len() - 1) as u32
                }
            };
            self.dests.push(Dest::new(cfg));
            self.dest_slots.push(slot);
            slot
        };
        self.reindex();
        Ok(slot)
    }

    fn edit_dest(&mut self, cfg: DestConfig) -> Result<(), ConfigError> {
        let cfg = self.normalise(cfg)?;
        let i = self
            .dests
            .iter()
            .position(|d| d.addr() == cfg.addr && d.port() == cfg.port)
            .ok_or(ConfigError::NoSuchDest(cfg.addr, cfg.port))?;
        let d = &mut self.dests[i];
        // IPVS clears the overload flag when the upper threshold is lifted or raised.
        if cfg.upper_threshold == 0 || cfg.upper_threshold > d.config.upper_threshold {
            d.overloaded = false;
        }
        d.config = cfg;
        self.reindex();
        Ok(())
    }

    fn del_dest(&mut self, addr: IpAddr, port: u16) -> Result<(), ConfigError> {
        let port = match self.config.key {
            ServiceKey::Addr { port: vport, .. }
                if vport != 0
                    && !self
                        .dests
                        .iter()
                        .any(|d| d.addr() == addr && d.port() == port) =>
            {
                vport
            }
            _ => port,
        };
        let i = self
            .dests
            .iter()
            .position(|d| d.addr() == addr && d.port() == port)
            .ok_or(ConfigError::NoSuchDest(addr, port))?;
        let dest = self.dests.remove(i);
        let slot = self.dest_slots.remove(i);
        if dest.active + dest.inactive + dest.persistent > 0 {
            self.trash.push((slot, dest));
        }
        self.reindex();
        Ok(())
    }

    /// Move every live real server to the trash (those with no connection are freed).
    fn retire_all_dests(&mut self) {
        let dests = std::mem::take(&mut self.dests);
        let slots = std::mem::take(&mut self.dest_slots);
        for (slot, dest) in slots.into_iter().zip(dests) {
            if dest.active + dest.inactive + dest.persistent > 0 {
                self.trash.push((slot, dest));
            }
        }
        self.reindex();
    }

    /// A connection or template bound to `slot` ended: free the slot if it was removed and
    /// nothing refers to it any more. Whether it was freed.
    pub(crate) fn release_if_trash(&mut self, slot: u32) -> bool {
        if let Some(SlotPos::Trash(i)) = self.slot_pos.get(slot as usize).copied()
            && let Some((_, d)) = self.trash.get(i as usize)
            && d.active + d.inactive + d.persistent == 0
        {
            self.trash.remove(i as usize);
            self.slot_pos[slot as usize] = SlotPos::Free;
            for (j, (s, _)) in self.trash.iter().enumerate() {
                self.slot_pos[*s as usize] = SlotPos::Trash(j as u32);
            }
            return true;
        }
        false
    }
}

/// All virtual services.
#[derive(Debug, Default)]
pub struct ServiceTable {
    slots: Vec<Option<Service>>,
    by_key: HashMap<ServiceKey, u32>,
    seed: u64,
    /// Removed real servers and deleted services freed after their last connection ended.
    freed: u64,
}

impl ServiceTable {
    /// An empty table; `seed` feeds randomised schedulers.
    pub fn new(seed: u64) -> ServiceTable {
        ServiceTable {
            slots: Vec::new(),
            by_key: HashMap::new(),
            seed,
            freed: 0,
        }
    }

    /// Number of (not deleted) services.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there is no service.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Slot of a service by key.
    pub fn find(&self, key: &ServiceKey) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    /// The service for a packet to `addr:port`: the exact service, else a port-zero
    /// (all-ports) service on that address, as IPVS looks them up.
    #[inline]
    pub fn lookup(&self, proto: Protocol, addr: IpAddr, port: u16) -> Option<u32> {
        if self.by_key.is_empty() {
            return None;
        }
        self.by_key
            .get(&ServiceKey::Addr { proto, addr, port })
            .or_else(|| {
                self.by_key.get(&ServiceKey::Addr {
                    proto,
                    addr,
                    port: 0,
                })
            })
            .copied()
    }

    /// The firewall-mark service for `mark`.
    pub fn lookup_fwmark(&self, mark: u32, family: Family) -> Option<u32> {
        if mark == 0 {
            return None;
        }
        self.by_key
            .get(&ServiceKey::Fwmark { mark, family })
            .copied()
    }

    /// A service by slot (also deleted ones still holding connections).
    #[inline]
    pub fn get(&self, slot: u32) -> Option<&Service> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Mutable access by slot.
    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Service> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Every service with its slot, in slot order: the live ones and the deleted ones that
    /// linger for their connections ([`Service::is_deleted`]).
    pub fn iter_all(&self) -> impl Iterator<Item = (u32, &Service)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, s)))
    }

    /// How many lingering things (a removed real server in a service's trash, a deleted
    /// service) were freed so far because their last connection ended: when it moves, what
    /// [`ServiceTable::iter_all`] and [`Service::trash`] show has shrunk.
    pub fn freed(&self) -> u64 {
        self.freed
    }

    /// Live services with their slots, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Service)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|s| !s.deleted).map(|s| (i as u32, s)))
    }

    fn check(cfg: &ServiceConfig) -> Result<(), ConfigError> {
        if let Some(p) = cfg.persistence {
            let ok = match (cfg.key.family(), p.netmask) {
                (Family::V4, crate::types::Netmask::V4(l)) => l <= 32,
                (Family::V6, crate::types::Netmask::V6(l)) => l <= 128,
                _ => false,
            };
            if !ok {
                return Err(ConfigError::BadNetmask);
            }
        }
        if cfg.one_packet
            && !matches!(
                cfg.key,
                ServiceKey::Addr {
                    proto: Protocol::Udp,
                    ..
                } | ServiceKey::Fwmark { .. }
            )
        {
            return Err(ConfigError::OnePacketNotUdp);
        }
        Ok(())
    }

    /// `-A`: add a service.
    pub fn add(&mut self, cfg: ServiceConfig) -> Result<u32, ConfigError> {
        if self.by_key.contains_key(&cfg.key) {
            return Err(ConfigError::ServiceExists(cfg.key));
        }
        Self::check(&cfg)?;
        let seed = self.seed ^ (self.slots.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let svc = Service::new(cfg, seed);
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(svc);
                i as u32
            }
            None => {
                self.slots.push(Some(svc));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_key.insert(cfg.key, slot);
        Ok(slot)
    }

    /// `-E`: change scheduler, flags, persistence of a service, keeping its real servers and
    /// connections.
    pub fn edit(&mut self, cfg: ServiceConfig) -> Result<(), ConfigError> {
        let slot = self
            .find(&cfg.key)
            .ok_or(ConfigError::NoSuchService(cfg.key))?;
        Self::check(&cfg)?;
        let seed = self.seed ^ u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let svc = self.slots[slot as usize]
            .as_mut()
            .ok_or(ConfigError::NoSuchService(cfg.key))?;
        if svc.config.scheduler != cfg.scheduler || svc.config.flags != cfg.flags {
            svc.scheduler = new_scheduler(cfg.scheduler, cfg.flags, seed);
            svc.scheduler.update(&svc.dests);
        }
        svc.config = cfg;
        Ok(())
    }

    /// `-D`: delete a service. Its connections keep working until they end.
    pub fn delete(&mut self, key: &ServiceKey) -> Result<(), ConfigError> {
        let slot = self
            .by_key
            .remove(key)
            .ok_or(ConfigError::NoSuchService(*key))?;
        if let Some(svc) = self.slots[slot as usize].as_mut() {
            svc.deleted = true;
            svc.retire_all_dests();
        }
        self.collect(slot);
        Ok(())
    }

    /// `-a`: add a real server to a service; returns its slot.
    pub fn add_dest(&mut self, key: &ServiceKey, cfg: DestConfig) -> Result<u32, ConfigError> {
        self.live_mut(key)?.add_dest(cfg)
    }

    /// `-e`: change a real server's weight, method or thresholds.
    pub fn edit_dest(&mut self, key: &ServiceKey, cfg: DestConfig) -> Result<(), ConfigError> {
        self.live_mut(key)?.edit_dest(cfg)
    }

    /// `-d`: remove a real server. Its connections keep working until they end.
    pub fn del_dest(
        &mut self,
        key: &ServiceKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), ConfigError> {
        self.live_mut(key)?.del_dest(addr, port)
    }

    fn live_mut(&mut self, key: &ServiceKey) -> Result<&mut Service, ConfigError> {
        let slot = self.find(key).ok_or(ConfigError::NoSuchService(*key))?;
        self.slots[slot as usize]
            .as_mut()
            .ok_or(ConfigError::NoSuchService(*key))
    }

    /// Run one estimator tick everywhere.
    pub(crate) fn tick_estimators(&mut self) {
        for s in self.slots.iter_mut().flatten() {
            s.tick_estimators();
        }
    }

    /// Keys of every live service.
    pub fn keys(&self) -> Vec<ServiceKey> {
        self.iter().map(|(_, s)| s.config.key).collect()
    }

    /// A connection or template now refers to this service.
    pub(crate) fn acquire(&mut self, slot: u32) {
        if let Some(s) = self.get_mut(slot) {
            s.refs += 1;
        }
    }

    /// A connection or template of this service ended.
    pub(crate) fn release(&mut self, slot: u32, dest: u32) {
        if let Some(s) = self.get_mut(slot) {
            s.refs = s.refs.saturating_sub(1);
            if s.release_if_trash(dest) {
                self.freed += 1;
            }
        }
        self.collect(slot);
    }

    fn collect(&mut self, slot: u32) {
        if let Some(Some(s)) = self.slots.get(slot as usize)
            && s.deleted
            && s.refs == 0
        {
            self.slots[slot as usize] = None;
            self.freed += 1;
        }
    }
}
