#!/usr/bin/env bash
# Installs the system packages lvsd, the lab and the tests need on a fresh Debian machine.
set -euo pipefail
need=()
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The kernel fast path (crates/bpf): clang builds the BPF C programs against the kernel's UAPI
# headers and libbpf's; libbpf-sys builds the vendored libbpf with libelf and zlib.
command -v clang >/dev/null 2>&1 || need+=(clang)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The SYN-flood test (tests/flood.rs) and benches/lab-pps.sh generate frames with trafgen.
command -v trafgen >/dev/null 2>&1 || need+=(netsniff-ng)
# The XDP test (tests/xdp.rs) turns checksum offload off and GRO on on the lab's veths.
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The metrics tests parse lvsd's /metrics with the reference OpenMetrics parser, Python's
# prometheus_client: from PyPI into the python3 on PATH, else Debian's package (for
# /usr/bin/python3, where pip is missing or the system Python is externally managed).
if ! python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1; then
  echo "installing: prometheus-client (Python)"
  if ! python3 -m pip install -q --root-user-action=ignore prometheus-client >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-prometheus-client >/dev/null
  fi
fi
