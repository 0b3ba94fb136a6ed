//! What the director knows about its own network: interfaces, routes and neighbours.
//!
//! The caller (the io layer, from rtnetlink) fills these tables; the core only reads them to
//! pick the outgoing interface and the next hop's MAC address. A missing neighbour is never
//! guessed: the address is queued for the caller to resolve, and the director holds the frame
//! until it is (`director/hold.rs`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use foldhash::fast::FixedState;
use lvs_wire::ethernet::EthernetAddress;

/// An interface the director serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Kernel interface index.
    pub ifindex: u32,
    /// Name (for logs).
    pub name: String,
    /// MAC address.
    pub mac: EthernetAddress,
    /// MTU (IP packet size limit).
    pub mtu: u16,
    /// Addresses configured on it (the VIPs and the DIP among them).
    pub addrs: Vec<IpAddr>,
}

/// A route: destinations within `prefix/len` leave by `ifindex`, through `gateway` if set
/// (else directly connected), with `src` as the preferred source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub prefix: IpAddr,
    /// Prefix length.
    pub len: u8,
    /// Outgoing interface.
    pub ifindex: u32,
    /// Gateway, or `None` for a directly connected network.
    pub gateway: Option<IpAddr>,
    /// Preferred source address (used as the tunnel source).
    pub src: Option<IpAddr>,
}

impl Route {
    fn matches(&self, dst: IpAddr) -> bool {
        match (self.prefix, dst) {
            (IpAddr::V4(p), IpAddr::V4(d)) => {
                let l = u32::from(self.len.min(32));
                let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                u32::from(p) & mask == u32::from(d) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(d)) => {
                let l = u32::from(self.len.min(128));
                let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
                u128::from(p) & mask == u128::from(d) & mask
            }
            _ => false,
        }
    }
}

/// Where to send a packet for a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Outgoing interface.
    pub ifindex: u32,
    /// Our MAC on that interface.
    pub src_mac: EthernetAddress,
    /// The next hop's MAC.
    pub dst_mac: EthernetAddress,
    /// The interface MTU.
    pub mtu: u16,
    /// Preferred source address on that route.
    pub src_ip: Option<IpAddr>,
    /// Whether the destination itself is on the link (no gateway).
    pub on_link: bool,
}

/// Why no next hop could be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopError {
    /// No route matches.
    NoRoute,
    /// The route's interface is not one the director serves.
    UnknownInterface,
    /// The next hop's MAC is not known.
    Unresolved {
        /// Interface to resolve on.
        ifindex: u32,
        /// Address to resolve.
        addr: IpAddr,
        /// The hop as far as it is known: everything but `dst_mac` (all zeroes).
        hop: NextHop,
    },
}

/// Interfaces, routes and neighbours.
#[derive(Clone, Debug)]
pub struct NetTable {
    interfaces: Vec<Interface>,
    /// Sorted by prefix length, longest first.
    routes: Vec<Route>,
    neighbours: HashMap<IpAddr, (u32, EthernetAddress), FixedState>,
    /// Neighbours the kernel has not confirmed lately (`NUD_STALE`): their MAC is still used,
    /// but a sender that bypasses the kernel's neighbour code must have them re-checked.
    unconfirmed: HashSet<IpAddr, FixedState>,
    unresolved: Vec<(u32, IpAddr)>,
    /// A hash of what says which addresses are this site's own: the interfaces' addresses
    /// and the connected routes (see [`NetTable::local_fingerprint`]).
    fingerprint: u64,
}

/// At most this many unresolved addresses are queued between two `take_unresolved` calls.
const UNRESOLVED_QUEUE: usize = 64;

impl Default for NetTable {
    fn default() -> Self {
        NetTable {
            interfaces: Vec::new(),
            routes: Vec::new(),
            neighbours: HashMap::with_hasher(FixedState::with_seed(0x5eed)),
            unconfirmed: HashSet::with_hasher(FixedState::with_seed(0x5eed)),
            unresolved: Vec::with_capacity(UNRESOLVED_QUEUE),
            fingerprint: 0,
        }
    }
}

impl NetTable {
    /// Add or replace an interface.
    pub fn set_interface(&mut self, iface: Interface) {
        match self
            .interfaces
            .iter_mut()
            .find(|i| i.ifindex == iface.ifindex)
        {
            Some(slot) => *slot = iface,
            None => self.interfaces.push(iface),
        }
        self.refresh_fingerprint();
    }

    /// Forget an interface.
    pub fn remove_interface(&mut self, ifindex: u32) {
        self.interfaces.retain(|i| i.ifindex != ifindex);
        self.refresh_fingerprint();
    }

    /// The interface with this index.
    #[inline]
    pub fn interface(&self, ifindex: u32) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.ifindex == ifindex)
    }

    /// Every interface.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Whether `addr` is configured on one of the interfaces.
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.interfaces.iter().any(|i| i.addrs.contains(&addr))
    }

    /// Replace the whole route list.
    pub fn set_routes(&mut self, mut routes: Vec<Route>) {
        routes.sort_by_key(|r| std::cmp::Reverse(r.len));
        self.routes = routes;
        self.refresh_fingerprint();
    }

    /// Add a route.
    pub fn add_route(&mut self, route: Route) {
        let pos = self
            .routes
            .iter()
            .position(|r| r.len < route.len)
            .unwrap_or(self.routes.len());
        self.routes.insert(pos, route);
        self.refresh_fingerprint();
    }

    /// A hash of the interfaces' addresses and the connected routes: equal for two tables
    /// that agree on which addresses are this site's own and which are subnet broadcasts
    /// (what the director's source check is built from), whichever way they were filled.
    pub fn local_fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn refresh_fingerprint(&mut self) {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = FixedState::with_seed(0x10ca1).build_hasher();
        for i in &self.interfaces {
            i.addrs.hash(&mut h);
        }
        for r in self.routes.iter().filter(|r| r.gateway.is_none()) {
            (r.prefix, r.len).hash(&mut h);
        }
        self.fingerprint = h.finish();
    }

    /// Routes, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Learn (or update) a neighbour.
    pub fn set_neighbour(&mut self, addr: IpAddr, ifindex: u32, mac: EthernetAddress) {
        self.neighbours.insert(addr, (ifindex, mac));
        self.unconfirmed.remove(&addr);
    }

    /// Say that the kernel has not confirmed neighbour `addr` lately (its entry is
    /// `NUD_STALE`): the MAC stays in use (as the kernel uses it), and
    /// [`NetTable::confirmed`] is false until it is set again.
    pub fn mark_unconfirmed(&mut self, addr: IpAddr) {
        if self.neighbours.contains_key(&addr) {
            self.unconfirmed.insert(addr);
        }
    }

    /// Whether neighbour `addr` is known and was confirmed lately.
    pub fn confirmed(&self, addr: IpAddr) -> bool {
        self.neighbours.contains_key(&addr) && !self.unconfirmed.contains(&addr)
    }

    /// The interface and MAC address of a known neighbour.
    pub fn neighbour(&self, addr: IpAddr) -> Option<(u32, EthernetAddress)> {
        self.neighbours.get(&addr).copied()
    }

    /// Every known neighbour: address, interface, MAC (in no particular order).
    pub fn neighbours(&self) -> impl Iterator<Item = (IpAddr, u32, EthernetAddress)> + '_ {
        self.neighbours.iter().map(|(&a, &(i, m))| (a, i, m))
    }

    /// Forget a neighbour.
    pub fn remove_neighbour(&mut self, addr: IpAddr) {
        self.neighbours.remove(&addr);
        self.unconfirmed.remove(&addr);
    }

    /// Addresses the core needed and did not find since the last call.
    pub fn take_unresolved(&mut self) -> impl Iterator<Item = (u32, IpAddr)> + '_ {
        self.unresolved.drain(..)
    }

    /// Longest-prefix route for `dst`.
    #[inline]
    pub fn route(&self, dst: IpAddr) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(dst))
    }

    /// Outgoing interface and MACs for `dst`. Queues the next hop for resolution when its MAC
    /// is unknown.
    pub fn next_hop(&mut self, dst: IpAddr) -> Result<NextHop, HopError> {
        let route = *self.route(dst).ok_or(HopError::NoRoute)?;
        let iface = self
            .interface(route.ifindex)
            .ok_or(HopError::UnknownInterface)?;
        let (src_mac, mtu) = (iface.mac, iface.mtu);
        let via = route.gateway.unwrap_or(dst);
        let mut hop = NextHop {
            ifindex: route.ifindex,
            src_mac,
            dst_mac: EthernetAddress([0; 6]),
            mtu,
            src_ip: route.src,
            on_link: route.gateway.is_none(),
        };
        match self.neighbours.get(&via) {
            Some(&(_, dst_mac)) => {
                hop.dst_mac = dst_mac;
                Ok(hop)
            }
            None => {
                let want = (route.ifindex, via);
                if self.unresolved.len() < UNRESOLVED_QUEUE && !self.unresolved.contains(&want) {
                    self.unresolved.push(want);
                }
                Err(HopError::Unresolved {
                    ifindex: route.ifindex,
                    addr: via,
                    hop,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    /// A stale neighbour stays usable and is unconfirmed until it is set again.
    #[test]
    fn unconfirmed_neighbours() {
        let mut t = NetTable::default();
        let (a, mac) = (v4(10, 0, 0, 9), EthernetAddress([2, 0, 0, 0, 0, 9]));
        t.mark_unconfirmed(a);
        assert!(!t.confirmed(a), "unknown is not confirmed");
        t.set_neighbour(a, 2, mac);
        assert!(t.confirmed(a));
        t.mark_unconfirmed(a);
        assert!(!t.confirmed(a));
        assert_eq!(t.neighbour(a), Some((2, mac)), "still used");
        t.set_neighbour(a, 2, mac);
        assert!(t.confirmed(a), "confirmed again");
        t.mark_unconfirmed(a);
        t.remove_neighbour(a);
        t.set_neighbour(a, 2, mac);
        assert!(t.confirmed(a), "a removed entry leaves no mark");
    }

    #[test]
    fn longest_prefix_and_neighbours() {
        let mut t = NetTable::default();
        t.set_interface(Interface {
            ifindex: 2,
            name: "eth0".into(),
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            addrs: vec![v4(10, 0, 0, 1)],
        });
        t.add_route(Route {
            prefix: v4(0, 0, 0, 0),
            len: 0,
            ifindex: 2,
            gateway: Some(v4(10, 0, 0, 254)),
            src: None,
        });
        t.add_route(Route {
            prefix: v4(10, 0, 0, 0),
            len: 24,
            ifindex: 2,
            gateway: None,
            src: Some(v4(10, 0, 0, 1)),
        });
        assert_eq!(t.route(v4(10, 0, 0, 7)).unwrap().len, 24);
        assert_eq!(t.route(v4(8, 8, 8, 8)).unwrap().len, 0);
        match t.next_hop(v4(8, 8, 8, 8)) {
            Err(HopError::Unresolved { ifindex, addr, hop }) => {
                assert_eq!((ifindex, addr), (2, v4(10, 0, 0, 254)));
                assert_eq!(hop.src_mac, EthernetAddress([2, 0, 0, 0, 0, 1]));
                assert_eq!(hop.dst_mac, EthernetAddress([0; 6]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.take_unresolved().collect::<Vec<_>>(),
            vec![(2, v4(10, 0, 0, 254))]
        );
        t.set_neighbour(v4(10, 0, 0, 254), 2, EthernetAddress([2, 0, 0, 0, 0, 0xfe]));
        let hop = t.next_hop(v4(8, 8, 8, 8)).unwrap();
        assert_eq!(hop.dst_mac, EthernetAddress([2, 0, 0, 0, 0, 0xfe]));
        assert!(!hop.on_link);
        assert!(t.is_local(v4(10, 0, 0, 1)));
        assert_eq!(
            t.next_hop(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
            Err(HopError::NoRoute)
        );
    }
}
