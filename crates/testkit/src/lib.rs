//! What the tests share: the one rule for a test that cannot run here.
//!
//! A test that needs root, a tool or a Python module it does not find **fails** under CI
//! (`CI=true`) and elsewhere **reports a skip**: a `SKIP: <test>: <why>` line on the process's
//! stderr (past the test harness's output capture, so it shows without `--nocapture`) and,
//! when [`SKIP_LOG_ENV`] names a file, the same line appended to it. `scripts/test.sh` sets
//! that file and counts its lines as skipped rather than passed in its summary.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Names the file each skip appends its line to (set by `scripts/test.sh`).
pub const SKIP_LOG_ENV: &str = "LVS_TEST_SKIP_LOG";

/// Whether this run is CI's (`CI=true`), where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Records that `test` cannot run here because of `why`. Panics under CI (a missing tool or
/// privilege is a failure there); elsewhere prints and logs the skip. The caller returns
/// right after.
pub fn skip(test: &str, why: &str) {
    assert!(!under_ci(), "{test}: {why} (CI=true: not skipping)");
    let line = format!("SKIP: {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV)
        && let Err(e) = append(Path::new(&path), &line)
    {
        panic!(
            "{test}: cannot log the skip to {}: {e}",
            path.to_string_lossy()
        );
    }
}

/// Appends `line` to the skip log in one short write in append mode, so lines from tests
/// running in parallel do not mix.
fn append(path: &Path, line: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// Whether this process runs with effective uid 0 (read from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// True when `test` can run as root here; otherwise [`skip`]s it ("needs root …").
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(test, "needs root (network namespaces, BPF)");
    false
}

/// Whether `program args…` runs and exits 0 (a tool's presence, e.g. `nft --version`).
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python interpreter with `prometheus_client`'s OpenMetrics parser, the reference the
/// metrics tests check the exposition against (installed by `scripts/install-deps.sh`).
pub fn metrics_parser_python() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|py| runs(py, &["-c", "import prometheus_client.openmetrics.parser"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tells_success_from_failure_and_absence() {
        assert!(runs("true", &[]));
        assert!(!runs("false", &[]));
        assert!(!runs("/nonexistent/lvs-testkit-tool", &[]));
    }

    #[test]
    fn skips_append_one_line_each_to_the_log() {
        let path = std::env::temp_dir().join(format!("lvs-testkit-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        append(&path, "SKIP: a: why\n").unwrap();
        append(&path, "SKIP: b: why\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(text, "SKIP: a: why\nSKIP: b: why\n");
    }

    #[test]
    fn root_is_read_from_the_effective_uid() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .to_string();
        assert_eq!(is_root(), euid == "0");
    }
}
