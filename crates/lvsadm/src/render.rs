//! ipvsadm 1.31's listing formats, printf for printf.
//!
//! Each function names the ipvsadm function it reproduces (`list_all`, `print_title`,
//! `print_service_entry`, `list_conn`/`print_conn`, `list_timeout`, `print_largenum`).
//! Trailing spaces are part of the format (ipvsadm pads the last column too) and are kept.
//!
//! Addresses are always printed numerically: name resolution (ipvsadm without `-n`) is not
//! implemented yet, so `-n` changes nothing.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::IpAddr;

use lvs_api::{ConnInfo, DestInfo, ServiceInfo};
use lvs_core::service::ServiceConfig;
use lvs_core::stats::Stats;
use lvs_core::types::{Family, Netmask, SchedFlags, SchedulerKind, ServiceKey};

use crate::args::Format;

/// The IPVS version ipvsadm prints in its header; lvsd implements its semantics.
pub const IPVS_VERSION: &str = "1.2.1";

/// `addrport_to_anyname` with `FMT_NUMERIC`: `a.b.c.d:port` or `[v6]:port`.
pub fn addrport(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The service column of the listing: `"%-4s %s"` of protocol and address (cut at 33
/// characters for IPv4, as ipvsadm does), or `FWM  <mark>` (`%d`, so marks above 2^31 print
/// negative, as in ipvsadm) with ` IPv6` for IPv6 firewall-mark services.
pub fn service_name(key: &ServiceKey) -> String {
    match *key {
        ServiceKey::Addr { proto, addr, port } => {
            let mut s = format!("{:<4} {}", proto.name(), addrport(addr, port));
            if addr.is_ipv4() {
                s.truncate(33);
            }
            s
        }
        ServiceKey::Fwmark { mark, family } => {
            let suffix = if family == Family::V6 { " IPv6" } else { "" };
            format!("FWM  {}{suffix}", mark as i32)
        }
    }
}

/// `print_sched_flags`: names depend on the scheduler (sh and mh name flags 1 and 2).
pub fn sched_flags(scheduler: SchedulerKind, flags: SchedFlags) -> String {
    let mut names: Vec<&str> = Vec::new();
    match scheduler {
        SchedulerKind::Sh | SchedulerKind::Mh => {
            let p = scheduler.name();
            if flags.contains(SchedFlags::FLAG1) {
                names.push(if p == "sh" {
                    "sh-fallback"
                } else {
                    "mh-fallback"
                });
            }
            if flags.contains(SchedFlags::FLAG2) {
                names.push(if p == "sh" { "sh-port" } else { "mh-port" });
            }
        }
        _ => {
            for (bit, name) in [
                (SchedFlags::FLAG1, "flag-1"),
                (SchedFlags::FLAG2, "flag-2"),
                (SchedFlags::FLAG3, "flag-3"),
            ] {
                if flags.contains(bit) {
                    names.push(name);
                }
            }
        }
    }
    names.join(",")
}

/// `print_title`: the two heading lines under the version line.
pub fn title(format: &Format) -> String {
    if format.stats {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if format.thresholds {
        format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if format.persistent_conn {
        format!(
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
            .to_string()
    }
}

/// `print_largenum`: a counter right-aligned in 9 columns, shortened with K/M/G/T unless
/// `--exact`.
fn largenum(out: &mut String, i: u64, exact: bool) {
    if exact {
        let len = i.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{i:>width$}");
        return;
    }
    let _ = if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

fn stats_columns(out: &mut String, s: &Stats, exact: bool) {
    for v in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
        largenum(out, v, exact);
    }
}

/// The flags ipvsadm appends to a service line: ` (flags)`, ` persistent T`, ` mask M`, ` ops`.
fn service_flags(out: &mut String, c: &ServiceConfig) {
    if c.flags.0 & (SchedFlags::FLAG1.0 | SchedFlags::FLAG2.0 | SchedFlags::FLAG3.0) != 0 {
        let _ = write!(out, " ({})", sched_flags(c.scheduler, c.flags));
    }
    if let Some(p) = &c.persistence {
        let _ = write!(out, " persistent {}", p.timeout.as_secs());
        match (c.key.family(), p.netmask) {
            (Family::V4, Netmask::V4(len)) if len < 32 => {
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len))
                };
                let _ = write!(out, " mask {}", std::net::Ipv4Addr::from(mask));
            }
            (Family::V6, Netmask::V6(len)) if len != 128 => {
                let _ = write!(out, " mask {len}");
            }
            _ => {}
        }
    }
    if c.one_packet {
        out.push_str(" ops");
    }
}

/// `ipvs_cmp_dests`: address, then port.
fn cmp_dests(a: &DestInfo, b: &DestInfo) -> Ordering {
    (a.config.addr, a.config.port).cmp(&(b.config.addr, b.config.port))
}

/// `ipvs_cmp_services`: firewall mark (0 for address services), family, protocol number,
/// address, port.
///
/// ipvsadm compares addresses by subtracting them as 32-bit integers, which misorders
/// addresses more than 2^31 apart; this compares them numerically.
fn cmp_services(a: &ServiceInfo, b: &ServiceInfo) -> Ordering {
    fn key(s: &ServiceInfo) -> (u32, u8, u8, u128, u16) {
        let fam = |f: Family| if f == Family::V4 { 2 } else { 10 };
        match s.config.key {
            ServiceKey::Addr { proto, addr, port } => {
                let bits = match addr {
                    IpAddr::V4(a) => u128::from(u32::from(a)),
                    IpAddr::V6(a) => u128::from(a),
                };
                (0, fam(Family::of(addr)), proto.number(), bits, port)
            }
            ServiceKey::Fwmark { mark, family } => (mark, fam(family), 0, 0, 0),
        }
    }
    key(a).cmp(&key(b))
}

/// `print_service_entry`: the service line and its real servers.
pub fn service_entry(out: &mut String, svc: &ServiceInfo, format: &Format) {
    let name = service_name(&svc.config.key);
    if format.stats {
        let _ = write!(out, "{name:<33}");
        stats_columns(out, &svc.stats, format.exact);
    } else {
        let _ = write!(out, "{name} {}", svc.config.scheduler.name());
        service_flags(out, &svc.config);
    }
    out.push('\n');

    let mut dests: Vec<&DestInfo> = svc.dests.iter().collect();
    if !format.nosort {
        dests.sort_by(|a, b| cmp_dests(a, b));
    }
    for d in dests {
        let mut dname = addrport(d.config.addr, d.config.port);
        if d.config.addr.is_ipv4() {
            dname.truncate(28);
        }
        if format.stats {
            let _ = write!(out, "  -> {dname:<28}");
            stats_columns(out, &d.stats, format.exact);
            out.push('\n');
        } else if format.thresholds {
            let c = &d.config;
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                c.upper_threshold, c.lower_threshold, d.active, d.inactive
            );
        } else if format.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.config.weight, d.persistent, d.active, d.inactive
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                d.config.method.name(),
                d.config.weight,
                d.active,
                d.inactive
            );
        }
    }
}

/// `list_all`: version line, title, every service (sorted unless `--nosort`).
pub fn list_all(table_size: usize, services: &[ServiceInfo], format: &Format) -> String {
    let mut out = format!("IP Virtual Server version {IPVS_VERSION} (size={table_size})\n");
    out.push_str(&title(format));
    let mut sorted: Vec<&ServiceInfo> = services.iter().collect();
    if !format.nosort {
        sorted.sort_by(|a, b| cmp_services(a, b));
    }
    for s in sorted {
        service_entry(&mut out, s, format);
    }
    out
}

/// `list_service`: title and one service, without the version line.
pub fn list_service(svc: &ServiceInfo, format: &Format) -> String {
    let mut out = title(format);
    service_entry(&mut out, svc, format);
    out
}

/// `list_conn`/`print_conn`: the connection entries.
pub fn connections(conns: &[ConnInfo], format: &Format) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if format.persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for c in conns {
        let expire = format!("{:02}:{:02}", c.expires_secs / 60, c.expires_secs % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.proto.name(),
            expire,
            c.state,
            addrport(c.caddr, c.cport),
            addrport(c.vaddr, c.vport),
            addrport(c.daddr, c.dport)
        );
    }
    out
}

/// `list_timeout`.
pub fn timeouts(tcp: u64, tcpfin: u64, udp: u64) -> String {
    format!("Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largenum_units() {
        let f = |i, exact| {
            let mut s = String::new();
            largenum(&mut s, i, exact);
            s
        };
        assert_eq!(f(0, false), "        0");
        assert_eq!(f(99_999_999, false), " 99999999");
        assert_eq!(f(123_456_789, false), "  123456K");
        assert_eq!(f(12_345_678_901, false), "   12345M");
        assert_eq!(f(123_456_789_012, false), "     123G");
        assert_eq!(f(123_456_789_012_345, false), "     123T");
        assert_eq!(f(123_456_789_012, true), " 123456789012");
        assert_eq!(f(7, true), "        7");
    }

    #[test]
    fn names() {
        let k = ServiceKey::Fwmark {
            mark: 3_000_000_000,
            family: Family::V4,
        };
        assert_eq!(service_name(&k), "FWM  -1294967296");
        let k = ServiceKey::Fwmark {
            mark: 1,
            family: Family::V6,
        };
        assert_eq!(service_name(&k), "FWM  1 IPv6");
        assert_eq!(
            sched_flags(SchedulerKind::Sh, SchedFlags(3)),
            "sh-fallback,sh-port"
        );
        assert_eq!(sched_flags(SchedulerKind::Mh, SchedFlags(2)), "mh-port");
        assert_eq!(
            sched_flags(SchedulerKind::Rr, SchedFlags(5)),
            "flag-1,flag-3"
        );
        assert_eq!(sched_flags(SchedulerKind::Sh, SchedFlags(4)), "");
    }
}
