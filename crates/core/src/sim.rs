//! Building blocks for simulations, tests, benchmarks and fuzzing: frame builders and a
//! director wired like the seed's topologies. No I/O.

use std::net::{IpAddr, Ipv4Addr};

use lvs_wire::checksum;
use lvs_wire::ethernet::{EthernetAddress, ethertype};
use lvs_wire::ipv4::{Ipv4Packet, Ipv4Repr};
use lvs_wire::protocol;
use lvs_wire::tcp::TcpPacket;
use lvs_wire::udp::UdpPacket;

use crate::director::{Director, Settings};
use crate::net::{Interface, Route};
use crate::service::{DestConfig, ServiceConfig};
use crate::time::Time;
use crate::types::{ForwardMethod, Protocol, SchedulerKind, ServiceKey};

/// Headroom the builders leave before the frame (room for a tunnel header).
pub const HEADROOM: usize = 64;

/// TCP flag bits: the wire crate's one definition.
pub use lvs_wire::tcp::flags as tcp_flags;

/// Addresses of the simulated topology (as in the seed: client behind a router, director
/// with a front and a back interface, three real servers).
pub mod addr {
    use super::*;
    /// The client.
    pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    /// The router between client and director (DIRECTOR_GW).
    pub const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
    /// The virtual IP.
    pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// The director's address on the real-server network.
    pub const DIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
    /// Real server addresses.
    pub const RIPS: [Ipv4Addr; 3] = [
        Ipv4Addr::new(10, 0, 1, 11),
        Ipv4Addr::new(10, 0, 1, 12),
        Ipv4Addr::new(10, 0, 1, 13),
    ];
    /// Front interface index.
    pub const FRONT: u32 = 2;
    /// Back interface index.
    pub const BACK: u32 = 3;
    /// Director MAC on the front.
    pub const FRONT_MAC: [u8; 6] = [0x02, 0xd1, 0, 0, 0, 1];
    /// Director MAC on the back.
    pub const BACK_MAC: [u8; 6] = [0x02, 0xd1, 0, 0, 0, 2];
    /// Router MAC.
    pub const ROUTER_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 1];

    /// MAC of real server `i`.
    pub fn rs_mac(i: usize) -> [u8; 6] {
        [0x02, 0x55, 0, 0, 0, i as u8 + 1]
    }
}

/// A TCP/UDP packet to build.
#[derive(Clone, Debug)]
pub struct PacketSpec {
    /// Transport protocol.
    pub proto: Protocol,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP flags.
    pub flags: u8,
    /// TCP sequence number.
    pub seq: u32,
    /// Payload.
    pub payload: Vec<u8>,
    /// Don't-fragment bit.
    pub df: bool,
    /// TTL.
    pub ttl: u8,
}

impl PacketSpec {
    /// A TCP segment.
    pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> PacketSpec {
        PacketSpec {
            proto: Protocol::Tcp,
            src_mac: addr::ROUTER_MAC,
            dst_mac: addr::FRONT_MAC,
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            flags,
            seq: 1000,
            payload: Vec::new(),
            df: true,
            ttl: 64,
        }
    }

    /// A UDP datagram.
    pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> PacketSpec {
        PacketSpec {
            proto: Protocol::Udp,
            payload: payload.to_vec(),
            ..PacketSpec::tcp(src, dst, 0)
        }
    }

    /// With these MACs.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> PacketSpec {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// With this payload.
    pub fn payload(mut self, p: &[u8]) -> PacketSpec {
        self.payload = p.to_vec();
        self
    }

    /// The IP packet (no Ethernet header), checksums complete.
    pub fn ip_packet(&self) -> Vec<u8> {
        let l4_len = match self.proto {
            Protocol::Tcp => 20,
            _ => 8,
        } + self.payload.len();
        let repr = Ipv4Repr {
            src_addr: self.src,
            dst_addr: self.dst,
            protocol: self.proto.number(),
            payload_len: l4_len,
            ttl: self.ttl,
            dscp_ecn: 0,
            ident: 0x1234,
            dont_frag: self.df,
        };
        let mut buf = vec![0u8; 20 + l4_len];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let pseudo =
            checksum::pseudo_header_v4(self.src, self.dst, self.proto.number(), l4_len as u32);
        let l4 = &mut buf[20..];
        match self.proto {
            Protocol::Tcp => {
                l4[12] = 5 << 4;
                let mut t = TcpPacket::new_unchecked(&mut *l4);
                t.set_src_port(self.sport);
                t.set_dst_port(self.dport);
                t.set_seq_number(self.seq);
                t.set_flags(self.flags);
                t.set_window_len(65535);
                t.payload_mut().copy_from_slice(&self.payload);
                t.fill_checksum(pseudo);
            }
            _ => {
                let mut u = UdpPacket::new_unchecked(&mut *l4);
                u.set_src_port(self.sport);
                u.set_dst_port(self.dport);
                u.set_len(l4_len as u16);
                u.payload_mut().copy_from_slice(&self.payload);
                u.fill_checksum(pseudo);
            }
        }
        buf
    }

    /// A buffer holding [`HEADROOM`] spare bytes then the Ethernet frame; returns the buffer
    /// and the frame length.
    pub fn frame(&self) -> (Vec<u8>, usize) {
        frame_with(self.src_mac, self.dst_mac, &self.ip_packet())
    }
}

/// A buffer with [`HEADROOM`] spare bytes then an Ethernet frame carrying `ip`.
pub fn frame_with(src_mac: [u8; 6], dst_mac: [u8; 6], ip: &[u8]) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; HEADROOM + 14 + ip.len()];
    buf[HEADROOM..HEADROOM + 6].copy_from_slice(&dst_mac);
    buf[HEADROOM + 6..HEADROOM + 12].copy_from_slice(&src_mac);
    buf[HEADROOM + 12..HEADROOM + 14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    buf[HEADROOM + 14..].copy_from_slice(ip);
    (buf, 14 + ip.len())
}

/// The virtual service of the simulated topology: TCP VIP:80.
pub fn http_service() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(addr::VIP),
        port: 80,
    }
}

/// The UDP service of the simulated topology: UDP VIP:53.
pub fn udp_service() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: IpAddr::V4(addr::VIP),
        port: 53,
    }
}

/// A director wired like the seed's topology with `TCP VIP:80` and `UDP VIP:53` served by the
/// three real servers with `method` and `sched` (real-server port 8080 for NAT, 80 else).
pub fn director(method: ForwardMethod, sched: SchedulerKind, now: Time) -> Director {
    let settings = Settings {
        conn_prealloc: 1 << 14,
        ..Settings::default()
    };
    let mut d = Director::new(settings, now);
    wire_network(&mut d);
    for key in [http_service(), udp_service()] {
        d.add_service(ServiceConfig::new(key).with_scheduler(sched))
            .expect("fresh service");
        for rip in addr::RIPS {
            let port = if method == ForwardMethod::Masq {
                8080
            } else {
                80
            };
            d.add_dest(&key, DestConfig::new(IpAddr::V4(rip), port, method))
                .expect("fresh dest");
        }
    }
    d
}

/// Fill the director's interfaces, routes and neighbours for the simulated topology.
pub fn wire_network(d: &mut Director) {
    d.net.set_interface(Interface {
        ifindex: addr::FRONT,
        name: "front".into(),
        mac: EthernetAddress(addr::FRONT_MAC),
        mtu: 1500,
        addrs: vec![IpAddr::V4(addr::VIP)],
    });
    d.net.set_interface(Interface {
        ifindex: addr::BACK,
        name: "back".into(),
        mac: EthernetAddress(addr::BACK_MAC),
        mtu: 1500,
        addrs: vec![IpAddr::V4(addr::DIP)],
    });
    d.net.add_route(Route {
        prefix: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        len: 0,
        ifindex: addr::FRONT,
        gateway: Some(IpAddr::V4(addr::ROUTER)),
        src: Some(IpAddr::V4(addr::VIP)),
    });
    d.net.add_route(Route {
        prefix: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)),
        len: 24,
        ifindex: addr::FRONT,
        gateway: None,
        src: Some(IpAddr::V4(addr::VIP)),
    });
    d.net.add_route(Route {
        prefix: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 0)),
        len: 24,
        ifindex: addr::BACK,
        gateway: None,
        src: Some(IpAddr::V4(addr::DIP)),
    });
    d.net.set_neighbour(
        IpAddr::V4(addr::ROUTER),
        addr::FRONT,
        EthernetAddress(addr::ROUTER_MAC),
    );
    for (i, rip) in addr::RIPS.iter().enumerate() {
        d.net.set_neighbour(
            IpAddr::V4(*rip),
            addr::BACK,
            EthernetAddress(addr::rs_mac(i)),
        );
    }
}

/// Index of the real server with this address in the simulated topology.
pub fn rs_index(ip: Ipv4Addr) -> Option<usize> {
    addr::RIPS.iter().position(|r| *r == ip)
}

/// Whether an IP packet's header and TCP/UDP checksums are valid.
pub fn checksums_ok(ip: &[u8]) -> bool {
    let Ok(p) = Ipv4Packet::new_checked(ip) else {
        return false;
    };
    if !p.verify_checksum() {
        return false;
    }
    let pseudo = checksum::pseudo_header_v4(
        p.src_addr(),
        p.dst_addr(),
        p.protocol(),
        p.payload().len() as u32,
    );
    match p.protocol() {
        protocol::TCP => {
            TcpPacket::new_checked(p.payload()).is_ok_and(|t| t.verify_checksum(pseudo))
        }
        protocol::UDP => {
            UdpPacket::new_checked(p.payload()).is_ok_and(|u| u.verify_checksum(pseudo))
        }
        _ => true,
    }
}

/// The IPv4 packet `ip` as a router sends it on: TTL one less, header checksum fixed (what
/// every method does to the packet it forwards, as IPVS's `decrement_ttl`).
pub fn after_hop(ip: &[u8]) -> Vec<u8> {
    let mut out = ip.to_vec();
    let _ = Ipv4Packet::new_unchecked(&mut out[..]).decrement_ttl_incremental();
    out
}

/// What the director may do with a frame, judged without its code (an oracle for the
/// random-frame test and the fuzz target, written apart from `director/validate.rs`): a
/// frame that fails validation is never forwarded.
#[derive(Debug, PartialEq)]
pub enum Judged {
    /// Anything (not an IPv4 TCP/UDP/ICMP packet, a fragment, or valid).
    Any,
    /// Only its TTL is at fault: "time exceeded" or nothing.
    TtlOnly,
    /// Never forwarded.
    Refused(&'static str),
}

/// Judge `frame` (Ethernet onwards) as [`Judged`] says.
pub fn judge(frame: &[u8]) -> Judged {
    let Some(ip) = frame
        .get(14..)
        .filter(|_| frame.get(12..14) == Some(&[8, 0]))
    else {
        return Judged::Any;
    };
    let Ok(p) = Ipv4Packet::new_checked(ip) else {
        return Judged::Any;
    };
    if p.is_fragment() {
        return Judged::Any;
    }
    let l4 = p.payload();
    let refused = match p.protocol() {
        protocol::TCP | protocol::UDP | protocol::ICMP if !p.verify_checksum() => {
            Some("ip checksum")
        }
        protocol::TCP | protocol::UDP => {
            let mut o = p.options();
            let mut srr = false;
            while let Some(&k) = o.first() {
                if k == 0 {
                    break;
                }
                if k == 1 {
                    o = &o[1..];
                    continue;
                }
                let l = o.get(1).map_or(0, |&l| usize::from(l));
                if l < 2 || l > o.len() {
                    srr = true; // malformed options are refused too
                    break;
                }
                srr |= k == 131 || k == 137;
                o = &o[l..];
            }
            let [a, b, ..] = p.src_addr().octets();
            let martian = a == 0 || a == 127 || a >= 224 || (a == 169 && b == 254);
            let bad_l4 = if p.protocol() == protocol::TCP {
                let off = l4.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
                !(20..=l4.len()).contains(&off)
            } else {
                l4.len() < 8
                    || !(8..=l4.len()).contains(&usize::from(u16::from_be_bytes([l4[4], l4[5]])))
            };
            if srr {
                Some("options")
            } else if bad_l4 {
                Some("transport header")
            } else if martian {
                // No entry is ever made for one, and it is not answered either.
                Some("martian source")
            } else {
                None
            }
        }
        protocol::ICMP if lvs_wire::checksum::checksum(l4) != 0 => Some("icmp checksum"),
        protocol::ICMP if p.ttl() <= 1 => Some("icmp ttl"),
        _ => return Judged::Any,
    };
    match refused {
        Some(r) => Judged::Refused(r),
        None if p.ttl() <= 1 && p.protocol() != protocol::ICMP => Judged::TtlOnly,
        None => Judged::Any,
    }
}
