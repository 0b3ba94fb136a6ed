#!/usr/bin/env bash
# Requests per second through lvsd for each forwarding method, next to the same load sent
# straight to one real server, in the lab topology (network namespaces; needs root).
#
#   sudo benches/lab-http.sh [seconds] [workers]
#
# lvsd runs once per datapath in DATAPATHS (default: "afpacket tc"), one after the other on
# the same lab; METHODS (default "nat dr tun") picks the methods. Ratios are printed against
# the kernel's nftables DNAT and against straight-to-one-server, all from this one run.
#
# Uses wrk (installed with apt-get if missing). Keep-alive: one connection carries many
# requests; close: one TCP connection per request (new connections per second).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
workers=${2:-1}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
scripts/install-deps.sh
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
vip=10.201.2.100
results=()

run_wrk() { # ns url extra-args...  (prints 0 when wrk fails)
  local ns=$1 url=$2; shift 2
  local out
  out=$(ip netns exec "$ns" wrk -t2 -c32 -d"${secs}s" "$@" "$url" 2>/dev/null || true)
  echo "$out" | awk '/Requests\/sec/ {r=int($2)} END {print r+0}'
}

# The kernel's own NAT on the same topology, for comparison: nftables DNAT with a
# round-robin map in the director namespace (conntrack un-NATs the replies).
kernel_nat() { # prefix
  ip netns exec "$1-director" nft -f - <<NFT
table ip lvsbench {
  chain pre {
    type nat hook prerouting priority -100;
    ip daddr $vip tcp dport 80 dnat to numgen inc mod 3 map { 0 : 10.201.3.11, 1 : 10.201.3.12, 2 : 10.201.3.13 }
  }
}
NFT
}

for method in ${METHODS:-nat dr tun}; do
  p="lb$$${method:0:1}"
  "$bin/lvs-lab" up --method "$method" --prefix "$p" --serve --detach >/dev/null
  trap '"$bin/lvs-lab" down --prefix "$p" >/dev/null 2>&1 || true' EXIT
  pids=()
  # The client reuses TIME_WAIT ports, or a run of new connections exhausts them.
  ip netns exec "$p-client" sysctl -qw net.ipv4.tcp_tw_reuse=1
  case $method in
    dr) for i in 1 2 3; do ip netns exec "$p-rs$i" "$bin/lvs-realserver" setup --vip $vip --method dr >/dev/null; done ;;
    tun) for i in 1 2 3; do ip netns exec "$p-rs$i" "$bin/lvs-realserver" setup --vip $vip --method tun >/dev/null 2>&1 & pids+=($!); done; sleep 1 ;;
  esac
  # Straight to one real server first (in the NAT lab through the director's kernel
  # forwarding, which lvsd's steering would take over for RIP:80 replies once it serves).
  direct_ka=$(run_wrk "$p-client" http://10.201.3.11/)
  direct_new=$(run_wrk "$p-client" http://10.201.3.11/ -H "Connection: close")
  knat_ka=-; knat_new=-
  if [ $method = nat ]; then
    kernel_nat "$p"
    knat_ka=$(run_wrk "$p-client" http://$vip/)
    knat_new=$(run_wrk "$p-client" http://$vip/ -H "Connection: close")
    ip netns exec "$p-director" nft delete table ip lvsbench
  fi
  for dp in ${DATAPATHS:-afpacket tc}; do
    sock=/tmp/$p.sock
    ip netns exec "$p-director" "$bin/lvsd" --socket "$sock" --workers "$workers" --datapath "$dp" --log warn ${LVSD_EXTRA:-} &
    lvsd=$!
    for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
    flag=$([ $method = nat ] && echo -m || ([ $method = dr ] && echo -g || echo -i))
    ip netns exec "$p-director" "$bin/lvsadm" --socket "$sock" -A -t $vip:80 -s rr
    for i in 1 2 3; do ip netns exec "$p-director" "$bin/lvsadm" --socket "$sock" -a -t $vip:80 -r 10.201.3.1$i:80 $flag; done
    ip netns exec "$p-client" curl -s -m 3 http://$vip/ >/dev/null || true
    via_ka=$(run_wrk "$p-client" http://$vip/)
    via_new=$(run_wrk "$p-client" http://$vip/ -H "Connection: close")
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 > 0) printf "%.2f", a/b; else printf "-" }'; }
    results+=("$(printf '%-4s %-8s %12s %12s %14s %14s %12s %12s %8s %8s %8s %8s' "$method" "$dp" "$via_ka" "$via_new" "$direct_ka" "$direct_new" "$knat_ka" "$knat_new" \
      "$(ratio "$via_ka" "$knat_ka")" "$(ratio "$via_new" "$knat_new")" "$(ratio "$via_ka" "$direct_ka")" "$(ratio "$via_new" "$direct_new")")")
    kill -TERM $lvsd; wait $lvsd || true
  done
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  "$bin/lvs-lab" down --prefix "$p" >/dev/null
  trap - EXIT
done
echo "req/s over ${secs}s each, wrk -t2 -c32, lvsd --workers $workers; direct = to rs1 alone, without lvsd;"
echo "kernel = nftables DNAT (round robin) on the same NAT director, without lvsd; k-a = keep-alive, close = a new connection per request"
printf '%-4s %-8s %12s %12s %14s %14s %12s %12s %8s %8s %8s %8s\n' method datapath "lvsd k-a" "lvsd close" "direct k-a" "direct close" "kernel k-a" "kernel close" "/kern ka" "/kern cl" "/dir ka" "/dir cl"
printf '%s\n' "${results[@]}"
