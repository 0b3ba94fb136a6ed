#!/usr/bin/env bash
# Administration at scale: 10,000 services x 10 real servers.
#
# Generates an ipvsadm-save file, starts lvsd in a throw-away network namespace on a dummy
# interface, and times (wall clock)
#   lvsadm -R  < rules      goal < 2 s   (one atomic batch, including nft steering)
#   lvsadm -L -n            goal < 1 s
#   lvsadm -S -n            (and checks it reproduces the input exactly)
# then removes the namespace. Needs root, iproute2 and nft (scripts/install-deps.sh).
#
#   sudo benches/admin-scale.sh [SERVICES] [REALS_PER_SERVICE]
#
# Binaries: $LVSD and $LVSADM, else $CARGO_TARGET_DIR/release (default target/release),
# built here with `cargo build --release` when missing.
set -euo pipefail

SERVICES=${1:-10000}
REALS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LVSD=${LVSD:-$TARGET/release/lvsd}
LVSADM=${LVSADM:-$TARGET/release/lvsadm}

[ "$(id -u)" = 0 ] || { echo "admin-scale.sh: run as root (it creates a network namespace)" >&2; exit 1; }
command -v nft >/dev/null || { echo "admin-scale.sh: nft is missing (scripts/install-deps.sh)" >&2; exit 1; }
if [ ! -x "$LVSD" ] || [ ! -x "$LVSADM" ]; then
    (cd "$ROOT" && cargo build --release -p lvsd -p lvsadm)
fi

NS=lvs-admscale-$$
DIR=$(mktemp -d /tmp/lvs-admscale.XXXXXX)
SOCK=$DIR/lvsd.sock
LVSD_PID=
cleanup() {
    if [ -n "$LVSD_PID" ]; then kill "$LVSD_PID" 2>/dev/null || true; wait "$LVSD_PID" 2>/dev/null || true; fi
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# Rules in the order ipvsadm -S prints them (sorted by address, then port), so -S must give
# the same file back.
awk -v n="$SERVICES" -v r="$REALS" 'BEGIN {
    for (i = 0; i < n; i++) {
        vip = sprintf("10.%d.%d.%d", 1 + int(i / 62500), int(i / 250) % 250, 1 + i % 250);
        printf "-A -t %s:80 -s wlc\n", vip;
        for (j = 0; j < r; j++)
            printf "-a -t %s:80 -r 172.16.%d.%d:8080 -m -w %d\n", vip, int(i / 250) % 250, 1 + (i % 25) * 10 + j, 1 + j;
    }
}' > "$DIR/rules"
LINES=$(wc -l < "$DIR/rules")

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add dum0 type veth peer name dum1
ip -n "$NS" link set dum1 up
ip -n "$NS" link set dum0 up
ip -n "$NS" addr add 192.0.2.1/24 dev dum0

ip netns exec "$NS" "$LVSD" -i dum0 --socket "$SOCK" --log warn > "$DIR/lvsd.log" 2>&1 &
LVSD_PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "lvsd did not start:"; cat "$DIR/lvsd.log"; exit 1; }

adm() { ip netns exec "$NS" "$LVSADM" --socket "$SOCK" "$@"; }

t0=$(now); adm -R < "$DIR/rules"; t1=$(now)
t2=$(now); adm -L -n > "$DIR/list"; t3=$(now)
t4=$(now); adm -S -n > "$DIR/saved"; t5=$(now)
# A second -L -n, warm.
t6=$(now); adm -L -n > /dev/null; t7=$(now)

restore=$(elapsed "$t0" "$t1"); list=$(elapsed "$t2" "$t3"); save=$(elapsed "$t4" "$t5"); list2=$(elapsed "$t6" "$t7")
listed=$(grep -c '^TCP ' "$DIR/list" || true)
reals=$(grep -c '^  -> [0-9[]' "$DIR/list" || true)
same=no; cmp -s "$DIR/rules" "$DIR/saved" && same=yes
steer=$(ip netns exec "$NS" nft list ruleset 2>/dev/null | wc -l)

printf '%s services x %s real servers (%s rule lines, %s bytes)\n' "$SERVICES" "$REALS" "$LINES" "$(wc -c < "$DIR/rules")"
printf '  lvsadm -R     %6s s   (goal < 2 s)  %s\n' "$restore" "$(awk -v t="$restore" 'BEGIN{print (t < 2) ? "ok" : "SLOW"}')"
printf '  lvsadm -L -n  %6s s   (goal < 1 s)  %s   [warm: %s s]\n' "$list" "$(awk -v t="$list" 'BEGIN{print (t < 1) ? "ok" : "SLOW"}')" "$list2"
printf '  lvsadm -S -n  %6s s   output identical to the input: %s\n' "$save" "$same"
printf '  listed: %s services, %s real servers; nft ruleset: %s lines\n' "$listed" "$reals" "$steer"
if grep -qi 'warn\|error' "$DIR/lvsd.log"; then
    echo "  lvsd log (first lines):"; grep -i 'warn\|error' "$DIR/lvsd.log" | head -3 | sed 's/^/    /'
fi
[ "$listed" = "$SERVICES" ] && [ "$same" = yes ]
