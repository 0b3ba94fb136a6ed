#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/simulation tests, and (as root) the
# end-to-end tests in network namespaces. Run as root on a Debian machine with Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  scripts/install-deps.sh
else
  echo "not root: end-to-end tests will be skipped" >&2
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
# Each test that cannot run here (no root, a missing tool) appends a line to this file (see
# crates/testkit): it is counted as skipped, not passed. Under CI=true such a test fails
# instead, and any skip fails the run.
skips=$(mktemp) log=$(mktemp)
trap 'rm -f "$skips" "$log"' EXIT
export LVS_TEST_SKIP_LOG="$skips"
rc=0
suite() { "$@" 2>&1 | tee -a "$log"; return "${PIPESTATUS[0]}"; }
# Everything once: the end-to-end tests run lvsd with --datapath afpacket (every packet
# through user space)...
suite cargo test --workspace --no-fail-fast || rc=1
# ...and the end-to-end tests again on the kernel fast path (eBPF at tc ingress); the restart
# and XDP tests, which name their datapath themselves, ran above.
LVS_E2E_DATAPATH=tc suite cargo test --workspace --no-fail-fast -- --skip restart_and_kill9 --skip afpacket_sigterm --skip datapath_xdp || rc=1

# One line over every suite: libtest's counts, less the tests that skipped themselves at run
# time (libtest counts those as passed), plus the ignored ones.
read -r passed failed ignored < <(awk '/^test result:/ {p += $4; f += $6; i += $8}
  END {print p + 0, f + 0, i + 0}' "$log")
skipped_at_run=$(grep -c '' "$skips" || true)
echo
echo "$((passed - skipped_at_run)) passed, $failed failed, $((ignored + skipped_at_run)) skipped"
if [ -s "$skips" ]; then
  sort "$skips"
fi
if [ "${CI:-}" = true ] && [ $((ignored + skipped_at_run)) -gt 0 ]; then
  echo "CI=true: tests were skipped that CI must run" >&2
  rc=1
fi
exit "$rc"
