//! rtnetlink: a snapshot of the kernel's interfaces, addresses, routes and
//! neighbours, change notifications, and neighbour resolution.
//!
//! The daemon fills the core's `NetTable` from [`dump`], re-dumps whenever
//! [`Monitor::wait`] reports a change, and calls [`resolve`] for next hops the
//! core could not resolve. Open the [`Monitor`] *before* the first [`dump`] so
//! that no change between the two is missed.
//!
//! Message encoding and decoding use the `netlink-packet-route` /
//! `netlink-packet-core` crates and the socket is a plain synchronous
//! `netlink-sys` socket; this module adds no `unsafe` of its own except one
//! `poll(2)`.
//!
//! Everything answers for the network namespace of the **calling thread**
//! (netlink sockets belong to the namespace they were created in), so it can
//! be used from a thread that entered a namespace with [`crate::netns::enter`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{self as nl_link, LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

use crate::sys;

/// Neighbour states ([`NeighInfo::state`], `NUD_*`) whose MAC address can be used
/// to send: `REACHABLE | STALE | DELAY | PROBE | PERMANENT | NOARP`.
pub const NUD_USABLE: u16 = libc::NUD_REACHABLE
    | libc::NUD_STALE
    | libc::NUD_DELAY
    | libc::NUD_PROBE
    | libc::NUD_PERMANENT
    | libc::NUD_NOARP;

/// A usable neighbour state the kernel has not confirmed lately (`NUD_STALE`): its own
/// traffic through the entry would start a re-check, traffic sent around it (XDP) does not.
pub const NUD_STALE: u16 = libc::NUD_STALE;

/// The main routing table (`RT_TABLE_MAIN`), the only one [`dump`] reports.
pub const RT_TABLE_MAIN: u32 = libc::RT_TABLE_MAIN as u32;

/// Receive buffer for one datagram. Kernel dump datagrams are at most 32 KiB
/// (`netlink_dump` caps its skb there); anything larger is reported as an error.
const RECV_BUF: usize = 64 * 1024;

/// How long one request may wait for the kernel's answer (`SO_RCVTIMEO`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`dump`] retries when the kernel flags a dump as interrupted
/// (`NLM_F_DUMP_INTR`: the table changed while it was being dumped).
const DUMP_RETRIES: usize = 4;

/// Socket receive buffer of a [`Monitor`], so bursts of notifications (e.g.
/// an interface with many routes going down) fit before `ENOBUFS`.
const MONITOR_RCVBUF: usize = 1 << 20;

/// A network interface (`RTM_NEWLINK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Kernel interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address if it is a 6-byte (Ethernet-style) address; `None` for
    /// e.g. IP tunnels. Loopback reports `00:00:00:00:00:00`.
    pub mac: Option<[u8; 6]>,
    /// MTU (IP packet size limit); 0 if the kernel did not report one.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// The link type of a virtual interface (`IFLA_INFO_KIND`: `veth`, `bridge`, `vlan`, ...);
    /// `None` for a physical NIC.
    pub kind: Option<String>,
}

/// An address configured on an interface (`RTM_NEWADDR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    /// Interface index the address is on.
    pub ifindex: u32,
    /// The local address (`IFA_LOCAL` if present, else `IFA_ADDRESS`; the two
    /// differ on point-to-point links, where `IFA_ADDRESS` is the peer).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
}

/// A route (`RTM_NEWROUTE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination prefix (`0.0.0.0` / `::` for a default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub dst_len: u8,
    /// Outgoing interface index.
    pub ifindex: u32,
    /// Gateway (`RTA_GATEWAY`, or `RTA_VIA` for an IPv4 route via an IPv6
    /// next hop), `None` for a directly connected network.
    pub gateway: Option<IpAddr>,
    /// Preferred source address (`RTA_PREFSRC`).
    pub prefsrc: Option<IpAddr>,
    /// Routing table id (always [`RT_TABLE_MAIN`] in a [`Snapshot`]).
    pub table: u32,
    /// Route type, `RTN_*` (always `RTN_UNICAST` in a [`Snapshot`]).
    pub kind: u8,
}

/// A neighbour (ARP / NDP) cache entry (`RTM_NEWNEIGH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighInfo {
    /// Interface index.
    pub ifindex: u32,
    /// The neighbour's IP address.
    pub addr: IpAddr,
    /// Its link-layer address, if known and 6 bytes long.
    pub mac: Option<[u8; 6]>,
    /// Entry state, a `NUD_*` value (see [`NUD_USABLE`]).
    pub state: u16,
}

/// What [`dump`] returns: the kernel's view of the network, in kernel order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// All interfaces, including loopback and interfaces that are down.
    pub links: Vec<LinkInfo>,
    /// All IPv4 and IPv6 addresses.
    pub addrs: Vec<AddrInfo>,
    /// Unicast IPv4 and IPv6 routes of the main table. A multipath (ECMP)
    /// route appears once per next hop; routes without an outgoing interface
    /// are left out.
    pub routes: Vec<RouteInfo>,
    /// Neighbours in a usable state ([`NUD_USABLE`]) that have a MAC address.
    pub neighbours: Vec<NeighInfo>,
}

impl Snapshot {
    /// The interface with index `ifindex`, if any.
    pub fn link(&self, ifindex: u32) -> Option<&LinkInfo> {
        self.links.iter().find(|l| l.ifindex == ifindex)
    }

    /// The interface named `name`, if any.
    pub fn link_by_name(&self, name: &str) -> Option<&LinkInfo> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// Dumps links, addresses, routes and neighbours of the calling thread's
/// network namespace: one netlink socket, four dump requests.
///
/// If the kernel flags a dump as interrupted (the table changed meanwhile,
/// `NLM_F_DUMP_INTR`) the whole snapshot is taken again, a few times at most;
/// after that the last snapshot is returned as is. The change that interrupted
/// it also reaches a [`Monitor`], whose owner dumps again anyway.
pub fn dump() -> io::Result<Snapshot> {
    let mut conn = Conn::open()?;
    let mut attempt = 0;
    loop {
        let (snap, interrupted) = dump_once(&mut conn)?;
        attempt += 1;
        if !interrupted || attempt > DUMP_RETRIES {
            return Ok(snap);
        }
    }
}

fn dump_once(conn: &mut Conn) -> io::Result<(Snapshot, bool)> {
    let mut snap = Snapshot::default();
    let mut interrupted = false;

    interrupted |= conn.dump(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        "dump links",
        |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                snap.links.push(link_info(&l));
            }
        },
    )?;
    interrupted |= conn.dump(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        "dump addresses",
        |m| {
            if let RouteNetlinkMessage::NewAddress(a) = m
                && let Some(a) = addr_info(&a)
            {
                snap.addrs.push(a);
            }
        },
    )?;
    interrupted |= conn.dump(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        "dump routes",
        |m| {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                route_infos(&r, &mut snap.routes);
            }
        },
    )?;
    interrupted |= conn.dump(
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        "dump neighbours",
        |m| {
            if let RouteNetlinkMessage::NewNeighbour(n) = m
                && let Some(n) = neigh_info(&n)
                && n.state & NUD_USABLE != 0
                && n.mac.is_some()
            {
                snap.neighbours.push(n);
            }
        },
    )?;
    Ok((snap, interrupted))
}

/// Asks the kernel to resolve `addr` (ARP for IPv4, neighbour discovery for
/// IPv6) on interface `ifindex`, without sending any application traffic.
///
/// This sends `RTM_NEWNEIGH` with the `NTF_USE` flag (what
/// `ip neigh replace ADDR dev DEV use` does): the kernel creates the entry if
/// needed and runs `neigh_event_send` on it, exactly as if a packet were
/// queued for that neighbour, so it sends an ARP request / neighbour
/// solicitation (or re-confirms a `STALE` entry). The MAC then shows up in
/// the next [`dump`] once the neighbour answered, and a [`Monitor`] reports
/// it. The entry is an ordinary, garbage-collectable one.
///
/// A plain `RTM_NEWNEIGH` with state `NUD_INCOMPLETE` is *not* used: the
/// kernel accepts it but only records the state, it never sends a request
/// (the entry stays `INCOMPLETE`; verified on Linux 6.18).
///
/// Returns once the kernel acknowledged the request, not when the neighbour
/// answered. Fails with e.g. `ENODEV` for an unknown interface.
pub fn resolve(ifindex: u32, addr: IpAddr) -> io::Result<()> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::None;
    msg.header.flags = NeighbourFlags::Use;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            addr,
        )));
    let mut conn = Conn::open()?;
    conn.request_ack(
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .map_err(|e| sys::context(e, format!("resolve {addr} on ifindex {ifindex}")))
}

/// A netlink socket subscribed to link, address, route and neighbour changes
/// (`RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
/// RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH`) of the namespace it was opened in.
///
/// It does not interpret the notifications: [`Monitor::wait`] only says that
/// something changed, and the caller takes a fresh [`dump`].
pub struct Monitor {
    sock: Socket,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("fd", &self.sock.as_raw_fd())
            .finish()
    }
}

impl Monitor {
    /// Opens the socket and joins the multicast groups.
    pub fn open() -> io::Result<Monitor> {
        let groups = (libc::RTMGRP_LINK
            | libc::RTMGRP_IPV4_IFADDR
            | libc::RTMGRP_IPV6_IFADDR
            | libc::RTMGRP_IPV4_ROUTE
            | libc::RTMGRP_IPV6_ROUTE
            | libc::RTMGRP_NEIGH) as u32;
        let mut sock =
            Socket::new(NETLINK_ROUTE).map_err(|e| sys::context(e, "open netlink socket"))?;
        sock.bind(&SocketAddr::new(0, groups))
            .map_err(|e| sys::context(e, "bind netlink socket to rtnetlink groups"))?;
        // Best effort: a small buffer only means an earlier ENOBUFS, which
        // `wait` reports as a change.
        let _ = sock.set_rx_buf_sz(MONITOR_RCVBUF);
        sock.set_non_blocking(true)
            .map_err(|e| sys::context(e, "make netlink socket non-blocking"))?;
        Ok(Monitor {
            sock,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Waits up to `timeout` for notifications. Returns true if any arrived
    /// (all queued ones are consumed) or if the socket overflowed (`ENOBUFS`,
    /// notifications were lost), false if the time passed quietly.
    ///
    /// After `true`, call [`dump`] for the new state.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = poll_readable(self.sock.as_fd(), left)?;
            if ready && self.drain()? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// Reads everything queued; true if there was anything (or an overflow).
    fn drain(&mut self) -> io::Result<bool> {
        let mut changed = false;
        loop {
            match self
                .sock
                .recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT | libc::MSG_TRUNC)
            {
                Ok(0) => return Ok(changed),
                Ok(_) => changed = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(changed),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Err(e) => return Err(sys::context(e, "receive rtnetlink notification")),
            }
        }
    }
}

impl AsFd for Monitor {
    /// The socket, for callers that want to poll it together with other fds
    /// (then call [`Monitor::wait`] with a zero timeout to consume).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// `poll(2)` for `POLLIN` on one fd. `EINTR` counts as "not readable"; a
/// pending socket error (`POLLERR`, e.g. `ENOBUFS`) counts as readable, so the
/// following `recv` reports it.
fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid, writable pollfd and we pass nfds = 1.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(sys::context(e, "poll on netlink socket"));
    }
    Ok(r > 0)
}

/// A request/response netlink connection to the kernel.
struct Conn {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Conn {
    fn open() -> io::Result<Conn> {
        let mut sock =
            Socket::new(NETLINK_ROUTE).map_err(|e| sys::context(e, "open netlink socket"))?;
        sock.bind_auto()
            .map_err(|e| sys::context(e, "bind netlink socket"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| sys::context(e, "connect netlink socket to the kernel"))?;
        // Bound every wait for an answer, so a lost reply cannot hang us.
        let tv = libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        sys::setsockopt(
            sock.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv,
            "set SO_RCVTIMEO on netlink socket",
        )?;
        Ok(Conn {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags`; returns its sequence number.
    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &str) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        let n = self
            .sock
            .send(&out, 0)
            .map_err(|e| sys::context(e, format!("{what}: send request")))?;
        if n != out.len() {
            return Err(io::Error::other(format!(
                "{what}: short netlink send ({n} of {} bytes)",
                out.len()
            )));
        }
        Ok(self.seq)
    }

    /// Receives the answer to request `seq`, handing each inner message to
    /// `f`, until `NLMSG_DONE` or an `NLMSG_ERROR` (ACK: success, NACK: its
    /// errno). Returns whether any part carried `NLM_F_DUMP_INTR`.
    fn receive(
        &mut self,
        seq: u32,
        what: &str,
        mut f: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<bool> {
        let mut interrupted = false;
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{what}: no answer from the kernel within {REPLY_TIMEOUT:?}"),
                    ));
                }
                Err(e) => return Err(sys::context(e, format!("{what}: receive"))),
            };
            if n > self.buf.len() {
                return Err(io::Error::other(format!(
                    "{what}: netlink datagram of {n} bytes exceeds the {} byte buffer",
                    self.buf.len()
                )));
            }
            let mut off = 0;
            while off < n {
                let data = &self.buf[off..n];
                let nb = NetlinkBuffer::new_checked(data).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
                })?;
                let len = nb.length() as usize;
                let flags = nb.flags();
                let msg_seq = nb.sequence_number();
                if len == 0 {
                    break;
                }
                // Messages in a datagram are NLMSG_ALIGN'ed (4 bytes).
                off += len.next_multiple_of(4);
                if msg_seq != seq {
                    // A late answer to an earlier request that timed out.
                    continue;
                }
                if flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..len])
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{what}: cannot decode netlink message: {e}"),
                        )
                    })?;
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => f(m),
                    NetlinkPayload::Done(d) => {
                        if d.code != 0 {
                            return Err(sys::context(
                                io::Error::from_raw_os_error(d.code.abs()),
                                what,
                            ));
                        }
                        return Ok(interrupted);
                    }
                    NetlinkPayload::Error(e) => {
                        if e.code.is_some() {
                            return Err(sys::context(e.to_io(), what));
                        }
                        return Ok(interrupted);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(io::Error::other(format!("{what}: netlink overrun")));
                    }
                    NetlinkPayload::Noop => {}
                    _ => {}
                }
            }
        }
    }

    /// Runs one `NLM_F_DUMP` request. Returns whether it was interrupted.
    fn dump(
        &mut self,
        req: RouteNetlinkMessage,
        what: &str,
        f: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<bool> {
        let seq = self.send(req, NLM_F_DUMP, what)?;
        self.receive(seq, what, f)
    }

    /// Sends a request with `NLM_F_ACK` and waits for the acknowledgement.
    fn request_ack(&mut self, req: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(req, NLM_F_ACK | flags, "netlink request")?;
        self.receive(seq, "netlink request", |_| {})?;
        Ok(())
    }
}

fn mac6(b: &[u8]) -> Option<[u8; 6]> {
    <[u8; 6]>::try_from(b).ok()
}

fn link_info(l: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        ifindex: l.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        loopback: l.header.flags.contains(LinkFlags::Loopback),
        kind: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name.clone_from(n),
            LinkAttribute::Address(m) => info.mac = mac6(m),
            LinkAttribute::Mtu(m) => info.mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let nl_link::LinkInfo::Kind(k) = i {
                        info.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn addr_info(a: &AddressMessage) -> Option<AddrInfo> {
    if !matches!(a.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
        return None;
    }
    let mut local = None;
    let mut address = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    Some(AddrInfo {
        ifindex: a.header.index,
        addr: local.or(address)?,
        prefix_len: a.header.prefix_len,
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn via_addr(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteVia::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// The gateway among a route's (or a next hop's) attributes.
fn gateway(attrs: &[RouteAttribute]) -> Option<IpAddr> {
    attrs.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_addr(g),
        RouteAttribute::Via(v) => via_addr(v),
        _ => None,
    })
}

/// Appends the main-table unicast IPv4/IPv6 route(s) described by `r`.
fn route_infos(r: &RouteMessage, out: &mut Vec<RouteInfo>) {
    let h = &r.header;
    let unspecified = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return,
    };
    if h.kind != RouteType::Unicast {
        return;
    }
    let mut table = u32::from(h.table);
    let mut dst = unspecified;
    let mut oif = 0;
    let mut prefsrc = None;
    let mut multipath = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_addr(d).unwrap_or(unspecified),
            RouteAttribute::Oif(i) => oif = *i,
            RouteAttribute::PrefSource(s) => prefsrc = route_addr(s),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return;
    }
    let base = RouteInfo {
        dst,
        dst_len: h.destination_prefix_length,
        ifindex: oif,
        gateway: gateway(&r.attributes),
        prefsrc,
        table,
        kind: u8::from(h.kind),
    };
    match multipath {
        Some(hops) => {
            out.extend(
                hops.iter()
                    .filter(|nh| nh.interface_index != 0)
                    .map(|nh| RouteInfo {
                        ifindex: nh.interface_index,
                        gateway: gateway(&nh.attributes),
                        ..base
                    }),
            )
        }
        None if oif != 0 => out.push(base),
        None => {}
    }
}

fn neigh_info(n: &NeighbourMessage) -> Option<NeighInfo> {
    if !matches!(n.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
        return None;
    }
    let mut addr = None;
    let mut mac = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                addr = Some(IpAddr::V4(*ip));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                addr = Some(IpAddr::V6(*ip));
            }
            NeighbourAttribute::LinkLayerAddress(m) => mac = mac6(m),
            _ => {}
        }
    }
    Some(NeighInfo {
        ifindex: n.header.ifindex,
        addr: addr?,
        mac,
        state: u16::from(n.header.state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_states() {
        assert_eq!(NUD_USABLE, 0x02 | 0x04 | 0x08 | 0x10 | 0x80 | 0x40);
        assert_eq!(NUD_USABLE & libc::NUD_INCOMPLETE, 0);
        assert_eq!(NUD_USABLE & libc::NUD_FAILED, 0);
    }

    #[test]
    fn dump_in_own_namespace_has_loopback() {
        // Works unprivileged: every namespace has `lo`.
        let snap = dump().expect("dump");
        let lo = snap.links.iter().find(|l| l.loopback).expect("loopback");
        assert_eq!(lo.name, "lo");
        assert!(lo.mtu > 0);
    }
}
