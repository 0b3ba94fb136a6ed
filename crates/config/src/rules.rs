//! Table changes in ipvsadm's own words (`-A -t 10.1.0.100:80 -s wrr`, `-a -t ... -r ... -m
//! -w 1`), numeric, as `ipvsadm -S -n` writes rules: for lvsd's log of applied changes, and
//! the pieces `lvsadm -S` shares.

use std::fmt::Write as _;
use std::net::IpAddr;

use lvs_api::Request;
use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::types::{
    Family, ForwardMethod, Netmask, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceKey,
};

/// `addr:port`, IPv6 in brackets.
pub fn addrport(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The service as a rule, numeric: `-t host:port`, `-u ...`, `--sctp-service ...`, `-f M
/// [-6]` (marks above 2^31 as negative numbers, as ipvsadm prints them).
pub fn service_rule(key: &ServiceKey) -> String {
    match *key {
        ServiceKey::Addr { proto, addr, port } => {
            let opt = match proto {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
            };
            format!("{opt} {}", addrport(addr, port))
        }
        ServiceKey::Fwmark { mark, family } => {
            let suffix = if family == Family::V6 { " -6" } else { "" };
            format!("-f {}{suffix}", mark as i32)
        }
    }
}

/// `print_sched_flags`: names depend on the scheduler (sh and mh name flags 1 and 2).
pub fn sched_flags(scheduler: SchedulerKind, flags: SchedFlags) -> String {
    let mut names: Vec<&str> = Vec::new();
    match scheduler {
        SchedulerKind::Sh | SchedulerKind::Mh => {
            let sh = scheduler == SchedulerKind::Sh;
            if flags.contains(SchedFlags::FLAG1) {
                names.push(if sh { "sh-fallback" } else { "mh-fallback" });
            }
            if flags.contains(SchedFlags::FLAG2) {
                names.push(if sh { "sh-port" } else { "mh-port" });
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

/// Whether a service has scheduler flags to print.
pub fn has_sched_flags(c: &ServiceConfig) -> bool {
    c.flags.0 & (SchedFlags::FLAG1.0 | SchedFlags::FLAG2.0 | SchedFlags::FLAG3.0) != 0
}

/// The IPv4 netmask of a prefix length.
pub fn v4_mask(len: u8) -> std::net::Ipv4Addr {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    std::net::Ipv4Addr::from(mask)
}

/// The persistence netmask as ipvsadm prints it (dotted for IPv4, a length for IPv6), unless
/// it is the whole address.
pub fn mask_text(c: &ServiceConfig, p: &Persistence) -> Option<String> {
    match (c.key.family(), p.netmask) {
        (Family::V4, Netmask::V4(len)) if len < 32 => Some(v4_mask(len).to_string()),
        (Family::V6, Netmask::V6(len)) if len != 128 => Some(len.to_string()),
        _ => None,
    }
}

/// The options of a service after its `-A`/`-E` and address (`svc`): scheduler, persistence,
/// one-packet scheduling, scheduler flags.
pub fn service_options(out: &mut String, c: &ServiceConfig) {
    let _ = write!(out, " -s {}", c.scheduler.name());
    if let Some(p) = &c.persistence {
        let _ = write!(out, " -p {}", p.timeout.as_secs());
        if let Some(m) = mask_text(c, p) {
            let _ = write!(out, " -M {m}");
        }
    }
    if c.one_packet {
        out.push_str(" -o");
    }
    if has_sched_flags(c) {
        let _ = write!(out, " -b {}", sched_flags(c.scheduler, c.flags));
    }
}

/// The forwarding switch of a method: `-m`, `-g`, `-i`.
pub fn method_switch(m: ForwardMethod) -> &'static str {
    match m {
        ForwardMethod::Masq => "-m",
        ForwardMethod::DirectRoute => "-g",
        ForwardMethod::Tunnel => "-i",
    }
}

fn dest_words(verb: &str, key: &ServiceKey, d: &DestConfig) -> String {
    let mut s = format!(
        "{verb} {} -r {} {} -w {}",
        service_rule(key),
        addrport(d.addr, d.port),
        method_switch(d.method),
        d.weight
    );
    if d.upper_threshold != 0 {
        let _ = write!(s, " -x {}", d.upper_threshold);
    }
    if d.lower_threshold != 0 {
        let _ = write!(s, " -y {}", d.lower_threshold);
    }
    s
}

/// A table change as the ipvsadm command that makes it (`None` for requests that change
/// nothing, and for batches, which are summarised instead).
pub fn request_words(req: &Request) -> Option<String> {
    Some(match req {
        Request::AddService { service } | Request::EditService { service } => {
            let c = ServiceConfig::from(*service);
            let verb = if matches!(req, Request::AddService { .. }) {
                "-A"
            } else {
                "-E"
            };
            let mut s = format!("{verb} {}", service_rule(&c.key));
            service_options(&mut s, &c);
            s
        }
        Request::DeleteService { key } => format!("-D {}", service_rule(&(*key).into())),
        Request::Clear => "-C".into(),
        Request::AddDest { key, dest } => dest_words("-a", &(*key).into(), &(*dest).into()),
        Request::EditDest { key, dest } => dest_words("-e", &(*key).into(), &(*dest).into()),
        Request::DeleteDest { key, addr, port } => format!(
            "-d {} -r {}",
            service_rule(&(*key).into()),
            addrport(*addr, *port)
        ),
        Request::SetTimeouts { tcp, tcpfin, udp } => format!("--set {tcp} {tcpfin} {udp}"),
        Request::Zero { key } => match key {
            Some(k) => format!("-Z {}", service_rule(&(*k).into())),
            None => "-Z".into(),
        },
        _ => return None,
    })
}
