//! Robustness: thousands of random and mangled frames through NAT, DR and Tun directors.
//!
//! No frame may make [`Director::process`] panic, every `Transmit` must lie inside the buffer
//! (its checksum-offload field inside the frame), and the counters must add up. Unmangled
//! frames that are forwarded must leave with valid checksums, and no frame that fails the
//! director's validation (checked here independently: IPv4 header checksum, source route,
//! TCP data offset, UDP length, martian source, ICMP checksum, TTL) is forwarded; one whose
//! only fault is its TTL may be answered with "time exceeded". Deterministic: a fixed-seed
//! PRNG, so a failure reproduces; the seed and frame number are in the panic message.

use std::net::Ipv4Addr;
use std::time::Duration;

use lvs_core::Time;
use lvs_core::director::{Director, Gso, GsoKind, RxMeta, Verdict};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, SchedulerKind};
use lvs_wire::icmpv4::Icmpv4Packet;
use lvs_wire::ipv4::{Ipv4Packet, Ipv4Repr};
use lvs_wire::protocol;

/// Frames per director.
const FRAMES: usize = 4000;

/// SplitMix64: small, fast, good enough for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// A handful of client endpoints, so that mangled frames often hit established flows.
const CLIENTS: [(Ipv4Addr, u16); 4] = [
    (addr::CLIENT, 40000),
    (addr::CLIENT, 40001),
    (Ipv4Addr::new(203, 0, 113, 7), 5555),
    (Ipv4Addr::new(198, 51, 100, 99), 1024),
];

fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ty: u8,
    code: u8,
    quoted: &[u8],
    quote: usize,
) -> Vec<u8> {
    let q = &quoted[..quoted.len().min(quote)];
    let mut icmp = vec![0u8; 8 + q.len()];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[8..].copy_from_slice(q);
    lvs_core::rewrite::fill_icmp_checksum(&mut icmp);
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: protocol::ICMP,
        payload_len: icmp.len(),
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: false,
    };
    let mut out = vec![0u8; 20 + icmp.len()];
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
    out[20..].copy_from_slice(&icmp);
    out
}

/// A valid frame of the kinds a director sees: client → VIP (TCP, UDP), real server →
/// client replies, ICMP errors quoting either direction, big DF packets, pings.
fn valid_frame(rng: &mut Rng, method: ForwardMethod) -> (RxMeta, [u8; 6], [u8; 6], Vec<u8>) {
    let (client, cport) = rng.pick(&CLIENTS);
    let rs = rng.below(3);
    let rip = addr::RIPS[rs];
    let rport = if method == ForwardMethod::Masq {
        8080
    } else {
        80
    };
    let front = RxMeta {
        ifindex: addr::FRONT,
        ..RxMeta::default()
    };
    let back = RxMeta {
        ifindex: addr::BACK,
        ..RxMeta::default()
    };
    let from_router = (addr::ROUTER_MAC, addr::FRONT_MAC);
    let from_rs = (addr::rs_mac(rs), addr::BACK_MAC);
    let flags = rng.pick(&[
        SYN,
        SYN,
        ACK,
        ACK | PSH,
        FIN | ACK,
        RST,
        SYN | ACK,
        RST | ACK,
        0,
        0xff,
    ]);
    let payload_len = if rng.chance(10) {
        rng.below(1600)
    } else {
        rng.below(200)
    };
    let payload = rng.bytes(payload_len);
    let (meta, (src_mac, dst_mac), ip) = match rng.below(9) {
        0..=2 => {
            let mut s = PacketSpec::tcp((client, cport), (addr::VIP, 80), flags).payload(&payload);
            s.seq = rng.next() as u32;
            s.df = rng.chance(70);
            (front, from_router, s.ip_packet())
        }
        3 => {
            let s = PacketSpec::udp((client, cport), (addr::VIP, 53), &payload);
            let mut ip = s.ip_packet();
            if rng.chance(30) {
                ip[26] = 0;
                ip[27] = 0;
            }
            (front, from_router, ip)
        }
        4 => {
            let s = PacketSpec::tcp((rip, rport), (client, cport), flags).payload(&payload);
            (back, from_rs, s.ip_packet())
        }
        5 => {
            let s = PacketSpec::udp((rip, rport), (client, cport), &payload);
            (back, from_rs, s.ip_packet())
        }
        6 => {
            // Error about a packet we forwarded to the real server (NAT: quotes RIP).
            let q = if rng.chance(50) {
                PacketSpec::udp((client, cport), (rip, rport), &payload).ip_packet()
            } else {
                PacketSpec::tcp((client, cport), (rip, rport), ACK)
                    .payload(&payload)
                    .ip_packet()
            };
            let quote = rng.pick(&[0, 4, 20, 24, 28, 48, 576]);
            let ty = rng.pick(&[3, 11, 4, 5, 0, 8]);
            let ip = icmp_error(
                Ipv4Addr::new(10, 0, 1, 99),
                client,
                ty,
                rng.byte() % 16,
                &q,
                quote,
            );
            (back, from_rs, ip)
        }
        7 => {
            // Error from the client about our reply (quotes VIP → client).
            let q = if rng.chance(50) {
                PacketSpec::udp((addr::VIP, 53), (client, cport), &payload).ip_packet()
            } else {
                PacketSpec::tcp((addr::VIP, 80), (client, cport), ACK)
                    .payload(&payload)
                    .ip_packet()
            };
            let quote = rng.pick(&[0, 4, 20, 24, 28, 48, 576]);
            let ty = rng.pick(&[3, 11, 4, 12, 0, 8]);
            (
                front,
                from_router,
                icmp_error(client, addr::VIP, ty, rng.byte() % 16, &q, quote),
            )
        }
        _ => {
            // Not for a service: other ports, other addresses, IP-in-IP.
            let dst = rng.pick(&[addr::VIP, addr::DIP, rip, Ipv4Addr::new(8, 8, 8, 8)]);
            let mut ip = PacketSpec::tcp((client, cport), (dst, rng.next() as u16), flags)
                .payload(&payload)
                .ip_packet();
            if rng.chance(30) {
                let any = rng.byte();
                ip[9] = rng.pick(&[protocol::IPIP, 132, 47, any]);
                Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
            }
            (front, from_router, ip)
        }
    };
    (meta, src_mac, dst_mac, ip)
}

/// Damage a frame: flip bytes, truncate, corrupt length fields.
fn mangle(rng: &mut Rng, frame: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        match rng.below(9) {
            6 if frame.len() >= 34 => frame[22] = rng.pick(&[0, 1, 2]),
            7 if frame.len() >= 34 => {
                let a: [u8; 4] = rng.pick(&[
                    [0, 0, 0, 0],
                    [127, 0, 0, 1],
                    [169, 254, 9, 9],
                    [224, 0, 0, 5],
                    [255, 255, 255, 255],
                    [240, 1, 2, 3],
                ]);
                frame[26..30].copy_from_slice(&a);
            }
            8 if frame.len() >= 34 && frame[14] == 0x45 => {
                // Grow the header by a source-route (or record-route) option.
                let kind = rng.pick(&[131, 137, 7]);
                let opt = [kind, 7, 4, 10, 0, 0, 1, 0];
                frame.splice(34..34, opt);
                frame[14] = 0x47;
                let tl = u16::from_be_bytes([frame[16], frame[17]]).wrapping_add(8);
                frame[16..18].copy_from_slice(&tl.to_be_bytes());
            }
            0 if !frame.is_empty() => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(frame.len());
                    frame[i] ^= 1 << rng.below(8);
                }
            }
            1 if !frame.is_empty() => {
                // Header bytes are the interesting ones.
                let i = rng.below(frame.len().min(80));
                frame[i] = rng.byte();
            }
            2 => {
                let n = rng.below(frame.len() + 1);
                frame.truncate(n);
            }
            3 if frame.len() >= 18 => {
                // IP total length.
                let v = match rng.below(4) {
                    0 => 0,
                    1 => (frame.len() - 14 + rng.below(64)) as u16,
                    2 => (frame.len() - 14).saturating_sub(rng.below(64)) as u16,
                    _ => rng.next() as u16,
                };
                frame[16..18].copy_from_slice(&v.to_be_bytes());
            }
            4 if frame.len() >= 15 => {
                // IHL, including the options case.
                frame[14] = 0x40 | (rng.byte() & 0x0f);
            }
            _ if frame.len() >= 34 + 14 => {
                // Transport: UDP length, TCP data offset, ICMP quoted header length.
                let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
                if l4 + 14 <= frame.len() {
                    match rng.below(3) {
                        0 => frame[l4 + 4..l4 + 6]
                            .copy_from_slice(&(rng.next() as u16).to_be_bytes()),
                        1 => frame[l4 + 12] = rng.byte(),
                        _ => frame[l4 + 8] = 0x40 | (rng.byte() & 0x0f),
                    }
                }
            }
            _ => {}
        }
    }
    // Half the time the header checksum is made good again, so that what lies behind it is
    // what the director has to judge.
    if rng.chance(50)
        && let Some(ip) = frame.get_mut(14..)
        && let Ok(mut p) = Ipv4Packet::new_checked_truncated(ip)
    {
        p.fill_checksum();
    }
}

fn random_meta(rng: &mut Rng, base: RxMeta) -> RxMeta {
    let mut m = base;
    if rng.chance(10) {
        m.ifindex = rng.pick(&[addr::FRONT, addr::BACK, 0, 77]);
    }
    m.csum_partial = rng.chance(20);
    m.truncated = rng.chance(5);
    m.gso = rng.chance(15).then(|| Gso {
        kind: rng.pick(&[GsoKind::Tcpv4, GsoKind::Tcpv6, GsoKind::Udp, GsoKind::Other]),
        size: rng.pick(&[0, 1, 536, 1448, 1460, u16::MAX]),
    });
    m.fwmark = if rng.chance(5) { rng.next() as u32 } else { 0 };
    m
}

/// A buffer with `start` bytes of headroom, the frame, and some tailroom.
fn buffer(rng: &mut Rng, frame: &[u8]) -> (Vec<u8>, usize) {
    let any = rng.below(128);
    let start = rng.pick(&[0, 1, 13, 19, 20, 21, sim::HEADROOM, any]);
    let any = rng.below(64);
    let tail = rng.pick(&[0, 0, 1, 20, any]);
    let mut buf = rng.bytes(start + frame.len() + tail);
    buf[start..start + frame.len()].copy_from_slice(frame);
    (buf, start)
}

fn check_counters(d: &Director, ctx: &str) {
    let c = d.counters();
    assert_eq!(
        c.rx_frames,
        c.forwarded + c.passed + c.total_drops() + c.segment_requests + c.tx_errors + c.held,
        "{ctx}: counters do not add up: {c:?}"
    );
}

/// Checksums of a forwarded IPv4 frame (inner packet for IP-in-IP, ICMP message for ICMP).
fn forwarded_checksums_ok(frame: &[u8]) -> bool {
    let Some(ip) = frame.get(14..) else {
        return false;
    };
    let Ok(p) = Ipv4Packet::new_checked(ip) else {
        return false;
    };
    if !p.verify_checksum() {
        return false;
    }
    match p.protocol() {
        protocol::IPIP => sim::checksums_ok(p.payload()),
        protocol::ICMP => Icmpv4Packet::new_checked(p.payload()).is_ok_and(|i| i.verify_checksum()),
        _ => sim::checksums_ok(ip),
    }
}

fn run_one(
    d: &mut Director,
    now: Time,
    meta: &RxMeta,
    buf: &mut [u8],
    start: usize,
    len: usize,
    ctx: &str,
) -> Verdict {
    let buf_len = buf.len();
    let v = d.process(now, meta, buf, start, len);
    if let Verdict::Transmit(tx) = v {
        assert!(tx.len >= 14, "{ctx}: runt transmit {tx:?}");
        assert!(
            tx.start.checked_add(tx.len).is_some_and(|e| e <= buf_len),
            "{ctx}: transmit {tx:?} outside the {buf_len}-byte buffer"
        );
        if let Some(c) = tx.csum {
            let field = usize::from(c.start) + usize::from(c.offset) + 2;
            assert!(
                field <= tx.len,
                "{ctx}: checksum offload {c:?} outside the {}-byte frame",
                tx.len
            );
        }
    }
    v
}

fn fuzz_director(method: ForwardMethod, seed: u64) {
    let mut rng = Rng(seed);
    let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
    let mut now = Time::from_secs(1);
    let mut transmitted = 0usize;
    for n in 0..FRAMES {
        let ctx = format!("{method:?} seed {seed:#x} frame {n}");
        now = now + Duration::from_millis(rng.below(2000) as u64);
        if rng.chance(1) {
            now = now + Duration::from_secs(rng.below(1000) as u64);
        }
        if n % 50 == 0 {
            d.expire(now);
        }
        let kind = rng.below(10);
        let (meta, frame, pristine) = match kind {
            0..=1 => {
                // Random bytes.
                let len = rng.below(1600);
                let base = RxMeta {
                    ifindex: rng.pick(&[addr::FRONT, addr::BACK]),
                    ..RxMeta::default()
                };
                (random_meta(&mut rng, base), rng.bytes(len), false)
            }
            2 => {
                // Random bytes behind a plausible Ethernet + IPv4 header.
                let len = 14 + rng.below(1600);
                let mut f = rng.bytes(len);
                f[0..6].copy_from_slice(&addr::FRONT_MAC);
                f[12] = 0x08;
                f[13] = if rng.chance(90) { 0x00 } else { 0xdd };
                if f.len() > 34 {
                    f[14] = 0x45;
                    f[9 + 14] =
                        rng.pick(&[protocol::TCP, protocol::UDP, protocol::ICMP, protocol::IPIP]);
                    f[20..22].fill(0); // not a fragment
                    let dst = rng.pick(&[addr::VIP, addr::RIPS[0], addr::CLIENT]);
                    f[30..34].copy_from_slice(&dst.octets());
                    if rng.chance(50) {
                        let tl = (len - 14) as u16;
                        f[16..18].copy_from_slice(&tl.to_be_bytes());
                    }
                }
                let base = RxMeta {
                    ifindex: addr::FRONT,
                    ..RxMeta::default()
                };
                (random_meta(&mut rng, base), f, false)
            }
            _ => {
                let (base, src, dst, ip) = valid_frame(&mut rng, method);
                let (buf, len) = sim::frame_with(src, dst, &ip);
                let mut f = buf[sim::HEADROOM..sim::HEADROOM + len].to_vec();
                let mangled = rng.chance(50);
                if mangled {
                    mangle(&mut rng, &mut f);
                }
                let meta = if rng.chance(50) {
                    base
                } else {
                    random_meta(&mut rng, base)
                };
                let pristine = !mangled && !meta.csum_partial && !meta.truncated;
                (meta, f, pristine)
            }
        };
        let (mut buf, start) = buffer(&mut rng, &frame);
        // Sometimes claim more (or fewer) bytes than there are.
        let len = match rng.below(20) {
            0 => frame.len() + rng.below(64),
            1 => usize::MAX - rng.below(2),
            2 => frame.len().saturating_sub(rng.below(8)),
            _ => frame.len(),
        };
        let judged = sim::judge(&frame);
        let v = run_one(&mut d, now, &meta, &mut buf, start, len, &ctx);
        if let Verdict::Transmit(tx) = v {
            let out = &buf[tx.start..tx.start + tx.len];
            if len == frame.len() {
                match judged {
                    sim::Judged::Refused(why) => {
                        panic!("{ctx}: forwarded a frame failing validation ({why}): {frame:02x?}")
                    }
                    sim::Judged::TtlOnly => assert!(
                        out.get(23) == Some(&protocol::ICMP) && out.get(34) == Some(&11),
                        "{ctx}: a TTL of 1 or 0 answered otherwise than by time exceeded: {out:02x?}"
                    ),
                    sim::Judged::Any => {}
                }
            }
            transmitted += 1;
            if pristine && len == frame.len() {
                let out = &buf[tx.start..tx.start + tx.len];
                assert!(
                    forwarded_checksums_ok(out),
                    "{ctx}: bad checksums on {v:?}: {out:02x?}"
                );
            }
        }
        check_counters(&d, &ctx);
    }
    eprintln!(
        "{method:?} seed {seed:#x}: {transmitted} transmitted, {:?}",
        d.counters()
    );
    d.expire(now + Duration::from_secs(100_000));
    assert!(
        d.conns().is_empty(),
        "{method:?}: everything expires eventually"
    );
    check_counters(&d, "end");
    assert_eq!(d.counters().rx_frames, FRAMES as u64);
    assert!(
        transmitted > FRAMES / 20,
        "{method:?}: only {transmitted} frames forwarded: the generator is off"
    );
}

#[test]
fn random_frames_through_nat() {
    for seed in [1, 0x5eed] {
        fuzz_director(ForwardMethod::Masq, seed);
    }
}

#[test]
fn random_frames_through_dr() {
    for seed in [2, 0xd1d1] {
        fuzz_director(ForwardMethod::DirectRoute, seed);
    }
}

#[test]
fn random_frames_through_tun() {
    for seed in [3, 0x7777] {
        fuzz_director(ForwardMethod::Tunnel, seed);
    }
}
