//! ipvsadm 1.31's listing formats, printf for printf.
//!
//! Each function names the ipvsadm function it reproduces (`list_all`, `print_title`,
//! `print_service_entry`, `list_conn`/`print_conn`, `list_timeout`, `print_largenum`).
//! Trailing spaces are part of the format (ipvsadm pads the last column too) and are kept.
//!
//! Without `-n`, addresses and ports print as names where [`crate::names`] knows them
//! (`/etc/hosts`, `/etc/services`); every function takes the [`Resolve`] to use
//! ([`Numeric`] for `-n`).

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::IpAddr;

use lvs_api::{ConnInfo, DestInfo, DropsInfo, ServiceInfo};
use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::stats::{Rates, Stats};
use lvs_core::types::{Family, ForwardMethod, Protocol, ServiceKey};

pub use lvs_config::rules::{addrport, has_sched_flags, mask_text, sched_flags, v4_mask};

use crate::args::Format;
use crate::names::{Numeric, Resolve};

/// The IPVS version ipvsadm prints in its header; lvsd implements its semantics.
pub const IPVS_VERSION: &str = "1.2.1";

/// `addrport_to_anyname`: host and service names where `names` knows them, numbers
/// otherwise; cut at 59 characters as ipvsadm's 60-byte buffer does.
pub fn anyname(addr: IpAddr, port: u16, proto: Protocol, names: &dyn Resolve) -> String {
    let host = names.host_name(addr).unwrap_or_else(|| addr.to_string());
    let port = names
        .port_name(port, proto)
        .unwrap_or_else(|| port.to_string());
    let mut s = if addr.is_ipv4() {
        format!("{host}:{port}")
    } else {
        format!("[{host}]:{port}")
    };
    truncate(&mut s, 59);
    s
}

/// Cut a string at `n` bytes (on a character boundary), as ipvsadm's `buf[n] = '\0'`.
fn truncate(s: &mut String, n: usize) {
    if s.len() > n {
        let mut cut = n;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// The protocol ipvsadm names ports with: the service's, TCP for firewall marks (ipvsadm
/// creates them with `IPPROTO_TCP`).
fn key_proto(key: &ServiceKey) -> Protocol {
    match *key {
        ServiceKey::Addr { proto, .. } => proto,
        ServiceKey::Fwmark { .. } => Protocol::Tcp,
    }
}

/// The service column of the listing: `"%-4s %s"` of protocol and address (cut at 33
/// characters for IPv4, as ipvsadm does), or `FWM  <mark>` (`%d`, so marks above 2^31 print
/// negative, as in ipvsadm) with ` IPv6` for IPv6 firewall-mark services.
pub fn service_name(key: &ServiceKey) -> String {
    service_label(key, &Numeric)
}

/// [`service_name`] with names.
pub fn service_label(key: &ServiceKey, names: &dyn Resolve) -> String {
    match *key {
        ServiceKey::Addr { proto, addr, port } => {
            let mut s = format!("{:<4} {}", proto.name(), anyname(addr, port, proto, names));
            if addr.is_ipv4() {
                truncate(&mut s, 33);
            }
            s
        }
        ServiceKey::Fwmark { mark, family } => {
            let suffix = if family == Family::V6 { " IPv6" } else { "" };
            format!("FWM  {}{suffix}", mark as i32)
        }
    }
}

/// The service as a rule (`-S`): `-t host:port`, `-u ...`, `--sctp-service ...`, `-f M [-6]`.
pub fn service_rule(key: &ServiceKey, names: &dyn Resolve) -> String {
    match *key {
        ServiceKey::Addr { proto, addr, port } => {
            let opt = match proto {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
            };
            format!("{opt} {}", anyname(addr, port, proto, names))
        }
        ServiceKey::Fwmark { mark, family } => {
            let suffix = if family == Family::V6 { " -6" } else { "" };
            format!("-f {}{suffix}", mark as i32)
        }
    }
}

/// `print_title`: the two heading lines under the version line.
pub fn title(format: &Format) -> String {
    if format.stats {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if format.rate {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
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
    } else if format.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
            .to_string()
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

fn rate_columns(out: &mut String, r: &Rates, exact: bool) {
    for v in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
        largenum(out, v, exact);
    }
}

/// The flags ipvsadm appends to a service line: ` (flags)`, ` persistent T`, ` mask M`, ` ops`.
fn service_flags(out: &mut String, c: &ServiceConfig) {
    if has_sched_flags(c) {
        let _ = write!(out, " ({})", sched_flags(c.scheduler, c.flags));
    }
    if let Some(p) = &c.persistence {
        let _ = write!(out, " persistent {}", p.timeout.as_secs());
        if let Some(m) = mask_text(c, p) {
            let _ = write!(out, " mask {m}");
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
        match ServiceKey::from(s.config.key) {
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
pub fn service_entry(out: &mut String, svc: &ServiceInfo, format: &Format, names: &dyn Resolve) {
    let config = ServiceConfig::from(svc.config);
    let name = service_label(&config.key, names);
    let proto = key_proto(&config.key);
    if format.stats {
        let _ = write!(out, "{name:<33}");
        stats_columns(out, &svc.stats.into(), format.exact);
    } else if format.rate {
        let _ = write!(out, "{name:<33}");
        rate_columns(out, &svc.rates.into(), format.exact);
    } else {
        let _ = write!(out, "{name} {}", config.scheduler.name());
        service_flags(out, &config);
    }
    out.push('\n');

    let mut dests: Vec<&DestInfo> = svc.dests.iter().collect();
    if !format.nosort {
        dests.sort_by(|a, b| cmp_dests(a, b));
    }
    for d in dests {
        let mut dname = anyname(d.config.addr, d.config.port, proto, names);
        if d.config.addr.is_ipv4() {
            truncate(&mut dname, 28);
        }
        let c = &DestConfig::from(d.config);
        if format.stats {
            let _ = write!(out, "  -> {dname:<28}");
            stats_columns(out, &d.stats.into(), format.exact);
            out.push('\n');
        } else if format.rate {
            let r = &d.rates;
            let _ = write!(
                out,
                "  -> {dname:<28} {:>8} {:>8} {:>8}",
                r.cps, r.inpps, r.outpps
            );
            largenum(out, r.inbps, format.exact);
            largenum(out, r.outbps, format.exact);
            out.push('\n');
        } else if format.thresholds {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                c.upper_threshold, c.lower_threshold, d.active, d.inactive
            );
        } else if format.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                c.weight, d.persistent, d.active, d.inactive
            );
        } else if format.tun_info {
            let ti = if c.method == ForwardMethod::Tunnel {
                "ipip"
            } else {
                "n/a"
            };
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {ti:<13} {:<6} {:<10} {:<10}",
                c.method.name(),
                c.weight,
                d.active,
                d.inactive
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                c.method.name(),
                c.weight,
                d.active,
                d.inactive
            );
        }
    }
}

fn sorted(services: &[ServiceInfo], nosort: bool) -> Vec<&ServiceInfo> {
    let mut v: Vec<&ServiceInfo> = services.iter().collect();
    if !nosort {
        v.sort_by(|a, b| cmp_services(a, b));
    }
    v
}

/// `list_all`: version line, title, every service (sorted unless `--nosort`).
pub fn list_all(
    table_size: usize,
    services: &[ServiceInfo],
    format: &Format,
    names: &dyn Resolve,
) -> String {
    let mut out = format!("IP Virtual Server version {IPVS_VERSION} (size={table_size})\n");
    out.reserve(services.len() * 64 * 11);
    out.push_str(&title(format));
    for s in sorted(services, format.nosort) {
        service_entry(&mut out, s, format, names);
    }
    out
}

/// `list_service`: title and one service, without the version line.
pub fn list_service(svc: &ServiceInfo, format: &Format, names: &dyn Resolve) -> String {
    let mut out = title(format);
    service_entry(&mut out, svc, format, names);
    out
}

/// `list_all` with `FMT_RULE` (`-S`): one `-A` line per service, then one `-a` line per
/// real server, sorted; no heading. Tunnel servers carry `--tun-type ipip` as ipvsadm 1.31
/// prints it.
pub fn save(services: &[ServiceInfo], names: &dyn Resolve) -> String {
    let mut out = String::with_capacity(services.len() * 64 * 11);
    for s in sorted(services, false) {
        let c = &ServiceConfig::from(s.config);
        let svc = service_rule(&c.key, names);
        let proto = key_proto(&c.key);
        let _ = write!(out, "-A {svc}");
        lvs_config::rules::service_options(&mut out, c);
        out.push('\n');
        let mut dests: Vec<&DestInfo> = s.dests.iter().collect();
        dests.sort_by(|a, b| cmp_dests(a, b));
        for d in dests {
            let dc = &DestConfig::from(d.config);
            let dname = anyname(dc.addr, dc.port, proto, names);
            let switch = lvs_config::rules::method_switch(dc.method);
            let _ = write!(out, "-a {svc} -r {dname} {switch} -w {}", dc.weight);
            if dc.method == ForwardMethod::Tunnel {
                out.push_str(" --tun-type ipip");
            }
            out.push('\n');
        }
    }
    out
}

/// `list_conn`/`print_conn`: the connection entries.
pub fn connections(conns: &[ConnInfo], format: &Format, names: &dyn Resolve) -> String {
    let mut out = connections_title(format);
    connection_rows(&mut out, conns, names);
    out
}

/// `list_conn`'s heading: the two lines above the entries.
pub fn connections_title(format: &Format) -> String {
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
    out
}

/// `print_conn` for each entry, appended to `out`.
///
/// Entries have no persistence-engine data (lvsd has no --pe), so ipvsadm prints them in the
/// short form even under --persistent-conn.
pub fn connection_rows(out: &mut String, conns: &[ConnInfo], names: &dyn Resolve) {
    for c in conns {
        let proto = Protocol::from(c.proto);
        let expire = format!("{:02}:{:02}", c.expires_secs / 60, c.expires_secs % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            proto.name(),
            expire,
            c.state,
            anyname(c.caddr, c.cport, proto, names),
            anyname(c.vaddr, c.vport, proto, names),
            anyname(c.daddr, c.dport, proto, names)
        );
    }
}

/// `list_timeout`.
pub fn timeouts(tcp: u64, tcpfin: u64, udp: u64) -> String {
    format!("Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n")
}

/// `--drops` (lvsadm's own view; ipvsadm has none): a line naming the datapath, then one
/// row per loss counter in lvsd's order — layer, reason, interface, worker (`-` where they do
/// not apply) and the exact count — in columns as wide as their longest cell.
pub fn drops(info: &DropsInfo) -> String {
    let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    let mut rows: Vec<[String; 5]> =
        vec![["Layer", "Reason", "Interface", "Worker", "Count"].map(String::from)];
    rows.extend(info.rows.iter().map(|r| {
        [
            r.layer.clone(),
            r.reason.clone(),
            dash(r.interface.clone()),
            dash(r.worker.map(|w| w.to_string()).unwrap_or_default()),
            r.count.to_string(),
        ]
    }));
    let mut width = [0usize; 5];
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "Frames lost since lvsd started (datapath {})\n",
        info.datapath
    );
    for [layer, reason, iface, worker, count] in &rows {
        let _ = writeln!(
            out,
            "{layer:<w0$} {reason:<w1$} {iface:<w2$} {worker:<w3$} {count:>w4$}",
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_api::DropRow;
    use lvs_core::types::{SchedFlags, SchedulerKind};

    #[test]
    fn drops_are_one_aligned_row_each() {
        let row = |layer: &str, reason: &str, interface: &str, worker, count| DropRow {
            layer: layer.into(),
            reason: reason.into(),
            interface: interface.into(),
            worker,
            count,
        };
        let info = DropsInfo {
            datapath: "afpacket".into(),
            rows: vec![
                row("core", "no_route", "", None, 3),
                row("ring", "full", "veth-director0", Some(0), 123_456),
                row("send", "enobufs", "", Some(1), 0),
            ],
        };
        assert_eq!(
            drops(&info),
            "Frames lost since lvsd started (datapath afpacket)\n\
             Layer Reason   Interface      Worker  Count\n\
             core  no_route -              -           3\n\
             ring  full     veth-director0 0      123456\n\
             send  enobufs  -              1           0\n"
        );
    }

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
