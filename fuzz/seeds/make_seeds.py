#!/usr/bin/env python3
"""Write the seed inputs of the `process` fuzz target (see fuzz_targets/process.rs for the
layout: 3 control bytes, then an Ethernet frame). Run from fuzz/: python3 seeds/make_seeds.py"""
import os
import struct

FRONT_MAC = bytes([0x02, 0xd1, 0, 0, 0, 1])
BACK_MAC = bytes([0x02, 0xd1, 0, 0, 0, 2])
ROUTER_MAC = bytes([0x02, 0x77, 0, 0, 0, 1])
RS0_MAC = bytes([0x02, 0x55, 0, 0, 0, 1])
CLIENT = bytes([198, 51, 100, 10])
VIP = bytes([192, 0, 2, 1])
RIP0 = bytes([10, 0, 1, 11])


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip(src, dst, proto, payload, df=True):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0x4000 if df else 0, 64, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def tcp(src, dst, sport, dport, flags, data=b""):
    t = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0) + data
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(t))
    c = csum(pseudo + t)
    return ip(src, dst, 6, t[:16] + struct.pack("!H", c) + t[18:])


def udp(src, dst, sport, dport, data=b""):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(u))
    c = csum(pseudo + u) or 0xFFFF
    return ip(src, dst, 17, u[:6] + struct.pack("!H", c) + u[8:])


def icmp_err(src, dst, quoted):
    m = bytes([3, 1, 0, 0, 0, 0, 0, 0]) + quoted[:28]
    m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
    return ip(src, dst, 1, m, df=False)


def eth(src, dst, payload):
    return dst + src + b"\x08\x00" + payload


front = (ROUTER_MAC, FRONT_MAC)
back = (RS0_MAC, BACK_MAC)
seeds = {
    "syn_nat": (0x00, front, tcp(CLIENT, VIP, 40001, 80, 0x02)),
    "ack_nat": (0x00, front, tcp(CLIENT, VIP, 40000, 80, 0x10, b"GET / HTTP/1.0\r\n\r\n")),
    "reply_nat": (0x80, back, tcp(RIP0, CLIENT, 8080, 40000, 0x18, b"HTTP/1.0 200 OK\r\n")),
    "syn_dr": (0x01, front, tcp(CLIENT, VIP, 40001, 80, 0x02)),
    "ack_tun": (0x02, front, tcp(CLIENT, VIP, 40000, 80, 0x10, b"x" * 100)),
    "big_tun": (0x02, front, tcp(CLIENT, VIP, 40000, 80, 0x10, b"y" * 1460)),
    "gso_tun": (0x12, front, tcp(CLIENT, VIP, 40000, 80, 0x10, b"z" * 3000)),
    "partial_nat": (0x04, front, tcp(CLIENT, VIP, 40000, 80, 0x10, b"p")),
    "udp_nat": (0x00, front, udp(CLIENT, VIP, 5555, 53, b"query")),
    "udp_persist": (0x03, front, udp(CLIENT, VIP, 5555, 53, b"query")),
    "icmp_from_rs_side": (0x80, back, icmp_err(bytes([10, 0, 1, 99]), CLIENT, tcp(CLIENT, RIP0, 40000, 8080, 0x10))),
    "icmp_from_client": (0x00, front, icmp_err(CLIENT, VIP, tcp(VIP, CLIENT, 80, 40000, 0x10))),
}
os.makedirs("seeds/process", exist_ok=True)
for name, (ctl, (src, dst), packet) in seeds.items():
    with open(f"seeds/process/{name}", "wb") as f:
        f.write(bytes([ctl, 64, 8]) + eth(src, dst, packet))
