//! The keepalived corpus: every `tests/corpus/NN-*.conf` (our own files, in the shapes
//! keepalived's documentation shows) is imported, and the result compared with the expected
//! configuration (`NN-*.toml`) and the expected notes (`NN-*.notes`, one per line, marked
//! `traffic` when it changes what is forwarded and `info` when not). The TOML must also be a
//! valid configuration file that reads back to the same table.
//!
//! `UPDATE_CORPUS=1 cargo test -p lvs-config --test corpus` rewrites the expected files from
//! the importer's output: review the diff before committing it.

use std::path::PathBuf;

use lvs_config::{import, parse, to_toml};

fn corpus() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus"))
}

#[test]
fn keepalived_corpus_translates_as_expected() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    let update = std::env::var_os("UPDATE_CORPUS").is_some();
    let mut mismatches = Vec::new();
    for conf in &files {
        let text = std::fs::read_to_string(conf).unwrap();
        let (cfg, notes) = import::keepalived_report(&text);
        let toml = to_toml(&cfg);
        let back = parse(&toml).unwrap_or_else(|e| panic!("{}: {e:?}\n{toml}", conf.display()));
        assert_eq!(
            back,
            cfg,
            "{}: the TOML reads back to the same table",
            conf.display()
        );
        let notes: String = notes
            .iter()
            .map(|n| {
                let mark = if n.affects_traffic { "traffic" } else { "info" };
                format!("line {}: [{mark}] {}\n", n.line, n.message)
            })
            .collect();
        for (ext, got) in [("toml", &toml), ("notes", &notes)] {
            let want_path = conf.with_extension(ext);
            if update {
                std::fs::write(&want_path, got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&want_path)
                .unwrap_or_else(|e| panic!("{}: {e}", want_path.display()));
            if &want != got {
                mismatches.push(format!(
                    "{}:\n--- expected\n{want}--- got\n{got}",
                    want_path.display()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
