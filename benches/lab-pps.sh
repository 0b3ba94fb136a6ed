#!/usr/bin/env bash
# 64-byte UDP packets per second through the director when every packet is a new flow, in
# the lab topology (network namespaces; needs root): the kernel's nftables DNAT (conntrack)
# and lvsd on each datapath, side by side in one run, with the ratios.
#
#   sudo benches/lab-pps.sh [seconds]
#
# The generator is trafgen (netsniff-ng, installed with apt-get if missing) on the router's
# link to the director, one CPU, as fast as it goes: UDP to VIP:9, source address random in
# 10.250.0.0/16 and source port random, so (almost) every packet is a flow the balancer has
# not seen. The real servers count what reaches them (rx packets of their interface) and
# drop it at ingress (nftables netdev hook), so nothing answers. Delivered packets per
# second at the real servers over `seconds`, after one second of warm-up, is the figure.
# METHOD (default nat) and DATAPATHS (default "afpacket tc") choose what runs.
#
# On these 2-CPU machines the generator and everything the director's kernel does for a
# packet share one CPU (a veth delivers to its peer on the sending CPU), so the figure is
# that CPU's packets per second: what each balancer costs per packet in the kernel, plus
# the generator's own cost, which is the same for all. lvsd on AF_PACKET does its forwarding
# in its worker thread on the other CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
command -v trafgen >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netsniff-ng >/dev/null; }
scripts/install-deps.sh
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
vip=10.201.2.100
method=${METHOD:-nat}
p="pps$$"
conf=$(mktemp)
"$bin/lvs-lab" up --method "$method" --prefix "$p" --detach >/dev/null
trap '"$bin/lvs-lab" down --prefix "$p" >/dev/null 2>&1 || true; rm -f "$conf"' EXIT

for i in 1 2 3; do
  ip netns exec "$p-rs$i" nft -f - <<NFT
table netdev lvspps {
  chain in { type filter hook ingress device eth0 priority -500; udp dport 9 drop; }
}
NFT
done
# The director's way back to the generated sources (the router), as for any client.
ip netns exec "$p-director" ip route add 10.250.0.0/16 via 10.201.2.1
dmac=$(ip netns exec "$p-director" cat /sys/class/net/eth0/address)
smac=$(ip netns exec "$p-router" cat /sys/class/net/eth1/address)
# 14 + 20 + 8 + 18 = 60 bytes, 64 on the wire with the FCS.
cat >"$conf" <<EOF
{ eth(da=$dmac, sa=$smac), ipv4(da=$vip, sa=drnd($((0x0afa0000)), $((0x0afaffff))), ttl=64), udp(sp=drnd(1024, 65535), dp=9), fill(0x42, 18) }
EOF

delivered() { # packets received by the three real servers so far
  local n=0 i
  for i in 1 2 3; do
    n=$((n + $(ip netns exec "$p-rs$i" cat /sys/class/net/eth0/statistics/rx_packets)))
  done
  echo $n
}

measure() { # prints delivered packets per second
  ip netns exec "$p-router" timeout -s INT $((secs + 2)) trafgen --dev eth1 --conf "$conf" --cpus 1 --no-sock-mem -q >/dev/null 2>&1 &
  local gen=$! c0 c1 t0 t1
  sleep 1
  c0=$(delivered); t0=$(date +%s.%N)
  sleep "$secs"
  c1=$(delivered); t1=$(date +%s.%N)
  wait $gen 2>/dev/null || true
  sleep 1
  awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%d", (b - a) / (e - s) }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 > 0) printf "%.2f", a/b; else printf "-" }'; }

# The kernel's NAT: nftables DNAT with a round-robin map (conntrack makes an entry per flow).
knat=-
if [ "$method" = nat ]; then
  ip netns exec "$p-director" nft -f - <<NFT
table ip lvsbench {
  chain pre {
    type nat hook prerouting priority -100;
    ip daddr $vip udp dport 9 dnat to numgen inc mod 3 map { 0 : 10.201.3.11, 1 : 10.201.3.12, 2 : 10.201.3.13 }
  }
}
NFT
  knat=$(measure)
  ip netns exec "$p-director" nft delete table ip lvsbench
  ip netns exec "$p-director" conntrack -F >/dev/null 2>&1 || true
fi

rows=()
flag=$([ "$method" = nat ] && echo -m || ([ "$method" = dr ] && echo -g || echo -i))
for dp in ${DATAPATHS:-afpacket tc}; do
  sock=/tmp/$p.sock
  # The default table (1,048,576 connections) holds every flow of a run of a few seconds
  # (UDP entries live 300 s).
  ip netns exec "$p-director" "$bin/lvsd" --socket "$sock" --datapath "$dp" --log warn --metrics-listen 127.0.0.1:9199 &
  lvsd=$!
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
  ip netns exec "$p-director" "$bin/lvsadm" --socket "$sock" -A -u $vip:9 -s rr
  for i in 1 2 3; do ip netns exec "$p-director" "$bin/lvsadm" --socket "$sock" -a -u $vip:9 -r 10.201.3.1$i:9 $flag; done
  pps=$(measure)
  stats=$(ip netns exec "$p-director" "$bin/lvsadm" --socket "$sock" -L -n --stats | awk '/^UDP/ {print "conns=" $3 " inpkts=" $4}')
  kernel=$(ip netns exec "$p-director" curl -s -m 5 http://127.0.0.1:9199/metrics | awk -F'[{}" ]+' '/^lvs_kernel_fast_path_total/ && $NF+0 > 0 {printf "%s=%s ", $3, $NF}')
  stats="$stats ${kernel}"
  kill -TERM $lvsd; wait $lvsd || true
  rows+=("$(printf '%-8s %-9s %12s %12s %10s   %s' "$method" "$dp" "$pps" "$knat" "$(ratio "$pps" "$knat")" "$stats")")
done

echo "64-byte UDP, a new flow per packet, trafgen on 1 CPU for ${secs}s (after 1 s of warm-up); delivered packets/s at the real servers"
echo "kernel = nftables DNAT (round robin) on the same director, without lvsd"
printf '%-8s %-9s %12s %12s %10s   %s\n' method datapath "lvsd pps" "kernel pps" "/kernel" "lvsd -L --stats"
printf '%s\n' "${rows[@]}"
