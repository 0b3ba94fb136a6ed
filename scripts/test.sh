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
# Everything once: the end-to-end tests run lvsd with --datapath afpacket (every packet
# through user space)...
cargo test --workspace --no-fail-fast
# ...and the end-to-end tests again on the kernel fast path (eBPF at tc ingress); the restart
# tests, which always use it, ran above.
LVS_E2E_DATAPATH=tc cargo test --workspace --no-fail-fast -- --skip restart_and_kill9
