#!/usr/bin/env bash
# Listing a large connection table: `lvsadm -L -n -c` on N connection entries (default
# 1,000,000), with the time it takes, the peak resident memory of lvsadm and lvsd while it
# runs, and how long forwarding stalls meanwhile.
#
#   sudo benches/list-conns.sh [N]
#
# The table is filled the honest way, by traffic: in the NAT lab (network namespaces),
# trafgen on the router sends 64-byte UDP datagrams to VIP:9, each from a random source in
# 10.250.0.0/16 and a random port, so almost every datagram is a new flow and a new entry
# (UDP entries live 300 s); the real servers drop them at ingress. lvsd's table holds N
# entries (--conn-limit N): once its counters say so, trafgen stops. Then, while a probe in the client namespace sends one UDP
# datagram every millisecond through the director to the lab's echo servers (VIP:5353) and
# times the answers, lvsadm lists the table to /dev/null under /usr/bin/time -v (its peak
# RSS) with lvsd's peak RSS reset just before (/proc/PID/clear_refs, then VmHWM after).
# Reported: entries listed, wall time, lvsadm's maximum RSS, lvsd's RSS before and its peak
# during the listing, the probe's answers (lost, median, 99th percentile, worst RTT and the
# longest gap between answers) during the listing, and the time each page held the
# director's lock (lvsd's debug log; absent from an lvsd older than paging).
#
# Binaries: $BIN (default $CARGO_TARGET_DIR/release or target/release), built with
# `cargo build --release` when missing. DATAPATH (default afpacket) chooses lvsd's datapath.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
DATAPATH=${DATAPATH:-afpacket}
[ "$(id -u)" = 0 ] || { echo "list-conns.sh: run as root (it builds network namespaces)" >&2; exit 1; }
command -v trafgen >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netsniff-ng >/dev/null; }
command -v nft >/dev/null || scripts/install-deps.sh
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
if [ ! -x "$BIN/lvsd" ] || [ ! -x "$BIN/lvsadm" ] || [ ! -x "$BIN/lvs-lab" ]; then
  cargo build --release -q -p lvsd -p lvsadm -p lvs-lab
fi
vip=10.201.2.100
p="lc$$"
dir=$(mktemp -d /tmp/lvs-listconns.XXXXXX)
sock=$dir/lvsd.sock
lvsd=
gen=
probe=
cleanup() {
  for pid in $probe $gen $lvsd; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  "$BIN/lvs-lab" down --prefix "$p" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

"$BIN/lvs-lab" up --method nat --prefix "$p" --serve --detach >/dev/null
for i in 1 2 3; do
  ip netns exec "$p-rs$i" nft -f - <<NFT
table netdev lvslist {
  chain in { type filter hook ingress device eth0 priority -500; udp dport 9 drop; }
}
NFT
done
ip netns exec "$p-director" ip route add 10.250.0.0/16 via 10.201.2.1
ip netns exec "$p-director" "$BIN/lvsd" --socket "$sock" --datapath "$DATAPATH" --conn-limit "$N" --log warn,lvsd::listing=debug >"$dir/lvsd.log" 2>&1 &
lvsd=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "lvsd did not start:"; cat "$dir/lvsd.log"; exit 1; }
adm() { "$BIN/lvsadm" --socket "$sock" "$@"; }
for port in 9 5353; do
  adm -A -u $vip:$port -s rr
  for i in 1 2 3; do adm -a -u $vip:$port -r 10.201.3.1$i:$port -m; done
done

# Entries in lvsd's table (the control API's counters).
conns() {
  python3 - "$sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"v":1,"op":"counters"}\n')
f = s.makefile()
print(json.loads(f.readline())["conns"])
PY
}

# The probe: one datagram a millisecond from one flow (its entry made before the flood),
# answers timed from SIGUSR1 on; prints and stops at SIGINT.
cat >"$dir/probe.py" <<'PY'
import signal, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.001)
stop = False
def halt(*_):
    global stop; stop = True
def reset(*_):
    global sent, rtts, last, gap, seq
    sent, rtts, last, gap, seq = {}, [], None, 0.0, 0
signal.signal(signal.SIGINT, halt)
signal.signal(signal.SIGUSR1, reset)
reset()
while not stop:
    seq += 1
    sent[seq] = time.monotonic()
    s.sendto(str(seq).encode(), (sys.argv[1], 5353))
    end = time.monotonic() + 0.001
    while time.monotonic() < end:
        try:
            data, _ = s.recvfrom(64)
        except (socket.timeout, BlockingIOError):
            break
        now = time.monotonic()
        k = int(data.split()[-1]) if data.split()[-1].isdigit() else None
        if k in sent:
            rtts.append(now - sent.pop(k))
            if last is not None: gap = max(gap, now - last)
            last = now
rtts.sort()
q = lambda f: rtts[min(len(rtts) - 1, int(f * len(rtts)))] * 1000 if rtts else float("nan")
print(f"probe: {seq} sent, {len(sent)} unanswered, RTT median {q(0.5):.2f} ms, "
      f"p99 {q(0.99):.2f} ms, worst {q(1.0):.1f} ms; longest gap between answers {gap*1000:.1f} ms")
PY
ip netns exec "$p-client" python3 "$dir/probe.py" $vip >"$dir/probe.out" 2>&1 &
probe=$!
sleep 1
dmac=$(ip netns exec "$p-director" cat /sys/class/net/eth0/address)
smac=$(ip netns exec "$p-router" cat /sys/class/net/eth1/address)
cat >"$dir/flood.trafgen" <<EOF
{ eth(da=$dmac, sa=$smac), ipv4(da=$vip, sa=drnd($((0x0afa0000)), $((0x0afaffff))), ttl=64), udp(sp=drnd(1024, 65535), dp=9), fill(0x42, 18) }
EOF
# (timeout: trafgen's worker is a child of its own; timeout signals the whole group.)
ip netns exec "$p-router" timeout 600 trafgen --dev eth1 --conf "$dir/flood.trafgen" --cpus 1 --no-sock-mem -q >/dev/null 2>&1 &
gen=$!
t0=$(date +%s)
while :; do
  n=$(conns)
  [ "$n" -ge "$N" ] && break
  if [ $(( $(date +%s) - t0 )) -gt 300 ]; then echo "the table reached only $n entries in 300 s" >&2; exit 1; fi
  sleep 0.5
done
kill -TERM $gen; wait $gen 2>/dev/null || true; gen=
sleep 1
have=$(conns)
echo "table: $have entries (filled in $(( $(date +%s) - t0 )) s, datapath $DATAPATH)"

sleep 2
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$lvsd/status"; }
before=$(rss VmRSS)
kill -USR1 $probe
echo 5 > "/proc/$lvsd/clear_refs"
/usr/bin/time -v "$BIN/lvsadm" --socket "$sock" -L -n -c >/dev/null 2>"$dir/time.out"
peak=$(rss VmHWM)
sleep 1
kill -INT $probe; wait $probe 2>/dev/null || true; probe=
lines=$("$BIN/lvsadm" --socket "$sock" -L -n -c | wc -l)
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.out")
adm_rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.out")
echo "lvsadm -L -n -c: $((lines - 2)) entries listed, wall $wall, lvsadm max RSS $((adm_rss / 1024)) MiB"
echo "lvsd: RSS before $((before / 1024)) MiB, peak during the listing $((peak / 1024)) MiB (+$(((peak - before) / 1024)) MiB)"
cat "$dir/probe.out"
# Each page's time under the director's lock (lvsd's debug line "connection page").
grep -o 'micros=[0-9]*' "$dir/lvsd.log" | cut -d= -f2 | sort -n | awk '
  { t[NR] = $1; sum += $1 }
  END { if (NR) printf "pages: %d (of both listings), under the lock median %.1f ms, max %.1f ms, %.0f ms in all\n", NR, t[int((NR + 1) / 2)] / 1000, t[NR] / 1000, sum / 1000 }'
