#!/usr/bin/env python3
"""Hostile frames for a director's front interface: the corpus of issue 11.

Each frame is addressed to the director's MAC and to a virtual service (TCP VIP:80 or UDP
VIP:5353) and is one thing a director must not forward: a bad IPv4 header checksum, a source
route, a bad TCP data offset or UDP length, a truncated packet, a martian, spoofed or
broadcast source, a TTL that runs out, a fragment, a VLAN tag; and valid frames for another
host's MAC. Built with struct only (no
scapy), sent with an AF_PACKET socket, so it needs root (run it in the namespace of the link).

    hostile_frames.py --dev eth1 --dst-mac M --src-mac M --vip A --dip A --front-ip A \\
        --rip A --front-net A/N --back-net A/N [--repeat N] [--list]

Prints one JSON object: frame name -> [what lvsd must count it as, frames sent]. The reason
is a drop reason of lvs_core::DropReason, "passed" (left to the kernel: VLAN-tagged frames
belong to the VLAN's interface), or "other_host" (for another host: the kernel drops it). With --list it sends nothing.
"""

import argparse
import ipaddress
import json
import socket
import struct
import sys


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ttl=64, options=b"", frag=0x4000, ident=0x1234,
         total=None, bad_csum=False):
    ihl = 5 + len(options) // 4
    tl = total if total is not None else ihl * 4 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tl, ident, frag, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst)) + options
    c = csum(hdr)
    if bad_csum:
        c ^= 0x5555
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def tcp(src, dst, sport, dport, flags=0x02, doff=5, payload=b""):
    opts = b"\0" * max(0, (min(doff, 15) - 5) * 4) if doff >= 5 else b""
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 0x1000, 0, (doff & 0xF) << 4, flags,
                      64240, 0, 0) + opts
    seg = hdr + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(seg))
    c = csum(pseudo + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src, dst, sport, dport, payload=b"q", length=None):
    ln = length if length is not None else 8 + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, ln, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, 8 + len(payload))
    c = csum(pseudo + hdr + payload) or 0xFFFF
    return hdr[:6] + struct.pack("!H", c) + payload


def eth(dst_mac, src_mac, payload, vlan=None):
    d = bytes.fromhex(dst_mac.replace(":", ""))
    s = bytes.fromhex(src_mac.replace(":", ""))
    if vlan is not None:
        return d + s + struct.pack("!HHH", 0x8100, vlan, 0x0800) + payload
    return d + s + struct.pack("!H", 0x0800) + payload


def corpus(a):
    vip, client = a.vip, "203.0.113.7"
    front = ipaddress.ip_network(a.front_net, strict=False)
    back = ipaddress.ip_network(a.back_net, strict=False)
    out = []

    def syn(src=client, sport=40001, **kw):
        t = kw.pop("tcp", {})
        return ipv4(src, vip, 6, tcp(src, vip, sport, 80, **t), **kw)

    def dgram(src=client, sport=40002, **kw):
        u = kw.pop("udp", {})
        return ipv4(src, vip, 17, udp(src, vip, sport, 5353, **u), **kw)

    def add(name, reason, ip, vlan=None, dst_mac=None):
        out.append((name, reason, eth(dst_mac or a.dst_mac, a.src_mac, ip, vlan)))

    add("tcp_bad_ip_checksum", "bad_checksum", syn(bad_csum=True))
    add("udp_bad_ip_checksum", "bad_checksum", dgram(bad_csum=True))
    lsrr = struct.pack("!BBB4sB", 131, 7, 4, socket.inet_aton(a.rip), 0)
    ssrr = struct.pack("!BBB4sB", 137, 7, 4, socket.inet_aton(a.rip), 0)
    add("loose_source_route", "source_route", syn(options=lsrr))
    add("strict_source_route", "source_route", dgram(options=ssrr))
    add("ip_option_length_zero", "malformed", syn(options=b"\x07\x00\x00\x00"))
    add("tcp_data_offset_4", "malformed", syn(tcp={"doff": 4}))
    # A data offset of 15 claims a 60-byte header in a 20-byte segment.
    seg = bytearray(tcp(client, vip, 40003, 80))
    seg[12] = 15 << 4
    add("tcp_data_offset_past_the_segment", "malformed", ipv4(client, vip, 6, bytes(seg)))
    add("udp_length_too_long", "malformed", dgram(udp={"length": 200}))
    add("udp_length_too_short", "malformed", dgram(udp={"length": 7}))
    add("udp_length_zero", "malformed", dgram(udp={"length": 0}))
    add("ip_total_length_past_the_frame", "malformed", syn(total=400))
    for name, src in [
        ("source_unspecified", "0.0.0.0"),
        ("source_this_network", "0.1.2.3"),
        ("source_loopback", "127.0.0.1"),
        ("source_link_local", "169.254.10.10"),
        ("source_multicast", "224.0.0.251"),
        ("source_reserved", "240.0.0.1"),
        ("source_limited_broadcast", "255.255.255.255"),
    ]:
        add(f"tcp_{name}", "martian_source", syn(src=src))
        add(f"udp_{name}", "martian_source", dgram(src=src))
    # A real server's address is not among them: it may be a client of another service.
    for name, src in [("vip", vip), ("dip", a.dip), ("front_address", a.front_ip)]:
        add(f"tcp_source_{name}", "spoofed_source", syn(src=src))
        add(f"udp_source_{name}", "spoofed_source", dgram(src=src))
    for name, net in [("front", front), ("back", back)]:
        b = str(net.broadcast_address)
        add(f"tcp_source_{name}_broadcast", "broadcast_source", syn(src=b))
        add(f"udp_source_{name}_broadcast", "broadcast_source", dgram(src=b))
    add("tcp_ttl_1", "ttl_exceeded", syn(ttl=1, sport=40010))
    add("tcp_ttl_0", "ttl_exceeded", syn(ttl=0, sport=40011))
    add("udp_ttl_1", "ttl_exceeded", dgram(ttl=1, sport=40012))
    # A first fragment (MF set) of a datagram to the UDP service.
    add("udp_first_fragment", "fragment", dgram(frag=0x2000, udp={"payload": b"x" * 64}))
    add("tcp_syn_vlan_100", "passed", syn(sport=40020), vlan=100)
    add("udp_vlan_100", "passed", dgram(sport=40021), vlan=100)
    # Valid, but for another host's MAC (flooded by a switch): the kernel drops it, as
    # IPVS never sees it; lvsd counts nothing of it (the kernel program: not_ours).
    other = "02:00:00:0f:0f:0f"
    add("tcp_syn_for_another_host", "other_host", syn(sport=40030), dst_mac=other)
    add("udp_for_another_host", "other_host", dgram(sport=40031), dst_mac=other)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k in ["dev", "dst-mac", "src-mac", "vip", "dip", "front-ip", "rip", "front-net", "back-net"]:
        p.add_argument(f"--{k}", required=k != "dev")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--list", action="store_true")
    a = p.parse_args()
    frames = corpus(a)
    if not a.list:
        if not a.dev:
            sys.exit("--dev is needed to send")
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((a.dev, 0))
        for _ in range(a.repeat):
            for _, _, f in frames:
                s.send(f)
    n = 0 if a.list else a.repeat
    print(json.dumps({name: [reason, n] for name, reason, _ in frames}))


if __name__ == "__main__":
    main()
