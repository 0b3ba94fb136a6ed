//! From the core's state to the kernel's maps: a connection becomes its map entries, the
//! network view becomes the route trie, the TCP state machine becomes a transition table.
//! Pure functions: what the core decided, said in the program's terms.

use std::net::{IpAddr, Ipv4Addr};

use lvs_core::conn::state::{Direction, TCP_STATES, TcpState, tcp_next_state};
use lvs_core::conn::{Conn, ConnFlags};
use lvs_core::net::NetTable;
use lvs_core::types::ForwardMethod;

use crate::maps::{
    Action, ConnEntry, F_NO_OUTPUT, Flow, RouteCache, RouteEntry, RouteKey, TCP_TABLE_LEN,
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
    use lvs_core::types::Protocol;

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
