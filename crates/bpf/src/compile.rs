//! From the core's state to the kernel's maps: a connection becomes its map entries, the
//! network view becomes the route trie and the neighbour map, the TCP state machine becomes a
//! transition table.
//! Pure functions: what the core decided, said in the program's terms.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use lvs_core::conn::state::{Direction, TCP_STATES, TcpState, tcp_next_state};
use lvs_core::conn::{Conn, ConnFlags};
use lvs_core::net::NetTable;
use lvs_core::types::ForwardMethod;

use lvs_core::director::{OffloadedDest, OffloadedService};
use lvs_core::sched::{ASK_CORE, Compiled};
use lvs_core::types::Protocol;

use crate::maps::{
    Action, ConnEntry, DestEntry, F_NO_OUTPUT, Flow, NO_DEST, NeighEntry, RouteCache, RouteEntry,
    RouteKey, SVC_HASH_PORT, Sched, SvcKey, TCP_TABLE_LEN,
};

/// The map entries of a connection: one for DR and Tun (client → VIP), two for NAT (and the
/// replies' real server → client). `None` for what the kernel program does not forward
/// (persistence templates, IPv6).
pub fn conn_entries(c: &Conn, stats: u32, seen_ns: u64) -> Option<Vec<(Flow, ConnEntry)>> {
    if c.is_template() {
        return None;
    }
    let (IpAddr::V4(caddr), IpAddr::V4(vaddr), IpAddr::V4(daddr)) = (c.caddr, c.vaddr, c.daddr)
    else {
        return None;
    };
    let flags = if c.flags.has(ConnFlags::NO_OUTPUT) {
        F_NO_OUTPUT
    } else {
        0
    };
    let in_flow = Flow::new(c.proto, caddr, c.cport, vaddr, c.vport);
    let entry = |action, addr, port| ConnEntry {
        action,
        state: c.state as u8,
        flags,
        addr,
        port,
        stats,
        route: RouteCache::default(),
        seen_ns,
    };
    Some(match c.method {
        ForwardMethod::Masq => vec![
            (in_flow, entry(Action::NatIn, daddr, c.dport)),
            (
                Flow::new(c.proto, daddr, c.dport, caddr, c.cport),
                entry(Action::NatOut, vaddr, c.vport),
            ),
        ],
        ForwardMethod::DirectRoute => vec![(in_flow, entry(Action::DirectRoute, daddr, 0))],
        ForwardMethod::Tunnel => vec![(in_flow, entry(Action::Tunnel, daddr, 0))],
    })
}

/// The key of a service in `lvs_svcs`.
pub fn svc_key(proto: Protocol, vip: Ipv4Addr, port: u16) -> SvcKey {
    SvcKey {
        addr: vip,
        port,
        proto: proto.number(),
    }
}

/// Where the program sends a new flow given real server `d`.
pub fn dest_entry(d: &OffloadedDest) -> DestEntry {
    let action = match d.method {
        ForwardMethod::Masq => Action::NatIn,
        ForwardMethod::DirectRoute => Action::DirectRoute,
        ForwardMethod::Tunnel => Action::Tunnel,
    };
    DestEntry {
        action,
        port: if action == Action::NatIn { d.port } else { 0 },
        addr: d.addr,
    }
}

/// The route the program finds for `addr` in `routes` (longest prefix, as `lvs_routes`).
fn lookup(routes: &[(RouteKey, RouteEntry)], addr: Ipv4Addr) -> Option<&RouteEntry> {
    routes
        .iter()
        .filter(|(k, _)| {
            let len = u32::from(k.len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(addr) & mask == u32::from(k.addr)
        })
        .max_by_key(|(k, _)| k.len)
        .map(|(_, r)| r)
}

/// The largest IPv4 packet of a new flow of `s` that the program may schedule itself
/// (`lvs_svc.max_len`), given the program's routes: the smallest of what each real server
/// takes — its interface's MTU, less 20 bytes of tunnel header for Tun — and 0 (the core
/// schedules every new flow) when one cannot be sent to as the program sends (no route; a
/// DR server not on link; no tunnel source). So a new flow the core would answer with
/// "fragmentation needed", or drop for want of a route, reaches the core.
pub fn new_flow_limit(routes: &[(RouteKey, RouteEntry)], s: &OffloadedService) -> u16 {
    s.dests
        .iter()
        .map(|d| {
            let Some(r) = lookup(routes, d.addr) else {
                return 0;
            };
            let mtu = r.mtu.min(0xffff);
            match d.method {
                ForwardMethod::Masq => mtu,
                ForwardMethod::DirectRoute if r.gateway.is_none() => mtu,
                ForwardMethod::DirectRoute => 0,
                ForwardMethod::Tunnel if r.src.is_some() => mtu.saturating_sub(20),
                ForwardMethod::Tunnel => 0,
            }
        })
        .min()
        .unwrap_or(0) as u16
}

/// A service's compiled scheduler in the program's terms: its kind, its flags, and the
/// table with each entry as the `lvs_dests` index of the real server (`ids[i]` for the
/// service's `i`-th), or [`NO_DEST`] where the core decides.
pub fn sched_table(s: &OffloadedService, ids: &[u32]) -> (Sched, u8, Vec<u32>) {
    let map = |v: &[u32]| -> Vec<u32> {
        v.iter()
            .map(|&e| match e {
                ASK_CORE => NO_DEST,
                i => ids.get(i as usize).copied().unwrap_or(NO_DEST),
            })
            .collect()
    };
    let port_flag = |p: bool| if p { SVC_HASH_PORT } else { 0 };
    match &s.table {
        Compiled::Sequence(v) => (Sched::Sequence, 0, map(v)),
        Compiled::SourceHash { port, buckets } => {
            (Sched::SourceHash, port_flag(*port), map(buckets))
        }
        Compiled::DestHash { buckets } => (Sched::DestHash, 0, map(buckets)),
        Compiled::Maglev { port, slots } => (Sched::Maglev, port_flag(*port), map(slots)),
    }
}

/// The keys under which a connection's entries are installed ([`conn_entries`]'s flows):
/// what to delete when the core removes it. Empty where nothing is installed.
pub fn flows(c: &Conn) -> Vec<Flow> {
    conn_entries(c, 0, 0)
        .map(|v| v.into_iter().map(|(f, _)| f).collect())
        .unwrap_or_default()
}

/// The IPv4 routes of `net` as the program's trie, in the core's order of preference: where
/// two routes have the same prefix the first one the core would pick wins. Routes through
/// an interface the director does not serve are left out (the core has no hop for them).
pub fn routes(net: &NetTable) -> Vec<(RouteKey, RouteEntry)> {
    let mut out: Vec<(RouteKey, RouteEntry)> = Vec::new();
    for r in net.routes() {
        let IpAddr::V4(prefix) = r.prefix else {
            continue;
        };
        let Some(iface) = net.interface(r.ifindex) else {
            continue;
        };
        let len = r.len.min(32);
        let masked = if len == 0 {
            0
        } else {
            u32::from(prefix) & (u32::MAX << (32 - u32::from(len)))
        };
        let key = RouteKey {
            len,
            addr: Ipv4Addr::from(masked),
        };
        if out.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let v4 = |a: Option<IpAddr>| match a {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        let src = v4(r.src).or_else(|| v4(iface.addrs.iter().copied().find(IpAddr::is_ipv4)));
        out.push((
            key,
            RouteEntry {
                ifindex: r.ifindex,
                gateway: v4(r.gateway),
                src,
                mtu: u32::from(iface.mtu),
            },
        ));
    }
    out
}

/// `lvs_neigh`'s entries from the core's neighbour table: each IPv4 neighbour on an
/// interface the core serves, with that interface's MAC as the source (what the core writes
/// for a next hop there, and what `bpf_redirect_neigh` would).
pub fn neighbours(net: &NetTable) -> BTreeMap<Ipv4Addr, NeighEntry> {
    net.neighbours()
        .filter_map(|(addr, ifindex, mac)| {
            let IpAddr::V4(a) = addr else { return None };
            let iface = net.interface(ifindex)?;
            Some((
                a,
                NeighEntry {
                    ifindex,
                    mac: mac.0,
                    src_mac: iface.mac.0,
                },
            ))
        })
        .collect()
}

/// Representative TCP flags for the program's event columns: SYN, FIN, ACK, RST, none.
const EVENT_FLAGS: [u8; 5] = [0x02, 0x01, 0x10, 0x04, 0x00];

/// The core's TCP transitions as `struct lvs_tcp_table`: tables INPUT, OUTPUT, INPUT_ONLY by
/// event by state. The program classifies flags exactly as `TcpEvent::from_flags` does, so
/// this table is the whole state machine.
pub fn tcp_table() -> [u8; TCP_TABLE_LEN] {
    let mut b = [0u8; TCP_TABLE_LEN];
    let tables = [
        (Direction::Input, true),
        (Direction::Output, true),
        (Direction::Input, false),
    ];
    for (t, (dir, sees_output)) in tables.into_iter().enumerate() {
        for (e, flags) in EVENT_FLAGS.into_iter().enumerate() {
            for s in 0..TCP_STATES {
                let state = TcpState::from_index(s).unwrap_or(TcpState::None);
                let next = tcp_next_state(state, dir, sees_output, flags);
                b[(t * EVENT_FLAGS.len() + e) * TCP_STATES + s] = next as u8;
            }
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How big a new flow's first packet the program may take: the smallest MTU over the
    /// real servers, less the tunnel header for Tun; none when one cannot be sent to.
    #[test]
    fn new_flow_limit_follows_routes_and_methods() {
        use lvs_core::sim;
        use lvs_core::types::SchedulerKind;
        let limit = |m: ForwardMethod| {
            let d = sim::director(m, SchedulerKind::Rr, lvs_core::Time::ZERO);
            let svc = d.services().iter().next().map(|(i, _)| i).unwrap();
            let off = d.offloadable(svc).expect("rr compiles");
            (new_flow_limit(&routes(&d.net), &off), off)
        };
        assert_eq!(limit(ForwardMethod::Masq).0, 1500);
        assert_eq!(limit(ForwardMethod::DirectRoute).0, 1500);
        let (tun, mut off) = limit(ForwardMethod::Tunnel);
        assert_eq!(tun, 1480);
        // A real server without a route: the core schedules every new flow.
        off.dests[1].addr = Ipv4Addr::new(203, 0, 113, 9);
        let only_lan = vec![(
            RouteKey {
                len: 24,
                addr: Ipv4Addr::new(10, 0, 1, 0),
            },
            RouteEntry {
                ifindex: 2,
                gateway: None,
                src: Some(Ipv4Addr::new(10, 0, 1, 1)),
                mtu: 9000,
            },
        )];
        assert_eq!(new_flow_limit(&only_lan, &off), 0);
        // DR needs the server on link; Tun a source address.
        off.dests[1].addr = off.dests[0].addr;
        off.dests
            .iter_mut()
            .for_each(|d| d.method = ForwardMethod::DirectRoute);
        let via_gw = vec![(
            only_lan[0].0,
            RouteEntry {
                gateway: Some(Ipv4Addr::new(10, 0, 1, 254)),
                ..only_lan[0].1
            },
        )];
        assert_eq!(new_flow_limit(&via_gw, &off), 0);
        assert_eq!(new_flow_limit(&only_lan, &off), 9000);
        off.dests
            .iter_mut()
            .for_each(|d| d.method = ForwardMethod::Tunnel);
        let no_src = vec![(
            only_lan[0].0,
            RouteEntry {
                src: None,
                ..only_lan[0].1
            },
        )];
        assert_eq!(new_flow_limit(&no_src, &off), 0);
        assert_eq!(new_flow_limit(&only_lan, &off), 8980);
    }

    /// The program's mh hash key (a define in lvs.h) is the core's.
    #[test]
    fn mh_key_is_the_cores() {
        let h = include_str!("bpf/lvs.h");
        let (k0, k1) = lvs_core::sched::MH_HASH1;
        assert!(
            h.contains(&format!("#define LVS_MH_K0 {k0}ULL")),
            "LVS_MH_K0"
        );
        assert!(
            h.contains(&format!("#define LVS_MH_K1 {k1}ULL")),
            "LVS_MH_K1"
        );
    }

    fn conn(method: ForwardMethod) -> Conn {
        Conn::new(
            Protocol::Tcp,
            (IpAddr::V4(Ipv4Addr::new(10, 2, 0, 9)), 40000),
            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)), 80),
            (IpAddr::V4(Ipv4Addr::new(10, 1, 0, 11)), 8080),
            0,
            0,
            method,
        )
    }

    #[test]
    fn nat_has_both_directions() {
        let e = conn_entries(&conn(ForwardMethod::Masq), 5, 0).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0.dst, Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(e[0].1.action, Action::NatIn);
        assert_eq!(
            (e[0].1.addr, e[0].1.port),
            (Ipv4Addr::new(10, 1, 0, 11), 8080)
        );
        assert_eq!(
            (e[1].0.src, e[1].0.sport, e[1].0.dst, e[1].0.dport),
            (
                Ipv4Addr::new(10, 1, 0, 11),
                8080,
                Ipv4Addr::new(10, 2, 0, 9),
                40000
            )
        );
        assert_eq!(
            (e[1].1.addr, e[1].1.port),
            (Ipv4Addr::new(192, 0, 2, 100), 80)
        );
        assert_eq!(e[0].1.flags, 0, "NAT sees replies: full INPUT table");
    }

    #[test]
    fn dr_and_tun_are_input_only() {
        for m in [ForwardMethod::DirectRoute, ForwardMethod::Tunnel] {
            let e = conn_entries(&conn(m), 0, 0).unwrap();
            assert_eq!(e.len(), 1);
            assert_eq!(e[0].1.flags, F_NO_OUTPUT);
        }
    }

    #[test]
    fn table_matches_the_core() {
        let t = tcp_table();
        // INPUT, SYN from NONE -> SYN_RECV; INPUT_ONLY, FIN from ESTABLISHED -> FIN_WAIT;
        // OUTPUT, ACK from SYN_RECV -> ESTABLISHED; no flags -> CLOSE everywhere.
        let at = |tab: usize, ev: usize, st: TcpState| t[(tab * 5 + ev) * TCP_STATES + st as usize];
        assert_eq!(at(0, 0, TcpState::None), TcpState::SynRecv as u8);
        assert_eq!(at(2, 1, TcpState::Established), TcpState::FinWait as u8);
        assert_eq!(at(1, 2, TcpState::SynRecv), TcpState::Established as u8);
        assert_eq!(at(1, 4, TcpState::Established), TcpState::Close as u8);
    }
}
