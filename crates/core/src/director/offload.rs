//! What a fast path below the core (the kernel program) needs from it, and what it gives
//! back: the journal of connection changes to mirror into its maps, the TCP state changes
//! it observed, and the traffic it forwarded.
//!
//! The core stays the owner of every connection: the fast path forwards packets of the
//! connections the core made, and reports; the core schedules, times out and lists.

use std::net::IpAddr;

use super::Director;
use crate::conn::{Conn, ConnFlags, ConnId, FlowKey, TcpState};
use crate::stats::Stats;
use crate::time::Time;
use crate::types::{ForwardMethod, Protocol};

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

    /// Take over a connection a fast path forwards without this core having made it (after
    /// a restart): it joins the table bound to its real server (ActiveConn/InActConn as its
    /// state says; not counted as a new connection), expiring a timeout after it was last
    /// seen, and is journalled like a new one so the fast path's entry is rewritten in this
    /// core's terms.
    pub fn adopt(&mut self, a: &Adoptee, now: Time) -> Result<ConnId, AdoptError> {
        let key = FlowKey::new(a.proto, a.client.0, a.client.1, a.vip.0, a.vip.1);
        if self.conns.lookup_in(&key).is_some() {
            return Err(AdoptError::Known);
        }
        let svc = self
            .services
            .lookup(a.proto, a.vip.0, a.vip.1)
            .ok_or(AdoptError::NoService)?;
        let service = self.services.get(svc).ok_or(AdoptError::NoService)?;
        let dest = service
            .dests()
            .iter()
            .find(|d| {
                d.addr() == a.dest.0
                    && d.config.method == a.method
                    && a.dest.1.is_none_or(|p| p == d.port())
            })
            .and_then(|d| service.find_dest(d.addr(), d.port()))
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
        let id = self
            .conns
            .insert(conn, now)
            .map_err(|_| AdoptError::TableFull)?;
        self.services.acquire(svc);
        self.bind(svc, dest, false);
        // Its state (and the real server's active count) as the fast path last saw it.
        let seen = if a.seen > now { now } else { a.seen };
        self.set_state(seen, id, a.state);
        if let Some(j) = &mut self.journal {
            j.touched.push(id);
        }
        Ok(id)
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
