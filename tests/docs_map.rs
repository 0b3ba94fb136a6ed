//! The "Where to change what" map in `docs/architecture.md` names only paths that exist: every
//! backticked token of that section that looks like a repository path (a `/` and no spaces,
//! with a trailing `:line`, `::item` or `()` dropped) must be a file or directory of the
//! repository. Runs anywhere (no root, no network namespaces).

use std::path::{Path, PathBuf};

const HEADING: &str = "## Where to change what";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// The section's text: from its heading to the next `## ` heading (or the end).
fn section(doc: &str) -> Option<String> {
    let mut lines = doc.lines().skip_while(|l| l.trim_end() != HEADING);
    lines.next()?;
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with("## ")).collect();
    Some(body.join("\n"))
}

/// Every backticked token that looks like a repository path, cleaned of a trailing `::item`,
/// `()` or `:line`.
fn paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.contains('/') && !t.chars().any(char::is_whitespace))
        .map(|t| {
            let mut p = t.split("::").next().unwrap_or(t);
            p = p.strip_suffix("()").unwrap_or(p);
            if let Some((head, line)) = p.rsplit_once(':')
                && !line.is_empty()
                && line.chars().all(|c| c.is_ascii_digit())
            {
                p = head;
            }
            p.to_string()
        })
        .collect()
}

#[test]
fn every_path_in_the_change_map_exists() {
    let root = repo_root();
    let doc_path = root.join("docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
    let text =
        section(&doc).unwrap_or_else(|| panic!("docs/architecture.md has no section {HEADING:?}"));
    let named = paths(&text);
    assert!(
        named.len() >= 15,
        "{HEADING:?} names only {} paths (at least 15 expected): {named:?}",
        named.len()
    );
    let missing: Vec<&String> = named.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "{HEADING:?} in docs/architecture.md names {} of {} paths that do not exist in {}:\n  {}",
        missing.len(),
        named.len(),
        root.display(),
        missing
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn path_tokens_are_cleaned() {
    let text = "`a/b.rs:12` `a/b.rs::f` `c/d()` `e/f.rs::g()` `no path` `x` `two words/x` `g/`";
    assert_eq!(
        paths(text),
        ["a/b.rs", "a/b.rs", "c/d", "e/f.rs", "g/"].map(String::from)
    );
    assert_eq!(section("# T\n## Other\nx\n"), None);
    assert_eq!(
        section(&format!(
            "{HEADING}\n`a/b`\n### sub\n`c/d`\n## Next\n`e/f`\n"
        ))
        .as_deref(),
        Some("`a/b`\n### sub\n`c/d`")
    );
}
