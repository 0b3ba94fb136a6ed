//! What the BPF tests share: the root check.

/// Whether the test can run: root (effective uid 0, read from /proc). Without root the test
/// fails under CI (`CI=true`) and reports a skip elsewhere.
pub fn root_or_skip(what: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} need root (CI=true: not skipping)"
        );
        eprintln!("SKIP: {what} need root");
    }
    root
}
