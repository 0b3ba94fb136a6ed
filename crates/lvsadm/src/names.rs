//! Host and service names, as ipvsadm resolves them unless `-n`.
//!
//! Input (`-t www.example.com:http`): ports by name from `/etc/services` for the service's
//! protocol (ipvsadm's `getservbyname`), hosts through the system resolver
//! ([`std::net::ToSocketAddrs`], i.e. `getaddrinfo`: `/etc/hosts`, then DNS), preferring an
//! IPv4 address as ipvsadm's `gethostbyname` does.
//!
//! Output (`-L` without `-n`): port names from `/etc/services` (`getservbyport`) and host
//! names from `/etc/hosts` (the first line naming the address, as `gethostbyaddr` finds it
//! there). Reverse DNS (PTR) is **not** queried: it needs `getnameinfo` through FFI, which this
//! crate forbids, and would make a listing of thousands of services take minutes when DNS is
//! slow. Addresses without an `/etc/hosts` entry print numerically.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::OnceLock;

use lvs_core::types::Protocol;

/// Name look-ups, so tests can use fixed tables.
pub trait Resolve {
    /// Port of a service name for a protocol (`getservbyname`).
    fn port_by_name(&self, name: &str, proto: Protocol) -> Option<u16>;
    /// Service name of a port for a protocol (`getservbyport`).
    fn port_name(&self, port: u16, proto: Protocol) -> Option<String>;
    /// Address of a host name.
    fn host_addr(&self, name: &str) -> Option<IpAddr>;
    /// Host name of an address.
    fn host_name(&self, addr: IpAddr) -> Option<String>;
}

/// Lower-case protocol name as `/etc/services` writes it.
fn proto_word(proto: Protocol) -> &'static str {
    match proto {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// A parsed `/etc/services`.
#[derive(Clone, Debug, Default)]
pub struct Services {
    by_name: HashMap<(String, &'static str), u16>,
    by_port: HashMap<(u16, &'static str), String>,
}

impl Services {
    /// Parse the text of an `/etc/services` file: `name port/proto [aliases...] [# comment]`.
    /// The first line for a port gives its name, as `getservbyport` returns it.
    pub fn parse(text: &str) -> Services {
        let mut s = Services::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(pp)) = (words.next(), words.next()) else {
                continue;
            };
            let Some((port, proto)) = pp.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            let proto = match proto {
                "tcp" => "tcp",
                "udp" => "udp",
                "sctp" => "sctp",
                _ => continue,
            };
            s.by_port
                .entry((port, proto))
                .or_insert_with(|| name.to_string());
            for n in std::iter::once(name).chain(words) {
                s.by_name.entry((n.to_string(), proto)).or_insert(port);
            }
        }
        s
    }
}

/// A parsed `/etc/hosts`, for reverse look-ups.
#[derive(Clone, Debug, Default)]
pub struct Hosts {
    by_addr: HashMap<IpAddr, String>,
    by_name: HashMap<String, IpAddr>,
}

impl Hosts {
    /// Parse the text of an `/etc/hosts` file: `address name [aliases...] [# comment]`.
    pub fn parse(text: &str) -> Hosts {
        let mut h = Hosts::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(addr), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(addr) = addr.parse::<IpAddr>() else {
                continue;
            };
            h.by_addr.entry(addr).or_insert_with(|| name.to_string());
            for n in std::iter::once(name).chain(words) {
                h.by_name.entry(n.to_string()).or_insert(addr);
            }
        }
        h
    }
}

/// Fixed tables: `/etc/services` and `/etc/hosts` texts given by the caller; host names not
/// in the hosts table do not resolve. For tests and for reproducible output.
#[derive(Clone, Debug, Default)]
pub struct Fixed {
    /// Services.
    pub services: Services,
    /// Hosts.
    pub hosts: Hosts,
}

impl Fixed {
    /// From the texts of a services file and a hosts file.
    pub fn new(services: &str, hosts: &str) -> Fixed {
        Fixed {
            services: Services::parse(services),
            hosts: Hosts::parse(hosts),
        }
    }
}

impl Resolve for Fixed {
    fn port_by_name(&self, name: &str, proto: Protocol) -> Option<u16> {
        self.services
            .by_name
            .get(&(name.to_string(), proto_word(proto)))
            .copied()
    }
    fn port_name(&self, port: u16, proto: Protocol) -> Option<String> {
        self.services
            .by_port
            .get(&(port, proto_word(proto)))
            .cloned()
    }
    fn host_addr(&self, name: &str) -> Option<IpAddr> {
        self.hosts.by_name.get(name).copied()
    }
    fn host_name(&self, addr: IpAddr) -> Option<String> {
        self.hosts.by_addr.get(&addr).cloned()
    }
}

/// The system's files and resolver, read on first use.
#[derive(Debug, Default)]
pub struct System {
    services: OnceLock<Services>,
    hosts: OnceLock<Hosts>,
}

impl System {
    fn services(&self) -> &Services {
        self.services.get_or_init(|| {
            Services::parse(&std::fs::read_to_string("/etc/services").unwrap_or_default())
        })
    }
    fn hosts(&self) -> &Hosts {
        self.hosts.get_or_init(|| {
            Hosts::parse(&std::fs::read_to_string("/etc/hosts").unwrap_or_default())
        })
    }
}

impl Resolve for System {
    fn port_by_name(&self, name: &str, proto: Protocol) -> Option<u16> {
        self.services()
            .by_name
            .get(&(name.to_string(), proto_word(proto)))
            .copied()
    }
    fn port_name(&self, port: u16, proto: Protocol) -> Option<String> {
        self.services()
            .by_port
            .get(&(port, proto_word(proto)))
            .cloned()
    }
    fn host_addr(&self, name: &str) -> Option<IpAddr> {
        let addrs: Vec<IpAddr> = (name, 0u16)
            .to_socket_addrs()
            .ok()?
            .map(|a| a.ip())
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
    }
    fn host_name(&self, addr: IpAddr) -> Option<String> {
        self.hosts().by_addr.get(&addr).cloned()
    }
}

/// No names at all: what `-n` means.
#[derive(Clone, Copy, Debug, Default)]
pub struct Numeric;

impl Resolve for Numeric {
    fn port_by_name(&self, _: &str, _: Protocol) -> Option<u16> {
        None
    }
    fn port_name(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
    fn host_addr(&self, _: &str) -> Option<IpAddr> {
        None
    }
    fn host_name(&self, _: IpAddr) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_hosts_files() {
        let f = Fixed::new(
            "# c\nhttp\t80/tcp\twww # web\nhttp 80/udp\nhttp-alt 8080/tcp webcache\nwww2 80/tcp\n",
            "127.0.0.1 localhost\n10.0.0.1 web1 web1.example\n10.0.0.1 other\n2001:db8::1 v6host\n",
        );
        assert_eq!(f.port_by_name("www", Protocol::Tcp), Some(80));
        assert_eq!(f.port_by_name("webcache", Protocol::Tcp), Some(8080));
        assert_eq!(f.port_by_name("webcache", Protocol::Udp), None);
        assert_eq!(f.port_name(80, Protocol::Tcp).as_deref(), Some("http"));
        assert_eq!(f.port_name(81, Protocol::Tcp), None);
        assert_eq!(
            f.host_name("10.0.0.1".parse().unwrap()).as_deref(),
            Some("web1")
        );
        assert_eq!(
            f.host_addr("web1.example"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(f.host_addr("v6host"), Some("2001:db8::1".parse().unwrap()));
    }
}
