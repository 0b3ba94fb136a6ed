#!/usr/bin/env bash
# The README's main command: NAT, DR and Tun through lvsd in network namespaces, one after
# another, showing which real server answered each request, the client address it saw and the
# director's packet counters. Run as root on a Debian machine with Rust.
# Arguments are passed to `lvs-lab demo` (e.g. --method tun --requests 30).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --bins
exec target/release/lvs-lab demo "$@"
