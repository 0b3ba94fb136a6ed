//! The Prometheus / OpenMetrics endpoint end to end: lvsd with `--metrics-listen` on
//! 127.0.0.1 inside the director namespace (and two workers), NAT traffic from the client
//! (HTTP and UDP through the VIP), then `curl /metrics` from the director namespace, parsed by
//! the reference OpenMetrics parser (Python's `prometheus_client`, through
//! `scripts/parse-metrics.py`), and compared with `lvsadm -L -n --stats --exact`,
//! `lvsadm -L -n` and `lvsadm -L -n -c` read just before and just after the scrape with no
//! traffic in between: lvsd's own families and node_exporter's `node_ipvs_*` ones. See
//! `lib.rs` for the fixture.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use lvs_e2e::{Counters, Director, Method, ServiceStats, skip};

/// Where lvsd serves metrics, inside the director namespace.
const LISTEN: &str = "127.0.0.1:9101";

/// Parses an exposition with the reference parser: `name{sorted labels}` → value. Panics with
/// the parser's message when the exposition is invalid.
fn parse(py: &str, text: &str) -> BTreeMap<String, f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/parse-metrics.py");
    let mut child = Command::new(py)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run scripts/parse-metrics.py");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("write to the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused lvsd's /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("KEY VALUE");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

/// `name{k="v",...}` with the labels sorted, as the parser script prints keys.
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l = labels.to_vec();
    l.sort();
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Everything lvsadm says that the metrics must agree with.
#[derive(Debug, PartialEq)]
struct Listing {
    stats: Vec<ServiceStats>,
    /// `lvsadm -L -n` verbatim (weights, ActiveConn, InActConn, table size).
    list: String,
    /// Entries of `lvsadm -L -n -c`.
    entries: usize,
}

fn listing(d: &Director) -> Listing {
    let conns = d.lvsadm_ok(&["-L", "-n", "-c"]);
    Listing {
        stats: d.stats(),
        list: d.lvsadm_ok(&["-L", "-n"]),
        // Two header lines, then one line per entry.
        entries: conns
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .count(),
    }
}

fn scrape(d: &Director) -> String {
    let url = format!("http://{LISTEN}/metrics");
    let out = d.in_director(&["curl", "-sS", "-m", "10", "-i", &url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {url} in the director namespace failed: {}\nlvsd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.lvsd_log()
    );
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    body.to_string()
}

/// The five counters of one service or real server in the metrics.
fn counters_in(m: &BTreeMap<String, f64>, prefix: &str, labels: &[(&str, &str)]) -> Counters {
    let get = |name: &str, dir: Option<&str>| -> u64 {
        let mut l = labels.to_vec();
        if let Some(d) = dir {
            l.push(("direction", d));
        }
        let k = key(&format!("{prefix}_{name}"), &l);
        let v = *m
            .get(&k)
            .unwrap_or_else(|| panic!("no sample {k} in the metrics: {:#?}", m.keys()));
        v as u64
    };
    Counters {
        conns: get("connections_total", None),
        in_pkts: get("packets_total", Some("in")),
        out_pkts: get("packets_total", Some("out")),
        in_bytes: get("bytes_total", Some("in")),
        out_bytes: get("bytes_total", Some("out")),
    }
}

#[test]
fn nat_metrics_agree_with_lvsadm() {
    let test = "nat_metrics_agree_with_lvsadm";
    if skip(test) {
        return;
    }
    let Some(py) = lvs_testkit::metrics_parser_python() else {
        let why = "Python's prometheus_client is not installed (scripts/install-deps.sh)";
        lvs_testkit::skip(test, why);
        return;
    };
    let mut d = Director::without_lvsd(Method::Nat, test);
    d.set_lvsd_args(&["--metrics-listen", LISTEN, "--workers", "2"]);
    d.start_lvsd();
    d.add_services("rr", &[0, 1, 2]);
    for _ in 0..12 {
        d.curl_vip();
    }
    d.udp("metrics");

    // Let the last packets (the client's final ACKs) arrive, then take lvsadm's view, the
    // metrics and lvsadm's view again; retry if anything moved in between.
    let (before, metrics, after) = (0..10)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(300));
            let before = listing(&d);
            let metrics = scrape(&d);
            let after = listing(&d);
            (before == after).then_some((before, metrics, after))
        })
        .expect("lvsadm's counters kept changing with no traffic");
    let m = parse(py, &metrics);
    eprintln!("{} samples; lvsadm:\n{}", m.len(), after.list);

    // Per service and real server: the same five numbers as `--stats --exact`.
    let mut services = 0;
    let mut reals = 0;
    for s in &before.stats {
        let (vip, port) = s.addr.rsplit_once(':').expect("VIP:port");
        let proto = s.proto.to_ascii_lowercase();
        let svc = [("protocol", proto.as_str()), ("vip", vip), ("port", port)];
        assert_eq!(
            counters_in(&m, "lvs_service", &svc),
            s.counters,
            "service {} {}",
            s.proto,
            s.addr
        );
        services += 1;
        for (rip, c) in &s.dests {
            let (ra, rp) = rip.rsplit_once(':').expect("RIP:port");
            let mut rs = svc.to_vec();
            rs.extend([("real_server", ra), ("real_port", rp), ("method", "masq")]);
            assert_eq!(
                counters_in(&m, "lvs_real_server", &rs),
                *c,
                "real server {rip} of {} {}",
                s.proto,
                s.addr
            );
            reals += 1;
        }
    }
    assert_eq!((services, reals), (2, 6), "{before:?}");
    // node_exporter's ipvs totals: the sums of `--stats --exact` over the services.
    for (name, f) in [
        (
            "node_ipvs_connections_total",
            (|c: &Counters| c.conns) as fn(&Counters) -> u64,
        ),
        ("node_ipvs_incoming_packets_total", |c| c.in_pkts),
        ("node_ipvs_outgoing_packets_total", |c| c.out_pkts),
        ("node_ipvs_incoming_bytes_total", |c| c.in_bytes),
        ("node_ipvs_outgoing_bytes_total", |c| c.out_bytes),
    ] {
        let want: u64 = before.stats.iter().map(|s| f(&s.counters)).sum();
        assert_eq!(m.get(name).copied(), Some(want as f64), "{name}");
    }
    let tcp = &before.stats.iter().find(|s| s.proto == "TCP").expect("TCP");
    assert_eq!(tcp.counters.conns, 12, "{tcp:?}");
    assert!(
        tcp.counters.out_pkts > 0,
        "NAT replies are counted: {tcp:?}"
    );

    // Weight, ActiveConn and InActConn per real server, as `lvsadm -L -n` shows them.
    let mut svc: Vec<(&str, String)> = Vec::new();
    let mut checked = 0;
    for line in before.list.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 && (f[0] == "TCP" || f[0] == "UDP") {
            let (vip, port) = f[1].rsplit_once(':').expect("VIP:port");
            svc = vec![
                ("protocol", f[0].to_ascii_lowercase()),
                ("vip", vip.to_string()),
                ("port", port.to_string()),
            ];
        } else if f.len() == 6 && f[0] == "->" && f[2] == "Masq" {
            let (ra, rp) = f[1].rsplit_once(':').expect("RIP:port");
            let mut l: Vec<(&str, &str)> = svc.iter().map(|(k, v)| (*k, v.as_str())).collect();
            l.extend([("real_server", ra), ("real_port", rp), ("method", "masq")]);
            // node_exporter's ipvs collector labels, as dashboards for kernel IPVS use them.
            let proto = svc[0].1.to_ascii_uppercase();
            let node = [
                ("local_address", svc[1].1.as_str()),
                ("local_port", svc[2].1.as_str()),
                ("remote_address", ra),
                ("remote_port", rp),
                ("proto", proto.as_str()),
                ("local_mark", ""),
            ];
            for (name, labels, want) in [
                ("lvs_real_server_weight", &l[..], f[3]),
                ("lvs_real_server_active_connections", &l[..], f[4]),
                ("lvs_real_server_inactive_connections", &l[..], f[5]),
                ("node_ipvs_backend_weight", &node[..], f[3]),
                ("node_ipvs_backend_connections_active", &node[..], f[4]),
                ("node_ipvs_backend_connections_inactive", &node[..], f[5]),
            ] {
                let k = key(name, labels);
                assert_eq!(
                    m.get(&k).copied(),
                    Some(want.parse::<f64>().expect("number")),
                    "{k} vs `lvsadm -L -n` line {line:?}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "{}", before.list);

    // Director: table size and entries, frames, drops, workers.
    let size: f64 = before
        .list
        .split("(size=")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size= in {}", before.list));
    assert_eq!(m["lvs_connection_table_capacity"], size);
    assert_eq!(m["lvs_connection_table_entries"], before.entries as f64);
    assert!(before.entries >= 13, "12 TCP + 1 UDP entries: {before:?}");
    assert!(m["lvs_frames_received_total"] > 0.0);
    assert!(m["lvs_frames_forwarded_total"] > 0.0);
    assert!(m.contains_key(&key("lvs_drops_total", &[("reason", "no_connection")])));
    assert!(m.contains_key("lvs_tx_errors_total"));
    // Two workers: one series each (the fanout hash decides which saw how much).
    let w0 = m[&key("lvs_worker_packets_total", &[("worker", "0")])];
    let w1 = m[&key("lvs_worker_packets_total", &[("worker", "1")])];
    assert!(w0 + w1 > 0.0, "{w0} {w1}");
    assert!(!m.keys().any(|k| k.contains("worker=\"2\"")));
    // Info and rate families exist for each service.
    assert!(
        m.keys()
            .any(|k| k.starts_with("lvs_service_info{") && k.contains("scheduler=\"rr\"")),
        "{:#?}",
        m.keys()
    );
    assert!(
        m.keys()
            .any(|k| k.starts_with("lvs_service_estimated_connections_per_second{"))
    );
    drop(after);
}
