//! The configuration examples of the documentation parse: `dist/lvsd.toml.example` and every
//! complete ```toml block of `docs/health-checks.md` and `docs/operator-guide.md`.

use lvs_config::{parse, render, to_toml};

fn root(rel: &str) -> String {
    let p = format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn toml_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match (&mut cur, line.trim_start()) {
            (None, "```toml") => cur = Some(String::new()),
            (Some(_), "```") => out.extend(cur.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

fn check(name: &str, text: &str) -> lvs_config::Config {
    let cfg = parse(text).unwrap_or_else(|d| panic!("{name}:\n{}\n{text}", render(name, &d)));
    assert_eq!(parse(&to_toml(&cfg)).unwrap(), cfg, "{name} round-trips");
    cfg
}

#[test]
fn dist_example_parses_with_a_check_of_every_type() {
    let cfg = check("dist/lvsd.toml.example", &root("dist/lvsd.toml.example"));
    let mut kinds: Vec<&str> = cfg
        .services
        .iter()
        .flat_map(|s| s.checks.values().flatten())
        .map(|c| c.kind.name())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["dns", "exec", "http", "https", "ping", "smtp", "tcp", "udp"]
    );
    assert!(
        cfg.services[0]
            .health
            .as_ref()
            .unwrap()
            .sorry_server
            .is_some()
    );
}

#[test]
fn documentation_examples_parse() {
    for doc in ["docs/health-checks.md", "docs/operator-guide.md"] {
        let blocks = toml_blocks(&root(doc));
        assert!(!blocks.is_empty(), "{doc} has toml examples");
        for (i, b) in blocks.iter().enumerate() {
            check(&format!("{doc} block {}", i + 1), b);
        }
    }
    let health = toml_blocks(&root("docs/health-checks.md"));
    let cfg = check("health-checks.md", &health[0]);
    let n: usize = cfg.services.iter().map(|s| s.checks.len()).sum();
    assert_eq!(n, 5, "one check per type");
}
