//! lvsadm against a fake daemon: ipvsadm's output formats (golden), its errors and exit codes,
//! and the requests typical command lines send.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lvs_api::{ConnInfo, DestInfo, Reply, Request, ServiceInfo};
use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::stats::Stats;
use lvs_core::types::{
    Family, ForwardMethod, Netmask, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceKey,
};
use lvsadm::{Daemon, DaemonError, Outcome};

fn argv(line: &str) -> Vec<String> {
    std::iter::once("lvsadm")
        .chain(line.split_whitespace())
        .map(String::from)
        .collect()
}

/// Run `line` against a daemon that answers every request with `reply`; return what was sent.
fn exec(line: &str, reply: Result<Reply, DaemonError>) -> (Outcome, Vec<Request>) {
    let mut sent = Vec::new();
    let out = {
        let mut daemon = |r: Request| {
            sent.push(r);
            reply.clone()
        };
        lvsadm::run(&argv(line), &mut daemon)
    };
    (out, sent)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: ip(addr),
        port,
    }
}

fn dest(
    addr: &str,
    port: u16,
    method: ForwardMethod,
    weight: u32,
    active: u32,
    inactive: u32,
) -> DestInfo {
    DestInfo {
        config: (DestConfig::new(ip(addr), port, method).with_weight(weight)).into(),
        active,
        inactive,
        persistent: 0,
        overloaded: false,
        stats: Stats::default().into(),
        rates: Default::default(),
    }
}

fn service(config: ServiceConfig, dests: Vec<DestInfo>) -> ServiceInfo {
    ServiceInfo {
        config: config.into(),
        stats: Stats::default().into(),
        rates: Default::default(),
        dests,
    }
}

fn persistent(secs: u64, netmask: Netmask) -> Option<Persistence> {
    Some(Persistence {
        timeout: Duration::from_secs(secs),
        netmask,
    })
}

/// A table with every forwarding method, persistence with and without a mask, scheduler
/// flags, one-packet scheduling, IPv6 and IPv4/IPv6 firewall marks, given out of order.
fn table() -> Reply {
    use ForwardMethod::*;
    let mut udp = ServiceConfig::new(ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: ip("10.0.0.1"),
        port: 53,
    })
    .with_scheduler(SchedulerKind::Sh);
    udp.flags = SchedFlags(3);
    udp.one_packet = true;
    let mut web2 = ServiceConfig::new(tcp("10.0.0.2", 443));
    web2.persistence = persistent(300, Netmask::V4(24));
    let mut v6 = ServiceConfig::new(tcp("2001:db8::1", 80)).with_scheduler(SchedulerKind::Mh);
    v6.flags = SchedFlags::PORT;
    v6.persistence = persistent(60, Netmask::V6(64));
    let mut fwm = ServiceConfig::new(ServiceKey::Fwmark {
        mark: 7,
        family: Family::V4,
    });
    fwm.persistence = persistent(600, Netmask::V4(32));
    let fwm6 = ServiceConfig::new(ServiceKey::Fwmark {
        mark: 8,
        family: Family::V6,
    })
    .with_scheduler(SchedulerKind::Rr);
    Reply::Services {
        table_size: 4096,
        services: vec![
            service(fwm6, vec![]),
            service(fwm, vec![dest("10.0.4.1", 0, DirectRoute, 1, 0, 0)]),
            service(v6, vec![dest("2001:db8::10", 80, Masq, 1, 0, 0)]),
            service(udp, vec![dest("10.0.3.1", 53, DirectRoute, 1, 0, 0)]),
            service(
                web2,
                vec![
                    dest("10.0.2.2", 443, Tunnel, 0, 0, 7),
                    dest("10.0.2.1", 443, DirectRoute, 1, 3, 1),
                ],
            ),
            service(
                ServiceConfig::new(tcp("10.0.0.1", 80)).with_scheduler(SchedulerKind::Rr),
                vec![
                    dest("10.0.1.3", 8080, Masq, 2, 5, 10),
                    dest("10.0.1.2", 80, Masq, 1, 0, 0),
                ],
            ),
        ],
    }
}

// Golden outputs, produced independently with ipvsadm's printf formats.

const GOLDEN_LIST: &str = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\nTCP  10.0.0.1:80 rr\n  -> 10.0.1.2:80                  Masq    1      0          0         \n  -> 10.0.1.3:8080                Masq    2      5          10        \nTCP  10.0.0.2:443 wlc persistent 300 mask 255.255.255.0\n  -> 10.0.2.1:443                 Route   1      3          1         \n  -> 10.0.2.2:443                 Tunnel  0      0          7         \nUDP  10.0.0.1:53 sh (sh-fallback,sh-port) ops\n  -> 10.0.3.1:53                  Route   1      0          0         \nTCP  [2001:db8::1]:80 mh (mh-port) persistent 60 mask 64\n  -> [2001:db8::10]:80            Masq    1      0          0         \nFWM  7 wlc persistent 600\n  -> 10.0.4.1:0                   Route   1      0          0         \nFWM  8 IPv6 rr\n";

const GOLDEN_STATS: &str = "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\nTCP  10.0.0.1:80                        12      340        0    51234  123456K\n  -> 10.0.1.2:80                        12      340        0    51234  123456K\n";

const GOLDEN_THRESHOLDS: &str = "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  -> RemoteAddress:Port\nTCP  10.0.0.1:80 rr\n  -> 10.0.1.2:80                  100        50         3          4         \n";

const GOLDEN_CONNS: &str = "IPVS connection entries\npro expire state       source             virtual            destination\nTCP 14:59  ESTABLISHED 192.168.1.10:40000 10.0.0.1:80        10.0.1.2:80\nUDP 04:05  UDP         [2001:db8::99]:5353 [2001:db8::1]:53   [2001:db8::10]:53\nTCP 100:00 NONE        192.168.1.10:0     10.0.0.2:443       10.0.2.1:443\n";

#[test]
fn golden_list_all_methods_persistence_fwmark_ipv6() {
    for line in ["-L -n", "-Ln", "-l -n", "--list --numeric"] {
        let (out, sent) = exec(line, Ok(table()));
        assert_eq!(out.stderr, "", "{line}");
        assert_eq!(out.stdout, GOLDEN_LIST, "{line}");
        assert_eq!(out.code, 0);
        assert_eq!(sent, vec![Request::List]);
    }
}

#[test]
fn golden_list_nosort_keeps_daemon_order() {
    let (out, _) = exec("-L -n --nosort", Ok(table()));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[3], "FWM  8 IPv6 rr");
    assert_eq!(lines[lines.len() - 3], "TCP  10.0.0.1:80 rr");
    assert_eq!(
        lines[lines.len() - 2],
        "  -> 10.0.1.3:8080                Masq    2      5          10        "
    );
}

#[test]
fn golden_list_one_service_has_no_version_line() {
    let (out, sent) = exec("-L -n -t 10.0.0.2:443", Ok(table()));
    assert_eq!(
        out.stdout,
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\nTCP  10.0.0.2:443 wlc persistent 300 mask 255.255.255.0\n  -> 10.0.2.1:443                 Route   1      3          1         \n  -> 10.0.2.2:443                 Tunnel  0      0          7         \n"
    );
    assert_eq!((out.code, sent), (0, vec![Request::List]));
    let (out, _) = exec("-L -f 8 -6", Ok(table()));
    assert!(out.stdout.ends_with("FWM  8 IPv6 rr\n"), "{}", out.stdout);
}

fn one_service_with_counters() -> Reply {
    let stats = Stats {
        conns: 12,
        inpkts: 340,
        outpkts: 0,
        inbytes: 51234,
        outbytes: 123_456_789,
    };
    let mut d = dest("10.0.1.2", 80, ForwardMethod::Masq, 1, 3, 4);
    d.stats = stats.into();
    d.config.upper_threshold = 100;
    d.config.lower_threshold = 50;
    let mut s = service(
        ServiceConfig::new(tcp("10.0.0.1", 80)).with_scheduler(SchedulerKind::Rr),
        vec![d],
    );
    s.stats = stats.into();
    Reply::Services {
        table_size: 4096,
        services: vec![s],
    }
}

#[test]
fn golden_stats_and_thresholds() {
    let (out, _) = exec(
        "-L -n --stats -t 10.0.0.1:80",
        Ok(one_service_with_counters()),
    );
    assert_eq!(out.stdout, GOLDEN_STATS);
    let (out, _) = exec(
        "-L -n --thresholds -t 10.0.0.1:80",
        Ok(one_service_with_counters()),
    );
    assert_eq!(out.stdout, GOLDEN_THRESHOLDS);
    let (out, _) = exec(
        "-L -n --stats --exact -t 10.0.0.1:80",
        Ok(one_service_with_counters()),
    );
    assert!(
        out.stdout.contains("    51234 123456789\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn golden_connections_and_timeouts() {
    let conn =
        |proto, c: &str, cp, v: &str, vp, d: &str, dp, state: &str, secs, template| ConnInfo {
            proto,
            caddr: ip(c),
            cport: cp,
            vaddr: ip(v),
            vport: vp,
            daddr: ip(d),
            dport: dp,
            state: state.into(),
            expires_secs: secs,
            method: ForwardMethod::Masq.into(),
            template,
        };
    let reply = Reply::Connections {
        next: None,
        conns: vec![
            conn(
                Protocol::Tcp.into(),
                "192.168.1.10",
                40000,
                "10.0.0.1",
                80,
                "10.0.1.2",
                80,
                "ESTABLISHED",
                899,
                false,
            ),
            conn(
                Protocol::Udp.into(),
                "2001:db8::99",
                5353,
                "2001:db8::1",
                53,
                "2001:db8::10",
                53,
                "UDP",
                245,
                false,
            ),
            conn(
                Protocol::Tcp.into(),
                "192.168.1.10",
                0,
                "10.0.0.2",
                443,
                "10.0.2.1",
                443,
                "NONE",
                6000,
                true,
            ),
        ],
    };
    for line in ["-L -n -c", "-Lnc", "-l -n --connection"] {
        let (out, sent) = exec(line, Ok(reply.clone()));
        assert_eq!(out.stdout, GOLDEN_CONNS);
        assert_eq!((out.code, sent), (0, vec![first_page()]));
    }
    let Reply::Connections { conns, .. } = reply else {
        unreachable!()
    };
    paged_connections_print_the_same_rows(&conns);
    let (out, sent) = exec(
        "-L --timeout",
        Ok(Reply::Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }),
    );
    assert_eq!(out.stdout, "Timeout (tcp tcpfin udp): 900 120 300\n");
    assert_eq!((out.code, sent), (0, vec![Request::Timeouts]));
}

fn first_page() -> Request {
    Request::Connections {
        cursor: None,
        limit: Some(lvs_api::CONNECTIONS_PAGE_MAX),
    }
}

/// The same entries a page of one each (cursors 10, 20, ...): the same listing, written a
/// page at a time; a failure on the way leaves what was printed and exits 1; a cursor that
/// does not grow stops the listing.
fn paged_connections_print_the_same_rows(conns: &[ConnInfo]) {
    let page = |cursor: Option<u64>| {
        let i = cursor.map_or(0, |c| c as usize / 10);
        Reply::Connections {
            conns: vec![conns[i].clone()],
            next: (i + 1 < conns.len()).then_some((i as u64 + 1) * 10),
        }
    };
    /// Counts the writes it gets.
    struct Writes(Vec<u8>, usize);
    impl std::io::Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(b);
            self.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sent = Vec::new();
    let mut daemon = |r: Request| {
        sent.push(r.clone());
        match r {
            Request::Connections { cursor, .. } => Ok(page(cursor)),
            other => panic!("{other:?}"),
        }
    };
    let mut out = Writes(Vec::new(), 0);
    let outcome = lvsadm::run_to(
        &argv("-L -n -c"),
        &mut daemon,
        &mut std::io::empty(),
        &lvsadm::names::Numeric,
        &mut out,
    );
    assert_eq!((outcome.code, outcome.stdout.as_str()), (0, ""));
    assert_eq!(String::from_utf8(out.0).unwrap(), GOLDEN_CONNS);
    assert_eq!(out.1, 3, "one write per page");
    let cursors: Vec<Option<u64>> = sent
        .iter()
        .map(|r| match r {
            Request::Connections { cursor, limit } => {
                assert_eq!(*limit, Some(lvs_api::CONNECTIONS_PAGE_MAX));
                *cursor
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(cursors, vec![None, Some(10), Some(20)]);

    let mut calls = 0;
    let mut failing = |r: Request| {
        calls += 1;
        match (calls, r) {
            (1, Request::Connections { cursor, .. }) => Ok(page(cursor)),
            _ => Ok(Reply::Error {
                message: "the data path did not answer in 10 s".into(),
            }),
        }
    };
    let out = lvsadm::run(&argv("-L -n -c"), &mut failing);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "the data path did not answer in 10 s\n");
    assert_eq!(out.stdout.lines().count(), 3, "heading and the first page");

    let mut stuck = |_: Request| {
        Ok(Reply::Connections {
            conns: vec![conns[0].clone()],
            next: Some(0),
        })
    };
    let out = lvsadm::run(&argv("-L -n -c"), &mut stuck);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cursor 0 after 0"), "{}", out.stderr);
}

/// (command line, expected message start, exit code): every one refused before sending.
const BAD: &[(&str, &str, i32)] = &[
    (
        "-A",
        "You need to supply the 'service-address' option for the 'add-service' command",
        2,
    ),
    (
        "-A -s rr",
        "You need to supply the 'service-address' option for the 'add-service' command",
        2,
    ),
    (
        "-a -t 10.0.0.1:80",
        "You need to supply the 'real-server' option for the 'add-server' command",
        2,
    ),
    (
        "-d -t 10.0.0.1:80",
        "You need to supply the 'real-server' option for the 'delete-server' command",
        2,
    ),
    (
        "-A -t 10.0.0.300:80",
        "illegal virtual server address[:port] specified",
        2,
    ),
    (
        "-A -t 80",
        "illegal virtual server address[:port] specified",
        2,
    ),
    (
        "-A -t 10.0.0.1:nosuchport",
        "illegal virtual server address[:port] specified",
        2,
    ),
    (
        "-A -t [2001:db8::1]",
        "illegal virtual server address[:port] specified",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r nowhere",
        "illegal real server address[:port] specified",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -s fastest",
        "unknown scheduler 'fastest'",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -w 70000",
        "illegal weight specified",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -w -1",
        "illegal weight specified",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -x many",
        "illegal u_threshold specified",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -y -5",
        "illegal l_threshold specified",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -w 3",
        "Illegal 'weight' option with the 'add-service' command",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -s rr",
        "Illegal 'scheduler' option with the 'add-server' command",
        2,
    ),
    (
        "-C -t 10.0.0.1:80",
        "Illegal 'service-address' option with the 'flush' command",
        2,
    ),
    (
        "-A -t 10.0.0.1",
        "Zero port specified for non-persistent service",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -o",
        "One-Packet Scheduling is only for UDP virtual services",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -b sh-port",
        "incompatible scheduler flag `sh-port'",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -s sh -b sh-port,mh-port",
        "incompatible scheduler flag `mh-port'",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -s sh -b sticky",
        "invalid scheduler flag `sticky'",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -p 0",
        "invalid timeout value `0' specified",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -p 9999999",
        "invalid timeout value `9999999' specified",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -p -M 255.0.255.0",
        "illegal virtual server persistent mask specified",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -p -M mask",
        "illegal virtual server persistent mask specified",
        2,
    ),
    (
        "-A -t [2001:db8::1]:80 -p -M 129",
        "illegal ipv6 netmask specified",
        2,
    ),
    ("-A -f 0", "invalid fwmark value `0' specified", 2),
    (
        "-A -f 4294967296",
        "invalid fwmark value `4294967296' specified",
        2,
    ),
    ("-A -t 10.0.0.1:80 -6", "-6 used before -f", 2),
    (
        "-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -m",
        "Different address family is allowed only for tunneling servers",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 -u 10.0.0.1:53",
        "multiple 'service-address' options specified",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -m -g",
        "multiple 'forwarding-method' options specified",
        2,
    ),
    ("-A -D -t 10.0.0.1:80", "multiple commands specified", 2),
    (
        "-L -c -t 10.0.0.1:80",
        "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
        2,
    ),
    (
        "-L --timeout -c",
        "The option 'timeout' conflicts with the 'connection' option in the 'list' command",
        2,
    ),
    ("-L -c --stats", "options conflicts in the list command", 2),
    ("-L -c --rate", "options conflicts in the list command", 2),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -m --tun-type ipip",
        "Tunnel options conflict with forward method",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre",
        "tunnel type `gre' is not supported by lvsd",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type vxlan",
        "illegal tunnel type specified",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-nocsum",
        "Illegal 'tun-nocsum' option with the 'ipip' tunnel type",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type ipip --tun-port 6080",
        "Illegal 'tun-port' option with the 'ipip' tunnel type",
        2,
    ),
    (
        "-A -t 10.0.0.1:80 --pe sip",
        "persistence engine `sip' is not supported",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2 --pe sip",
        "Illegal 'pe' option with the 'add-server' command",
        2,
    ),
    (
        "--start-daemon primary",
        "illegal start-daemon parameter specified",
        2,
    ),
    (
        "--start-daemon master --syncid 300",
        "illegal syncid specified",
        2,
    ),
    (
        "-S -t 10.0.0.1:80",
        "Illegal 'service-address' option with the 'save' command",
        2,
    ),
    (
        "-R -n",
        "Illegal 'numeric' option with the 'restore' command",
        2,
    ),
    (
        "-L --daemon --stats",
        "options conflicts in the list command",
        2,
    ),
    ("--set 900 120", "--set option requires 3 timeout values", 2),
    (
        "--set 900 120 soon",
        "invalid timeout value `soon' specified",
        2,
    ),
    ("-C now", "unexpected argument now", 2),
    ("-L --bogus", "--bogus: unknown option", 255),
    ("-L -Q", "-Q: unknown option", 255),
    ("-A -t", "-t: missing argument", 255),
    (
        "--clear=yes",
        "--clear: option does not take an argument",
        255,
    ),
    ("-t 10.0.0.1:80", "no command given", 255),
    ("list", "no command given", 255),
];

#[test]
fn every_error_path_exits_with_ipvsadm_code_and_sends_nothing() {
    for &(line, message, code) in BAD {
        let (out, sent) = exec(line, Ok(Reply::Ok));
        assert!(
            out.stderr.starts_with(message),
            "{line}: got {:?}",
            out.stderr
        );
        assert_eq!(out.code, code, "{line}: {}", out.stderr);
        assert!(sent.is_empty(), "{line} sent {sent:?}");
        assert_eq!(out.stdout, "", "{line}");
        let first = out.stderr.lines().next().unwrap();
        if code == 2 {
            // One line: what was wrong, then what to do.
            assert_eq!(out.stderr.lines().count(), 1, "{line}: {:?}", out.stderr);
            assert!(
                first.len() > message.len(),
                "{line}: no advice in {first:?}"
            );
        } else {
            assert!(
                out.stderr
                    .ends_with("Try `lvsadm -h' or 'lvsadm --help' for more information.\n")
            );
        }
    }
}

#[test]
fn daemon_refusals_and_failures() {
    // A refused change: the daemon's message, exit 255 as ipvsadm after a failed ipvs_* call.
    let refused = Ok(Reply::Error {
        message: "Service already exists (TCP 10.0.0.1:80)".into(),
    });
    let (out, sent) = exec("-A -t 10.0.0.1:80", refused.clone());
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (255, "Service already exists (TCP 10.0.0.1:80)\n")
    );
    assert_eq!(sent.len(), 1);
    // A failed listing: exit 1.
    let (out, _) = exec("-L -n", refused);
    assert_eq!(out.code, 1);
    let (out, _) = exec("-L -n -t 10.0.0.9:80", Ok(table()));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("No such service (TCP  10.0.0.9:80"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    // lvsd not running: exit 2, as ipvsadm's "Can't initialize ipvs".
    let down = Err(DaemonError::Unreachable(
        "cannot talk to lvsd at /run/lvsd/lvsd.sock: No such file".into(),
    ));
    for line in ["-C", "-L -n"] {
        let (out, _) = exec(line, down.clone());
        assert_eq!(out.code, 2, "{line}");
        assert!(out.stderr.starts_with("cannot talk to lvsd"));
    }
    // A wrong answer.
    let (out, _) = exec(
        "-C",
        Ok(Reply::Timeouts {
            tcp: 1,
            tcpfin: 2,
            udp: 3,
        }),
    );
    assert_eq!(out.code, 255);
    assert!(out.stderr.starts_with("unexpected answer from lvsd"));
    let (out, _) = exec("-L -n", Ok(Reply::Ok));
    assert_eq!(out.code, 1);
}

fn sent_by(line: &str) -> Request {
    let (out, mut sent) = exec(line, Ok(Reply::Ok));
    assert_eq!(
        (out.code, out.stderr.as_str(), out.stdout.as_str()),
        (0, "", ""),
        "{line}"
    );
    assert_eq!(sent.len(), 1, "{line}");
    sent.remove(0)
}

#[test]
fn requests_of_typical_service_commands() {
    let rr = ServiceConfig::new(tcp("10.0.0.1", 80)).with_scheduler(SchedulerKind::Rr);
    assert_eq!(
        sent_by("-A -t 10.0.0.1:80 -s rr"),
        Request::AddService { service: rr.into() }
    );
    assert_eq!(
        sent_by("--add-service --tcp-service 10.0.0.1:80 --scheduler=rr"),
        Request::AddService { service: rr.into() }
    );
    assert_eq!(
        sent_by("-At 10.0.0.1:80 -srr"),
        Request::AddService { service: rr.into() }
    );

    // Defaults: wlc, no persistence; -p alone is 300 s with the full mask.
    let plain = ServiceConfig::new(tcp("10.0.0.1", 80));
    assert_eq!(
        sent_by("-A -t 10.0.0.1:80"),
        Request::AddService {
            service: plain.into()
        }
    );
    let mut p = plain;
    p.persistence = persistent(300, Netmask::V4(32));
    assert_eq!(
        sent_by("-A -t 10.0.0.1:80 -p"),
        Request::AddService { service: p.into() }
    );
    assert_eq!(
        sent_by("-A -p -t 10.0.0.1:80"),
        Request::AddService { service: p.into() }
    );
    let mut p = ServiceConfig::new(tcp("10.0.0.1", 0)).with_scheduler(SchedulerKind::Rr);
    p.persistence = persistent(300, Netmask::V4(24));
    assert_eq!(
        sent_by("-A -t 10.0.0.1 -s rr -p 300 -M 255.255.255.0"),
        Request::AddService { service: p.into() }
    );
    assert_eq!(
        sent_by("-A -M 255.255.255.0 -p300 -s rr -t 10.0.0.1:0"),
        Request::AddService { service: p.into() }
    );

    let mut udp = ServiceConfig::new(ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: ip("10.0.0.1"),
        port: 53,
    })
    .with_scheduler(SchedulerKind::Sh);
    udp.flags = SchedFlags(3);
    udp.one_packet = true;
    udp.persistence = persistent(60, Netmask::V4(32));
    assert_eq!(
        sent_by("-E -u 10.0.0.1:53 -s sh -b sh-fallback,sh-port -o -p 60"),
        Request::EditService {
            service: udp.into()
        }
    );
    let mut mh = ServiceConfig::new(tcp("2001:db8::1", 443)).with_scheduler(SchedulerKind::Mh);
    mh.flags = SchedFlags::PORT;
    mh.persistence = persistent(300, Netmask::V6(64));
    assert_eq!(
        sent_by("-A -t [2001:db8::1]:443 -s mh -b mh-port -p -M 64"),
        Request::AddService { service: mh.into() }
    );
    let mut fw = ServiceConfig::new(ServiceKey::Fwmark {
        mark: 7,
        family: Family::V6,
    });
    fw.persistence = persistent(300, Netmask::V6(128));
    assert_eq!(
        sent_by("-A -f 7 -6 -p"),
        Request::AddService { service: fw.into() }
    );
    let mut flags = ServiceConfig::new(tcp("10.0.0.1", 80));
    flags.flags = SchedFlags(5);
    assert_eq!(
        sent_by("-A -t 10.0.0.1:80 -b flag-1,flag-3"),
        Request::AddService {
            service: flags.into()
        }
    );

    assert_eq!(
        sent_by("-D -t [2001:db8::1]:80"),
        Request::DeleteService {
            key: (tcp("2001:db8::1", 80)).into()
        }
    );
    assert_eq!(
        sent_by("--delete-service --fwmark-service 9"),
        Request::DeleteService {
            key: ServiceKey::Fwmark {
                mark: 9,
                family: Family::V4
            }
            .into()
        }
    );
    assert_eq!(sent_by("-C"), Request::Clear);
    assert_eq!(sent_by("--clear"), Request::Clear);
    assert_eq!(sent_by("-Z"), Request::Zero { key: None });
    assert!(matches!(
        sent_by("-Z -t 10.0.0.1:80"),
        Request::Zero { key: Some(_) }
    ));
    assert_eq!(
        sent_by("--set 900 120 300"),
        Request::SetTimeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300
        }
    );
    assert_eq!(
        sent_by("--set 0 0 60"),
        Request::SetTimeouts {
            tcp: 0,
            tcpfin: 0,
            udp: 60
        }
    );
}

#[test]
fn requests_of_typical_server_commands() {
    let key = tcp("10.0.0.1", 80);
    let d = |addr: &str, port, method| DestConfig::new(ip(addr), port, method);
    // Defaults: -g, weight 1, the service's port.
    assert_eq!(
        sent_by("-a -t 10.0.0.1:80 -r 10.0.1.2"),
        Request::AddDest {
            key: key.into(),
            dest: (d("10.0.1.2", 80, ForwardMethod::DirectRoute)).into()
        }
    );
    let mut nat = d("10.0.1.2", 80, ForwardMethod::Masq).with_weight(3);
    nat.upper_threshold = 100;
    nat.lower_threshold = 50;
    assert_eq!(
        sent_by("-a -t 10.0.0.1:80 -r 10.0.1.2 -m -w 3 -x 100 -y 50"),
        Request::AddDest {
            key: key.into(),
            dest: nat.into()
        }
    );
    assert_eq!(
        sent_by(
            "--add-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.2 --masquerading --weight 3 --u-threshold 100 --l-threshold=50"
        ),
        Request::AddDest {
            key: key.into(),
            dest: nat.into()
        }
    );
    // NAT may change the port; DR and Tun always use the service's.
    assert_eq!(
        sent_by("-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m"),
        Request::AddDest {
            key: key.into(),
            dest: (d("10.0.1.2", 8080, ForwardMethod::Masq)).into()
        }
    );
    assert_eq!(
        sent_by("-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -g"),
        Request::AddDest {
            key: key.into(),
            dest: (d("10.0.1.2", 80, ForwardMethod::DirectRoute)).into()
        }
    );
    // Tunnelling may mix families.
    assert_eq!(
        sent_by("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i -w 0"),
        Request::AddDest {
            key: key.into(),
            dest: (d("2001:db8::2", 80, ForwardMethod::Tunnel).with_weight(0)).into()
        }
    );
    let fw = ServiceKey::Fwmark {
        mark: 7,
        family: Family::V4,
    };
    assert_eq!(
        sent_by("-e -f 7 -r 10.0.1.2 -w 0"),
        Request::EditDest {
            key: fw.into(),
            dest: (d("10.0.1.2", 0, ForwardMethod::DirectRoute).with_weight(0)).into()
        }
    );
    assert_eq!(
        sent_by("-e -f 7 -r 10.0.1.2:8080 -m"),
        Request::EditDest {
            key: fw.into(),
            dest: (d("10.0.1.2", 8080, ForwardMethod::Masq)).into()
        }
    );
    assert_eq!(
        sent_by("-d -t 10.0.0.1:80 -r 10.0.1.2"),
        Request::DeleteDest {
            key: key.into(),
            addr: ip("10.0.1.2"),
            port: 80
        }
    );
    assert_eq!(
        sent_by("--delete-server -t 10.0.0.1:80 --real-server=10.0.1.2:8080"),
        Request::DeleteDest {
            key: key.into(),
            addr: ip("10.0.1.2"),
            port: 8080
        }
    );
}

#[test]
fn help_and_version_send_nothing() {
    for line in ["-h", "--help", "-L -h"] {
        let (out, sent) = exec(line, Ok(Reply::Ok));
        assert_eq!(out.code, 0);
        assert!(
            out.stdout.contains("Usage:\n  lvsadm -A|E virtual-service"),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("reverse DNS is not queried"));
        assert!(sent.is_empty());
    }
    let (out, sent) = exec("-v", Ok(Reply::Ok));
    assert!(out.stdout.starts_with("lvsadm v"), "{}", out.stdout);
    assert_eq!((out.code, sent.len()), (0, 0));
}

/// A daemon that remembers the socket path it was asked to use.
struct Recorder {
    socket: Option<PathBuf>,
}

impl Daemon for Recorder {
    fn call(&mut self, socket: Option<&Path>, _request: Request) -> Result<Reply, DaemonError> {
        self.socket = socket.map(Path::to_path_buf);
        Ok(Reply::Ok)
    }
}

#[test]
fn socket_option_reaches_the_daemon() {
    let mut d = Recorder { socket: None };
    let out = lvsadm::run(&argv("-C --socket /tmp/x.sock"), &mut d);
    assert_eq!(out.code, 0);
    assert_eq!(d.socket, Some(PathBuf::from("/tmp/x.sock")));
    let out = lvsadm::run(&argv("--socket=/tmp/y.sock -Z"), &mut d);
    assert_eq!(out.code, 0);
    assert_eq!(d.socket, Some(PathBuf::from("/tmp/y.sock")));
    let out = lvsadm::run(&argv("-C"), &mut d);
    assert_eq!(out.code, 0);
    assert_eq!(d.socket, None);
}

#[test]
fn unsupported_operations_answer_clearly() {
    for (line, code) in [
        ("--start-daemon master", 255),
        (
            "--start-daemon backup --mcast-interface eth1 --syncid 5",
            255,
        ),
        ("--stop-daemon master", 255),
        ("-L --daemon", 1),
    ] {
        let (out, sent) = exec(line, Ok(Reply::Ok));
        assert_eq!(out.code, code, "{line}");
        assert!(
            out.stderr
                .starts_with("connection sync daemon not supported yet"),
            "{line}: {}",
            out.stderr
        );
        assert!(sent.is_empty(), "{line}");
    }
    // IP-in-IP is what lvsd tunnels with: --tun-type ipip is accepted.
    let (out, sent) = exec(
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type ipip",
        Ok(Reply::Ok),
    );
    assert_eq!((out.code, sent.len()), (0, 1), "{}", out.stderr);
}

#[test]
fn names_resolve_in_and_out() {
    use lvsadm::names::Fixed;
    let names = Fixed::new(
        "http 80/tcp www\ndomain 53/udp\n",
        "10.0.0.1 web.example.com\n10.0.1.2 rs1\n",
    );
    let mut sent = Vec::new();
    let mut daemon = |r: Request| {
        sent.push(r);
        Ok(Reply::Ok)
    };
    let out = lvsadm::run_with(
        &argv("-a -t web.example.com:www -r rs1 -m"),
        &mut daemon,
        &mut std::io::empty(),
        &names,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        sent,
        vec![Request::AddDest {
            key: (tcp("10.0.0.1", 80)).into(),
            dest: (DestConfig::new(ip("10.0.1.2"), 80, ForwardMethod::Masq)).into()
        }]
    );
    // Without -n the listing names what it can; -n never does.
    let mut daemon = |_r: Request| Ok(table());
    let named = lvsadm::run_with(&argv("-L"), &mut daemon, &mut std::io::empty(), &names);
    assert!(
        named.stdout.contains("TCP  web.example.com:http rr\n"),
        "{}",
        named.stdout
    );
    assert!(
        named
            .stdout
            .contains("  -> rs1:http                     Masq")
    );
    assert!(named.stdout.contains("UDP  web.example.com:domain sh"));
    let numeric = lvsadm::run_with(&argv("-L -n"), &mut daemon, &mut std::io::empty(), &names);
    assert_eq!(numeric.stdout, GOLDEN_LIST);
    // A service name for the wrong protocol does not resolve.
    let out = lvsadm::run_with(
        &argv("-A -u 10.0.0.1:www"),
        &mut |_r: Request| Ok(Reply::Ok),
        &mut std::io::empty(),
        &names,
    );
    assert_eq!(out.code, 2);
}

#[test]
fn reload_sends_one_request_and_prints_refusals() {
    let (out, sent) = exec("--reload", Ok(Reply::Ok));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "")
    );
    assert_eq!(sent, vec![Request::Reload]);
    let (out, _) = exec(
        "--reload",
        Ok(Reply::Error {
            message: "/etc/lvsd.toml:3:10: unknown scheduler 'fastest'".into(),
        }),
    );
    assert_eq!(out.code, 255);
    assert_eq!(
        out.stderr,
        "/etc/lvsd.toml:3:10: unknown scheduler 'fastest'\nreload refused; the running table is unchanged\n"
    );
    let (out, sent) = exec("--reload -n", Ok(Reply::Ok));
    assert_eq!(out.code, 2);
    assert!(sent.is_empty());
}

#[test]
fn drops_sends_one_request_and_prints_every_row() {
    let info = lvs_api::DropsInfo {
        datapath: "tc".into(),
        rows: vec![
            lvs_api::DropRow {
                layer: "core".into(),
                reason: "no_route".into(),
                count: 2,
                ..Default::default()
            },
            lvs_api::DropRow {
                layer: "ring".into(),
                reason: "full".into(),
                interface: "eth0".into(),
                worker: Some(0),
                count: 9,
            },
        ],
    };
    let (out, sent) = exec("--drops", Ok(Reply::Drops(info)));
    assert_eq!(sent, vec![Request::Drops]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(
        out.stdout,
        "Frames lost since lvsd started (datapath tc)\n\
         Layer Reason   Interface Worker Count\n\
         core  no_route -         -          2\n\
         ring  full     eth0      0          9\n"
    );
    // Not a list option of ipvsadm's: alone, and nothing sent with another command.
    let (out, sent) = exec("-L --drops", Ok(Reply::Ok));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("multiple commands"), "{}", out.stderr);
    assert!(sent.is_empty());
    let (out, sent) = exec("--drops -n", Ok(Reply::Ok));
    assert_eq!(out.code, 2);
    assert!(sent.is_empty());
    let (out, _) = exec(
        "--drops",
        Err(DaemonError::Unreachable("cannot talk to lvsd".into())),
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (2, "cannot talk to lvsd\n")
    );
}

#[test]
fn import_ipvsadm_save_and_keepalived() {
    let dir = std::env::temp_dir().join(format!("lvsadm-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let save = dir.join("rules");
    std::fs::write(
        &save,
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 3\n-a -t 10.0.0.2:80 -r 10.0.1.3:80 -m\n-A -t 10.0.0.1:80\n-A -u 10.0.0.1:53 -s sh --pe sip\n-Z\n--set 0 60 0\n",
    )
    .unwrap();
    let line = format!("import ipvsadm-save {}", save.display());
    let (out, sent) = exec(&line, Ok(Reply::Ok));
    assert!(sent.is_empty());
    // Lines left out change the table: a failure, unless accepted; the TOML comes anyway.
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.lines().last().is_some_and(
            |l| l.contains("4 item(s) affecting traffic") && l.contains("--allow-partial")
        ),
        "{}",
        out.stderr
    );
    let (accepted, _) = exec(&format!("{line} --allow-partial"), Ok(Reply::Ok));
    assert_eq!(accepted.code, 0, "{}", accepted.stderr);
    assert_eq!(accepted.stdout, out.stdout);
    let out = accepted;
    let cfg = lvs_config::parse(&out.stdout).expect("the TOML parses back");
    assert_eq!(cfg.services.len(), 1);
    assert_eq!(cfg.services[0].dests.len(), 1);
    assert_eq!(cfg.services[0].dests[0].weight, 3);
    assert_eq!(
        cfg.timeouts.map(|t| (t.tcp, t.tcpfin, t.udp)),
        Some((900, 60, 300))
    );
    let notes: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(notes.len(), 4, "{}", out.stderr);
    assert!(notes[0].contains("line 3: not translated"), "{}", notes[0]);
    assert!(notes[0].contains("not defined above"), "{}", notes[0]);
    assert!(notes[1].contains("line 4") && notes[1].contains("already defined"));
    assert!(notes[2].contains("line 5") && notes[2].contains("persistence engine"));
    assert!(notes[3].contains("line 6") && notes[3].contains("-Z"));

    let ka = dir.join("keepalived.conf");
    std::fs::write(
        &ka,
        "virtual_server 10.0.0.1 80 {\n  lb_algo wrr\n  lb_kind DR\n  protocol TCP\n  real_server 10.0.1.2 80 {\n    weight 2\n    HTTP_GET {\n      url { path / }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (out, _) = exec(
        &format!("import keepalived {}", ka.display()),
        Ok(Reply::Ok),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg = lvs_config::parse(&out.stdout).expect("the TOML parses back");
    assert_eq!(cfg.services.len(), 1);
    assert_eq!(cfg.services[0].config.scheduler, SchedulerKind::Wrr);
    // The checker comes along (keepalived's HTTP_GET becomes an http check).
    let check = &cfg.services[0].checks.values().next().expect("a check")[0];
    assert_eq!(check.kind, lvs_health::CheckKind::Http);
    assert_eq!(check.path.as_deref(), Some("/"));
    assert!(out.stderr.is_empty(), "{}", out.stderr);

    // What lvsd leaves to keepalived (VRRP) is reported, and is no failure; a checker lvsd
    // lacks is one.
    std::fs::write(
        &ka,
        "vrrp_instance VI_1 {\n  state MASTER\n}\nvirtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.1.2 80 {\n  }\n}\n",
    )
    .unwrap();
    let (out, _) = exec(
        &format!("import keepalived {}", ka.display()),
        Ok(Reply::Ok),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("(no effect on traffic) line 1: vrrp_instance"),
        "{}",
        out.stderr
    );
    std::fs::write(
        &ka,
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.1.2 80 {\n    FILE_CHECK {\n    }\n  }\n}\n",
    )
    .unwrap();
    let (out, _) = exec(
        &format!("import keepalived {}", ka.display()),
        Ok(Reply::Ok),
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("line 4: FILE_CHECK"), "{}", out.stderr);

    let (out, _) = exec("import nginx x", Ok(Reply::Ok));
    assert_eq!(out.code, 2);
    assert!(out.stderr.starts_with("unknown import format `nginx'"));
    let (out, _) = exec("import keepalived /nonexistent/file", Ok(Reply::Ok));
    assert_eq!(out.code, 2);
    assert!(out.stderr.starts_with("cannot read /nonexistent/file"));
    std::fs::remove_dir_all(&dir).unwrap();
}
