#!/usr/bin/env bash
# Build the Debian package lvs-rs_VERSION_ARCH.deb from this checkout, with dpkg-deb (no
# debhelper, no maintainer scripts: installing does not start or enable anything).
#
#   scripts/build-deb.sh [--profile release|dev] [--out DIR] [--no-compress]
#
# It holds lvsd, lvsadm and lvs-realserver in /usr/sbin, the systemd unit
# (/usr/lib/systemd/system/lvsd.service, not enabled), the man pages, the example
# configuration and the documentation under /usr/share/doc/lvs-rs, and bash completions.
# The package's own file list is printed at the end (dpkg-deb --contents).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=target/deb
compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-compress) compress=(-Znone); shift ;;
    *) echo "usage: $0 [--profile release|dev] [--out DIR] [--no-compress]" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) dir=target/release ;;
  dev) dir=target/debug ;;
  *) echo "$0: unknown profile '$profile' (release or dev)" >&2; exit 2 ;;
esac
for tool in dpkg-deb dpkg gzip; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (Debian's dpkg package)" >&2; exit 1; }
done

cargo build --profile "$profile" --bins -p lvsd -p lvsadm -p lvs-realserver
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/lvs-rs"

install -d "$root/DEBIAN" "$root/usr/sbin" "$root/usr/lib/systemd/system" \
  "$root/usr/share/man/man8" "$root/usr/share/doc/lvs-rs/examples" \
  "$root/usr/share/bash-completion/completions"
for b in lvsd lvsadm lvs-realserver; do
  install -m 0755 "$dir/$b" "$root/usr/sbin/$b"
done
install -m 0644 dist/lvsd.service "$root/usr/lib/systemd/system/lvsd.service"
for m in lvsd lvsadm lvs-realserver; do
  gzip -9n < "docs/man/$m.8" > "$root/usr/share/man/man8/$m.8.gz"
done
install -m 0644 dist/lvsd.toml.example "$root/usr/share/doc/lvs-rs/examples/lvsd.toml.example"
install -m 0644 README.md "$root/usr/share/doc/lvs-rs/README.md"
for d in docs/*.md; do
  install -m 0644 "$d" "$root/usr/share/doc/lvs-rs/$(basename "$d")"
done
install -m 0644 docs/grafana-dashboard.json "$root/usr/share/doc/lvs-rs/examples/grafana-dashboard.json"
cat > "$root/usr/share/doc/lvs-rs/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lvs-rs
License: $(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -1)
EOF
install -m 0644 dist/lvsadm.bash-completion "$root/usr/share/bash-completion/completions/lvsadm"
"$dir/lvsd" --completions bash > "$root/usr/share/bash-completion/completions/lvsd"

size=$(du -sk "$root/usr" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: lvs-rs
Version: $version
Architecture: $arch
Maintainer: lvs-rs developers <lvs-rs@localhost>
Installed-Size: $size
Depends: libc6, libelf1, zlib1g, nftables, iproute2
Section: net
Priority: optional
Homepage: https://github.com/lvs-rs/lvs-rs
Description: Linux Virtual Server director in Rust (NAT, DR, Tun)
 lvsd forwards client connections to real servers with the three LVS methods,
 in the kernel (eBPF at tc ingress) or through AF_PACKET; lvsadm speaks ipvsadm's
 syntax and output formats; lvs-realserver prepares real servers for DR and Tun.
EOF

mkdir -p "$out"
deb="$out/lvs-rs_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
