//! Keeps `docs/control-api.md` honest.
//!
//! * Every example in the document is built here from the real types and must serialize to
//!   exactly the line the document shows (and parse back to the same value).
//! * Every line of every ```` ```json ```` block of the document must be a request or a reply
//!   that survives a parse/serialize round trip unchanged, so no hand-edited example can drift.
//! * Every request `op` and reply `result` appears in the document; adding a variant to
//!   [`Request`] or [`Reply`] fails to compile [`op_name`] / [`result_name`] until it is
//!   documented here and there.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use lvs_api::{
    ConnInfo, CountersInfo, DestInfo, Envelope, Reply, Request, ServiceInfo, VERSION, parse_request,
};
use lvs_core::DropReason;
use lvs_core::service::{ConfigError, DestConfig, ServiceConfig};
use lvs_core::stats::{Rates, Stats};
use lvs_core::types::{
    Family, ForwardMethod, Netmask, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceKey,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("example address")
}

fn web() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: ip("192.0.2.100"),
        port: 80,
    }
}

fn https() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: ip("192.0.2.100"),
        port: 443,
    }
}

fn mark7() -> ServiceKey {
    ServiceKey::Fwmark {
        mark: 7,
        family: Family::V6,
    }
}

fn nat_dest() -> DestConfig {
    DestConfig::new(ip("10.0.1.11"), 8080, ForwardMethod::Masq).with_weight(2)
}

/// The document's request examples, in the document's order.
fn requests() -> Vec<Request> {
    let https_svc = ServiceConfig {
        flags: SchedFlags::PORT.union(SchedFlags::FALLBACK),
        persistence: Some(Persistence {
            timeout: Duration::from_secs(600),
            netmask: Netmask::V4(24),
        }),
        ..ServiceConfig::new(https()).with_scheduler(SchedulerKind::Sh)
    };
    let dr = DestConfig {
        upper_threshold: 1000,
        lower_threshold: 800,
        ..DestConfig::new(ip("10.0.1.12"), 443, ForwardMethod::DirectRoute)
    };
    let tun = DestConfig::new(ip("198.51.100.7"), 80, ForwardMethod::Tunnel).with_weight(3);
    vec![
        Request::Version,
        Request::AddService {
            service: ServiceConfig::new(web())
                .with_scheduler(SchedulerKind::Rr)
                .into(),
        },
        Request::AddService {
            service: https_svc.into(),
        },
        Request::EditService {
            service: ServiceConfig::new(web())
                .with_scheduler(SchedulerKind::Wlc)
                .into(),
        },
        Request::DeleteService {
            key: https().into(),
        },
        Request::DeleteService {
            key: mark7().into(),
        },
        Request::Clear,
        Request::AddDest {
            key: web().into(),
            dest: nat_dest().into(),
        },
        Request::AddDest {
            key: https().into(),
            dest: dr.into(),
        },
        Request::AddDest {
            key: web().into(),
            dest: tun.into(),
        },
        Request::EditDest {
            key: web().into(),
            dest: nat_dest().with_weight(0).into(),
        },
        Request::DeleteDest {
            key: web().into(),
            addr: ip("10.0.1.11"),
            port: 8080,
        },
        Request::List,
        Request::Connections {
            cursor: None,
            limit: None,
        },
        Request::Connections {
            cursor: None,
            limit: Some(lvs_api::CONNECTIONS_PAGE_MAX),
        },
        Request::Connections {
            cursor: Some(16411),
            limit: Some(lvs_api::CONNECTIONS_PAGE_MAX),
        },
        Request::Counters,
        Request::Timeouts,
        Request::SetTimeouts {
            tcp: 3600,
            tcpfin: 0,
            udp: 0,
        },
        Request::Zero {
            key: Some(web().into()),
        },
        Request::Zero { key: None },
        Request::Batch {
            requests: vec![
                Request::AddService {
                    service: ServiceConfig::new(web())
                        .with_scheduler(SchedulerKind::Rr)
                        .into(),
                },
                Request::AddDest {
                    key: web().into(),
                    dest: (DestConfig::new(ip("10.0.1.11"), 80, ForwardMethod::Masq)).into(),
                },
                Request::AddDest {
                    key: web().into(),
                    dest: (DestConfig::new(ip("10.0.1.12"), 80, ForwardMethod::Masq)).into(),
                },
            ],
        },
        Request::Reload,
        Request::SetCheck {
            key: web().into(),
            addr: ip("10.0.1.11"),
            port: 8080,
            check: Some(serde_json::json!({
                "type": "http", "path": "/health", "delay_loop": 2, "inhibit_on_failure": true
            })),
        },
        Request::SetCheck {
            key: web().into(),
            addr: ip("10.0.1.11"),
            port: 8080,
            check: None,
        },
        Request::SetServiceHealth {
            key: web().into(),
            health: Some(serde_json::json!({
                "quorum": 2, "hysteresis": 0,
                "sorry_server": {"addr": "10.0.9.9", "port": 80, "method": "nat"}
            })),
        },
        Request::Health,
        Request::Drops,
    ]
}

/// The document's reply examples, in the document's order.
fn replies() -> Vec<Reply> {
    let stats = Stats {
        conns: 12,
        inpkts: 96,
        outpkts: 84,
        inbytes: 7140,
        outbytes: 21308,
    };
    let rates = Rates {
        cps: 1,
        inpps: 8,
        outpps: 7,
        inbps: 595,
        outbps: 1775,
    };
    vec![
        Reply::Error {
            message: parse_request(r#"{"v":2,"op":"list"}"#).unwrap_err(),
        },
        Reply::Error {
            message: parse_request(r#"{"op":"list"}"#).unwrap_err(),
        },
        Reply::Ok,
        Reply::Error {
            message: ConfigError::ServiceExists(web()).to_string(),
        },
        Reply::Version {
            protocol: VERSION,
            daemon: "0.1.0".into(),
        },
        Reply::Services {
            table_size: 1 << 20,
            services: vec![ServiceInfo {
                config: ServiceConfig::new(web())
                    .with_scheduler(SchedulerKind::Rr)
                    .into(),
                stats: stats.into(),
                rates: rates.into(),
                dests: vec![DestInfo {
                    config: (DestConfig::new(ip("10.0.1.11"), 8080, ForwardMethod::Masq)).into(),
                    active: 1,
                    inactive: 2,
                    persistent: 0,
                    overloaded: false,
                    stats: stats.into(),
                    rates: rates.into(),
                }],
            }],
        },
        Reply::Connections {
            conns: vec![ConnInfo {
                proto: Protocol::Tcp.into(),
                caddr: ip("203.0.113.9"),
                cport: 51522,
                vaddr: ip("192.0.2.100"),
                vport: 80,
                daddr: ip("10.0.1.11"),
                dport: 8080,
                state: "ESTABLISHED".into(),
                expires_secs: 897,
                method: ForwardMethod::Masq.into(),
                template: false,
            }],
            next: None,
        },
        Reply::Connections {
            conns: vec![ConnInfo {
                proto: Protocol::Udp.into(),
                caddr: ip("203.0.113.9"),
                cport: 40000,
                vaddr: ip("192.0.2.100"),
                vport: 53,
                daddr: ip("10.0.1.12"),
                dport: 53,
                state: "UDP".into(),
                expires_secs: 241,
                method: ForwardMethod::Masq.into(),
                template: false,
            }],
            next: Some(16411),
        },
        Reply::Counters(CountersInfo {
            rx_frames: 5230,
            forwarded: 4120,
            passed: 1102,
            icmp_sent: 0,
            conns: 3,
            conn_limit: 1 << 20,
            drops: DropReason::ALL
                .iter()
                .map(|r| {
                    let n = if *r == DropReason::NeighbourUnresolved {
                        8
                    } else {
                        0
                    };
                    (r.name().to_string(), n)
                })
                .collect(),
            tx_errors: 0,
            held: 0,
            held_total: 0,
            embryonic_evicted: 0,
            datapath: "tc".into(),
            kernel: [
                ("rx", 91230),
                ("nat_in", 48211),
                ("nat_out", 42910),
                ("direct_route", 0),
                ("tunnel", 0),
                ("to_user", 97),
                ("not_ours", 12),
                ("error", 0),
                ("state_change", 31),
                ("event_lost", 0),
                ("new_flows", 0),
                ("new_flows_dropped", 0),
                ("install_failed", 0),
                ("new_flows_not_adopted", 0),
                ("adopted", 0),
                ("adoption_waiting", 0),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        }),
        Reply::Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        },
        Reply::Health {
            servers: vec![lvs_api::HealthInfo {
                key: web().into(),
                addr: ip("10.0.1.11"),
                port: 8080,
                check: "http GET 10.0.1.11:8080/health".into(),
                up: true,
                since: 1_764_000_000,
                last_ok: Some(true),
                last: "200 OK".into(),
                last_at: Some(1_764_000_120),
                checks: 61,
                failures: 0,
                weight: 1,
                listed: true,
            }],
            services: vec![lvs_api::ServiceHealthInfo {
                key: web().into(),
                quorum: 2,
                hysteresis: 0,
                quorum_up: true,
                weight_sum: 3,
                sorry_server: Some("10.0.9.9:80".into()),
                sorry_active: false,
            }],
        },
        Reply::Drops(lvs_api::DropsInfo {
            datapath: "tc".into(),
            rows: [
                ("core", "no_route", "", None, 2),
                ("core", "neighbour_unresolved", "", None, 8),
                ("send", "not_queued", "", None, 0),
                ("ring", "full", "eth0", Some(0), 1520),
                ("ring", "freezes", "eth0", Some(0), 0),
                ("ring", "malformed_slot", "eth0", Some(0), 0),
                ("send", "enobufs", "", Some(0), 0),
                ("send", "eagain", "", Some(0), 0),
                ("send", "error", "", Some(0), 0),
                ("kernel", "error", "", None, 0),
                ("kernel", "new_flows_dropped", "", None, 0),
                ("kernel", "event_lost", "", None, 0),
            ]
            .into_iter()
            .map(
                |(layer, reason, interface, worker, count)| lvs_api::DropRow {
                    layer: layer.into(),
                    reason: reason.into(),
                    interface: interface.into(),
                    worker,
                    count,
                },
            )
            .collect(),
        }),
    ]
}

fn request_line(r: &Request) -> String {
    serde_json::to_string(&Envelope {
        v: VERSION,
        request: r.clone(),
    })
    .expect("requests serialize")
}

fn reply_line(r: &Reply) -> String {
    serde_json::to_string(r).expect("replies serialize")
}

/// The document, read at test time.
fn document() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/control-api.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The non-empty lines of the document's ```` ```json ```` blocks, with their line numbers.
fn json_lines(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for (i, line) in doc.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("```") {
            inside = !inside && t == "```json";
            continue;
        }
        if inside && !t.is_empty() {
            out.push((i + 1, t.to_string()));
        }
    }
    out
}

/// The `op` of a request. No wildcard: a new variant must be added here (and documented).
fn op_name(r: &Request) -> &'static str {
    match r {
        Request::Version => "version",
        Request::AddService { .. } => "add_service",
        Request::EditService { .. } => "edit_service",
        Request::DeleteService { .. } => "delete_service",
        Request::Clear => "clear",
        Request::AddDest { .. } => "add_dest",
        Request::EditDest { .. } => "edit_dest",
        Request::DeleteDest { .. } => "delete_dest",
        Request::List => "list",
        Request::Connections { .. } => "connections",
        Request::Counters => "counters",
        Request::SetTimeouts { .. } => "set_timeouts",
        Request::Timeouts => "timeouts",
        Request::Zero { .. } => "zero",
        Request::Batch { .. } => "batch",
        Request::Reload => "reload",
        Request::SetCheck { .. } => "set_check",
        Request::SetServiceHealth { .. } => "set_service_health",
        Request::Health => "health",
        Request::Drops => "drops",
    }
}

/// The `result` of a reply. No wildcard, as [`op_name`].
fn result_name(r: &Reply) -> &'static str {
    match r {
        Reply::Ok => "ok",
        Reply::Error { .. } => "error",
        Reply::Version { .. } => "version",
        Reply::Services { .. } => "services",
        Reply::Connections { .. } => "connections",
        Reply::Counters(_) => "counters",
        Reply::Timeouts { .. } => "timeouts",
        Reply::Health { .. } => "health",
        Reply::Drops(_) => "drops",
    }
}

#[test]
fn typed_examples_serialize_to_the_documented_lines_in_order() {
    let doc = document();
    let lines: Vec<String> = json_lines(&doc).into_iter().map(|(_, l)| l).collect();
    let requests: Vec<String> = requests()
        .iter()
        .map(|r| {
            let line = request_line(r);
            assert_eq!(parse_request(&line).as_ref(), Ok(r), "{line}");
            line
        })
        .collect();
    let replies: Vec<String> = replies()
        .iter()
        .map(|r| {
            let line = reply_line(r);
            let back: Reply = serde_json::from_str(&line).expect("reply parses back");
            assert_eq!(&back, r, "{line}");
            line
        })
        .collect();
    // Requests in document order, and replies in document order (the two interleave).
    for expected in [&requests, &replies] {
        let mut from = 0;
        for line in expected {
            match lines[from..].iter().position(|l| l == line) {
                Some(at) => from += at + 1,
                None => panic!(
                    "docs/control-api.md lacks this example (or has it out of order):\n{line}\n\
                     every example line, requests then replies, in order:\n{}\n{}",
                    requests.join("\n"),
                    replies.join("\n")
                ),
            }
        }
    }
}

#[test]
fn every_json_line_of_the_document_round_trips() {
    let doc = document();
    let lines = json_lines(&doc);
    assert!(lines.len() >= 20, "expected the examples in ```json blocks");
    for (n, line) in lines {
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("control-api.md:{n}: not JSON ({e}): {line}"));
        let again = if value.get("v").is_some() {
            let req = parse_request(&line)
                .unwrap_or_else(|e| panic!("control-api.md:{n}: lvsd would refuse it: {e}"));
            request_line(&req)
        } else if value.get("result").is_some() {
            let reply: Reply = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("control-api.md:{n}: not a reply ({e}): {line}"));
            reply_line(&reply)
        } else {
            panic!(
                "control-api.md:{n}: neither a request (\"v\") nor a reply (\"result\"): {line}"
            );
        };
        let again: serde_json::Value = serde_json::from_str(&again).expect("own output parses");
        assert_eq!(
            value, again,
            "control-api.md:{n}: the line is not what lvs-api writes for the same value"
        );
    }
}

#[test]
fn every_op_and_result_is_documented() {
    let doc = document();
    let ops: BTreeSet<&str> = requests().iter().map(op_name).collect();
    let results: BTreeSet<&str> = replies().iter().map(result_name).collect();
    assert_eq!(ops.len(), 20, "an example per request variant: {ops:?}");
    assert_eq!(
        results.len(),
        9,
        "an example per reply variant: {results:?}"
    );
    for op in ops {
        assert!(
            doc.contains(&format!("### `{op}`")),
            "docs/control-api.md has no `### `{op}`` section"
        );
    }
    for result in results {
        assert!(
            doc.contains(&format!("\"result\":\"{result}\"")),
            "docs/control-api.md shows no {result} reply"
        );
    }
}

#[test]
fn documented_shorthands_and_refusals_behave_as_described() {
    // "key" of zero may be left out.
    assert_eq!(
        parse_request(r#"{"v":1,"op":"zero"}"#),
        Ok(Request::Zero { key: None })
    );
    // "persistence" may be left out (it is an Option); the other fields may not.
    assert_eq!(
        parse_request(
            r#"{"v":1,"op":"add_service","service":{"key":{"Addr":{"proto":"Tcp","addr":"192.0.2.100","port":80}},"scheduler":"Rr","flags":0,"one_packet":false}}"#
        ),
        Ok(Request::AddService {
            service: ServiceConfig::new(web())
                .with_scheduler(SchedulerKind::Rr)
                .into()
        })
    );
    assert!(
        parse_request(
            r#"{"v":1,"op":"add_service","service":{"key":{"Addr":{"proto":"Tcp","addr":"192.0.2.100","port":80}},"scheduler":"Rr"}}"#
        )
        .unwrap_err()
        .starts_with("bad request: missing field `flags`")
    );
    // Unknown fields are ignored; unknown ops are refused.
    assert_eq!(
        parse_request(r#"{"v":1,"op":"list","comment":"from a script"}"#),
        Ok(Request::List)
    );
    assert!(
        parse_request(r#"{"v":1,"op":"fly"}"#)
            .unwrap_err()
            .starts_with("bad request: unknown variant `fly`")
    );
    assert!(
        parse_request("list")
            .unwrap_err()
            .starts_with("request is not valid JSON")
    );
    // The socket path constants the document names.
    assert_eq!(lvs_api::DEFAULT_SOCKET, "/run/lvsd/lvsd.sock");
    assert_eq!(lvs_api::SOCKET_ENV, "LVSD_SOCKET");
    assert_eq!(VERSION, 1);
}

#[test]
fn encodings_table_names_the_real_spellings() {
    let doc = document();
    let scheds: Vec<String> = SchedulerKind::ALL
        .iter()
        .map(|k| {
            format!(
                "`{}`",
                serde_json::to_string(&lvs_api::SchedulerKind::from(*k)).unwrap()
            )
        })
        .collect();
    let line = scheds.join(" ");
    assert!(doc.contains(&line), "scheduler spellings: {line}");
    for (k, name) in SchedulerKind::ALL.iter().zip(&scheds) {
        // "Rr" is "rr" capitalised: ipvsadm's name with a capital first letter.
        let mut cap = k.name().to_string();
        cap[..1].make_ascii_uppercase();
        assert_eq!(*name, format!("`\"{cap}\"`"));
    }
    for (m, flag) in [
        (ForwardMethod::Masq, "-m"),
        (ForwardMethod::DirectRoute, "-g"),
        (ForwardMethod::Tunnel, "-i"),
    ] {
        let json = serde_json::to_string(&lvs_api::ForwardMethod::from(m)).unwrap();
        assert!(doc.contains(&format!("`{json}`")), "{json} ({flag})");
    }
    for (p, json) in [
        (Protocol::Tcp, "\"Tcp\""),
        (Protocol::Udp, "\"Udp\""),
        (Protocol::Sctp, "\"Sctp\""),
    ] {
        assert_eq!(
            serde_json::to_string(&lvs_api::Protocol::from(p)).unwrap(),
            json
        );
    }
    for (f, json) in [(Family::V4, "\"V4\""), (Family::V6, "\"V6\"")] {
        assert_eq!(
            serde_json::to_string(&lvs_api::Family::from(f)).unwrap(),
            json
        );
    }
    assert_eq!(
        serde_json::to_string(&lvs_api::SchedFlags::from(SchedFlags::FLAG3)).unwrap(),
        "4"
    );
    let p = Persistence {
        timeout: Duration::from_secs(300),
        netmask: Netmask::V4(32),
    };
    let json = serde_json::to_string(&lvs_api::Persistence::from(p)).unwrap();
    assert!(doc.contains(&format!("`{json}`")), "{json}");
    for key in [
        web(),
        ServiceKey::Fwmark {
            mark: 7,
            family: Family::V4,
        },
    ] {
        let json = serde_json::to_string(&lvs_api::ServiceKey::from(key)).unwrap();
        assert!(doc.contains(&format!("`{json}`")), "{json}");
    }
}
