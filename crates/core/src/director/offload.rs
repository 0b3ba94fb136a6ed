//! What a fast path below the core (the kernel program) needs from it, and what it gives
//! back: the journal of connection changes to mirror into its maps, the TCP state changes
//! it observed, and the traffic it forwarded.
//!
//! The core stays the owner of every connection: the fast path forwards packets of the
//! connections the core made, and reports; the core schedules, times out and lists.

use std::net::{IpAddr, Ipv4Addr};

use super::Director;
use crate::conn::{Conn, ConnFlags, ConnId, FlowKey, TcpState};
use crate::sched::{Compiled, SchedCtx};
use crate::stats::Stats;
use crate::time::Time;
use crate::types::{ForwardMethod, Protocol, ServiceKey};

/// A service whose new connections a fast path may schedule itself, following `table`
/// (see [`Director::offloadable`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffloadedService {
    /// Protocol (TCP or UDP).
    pub proto: Protocol,
    /// Virtual address.
    pub vip: Ipv4Addr,
    /// Virtual port (0: any port, as the core matches a port-0 service).
    pub port: u16,
    /// The scheduler's choices; entries index `dests`.
    pub table: Compiled,
    /// The live real servers, in the scheduler's order.
    pub dests: Vec<OffloadedDest>,
}

/// A real server of an [`OffloadedService`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadedDest {
    /// Its slot in the service (as in [`Conn::dest`]).
    pub slot: u32,
    /// Address.
    pub addr: Ipv4Addr,
    /// Port; 0 means the port the client asked for.
    pub port: u16,
    /// Forwarding method.
    pub method: ForwardMethod,
}

/// A connection a fast path forwards that this core did not make (a predecessor did, before
/// a restart), as its map entry describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adoptee {
    /// Protocol.
    pub proto: Protocol,
    /// Client address and port.
    pub client: (IpAddr, u16),
    /// Virtual address and port.
    pub vip: (IpAddr, u16),
    /// Real server address, and its port for NAT (DR and Tun keep the VIP's port).
    pub dest: (IpAddr, Option<u16>),
    /// Forwarding method.
    pub method: ForwardMethod,
    /// TCP state (anything for other protocols).
    pub state: TcpState,
    /// No reply seen yet.
    pub no_output: bool,
    /// When the fast path last forwarded one of its packets.
    pub seen: Time,
}

/// Why a connection could not be adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptError {
    /// No service for its virtual address and port (not configured yet, or gone).
    NoService,
    /// The service has no such real server with that method.
    NoRealServer,
    /// The core already has a connection with this client-side key.
    Known,
    /// The connection table is full.
    TableFull,
}

/// Connection changes since the fast path last took them, in the order they happened.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    /// Connections created, or whose state the core moved (a packet went through the core).
    /// May repeat; look each up again, it may be gone since.
    pub touched: Vec<ConnId>,
    /// Connections removed (expired, replaced, flushed); templates are not listed.
    pub removed: Vec<Conn>,
}

impl Journal {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.touched.is_empty() && self.removed.is_empty()
    }

    /// Forget what was read.
    pub fn clear(&mut self) {
        self.touched.clear();
        self.removed.clear();
    }
}

impl Director {
    /// Start keeping the [`Journal`] (off by default: a director without a fast path pays
    /// nothing).
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(Journal::default);
    }

    /// Give back the journal's spare capacity (after a burst of changes, e.g. a flood).
    pub fn shrink_journal(&mut self) {
        if let Some(j) = &mut self.journal {
            j.touched.shrink_to(1024);
            j.removed.shrink_to(1024);
        }
    }

    /// Swap the journal's content into `out` (which should be empty: clear it after use and
    /// hand it back, so no allocation happens once warmed up). Nothing if not enabled.
    pub fn swap_journal(&mut self, out: &mut Journal) {
        if let Some(j) = &mut self.journal {
            std::mem::swap(j, out);
        }
    }

    /// The fast path moved the connection whose client-side key is `key` to `state` at `at`
    /// (having seen a reply first if `output_seen`). Updates its timeout and the real
    /// server's ActiveConn/InActConn as a packet through the core would. Returns whether the
    /// connection exists.
    pub fn observe_state(
        &mut self,
        key: &FlowKey,
        state: TcpState,
        output_seen: bool,
        at: Time,
    ) -> bool {
        let Some(id) = self.conns.lookup_in(key) else {
            return false;
        };
        if output_seen && let Some(c) = self.conns.get_mut(id) {
            c.flags.clear(ConnFlags::NO_OUTPUT);
        }
        self.set_state(at, id, state);
        true
    }

    /// The table a fast path follows to schedule new connections of service `svc` itself,
    /// when the core's choice for them is a pure function of one: an IPv4 TCP/UDP service
    /// without persistence or one-packet scheduling, no real server with thresholds (the
    /// overload flag follows connection counts), and a scheduler that compiles (rr, wrr, fo,
    /// sh, dh, mh). Ask again after every change to the service or its real servers.
    pub fn offloadable(&self, svc: u32) -> Option<OffloadedService> {
        let s = self.services.get(svc)?;
        let cfg = s.config();
        let ServiceKey::Addr {
            proto,
            addr: IpAddr::V4(vip),
            port,
        } = cfg.key
        else {
            return None;
        };
        if s.is_deleted()
            || cfg.persistence.is_some()
            || cfg.one_packet
            || !matches!(proto, Protocol::Tcp | Protocol::Udp)
        {
            return None;
        }
        let dests = s
            .dests()
            .iter()
            .zip(s.dest_slots())
            .map(|(d, &slot)| match d.addr() {
                IpAddr::V4(addr)
                    if d.config.upper_threshold == 0 && d.config.lower_threshold == 0 =>
                {
                    Some(OffloadedDest {
                        slot,
                        addr,
                        port: d.port(),
                        method: d.config.method,
                    })
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(OffloadedService {
            proto,
            vip,
            port,
            table: s.compile()?,
            dests,
        })
    }

    /// Take over a connection a fast path scheduled and forwarded itself, following the
    /// table of [`offloadable`](Self::offloadable): it joins the table as a new connection
    /// made by the core would (counted, bound to its real server). With `step`, the
    /// service's scheduler moves on as if it had made the choice, so a sequence scheduler
    /// (rr, wrr) stays where the fast path's position in the table is; pass it only for
    /// choices made from the table compiled from the scheduler's present state. Not
    /// journalled: the fast path has the entries already.
    pub fn adopt_new(&mut self, a: &Adoptee, now: Time, step: bool) -> Result<ConnId, AdoptError> {
        let id = self.take_over(a, now, false)?;
        self.counters.conns_created += 1;
        let Some(c) = self.conns.get(id) else {
            return Ok(id);
        };
        let (svc, dest) = (c.svc, c.dest);
        self.count_new_conn(svc, dest);
        if step && let Some(s) = self.services.get_mut(svc) {
            s.step_scheduler(&SchedCtx {
                now,
                proto: a.proto,
                src: a.client.0,
                sport: a.client.1,
                dst: a.vip.0,
                dport: a.vip.1,
            });
        }
        Ok(id)
    }

    /// Take over a connection a fast path forwards without this core having made it (after
    /// a restart): it joins the table bound to its real server (ActiveConn/InActConn as its
    /// state says; not counted as a new connection), expiring a timeout after it was last
    /// seen, and is journalled like a new one so the fast path's entry is rewritten in this
    /// core's terms.
    pub fn adopt(&mut self, a: &Adoptee, now: Time) -> Result<ConnId, AdoptError> {
        self.take_over(a, now, true)
    }

    fn take_over(&mut self, a: &Adoptee, now: Time, journal: bool) -> Result<ConnId, AdoptError> {
        let key = FlowKey::new(a.proto, a.client.0, a.client.1, a.vip.0, a.vip.1);
        if self.conns.lookup_in(&key).is_some() {
            return Err(AdoptError::Known);
        }
        let svc = self
            .services
            .lookup(a.proto, a.vip.0, a.vip.1)
            .ok_or(AdoptError::NoService)?;
        let service = self.services.get(svc).ok_or(AdoptError::NoService)?;
        let fits = |d: &crate::service::Dest| {
            d.addr() == a.dest.0
                && d.config.method == a.method
                // A real server of port 0 takes the port the client asked for.
                && a.dest.1.is_none_or(|p| p == d.port() || (d.port() == 0 && p == a.vip.1))
        };
        // A real server removed while the connection was made (the fast path scheduled it
        // from the table it had) keeps it, as IPVS keeps connections of removed servers,
        // as long as the server lingers for its other connections.
        let dest = service
            .dests()
            .iter()
            .find(|d| fits(d))
            .and_then(|d| service.find_dest(d.addr(), d.port()))
            .or_else(|| service.find_removed(fits))
            .ok_or(AdoptError::NoRealServer)?;
        let dport = a.dest.1.unwrap_or(a.vip.1);
        let mut conn = Conn::new(
            a.proto,
            a.client,
            a.vip,
            (a.dest.0, dport),
            svc,
            dest,
            a.method,
        );
        if !a.no_output {
            conn.flags.clear(ConnFlags::NO_OUTPUT);
        }
        conn.timeout = self.timeouts.initial(a.proto);
        self.make_room(
            1,
            a.proto == Protocol::Tcp && matches!(a.state, TcpState::SynRecv | TcpState::None),
        );
        let id = self
            .conns
            .insert(conn, now)
            .map_err(|_| AdoptError::TableFull)?;
        self.services.acquire(svc);
        self.bind(svc, dest, false);
        // Its state (and the real server's active count) as the fast path last saw it.
        let seen = if a.seen > now { now } else { a.seen };
        self.set_state(seen, id, a.state);
        if journal && let Some(j) = &mut self.journal {
            j.touched.push(id);
        }
        Ok(id)
    }

    /// Journal connection `id` as touched, so the fast path writes its entries again in this
    /// core's terms (after it found its own entries disagreeing).
    pub fn touch(&mut self, id: ConnId) {
        if let Some(j) = &mut self.journal
            && self.conns.get(id).is_some()
        {
            j.touched.push(id);
        }
    }

    /// Add traffic the fast path forwarded for real server `dest` of service `svc` (slots as
    /// in [`Conn`]) to the real server's and the service's counters. Returns whether both
    /// still exist.
    pub fn add_offloaded(&mut self, svc: u32, dest: u32, traffic: &Stats) -> bool {
        let Some(s) = self.services.get_mut(svc) else {
            return false;
        };
        s.stats.add(traffic);
        match s.dest_mut(dest) {
            Some(d) => {
                d.stats.add(traffic);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::Compiled;
    use crate::sim::{self, PacketSpec, addr, tcp_flags};
    use crate::types::{ForwardMethod, Protocol, SchedulerKind};
    use crate::{RxMeta, Verdict};
    use std::net::IpAddr;
    use std::time::Duration;

    fn meta() -> RxMeta {
        RxMeta {
            ifindex: addr::FRONT,
            csum_partial: false,
            gso: None,
            fwmark: 0,
            truncated: false,
            vlan: false,
        }
    }

    fn syn(cport: u16) -> (Vec<u8>, usize) {
        PacketSpec::tcp((addr::CLIENT, cport), (addr::VIP, 80), tcp_flags::SYN).frame()
    }

    fn send(d: &mut Director, now: Time, (mut f, len): (Vec<u8>, usize)) -> Verdict {
        d.process(now, &meta(), &mut f, sim::HEADROOM, len)
    }

    fn director(method: ForwardMethod) -> Director {
        sim::director(method, SchedulerKind::Rr, Time::ZERO)
    }

    fn key(cport: u16) -> FlowKey {
        FlowKey::new(
            Protocol::Tcp,
            IpAddr::V4(addr::CLIENT),
            cport,
            IpAddr::V4(addr::VIP),
            80,
        )
    }

    #[test]
    fn journal_lists_created_touched_and_removed_connections() {
        let mut d = director(ForwardMethod::Masq);
        d.enable_journal();
        assert!(matches!(
            send(&mut d, Time::ZERO, syn(4000)),
            Verdict::Transmit(_)
        ));
        let mut j = Journal::default();
        d.swap_journal(&mut j);
        assert_eq!(j.touched.len(), 1);
        let id = j.touched[0];
        assert_eq!(d.conns().get(id).map(|c| c.cport), Some(4000));
        assert!(j.removed.is_empty());
        j.clear();
        d.flush_connections();
        d.swap_journal(&mut j);
        assert!(j.touched.is_empty());
        assert_eq!(j.removed.len(), 1);
        assert_eq!(j.removed[0].cport, 4000);
    }

    #[test]
    fn no_journal_unless_enabled() {
        let mut d = director(ForwardMethod::Masq);
        assert!(matches!(
            send(&mut d, Time::ZERO, syn(4001)),
            Verdict::Transmit(_)
        ));
        let mut j = Journal::default();
        d.swap_journal(&mut j);
        assert!(j.is_empty());
    }

    #[test]
    fn observed_state_moves_counts_and_timeout() {
        let mut d = director(ForwardMethod::Masq);
        assert!(matches!(
            send(&mut d, Time::ZERO, syn(4002)),
            Verdict::Transmit(_)
        ));
        let id = d.conns().lookup_in(&key(4002)).unwrap();
        let (svc, dest) = {
            let c = d.conns().get(id).unwrap();
            (c.svc, c.dest)
        };
        let counts = |d: &Director| {
            let x = d.services().get(svc).unwrap().dest(dest).unwrap();
            (x.active, x.inactive)
        };
        assert_eq!(counts(&d), (0, 1));
        let at = Time::from_secs(3);
        assert!(d.observe_state(&key(4002), TcpState::Established, true, at));
        let c = d.conns().get(id).unwrap();
        assert_eq!(c.state, TcpState::Established);
        assert!(!c.flags.has(ConnFlags::NO_OUTPUT));
        assert_eq!(c.expires, at + d.timeouts().tcp(TcpState::Established));
        assert_eq!(counts(&d), (1, 0));
        assert!(d.observe_state(&key(4002), TcpState::TimeWait, true, at));
        assert_eq!(counts(&d), (0, 1));
        assert!(!d.observe_state(&key(4999), TcpState::TimeWait, true, at));
    }

    #[test]
    fn fast_path_activity_keeps_a_connection_past_its_timeout() {
        let mut d = director(ForwardMethod::DirectRoute);
        assert!(matches!(
            send(&mut d, Time::ZERO, syn(4003)),
            Verdict::Transmit(_)
        ));
        let timeout = d.timeouts().tcp(TcpState::SynRecv);
        let seen = Time::ZERO + timeout - Duration::from_secs(1);
        // Due at `timeout`, but the fast path forwarded a packet 1 s before: lives on.
        let at = Time::ZERO + timeout + Duration::from_millis(500);
        assert_eq!(d.expire_with(at, |_| Some(seen)), 0);
        assert_eq!(d.conns().len(), 1);
        // Nothing seen since: gone once its timeout from `seen` passes.
        let later = seen + timeout + Duration::from_secs(1);
        assert_eq!(d.expire_with(later, |_| Some(seen)), 1);
        assert!(d.conns().is_empty());
    }

    #[test]
    fn adopted_connection_is_bound_counted_and_journalled() {
        let mut d = director(ForwardMethod::Masq);
        d.enable_journal();
        let a = Adoptee {
            proto: Protocol::Tcp,
            client: (IpAddr::V4(addr::CLIENT), 4005),
            vip: (IpAddr::V4(addr::VIP), 80),
            dest: (IpAddr::V4(addr::RIPS[1]), Some(8080)),
            method: ForwardMethod::Masq,
            state: TcpState::Established,
            no_output: false,
            seen: Time::from_secs(9),
        };
        let now = Time::from_secs(10);
        let id = d.adopt(&a, now).unwrap();
        let c = d.conns().get(id).unwrap().clone();
        assert_eq!((c.daddr, c.dport), (IpAddr::V4(addr::RIPS[1]), 8080));
        assert_eq!(c.state, TcpState::Established);
        assert_eq!(c.expires, a.seen + d.timeouts().tcp(TcpState::Established));
        let dest = d.services().get(c.svc).unwrap().dest(c.dest).unwrap();
        assert_eq!((dest.active, dest.inactive, dest.stats.conns), (1, 0, 0));
        // The reply direction is indexed too.
        let out = FlowKey::new(
            Protocol::Tcp,
            IpAddr::V4(addr::RIPS[1]),
            8080,
            IpAddr::V4(addr::CLIENT),
            4005,
        );
        assert_eq!(d.conns().lookup_out(&out), Some(id));
        let mut j = Journal::default();
        d.swap_journal(&mut j);
        assert_eq!(j.touched, vec![id]);
        assert_eq!(d.adopt(&a, now), Err(AdoptError::Known));
        let wrong_port = Adoptee {
            client: (IpAddr::V4(addr::CLIENT), 4006),
            dest: (IpAddr::V4(addr::RIPS[1]), Some(9999)),
            ..a
        };
        assert_eq!(d.adopt(&wrong_port, now), Err(AdoptError::NoRealServer));
        let wrong_method = Adoptee {
            client: (IpAddr::V4(addr::CLIENT), 4007),
            dest: (IpAddr::V4(addr::RIPS[1]), None),
            method: ForwardMethod::DirectRoute,
            ..a
        };
        assert_eq!(d.adopt(&wrong_method, now), Err(AdoptError::NoRealServer));
        let no_service = Adoptee {
            client: (IpAddr::V4(addr::CLIENT), 4008),
            vip: (IpAddr::V4(addr::VIP), 8443),
            ..a
        };
        assert_eq!(d.adopt(&no_service, now), Err(AdoptError::NoService));
    }

    /// A connection the fast path scheduled to a real server removed meanwhile keeps it while
    /// the server lingers for other connections (IPVS keeps connections of removed
    /// servers); with the server gone for good it cannot be taken.
    #[test]
    fn a_connection_to_a_just_removed_server_is_kept() {
        let mut d = director(ForwardMethod::Masq);
        let key = sim::http_service();
        let now = Time::from_secs(10);
        // rr: the first SYN goes to RIPS[0], which then has a connection when removed.
        assert!(matches!(send(&mut d, now, syn(5000)), Verdict::Transmit(_)));
        d.delete_dest(&key, IpAddr::V4(addr::RIPS[0]), 8080)
            .unwrap();
        let a = Adoptee {
            proto: Protocol::Tcp,
            client: (IpAddr::V4(addr::CLIENT), 5001),
            vip: (IpAddr::V4(addr::VIP), 80),
            dest: (IpAddr::V4(addr::RIPS[0]), Some(8080)),
            method: ForwardMethod::Masq,
            state: TcpState::SynRecv,
            no_output: false,
            seen: now,
        };
        let id = d
            .adopt_new(&a, now, false)
            .expect("kept by the removed server");
        let c = d.conns().get(id).unwrap().clone();
        let dest = d.services().get(c.svc).unwrap().dest(c.dest).unwrap();
        assert_eq!((dest.addr(), dest.inactive), (IpAddr::V4(addr::RIPS[0]), 2));
        // RIPS[1] removed with no connection: freed at once, nothing to keep a flow.
        d.delete_dest(&key, IpAddr::V4(addr::RIPS[1]), 8080)
            .unwrap();
        let b = Adoptee {
            client: (IpAddr::V4(addr::CLIENT), 5002),
            dest: (IpAddr::V4(addr::RIPS[1]), Some(8080)),
            ..a
        };
        assert_eq!(d.adopt_new(&b, now, false), Err(AdoptError::NoRealServer));
    }

    #[test]
    fn rr_service_compiles_and_adopted_choices_step_the_scheduler() {
        let mut d = director(ForwardMethod::Masq);
        let svc = d
            .services()
            .lookup(Protocol::Tcp, IpAddr::V4(addr::VIP), 80)
            .unwrap();
        let off = d.offloadable(svc).expect("rr compiles");
        assert_eq!(
            (off.proto, off.vip, off.port),
            (Protocol::Tcp, addr::VIP, 80)
        );
        assert_eq!(off.table, Compiled::Sequence(vec![0, 1, 2]));
        assert_eq!(off.dests.len(), 3);
        assert_eq!(
            (off.dests[1].addr, off.dests[1].port),
            (addr::RIPS[1], 8080)
        );
        // The fast path took the first entry (RIPS[0]) and reports it.
        let a = Adoptee {
            proto: Protocol::Tcp,
            client: (IpAddr::V4(addr::CLIENT), 4100),
            vip: (IpAddr::V4(addr::VIP), 80),
            dest: (IpAddr::V4(addr::RIPS[0]), Some(8080)),
            method: ForwardMethod::Masq,
            state: TcpState::SynRecv,
            no_output: true,
            seen: Time::ZERO,
        };
        d.enable_journal();
        let id = d.adopt_new(&a, Time::ZERO, true).unwrap();
        let c = d.conns().get(id).unwrap().clone();
        let dest = d.services().get(svc).unwrap().dest(c.dest).unwrap();
        assert_eq!((dest.inactive, dest.stats.conns), (1, 1), "counted as new");
        assert_eq!(d.services().get(svc).unwrap().stats.conns, 1);
        let mut j = Journal::default();
        d.swap_journal(&mut j);
        assert!(
            j.touched.is_empty(),
            "the fast path has its entries already"
        );
        // The scheduler moved on: the core's next choice is the table's second entry.
        assert_eq!(
            d.offloadable(svc).unwrap().table,
            Compiled::Sequence(vec![1, 2, 0])
        );
        assert!(matches!(
            send(&mut d, Time::ZERO, syn(4101)),
            Verdict::Transmit(_)
        ));
        let c2 = d
            .conns()
            .get(d.conns().lookup_in(&key(4101)).unwrap())
            .unwrap();
        assert_eq!(c2.daddr, IpAddr::V4(addr::RIPS[1]));
        // Not stepped: the core's rotation stays.
        let a3 = Adoptee {
            client: (IpAddr::V4(addr::CLIENT), 4102),
            ..a
        };
        d.adopt_new(&a3, Time::ZERO, false).unwrap();
        assert_eq!(
            d.offloadable(svc).unwrap().table,
            Compiled::Sequence(vec![2, 0, 1])
        );
    }

    /// A NAT real server of port 0 takes the client's destination port, and the fast path
    /// reports that port: the core finds its server by it.
    #[test]
    fn port_zero_real_server_is_found_by_the_clients_port() {
        let mut d = director(ForwardMethod::Masq);
        let svc = d
            .services()
            .lookup(Protocol::Tcp, IpAddr::V4(addr::VIP), 80)
            .unwrap();
        let key = d.services().get(svc).unwrap().config().key;
        d.add_dest(
            &key,
            crate::service::DestConfig::new(IpAddr::V4(addr::DIP), 0, ForwardMethod::Masq),
        )
        .unwrap();
        let a = Adoptee {
            proto: Protocol::Tcp,
            client: (IpAddr::V4(addr::CLIENT), 4200),
            vip: (IpAddr::V4(addr::VIP), 80),
            dest: (IpAddr::V4(addr::DIP), Some(80)),
            method: ForwardMethod::Masq,
            state: TcpState::SynRecv,
            no_output: true,
            seen: Time::ZERO,
        };
        let id = d
            .adopt_new(&a, Time::ZERO, false)
            .expect("found by port 80");
        let c = d.conns().get(id).unwrap();
        assert_eq!((c.daddr, c.dport), (IpAddr::V4(addr::DIP), 80));
        let other = Adoptee {
            client: (IpAddr::V4(addr::CLIENT), 4201),
            dest: (IpAddr::V4(addr::DIP), Some(81)),
            ..a
        };
        assert_eq!(
            d.adopt_new(&other, Time::ZERO, false),
            Err(AdoptError::NoRealServer)
        );
    }

    #[test]
    fn stateful_and_persistent_services_are_not_offloaded() {
        let d = sim::director(ForwardMethod::Masq, SchedulerKind::Wlc, Time::ZERO);
        let svc = d
            .services()
            .lookup(Protocol::Tcp, IpAddr::V4(addr::VIP), 80)
            .unwrap();
        assert_eq!(d.offloadable(svc), None, "wlc depends on connection counts");
        let mut d = director(ForwardMethod::DirectRoute);
        let key = *d.services().get(svc).unwrap().config();
        let mut cfg = key;
        cfg.persistence = Some(crate::types::Persistence {
            timeout: Duration::from_secs(300),
            netmask: crate::types::Netmask::V4(32),
        });
        d.edit_service(cfg).unwrap();
        assert_eq!(d.offloadable(svc), None, "persistence needs templates");
        d.edit_service(key).unwrap();
        assert!(d.offloadable(svc).is_some());
        let mut dc = d.services().get(svc).unwrap().dests()[0].config;
        dc.upper_threshold = 10;
        d.edit_dest(&key.key, dc).unwrap();
        assert_eq!(
            d.offloadable(svc),
            None,
            "thresholds follow connection counts"
        );
    }

    #[test]
    fn offloaded_traffic_adds_to_dest_and_service() {
        let mut d = director(ForwardMethod::Masq);
        assert!(matches!(
            send(&mut d, Time::ZERO, syn(4004)),
            Verdict::Transmit(_)
        ));
        let c = d
            .conns()
            .get(d.conns().lookup_in(&key(4004)).unwrap())
            .unwrap();
        let (svc, dest) = (c.svc, c.dest);
        let before = d.services().get(svc).unwrap().stats;
        let t = Stats {
            conns: 0,
            inpkts: 10,
            outpkts: 7,
            inbytes: 1000,
            outbytes: 7000,
        };
        assert!(d.add_offloaded(svc, dest, &t));
        let after = d.services().get(svc).unwrap().stats;
        assert_eq!(after.inpkts, before.inpkts + 10);
        assert_eq!(after.outbytes, before.outbytes + 7000);
        let ds = d.services().get(svc).unwrap().dest(dest).unwrap().stats;
        assert_eq!(ds.outpkts, 7);
        assert!(!d.add_offloaded(svc + 100, dest, &t));
    }
}
