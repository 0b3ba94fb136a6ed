#!/usr/bin/env bash
# Requests per second through lvsd for each forwarding method, next to the same load sent
# straight to one real server, in the lab topology (network namespaces; needs root).
#
#   sudo benches/lab-http.sh [seconds] [workers]
#
# Uses wrk (installed with apt-get if missing). Keep-alive: one connection carries many
# requests; close: one TCP connection per request (new connections per second).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
workers=${2:-1}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
scripts/install-deps.sh
cargo build --release --bins -q
bin=target/release
vip=10.201.2.100
results=()

run_wrk() { # ns url extra-args...
  local ns=$1 url=$2; shift 2
  ip netns exec "$ns" wrk -t2 -c32 -d"${secs}s" "$@" "$url" 2>/dev/null | awk '/Requests\/sec/ {print int($2)}'
}

for method in nat dr tun; do
  p="lb$$${method:0:1}"
  "$bin/lvs-lab" up --method "$method" --prefix "$p" --serve --detach >/dev/null
  trap '"$bin/lvs-lab" down --prefix "$p" >/dev/null 2>&1 || true' EXIT
  pids=()
  case $method in
    dr) for i in 1 2 3; do ip netns exec "$p-rs$i" "$bin/lvs-realserver" setup --vip $vip --method dr >/dev/null; done ;;
    tun) for i in 1 2 3; do ip netns exec "$p-rs$i" "$bin/lvs-realserver" setup --vip $vip --method tun >/dev/null 2>&1 & pids+=($!); done; sleep 1 ;;
  esac
  sock=/tmp/$p.sock
  ip netns exec "$p-director" "$bin/lvsd" --socket "$sock" --workers "$workers" --log warn &
  lvsd=$!
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
  flag=$([ $method = nat ] && echo -m || ([ $method = dr ] && echo -g || echo -i))
  ip netns exec "$p-director" "$bin/lvsadm" --socket "$sock" -A -t $vip:80 -s rr
  for i in 1 2 3; do ip netns exec "$p-director" "$bin/lvsadm" --socket "$sock" -a -t $vip:80 -r 10.201.3.1$i:80 $flag; done
  ip netns exec "$p-client" curl -s -m 3 http://$vip/ >/dev/null
  via_ka=$(run_wrk "$p-client" http://$vip/)
  via_new=$(run_wrk "$p-client" http://$vip/ -H "Connection: close")
  direct_ka=$(run_wrk "$p-client" http://10.201.3.11/)
  direct_new=$(run_wrk "$p-client" http://10.201.3.11/ -H "Connection: close")
  results+=("$(printf '%-4s %12s %12s %14s %14s' "$method" "$via_ka" "$via_new" "$direct_ka" "$direct_new")")
  kill -TERM $lvsd; wait $lvsd || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  "$bin/lvs-lab" down --prefix "$p" >/dev/null
  trap - EXIT
done
echo "req/s over ${secs}s, wrk -t2 -c32, lvsd --workers $workers (direct = to rs1 without lvsd)"
printf '%-4s %12s %12s %14s %14s\n' method "vip k-alive" "vip close" "direct k-alive" "direct close"
printf '%s\n' "${results[@]}"
