//! Every listing variant against expected outputs that `tests/golden/gen.py` writes from
//! ipvsadm 1.31's printf formats, independently of lvsadm's renderer. The table (every
//! scheduler and method, fwmark, persistence with masks, IPv6, SCTP, thresholds, counters
//! scaled to K/M/G/T) is `tests/golden/table.json`, as lvsd's API would answer.

use std::path::PathBuf;

use lvs_api::{Reply, Request};
use lvsadm::names::Fixed;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(golden_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn names() -> Fixed {
    Fixed::new(&read("services"), &read("hosts"))
}

#[derive(serde::Deserialize)]
struct Case {
    args: String,
    reply: String,
    golden: String,
}

#[test]
fn every_listing_variant_matches_ipvsadm_formats() {
    let table: Reply = serde_json::from_str(&read("table.json")).unwrap();
    let conns: Reply = serde_json::from_str(&read("conns.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&read("cases.json")).unwrap();
    assert!(cases.len() >= 15);
    let names = names();
    for case in cases {
        let reply = match case.reply.as_str() {
            "table" => table.clone(),
            "conns" => conns.clone(),
            "timeouts" => Reply::Timeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300,
            },
            other => panic!("unknown reply {other}"),
        };
        let mut sent = Vec::new();
        let mut daemon = |r: Request| {
            sent.push(r);
            Ok(reply.clone())
        };
        let argv: Vec<String> = std::iter::once("lvsadm")
            .chain(case.args.split_whitespace())
            .map(String::from)
            .collect();
        let out = lvsadm::run_with(&argv, &mut daemon, &mut std::io::empty(), &names);
        assert_eq!(out.stderr, "", "{}", case.args);
        assert_eq!(out.code, 0, "{}", case.args);
        let expected = read(&case.golden);
        if out.stdout != expected {
            for (i, (a, b)) in out.stdout.lines().zip(expected.lines()).enumerate() {
                if a != b {
                    panic!(
                        "{} ({}): first difference at line {}:\n got: {a:?}\nwant: {b:?}",
                        case.args,
                        case.golden,
                        i + 1
                    );
                }
            }
            panic!(
                "{} ({}): lengths differ:\n{}\n---\n{expected}",
                case.args, case.golden, out.stdout
            );
        }
        assert_eq!(sent.len(), 1, "{}", case.args);
    }
}
