//! Deterministic simulations: whole client ↔ director ↔ real server exchanges driven through
//! the core in virtual time, for each forwarding method.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use lvs_core::conn::TcpState;
use lvs_core::director::{Director, RxMeta, Tx, Verdict};
use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, Netmask, Persistence, Protocol, SchedulerKind, ServiceKey};
use lvs_core::{DropReason, Time};
use lvs_wire::ipv4::Ipv4Packet;
use lvs_wire::protocol;

const CPORT: u16 = 40000;

fn front() -> RxMeta {
    RxMeta {
        ifindex: addr::FRONT,
        ..RxMeta::default()
    }
}

fn back() -> RxMeta {
    RxMeta {
        ifindex: addr::BACK,
        ..RxMeta::default()
    }
}

/// Feed a frame; return the verdict and the transmitted frame bytes.
fn run(d: &mut Director, now: Time, meta: RxMeta, spec: &PacketSpec) -> (Verdict, Vec<u8>) {
    let (mut buf, len) = spec.frame();
    let v = d.process(now, &meta, &mut buf, sim::HEADROOM, len);
    let out = match v {
        Verdict::Transmit(Tx { start, len, .. }) => buf[start..start + len].to_vec(),
        _ => Vec::new(),
    };
    (v, out)
}

fn client_pkt(flags: u8) -> PacketSpec {
    PacketSpec::tcp((addr::CLIENT, CPORT), (addr::VIP, 80), flags)
}

fn ip_of(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    Ipv4Packet::new_checked(&frame[14..]).expect("an IPv4 frame")
}

fn dest_counts(d: &Director, key: &ServiceKey, i: usize) -> (u32, u32) {
    let svc = d.services().get(d.services().find(key).unwrap()).unwrap();
    let dest = &svc.dests()[i];
    (dest.active, dest.inactive)
}

fn conn_state(d: &Director) -> Option<TcpState> {
    d.conns()
        .iter()
        .find(|(_, c)| !c.is_template())
        .map(|(_, c)| c.state)
}

#[test]
fn nat_full_tcp_exchange() {
    let key = sim::http_service();
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let mut now = Time::from_secs(1);

    // SYN: scheduled to the first real server, destination rewritten to RIP:8080.
    let (v, out) = run(&mut d, now, front(), &client_pkt(SYN));
    let Verdict::Transmit(tx) = v else {
        panic!("SYN not forwarded: {v:?}")
    };
    assert_eq!(tx.ifindex, addr::BACK);
    assert_eq!(&out[0..6], &addr::rs_mac(0), "dst MAC is the real server's");
    assert_eq!(&out[6..12], &addr::BACK_MAC);
    let ip = ip_of(&out);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (addr::CLIENT, addr::RIPS[0]),
        "client address kept"
    );
    assert_eq!(u16::from_be_bytes([ip.payload()[2], ip.payload()[3]]), 8080);
    assert!(sim::checksums_ok(&out[14..]), "checksums valid after NAT");
    assert_eq!(conn_state(&d), Some(TcpState::SynRecv));
    assert_eq!(dest_counts(&d, &key, 0), (0, 1));

    // SYN-ACK from the real server: source rewritten back to VIP:80, out to the router.
    now = now + Duration::from_millis(1);
    let reply = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), SYN | ACK)
        .macs(addr::rs_mac(0), addr::BACK_MAC);
    let (v, out) = run(&mut d, now, back(), &reply);
    let Verdict::Transmit(tx) = v else {
        panic!("SYN-ACK not forwarded: {v:?}")
    };
    assert_eq!(tx.ifindex, addr::FRONT);
    assert_eq!(&out[0..6], &addr::ROUTER_MAC);
    let ip = ip_of(&out);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (addr::VIP, addr::CLIENT));
    assert_eq!(u16::from_be_bytes([ip.payload()[0], ip.payload()[1]]), 80);
    assert!(sim::checksums_ok(&out[14..]));

    // ACK: established, active.
    let (v, _) = run(
        &mut d,
        now,
        front(),
        &client_pkt(ACK).payload(b"GET / HTTP/1.0\r\n\r\n"),
    );
    assert!(matches!(v, Verdict::Transmit(_)));
    assert_eq!(conn_state(&d), Some(TcpState::Established));
    assert_eq!(dest_counts(&d, &key, 0), (1, 0));

    // Data back, then the close: client FIN, server FIN, client ACK.
    let data = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), ACK | PSH)
        .macs(addr::rs_mac(0), addr::BACK_MAC)
        .payload(&[7u8; 1000]);
    assert!(matches!(
        run(&mut d, now, back(), &data).0,
        Verdict::Transmit(_)
    ));
    run(&mut d, now, front(), &client_pkt(FIN | ACK));
    assert_eq!(conn_state(&d), Some(TcpState::CloseWait));
    assert_eq!(dest_counts(&d, &key, 0), (0, 1));
    let fin = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), FIN | ACK)
        .macs(addr::rs_mac(0), addr::BACK_MAC);
    run(&mut d, now, back(), &fin);
    assert_eq!(conn_state(&d), Some(TcpState::TimeWait));
    run(&mut d, now, front(), &client_pkt(ACK));

    // Counters: both directions seen in NAT.
    let svc = d.services().get(0).unwrap();
    assert_eq!(svc.stats.conns, 1);
    assert_eq!(svc.stats.inpkts, 4);
    assert_eq!(svc.stats.outpkts, 3);
    assert_eq!(svc.dests()[0].stats.outbytes, 40 + 1040 + 40);

    // TIME_WAIT lasts 120 s, then the entry and the counts are gone.
    d.expire(now + Duration::from_secs(119));
    assert_eq!(d.conns().len(), 1);
    d.expire(now + Duration::from_secs(121));
    assert_eq!(d.conns().len(), 0);
    assert_eq!(dest_counts(&d, &key, 0), (0, 0));
    assert_eq!(d.counters().conns_expired, 1);
}

#[test]
fn dr_forwards_the_ip_packet_and_tracks_input_only() {
    let key = sim::http_service();
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    let now = Time::from_secs(5);
    for (i, flags) in [SYN, ACK, ACK | PSH].into_iter().enumerate() {
        let spec = client_pkt(flags).payload(&vec![1u8; i * 100]);
        let original = spec.ip_packet();
        let (v, out) = run(&mut d, now, front(), &spec);
        let Verdict::Transmit(tx) = v else {
            panic!("{v:?}")
        };
        assert_eq!(tx.ifindex, addr::BACK);
        assert_eq!(&out[0..6], &addr::rs_mac(0));
        assert_eq!(&out[6..12], &addr::BACK_MAC);
        assert_eq!(
            &out[14..],
            &sim::after_hop(&original)[..],
            "DR leaves the IP packet untouched but for the TTL"
        );
    }
    assert_eq!(conn_state(&d), Some(TcpState::Established));
    assert_eq!(dest_counts(&d, &key, 0), (1, 0));
    // Client FIN: INPUT_ONLY goes to FIN_WAIT (no CLOSE_WAIT without seeing replies).
    run(&mut d, now, front(), &client_pkt(FIN | ACK));
    assert_eq!(conn_state(&d), Some(TcpState::FinWait));
    let svc = d.services().get(0).unwrap();
    assert_eq!(
        (svc.stats.inpkts, svc.stats.outpkts),
        (4, 0),
        "no reply passes a DR director"
    );
    // FIN_WAIT: 120 s.
    d.expire(now + Duration::from_secs(121));
    assert!(d.conns().is_empty());
}

#[test]
fn tun_encapsulates_and_decapsulates_to_the_original() {
    let mut d = sim::director(ForwardMethod::Tunnel, SchedulerKind::Rr, Time::ZERO);
    let spec = client_pkt(SYN);
    let original = spec.ip_packet();
    let (v, out) = run(&mut d, Time::from_secs(1), front(), &spec);
    let Verdict::Transmit(tx) = v else {
        panic!("{v:?}")
    };
    assert_eq!(
        tx.start,
        sim::HEADROOM - 20,
        "outer header takes 20 bytes of headroom"
    );
    assert_eq!(&out[0..6], &addr::rs_mac(0));
    let outer = ip_of(&out);
    assert!(outer.verify_checksum());
    assert_eq!(outer.protocol(), protocol::IPIP);
    assert_eq!(
        (outer.src_addr(), outer.dst_addr()),
        (addr::DIP, addr::RIPS[0])
    );
    assert!(outer.dont_frag(), "DF copied from the inner packet");
    assert_eq!(
        outer.payload(),
        &sim::after_hop(&original)[..],
        "inner packet intact but for the TTL"
    );
}

#[test]
fn tun_too_big_df_gets_frag_needed_with_mtu_minus_20() {
    let mut d = sim::director(ForwardMethod::Tunnel, SchedulerKind::Rr, Time::ZERO);
    // 1500-byte IP packet with DF.
    let spec = client_pkt(SYN).payload(&vec![0u8; 1460]);
    assert_eq!(spec.ip_packet().len(), 1500);
    let (v, out) = run(&mut d, Time::from_secs(1), front(), &spec);
    let Verdict::Transmit(tx) = v else {
        panic!("{v:?}")
    };
    assert_eq!(
        tx.ifindex,
        addr::FRONT,
        "the error goes back where the packet came from"
    );
    assert_eq!(&out[0..6], &addr::ROUTER_MAC);
    let ip = ip_of(&out);
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src_addr(), ip.dst_addr(), ip.protocol()),
        (addr::VIP, addr::CLIENT, protocol::ICMP)
    );
    assert!(ip.total_len() as usize <= 576);
    let icmp = lvs_wire::icmpv4::Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(
        (icmp.msg_type(), icmp.msg_code(), icmp.next_hop_mtu()),
        (3, 4, 1480)
    );
    let quoted = Ipv4Packet::new_checked_truncated(icmp.data()).unwrap();
    assert_eq!(
        (quoted.src_addr(), quoted.dst_addr()),
        (addr::CLIENT, addr::VIP)
    );
    assert_eq!(d.counters().icmp_sent, 1);

    // 1480 bytes fits exactly.
    let spec =
        PacketSpec::tcp((addr::CLIENT, CPORT + 1), (addr::VIP, 80), SYN).payload(&vec![0u8; 1440]);
    assert!(matches!(
        run(&mut d, Time::from_secs(1), front(), &spec).0,
        Verdict::Transmit(Tx {
            ifindex: addr::BACK,
            ..
        })
    ));
}

#[test]
fn udp_request_reply_and_timeout() {
    let key = sim::udp_service();
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let q = PacketSpec::udp((addr::CLIENT, 5555), (addr::VIP, 53), b"query");
    let (v, out) = run(&mut d, Time::from_secs(1), front(), &q);
    assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
    assert!(sim::checksums_ok(&out[14..]));
    let r = PacketSpec::udp((addr::RIPS[0], 8080), (addr::CLIENT, 5555), b"answer")
        .macs(addr::rs_mac(0), addr::BACK_MAC);
    let (v, out) = run(&mut d, Time::from_secs(1), back(), &r);
    assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
    assert_eq!(ip_of(&out).src_addr(), addr::VIP);
    assert!(sim::checksums_ok(&out[14..]));
    assert_eq!(
        dest_counts(&d, &key, 0),
        (0, 1),
        "UDP entries count as inactive, as in IPVS"
    );
    d.expire(Time::from_secs(300));
    assert_eq!(d.conns().len(), 1);
    d.expire(Time::from_secs(302));
    assert_eq!(d.conns().len(), 0);
}

#[test]
fn udp_checksum_zero_stays_zero() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let mut ip = PacketSpec::udp((addr::CLIENT, 5555), (addr::VIP, 53), b"q").ip_packet();
    ip[26] = 0;
    ip[27] = 0;
    let (mut buf, len) = sim::frame_with(addr::ROUTER_MAC, addr::FRONT_MAC, &ip);
    let v = d.process(Time::from_secs(1), &front(), &mut buf, sim::HEADROOM, len);
    let Verdict::Transmit(tx) = v else {
        panic!("{v:?}")
    };
    let out = &buf[tx.start..tx.start + tx.len];
    assert_eq!(&out[14 + 26..14 + 28], &[0, 0]);
    assert!(ip_of(out).verify_checksum());
}

#[test]
fn non_syn_without_connection_is_dropped_and_counted() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let (v, _) = run(&mut d, Time::from_secs(1), front(), &client_pkt(ACK));
    assert_eq!(v, Verdict::Drop(DropReason::NoConnection));
    assert_eq!(d.counters().drops(DropReason::NoConnection), 1);
    assert!(d.conns().is_empty());
}

#[test]
fn traffic_not_for_a_service_passes_to_the_kernel() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let ssh = PacketSpec::tcp((addr::CLIENT, CPORT), (addr::VIP, 22), SYN);
    assert_eq!(run(&mut d, Time::ZERO, front(), &ssh).0, Verdict::Pass);
    let mut arp = vec![0u8; sim::HEADROOM + 42];
    arp[sim::HEADROOM + 12] = 0x08;
    arp[sim::HEADROOM + 13] = 0x06;
    assert_eq!(
        d.process(Time::ZERO, &front(), &mut arp, sim::HEADROOM, 42),
        Verdict::Pass
    );
}

#[test]
fn round_robin_spreads_twelve_connections_four_each() {
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    let mut hits = [0usize; 3];
    for i in 0..12u16 {
        let spec = PacketSpec::tcp((addr::CLIENT, 30000 + i), (addr::VIP, 80), SYN);
        let (v, out) = run(&mut d, Time::from_secs(1), front(), &spec);
        assert!(matches!(v, Verdict::Transmit(_)));
        let mac: [u8; 6] = out[0..6].try_into().unwrap();
        let i = (0..3).find(|&i| addr::rs_mac(i) == mac).unwrap();
        hits[i] += 1;
    }
    assert_eq!(hits, [4, 4, 4]);
}

#[test]
fn quiescent_server_keeps_its_connections_but_gets_no_new_ones() {
    let key = sim::http_service();
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    let now = Time::from_secs(1);
    run(&mut d, now, front(), &client_pkt(SYN));
    d.edit_dest(
        &key,
        DestConfig::new(IpAddr::V4(addr::RIPS[0]), 80, ForwardMethod::DirectRoute).with_weight(0),
    )
    .unwrap();
    let (_, out) = run(&mut d, now, front(), &client_pkt(ACK));
    assert_eq!(
        &out[0..6],
        &addr::rs_mac(0),
        "existing connection continues"
    );
    for i in 0..6u16 {
        let (_, out) = run(
            &mut d,
            now,
            front(),
            &PacketSpec::tcp((addr::CLIENT, 1000 + i), (addr::VIP, 80), SYN),
        );
        assert_ne!(
            &out[0..6],
            &addr::rs_mac(0),
            "no new connection to a quiescent server"
        );
    }
}

#[test]
fn removed_server_connections_continue_unless_expire_nodest_conn() {
    let key = sim::http_service();
    for expire_nodest in [false, true] {
        let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
        d.set_policy(expire_nodest, false, 1);
        let now = Time::from_secs(1);
        run(&mut d, now, front(), &client_pkt(SYN));
        d.delete_dest(&key, IpAddr::V4(addr::RIPS[0]), 80).unwrap();
        let (v, out) = run(&mut d, now, front(), &client_pkt(ACK));
        if expire_nodest {
            assert_eq!(v, Verdict::Drop(DropReason::DestRemoved));
            assert!(d.conns().is_empty());
        } else {
            assert_eq!(&out[0..6], &addr::rs_mac(0), "kept until it ends");
            d.expire(now + Duration::from_secs(1000));
            assert!(d.conns().is_empty());
        }
        // The trash entry is gone once its connections ended; adding it back works.
        d.add_dest(
            &key,
            DestConfig::new(IpAddr::V4(addr::RIPS[0]), 80, ForwardMethod::DirectRoute),
        )
        .unwrap();
    }
}

#[test]
fn persistence_sticks_a_client_network_to_one_server() {
    let key = sim::http_service();
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    let mut cfg = ServiceConfig::new(key).with_scheduler(SchedulerKind::Rr);
    cfg.persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        netmask: Netmask::V4(24),
    });
    d.edit_service(cfg).unwrap();
    let now = Time::from_secs(1);
    let mut macs = Vec::new();
    for i in 0..5u8 {
        // Different clients in the same /24, different ports.
        let client = Ipv4Addr::new(198, 51, 100, 10 + i);
        let (v, out) = run(
            &mut d,
            now,
            front(),
            &PacketSpec::tcp((client, 2000 + u16::from(i)), (addr::VIP, 80), SYN),
        );
        assert!(matches!(v, Verdict::Transmit(_)));
        macs.push(out[0..6].to_vec());
    }
    assert!(
        macs.windows(2).all(|w| w[0] == w[1]),
        "all on one server: {macs:?}"
    );
    let svc = d.services().get(0).unwrap();
    assert_eq!(svc.dests()[0].persistent, 1);
    // Another /24 goes elsewhere (rr moves on).
    let (_, out) = run(
        &mut d,
        now,
        front(),
        &PacketSpec::tcp((Ipv4Addr::new(203, 0, 113, 5), 1), (addr::VIP, 80), SYN),
    );
    assert_ne!(out[0..6].to_vec(), macs[0]);
    // The template outlives its connections by the persistence timeout.
    d.expire(now + Duration::from_secs(61)); // SYN_RECV entries expire
    assert_eq!(
        d.conns().iter().filter(|(_, c)| !c.is_template()).count(),
        0
    );
    assert_eq!(d.conns().iter().filter(|(_, c)| c.is_template()).count(), 2);
    d.expire(now + Duration::from_secs(61 + 301));
    assert!(d.conns().is_empty());
    assert_eq!(d.services().get(0).unwrap().dests()[0].persistent, 0);
}

#[test]
fn thresholds_mark_overloaded_and_clear() {
    let key = sim::http_service();
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    for (i, rip) in addr::RIPS.iter().enumerate() {
        let mut c = DestConfig::new(IpAddr::V4(*rip), 80, ForwardMethod::DirectRoute);
        if i == 0 {
            c.upper_threshold = 2;
            c.lower_threshold = 1;
        } else {
            c.weight = 0;
        }
        d.edit_dest(&key, c).unwrap();
    }
    let now = Time::from_secs(1);
    for p in 0..2u16 {
        assert!(matches!(
            run(
                &mut d,
                now,
                front(),
                &PacketSpec::tcp((addr::CLIENT, 100 + p), (addr::VIP, 80), SYN)
            )
            .0,
            Verdict::Transmit(_)
        ));
    }
    assert!(d.services().get(0).unwrap().dests()[0].overloaded);
    let (v, _) = run(
        &mut d,
        now,
        front(),
        &PacketSpec::tcp((addr::CLIENT, 200), (addr::VIP, 80), SYN),
    );
    assert_eq!(v, Verdict::Drop(DropReason::NoRealServer));
    // SYN_RECV entries expire after 60 s: total drops below the lower threshold.
    d.expire(now + Duration::from_secs(61));
    assert!(!d.services().get(0).unwrap().dests()[0].overloaded);
}

#[test]
fn syn_on_time_wait_entry_is_rescheduled() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let now = Time::from_secs(1);
    run(&mut d, now, front(), &client_pkt(SYN));
    let fin = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), FIN | ACK)
        .macs(addr::rs_mac(0), addr::BACK_MAC);
    run(&mut d, now, front(), &client_pkt(ACK));
    run(&mut d, now, front(), &client_pkt(FIN | ACK));
    run(&mut d, now, back(), &fin);
    assert_eq!(conn_state(&d), Some(TcpState::TimeWait));
    let (v, out) = run(&mut d, now, front(), &client_pkt(SYN));
    assert!(matches!(v, Verdict::Transmit(_)));
    assert_eq!(
        ip_of(&out).dst_addr(),
        addr::RIPS[1],
        "new connection, next server"
    );
    assert_eq!(conn_state(&d), Some(TcpState::SynRecv));
    assert_eq!(d.conns().len(), 1);
}

#[test]
fn one_packet_udp_keeps_no_entry() {
    let key = sim::udp_service();
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let mut cfg = ServiceConfig::new(key).with_scheduler(SchedulerKind::Rr);
    cfg.one_packet = true;
    d.edit_service(cfg).unwrap();
    let mut rips = Vec::new();
    for _ in 0..3 {
        let (_, out) = run(
            &mut d,
            Time::from_secs(1),
            front(),
            &PacketSpec::udp((addr::CLIENT, 5000), (addr::VIP, 53), b"x"),
        );
        rips.push(ip_of(&out).dst_addr());
    }
    assert_eq!(
        rips,
        addr::RIPS.to_vec(),
        "each datagram scheduled on its own"
    );
    assert!(d.conns().is_empty());
    assert_eq!(d.services().get(1).unwrap().stats.conns, 3);
}

#[test]
fn full_table_drops_new_connections_and_counts() {
    let settings = lvs_core::Settings {
        conn_limit: 2,
        conn_prealloc: 2,
        ..Default::default()
    };
    let mut d = Director::new(settings, Time::ZERO);
    sim::wire_network(&mut d);
    let key = sim::http_service();
    d.add_service(ServiceConfig::new(key)).unwrap();
    d.add_dest(
        &key,
        DestConfig::new(IpAddr::V4(addr::RIPS[0]), 80, ForwardMethod::DirectRoute),
    )
    .unwrap();
    // Two established connections fill it: nothing is evicted for a third.
    for p in 0..3u16 {
        let (v, _) = run(
            &mut d,
            Time::ZERO,
            front(),
            &PacketSpec::tcp((addr::CLIENT, p + 1), (addr::VIP, 80), SYN),
        );
        if p < 2 {
            assert!(matches!(v, Verdict::Transmit(_)));
            let ack = PacketSpec::tcp((addr::CLIENT, p + 1), (addr::VIP, 80), ACK);
            assert!(matches!(
                run(&mut d, Time::ZERO, front(), &ack).0,
                Verdict::Transmit(_)
            ));
        } else {
            assert_eq!(v, Verdict::Drop(DropReason::TableFull));
        }
    }
    assert_eq!(d.counters().drops(DropReason::TableFull), 1);
    assert_eq!(d.counters().embryonic_evicted, 0);
    let svc = d.services().get(0).unwrap();
    assert_eq!(
        (svc.dests()[0].active, svc.dests()[0].inactive),
        (2, 0),
        "a refused connection is not counted"
    );
}

/// A SYN flood from random sources (virtual time): established connections all stay, the
/// flood holds at most the embryonic limit, a client arriving during the flood connects,
/// every eviction is counted, and the memory the flood took is given back once its entries
/// (and the clients' connections of that time) are gone.
#[test]
fn a_syn_flood_neither_evicts_established_flows_nor_keeps_clients_out() {
    let settings = lvs_core::Settings {
        conn_limit: 400_000,
        conn_prealloc: 0,
        ..sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO)
            .settings()
            .clone()
    };
    let cap = settings.embryonic_limit();
    assert_eq!(cap, 50_000, "an eighth of the table");
    let mut d = Director::new(settings, Time::ZERO);
    sim::wire_network(&mut d);
    let key = sim::http_service();
    d.add_service(ServiceConfig::new(key)).unwrap();
    for rip in addr::RIPS {
        d.add_dest(
            &key,
            DestConfig::new(IpAddr::V4(rip), 8080, ForwardMethod::Masq),
        )
        .unwrap();
    }
    let mut now = Time::from_secs(1);
    let connect = |d: &mut Director, now: Time, src: Ipv4Addr, port: u16| {
        let syn = PacketSpec::tcp((src, port), (addr::VIP, 80), SYN);
        let ack = PacketSpec::tcp((src, port), (addr::VIP, 80), ACK);
        matches!(run(d, now, front(), &syn).0, Verdict::Transmit(_))
            && matches!(run(d, now, front(), &ack).0, Verdict::Transmit(_))
    };
    for p in 0..1_000u16 {
        assert!(connect(&mut d, now, addr::CLIENT, 10_000 + p));
    }
    let baseline = d.conns().capacity();
    // 200,000 SYNs from pseudo-random sources, 1,000 per 10 ms of virtual time, and a
    // client connecting every 1,000 of them.
    let client = Ipv4Addr::new(198, 51, 100, 20);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut legit = 0u16;
    let mut peak = 0;
    for i in 0..200_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let src = Ipv4Addr::from(0x2d00_0000 | (x as u32 & 0x00ff_ffff));
        let syn = PacketSpec::tcp((src, (x >> 32) as u16 | 1), (addr::VIP, 80), SYN);
        let _ = run(&mut d, now, front(), &syn);
        if i % 1_000 == 0 {
            now = now + Duration::from_millis(10);
            d.expire(now);
            legit += 1;
            assert!(
                connect(&mut d, now, client, legit),
                "client {legit} kept out"
            );
        }
        assert!(d.conns().embryonic() <= cap);
        peak = peak.max(d.conns().capacity());
    }
    let active: u32 = d
        .services()
        .get(0)
        .unwrap()
        .dests()
        .iter()
        .map(|x| x.active)
        .sum();
    assert_eq!(
        active,
        1_000 + u32::from(legit),
        "every established connection stayed"
    );
    let c = d.counters();
    assert_eq!(c.drops(DropReason::TableFull), 0);
    assert_eq!(c.embryonic_evicted, 200_000 - cap as u64);
    assert!(
        peak <= (1_000 + 200 + cap).next_power_of_two(),
        "peak capacity {peak}"
    );
    // The clients of the flood's time finish (a RST: CLOSE, 10 s); SYN_RECV lasts 60 s.
    for p in 1..=legit {
        let rst = PacketSpec::tcp((client, p), (addr::VIP, 80), RST | ACK);
        assert!(matches!(
            run(&mut d, now, front(), &rst).0,
            Verdict::Transmit(_)
        ));
    }
    for _ in 0..80 {
        now = now + Duration::from_secs(1);
        d.expire(now);
    }
    assert_eq!(d.conns().embryonic(), 0);
    assert_eq!(d.conns().len(), 1_000);
    assert!(
        d.conns().capacity() <= baseline,
        "capacity {} after the flood, {baseline} before, {peak} at its peak",
        d.conns().capacity()
    );
}

/// The frames a director with every neighbour known sends for `pkts`, and those that `d`,
/// missing `unknown`, holds and then releases once `unknown` is learnt: the same bytes.
fn held_then_released(method: ForwardMethod, unknown: Ipv4Addr, pkts: &[(RxMeta, PacketSpec)]) {
    let mut twin = sim::director(method, SchedulerKind::Rr, Time::ZERO);
    let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
    let (_, mac) = d.net.neighbour(IpAddr::V4(unknown)).expect("sim knows it");
    d.net.remove_neighbour(IpAddr::V4(unknown));
    let now = Time::from_secs(1);
    let (last_meta, last) = pkts.last().unwrap();
    for (meta, p) in &pkts[..pkts.len() - 1] {
        let (a, _) = run(&mut twin, now, *meta, p);
        let (b, _) = run(&mut d, now, *meta, p);
        assert!(matches!(
            (a, b),
            (Verdict::Transmit(_), Verdict::Transmit(_))
        ));
    }
    let (v, want) = run(&mut twin, now, *last_meta, last);
    assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
    let (v, _) = run(&mut d, now, *last_meta, last);
    assert_eq!(v, Verdict::Held);
    assert_eq!(d.counters().held, 1);
    let asked: Vec<_> = d.net.take_unresolved().collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].1, IpAddr::V4(unknown));

    // Nothing leaves while the neighbour is unknown.
    let mut out = Vec::new();
    d.release_held(now + Duration::from_millis(500), &mut out);
    assert!(out.is_empty());
    d.net.set_neighbour(IpAddr::V4(unknown), asked[0].0, mac);
    d.release_held(now + Duration::from_millis(600), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].frame, want,
        "the released frame is the one a known hop gets"
    );
    assert_eq!(out[0].ifindex, asked[0].0);
    let c = d.counters();
    assert_eq!((c.held, c.forwarded), (0, pkts.len() as u64));
    assert_eq!(c.drops(DropReason::NeighbourUnresolved), 0);
    d.release_held(now + Duration::from_secs(5), &mut out);
    assert_eq!(out.len(), 1, "released once");
}

#[test]
fn a_syn_to_an_unresolved_real_server_is_held_then_sent() {
    for method in [
        ForwardMethod::DirectRoute,
        ForwardMethod::Tunnel,
        ForwardMethod::Masq,
    ] {
        held_then_released(method, addr::RIPS[0], &[(front(), client_pkt(SYN))]);
    }
}

#[test]
fn a_nat_reply_to_an_unresolved_router_is_held_then_sent() {
    let reply = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), SYN | ACK);
    held_then_released(
        ForwardMethod::Masq,
        addr::ROUTER,
        &[(front(), client_pkt(SYN)), (back(), reply)],
    );
}

/// A "fragmentation needed" answer goes straight back to the client even when the real server
/// it was going to is unresolved: it is not held for the real server's MAC.
#[test]
fn frag_needed_does_not_wait_for_the_real_servers_neighbour() {
    let mut d = sim::director(ForwardMethod::Tunnel, SchedulerKind::Rr, Time::ZERO);
    d.net.remove_neighbour(IpAddr::V4(addr::RIPS[0]));
    let spec = client_pkt(SYN).payload(&vec![0u8; 1460]);
    let (v, out) = run(&mut d, Time::from_secs(1), front(), &spec);
    let Verdict::Transmit(tx) = v else {
        panic!("{v:?}")
    };
    assert_eq!(tx.ifindex, addr::FRONT);
    assert_eq!(&out[0..6], &addr::ROUTER_MAC);
    assert_eq!(d.counters().held, 0);
}

#[test]
fn held_frames_are_dropped_when_resolution_fails() {
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    d.net.remove_neighbour(IpAddr::V4(addr::RIPS[0]));
    let t = Time::from_secs(1);
    for _ in 0..3 {
        let (v, _) = run(&mut d, t, front(), &client_pkt(SYN));
        assert_eq!(v, Verdict::Held);
    }
    let want: Vec<_> = d.net.take_unresolved().collect();
    assert_eq!(
        want,
        vec![(addr::BACK, IpAddr::V4(addr::RIPS[0]))],
        "asked once"
    );
    let mut out = Vec::new();
    d.release_held(t + lvs_core::director::RESOLVE_TIMEOUT, &mut out);
    assert!(out.is_empty());
    let c = d.counters();
    assert_eq!(c.held, 0);
    assert_eq!(c.drops(DropReason::NeighbourUnresolved), 3);
    assert_eq!(c.rx_frames, c.forwarded + c.total_drops());
}

#[test]
fn icmp_errors_follow_their_connection_in_nat() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let now = Time::from_secs(1);
    run(
        &mut d,
        now,
        front(),
        &PacketSpec::udp((addr::CLIENT, 5555), (addr::VIP, 53), b"q"),
    );

    // A router between director and real server says the forwarded datagram cannot be
    // delivered: the error quotes CLIENT:5555 → RIP:8080 and must reach the client quoting
    // CLIENT:5555 → VIP:53, from the VIP.
    let forwarded = PacketSpec::udp((addr::CLIENT, 5555), (addr::RIPS[0], 8080), b"q").ip_packet();
    let err = icmp_error(Ipv4Addr::new(10, 0, 1, 99), addr::CLIENT, 3, 1, &forwarded);
    let (mut buf, len) = sim::frame_with(addr::rs_mac(0), addr::BACK_MAC, &err);
    let v = d.process(now, &back(), &mut buf, sim::HEADROOM, len);
    let Verdict::Transmit(tx) = v else {
        panic!("{v:?}")
    };
    assert_eq!(tx.ifindex, addr::FRONT);
    let out = &buf[tx.start..tx.start + tx.len];
    let ip = ip_of(out);
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (addr::VIP, addr::CLIENT));
    let icmp = lvs_wire::icmpv4::Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    let inner = Ipv4Packet::new_checked_truncated(icmp.data()).unwrap();
    assert!(inner.verify_checksum());
    assert_eq!(
        (inner.src_addr(), inner.dst_addr()),
        (addr::CLIENT, addr::VIP)
    );
    assert_eq!(&inner.payload()[0..4], &[0x15, 0xb3, 0, 53]);

    // The client says our reply (VIP:53 → CLIENT:5555) was unreachable: to the real server,
    // quoting RIP:8080 → CLIENT:5555.
    let reply = PacketSpec::udp((addr::VIP, 53), (addr::CLIENT, 5555), b"a").ip_packet();
    let err = icmp_error(addr::CLIENT, addr::VIP, 3, 3, &reply);
    let (mut buf, len) = sim::frame_with(addr::ROUTER_MAC, addr::FRONT_MAC, &err);
    let v = d.process(now, &front(), &mut buf, sim::HEADROOM, len);
    let Verdict::Transmit(tx) = v else {
        panic!("{v:?}")
    };
    assert_eq!(tx.ifindex, addr::BACK);
    let out = &buf[tx.start..tx.start + tx.len];
    let ip = ip_of(out);
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (addr::CLIENT, addr::RIPS[0])
    );
    let icmp = lvs_wire::icmpv4::Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    let inner = Ipv4Packet::new_checked_truncated(icmp.data()).unwrap();
    assert_eq!(
        (inner.src_addr(), inner.dst_addr()),
        (addr::RIPS[0], addr::CLIENT)
    );
    assert_eq!(&inner.payload()[0..2], &8080u16.to_be_bytes());

    // An unrelated ICMP error and a ping pass to the kernel.
    let other = PacketSpec::udp((addr::VIP, 99), (addr::CLIENT, 1), b"").ip_packet();
    let err = icmp_error(addr::CLIENT, addr::VIP, 3, 3, &other);
    let (mut buf, len) = sim::frame_with(addr::ROUTER_MAC, addr::FRONT_MAC, &err);
    assert_eq!(
        d.process(now, &front(), &mut buf, sim::HEADROOM, len),
        Verdict::Pass
    );
}

fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let q = &quoted[..quoted.len().min(28)];
    let mut icmp = vec![0u8; 8 + q.len()];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[8..].copy_from_slice(q);
    lvs_core::rewrite::fill_icmp_checksum(&mut icmp);
    let repr = lvs_wire::ipv4::Ipv4Repr {
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

#[test]
fn service_table_errors_change_nothing() {
    let key = sim::http_service();
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Wlc, Time::ZERO);
    assert!(d.add_service(ServiceConfig::new(key)).is_err());
    let rip = IpAddr::V4(addr::RIPS[0]);
    assert!(
        d.add_dest(&key, DestConfig::new(rip, 8080, ForwardMethod::Masq))
            .is_err()
    );
    assert!(
        d.add_dest(
            &key,
            DestConfig::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, 1, 50)),
                80,
                ForwardMethod::Masq
            )
            .with_weight(70000)
        )
        .is_err()
    );
    let mut bad = DestConfig::new(rip, 8080, ForwardMethod::Masq);
    bad.upper_threshold = 5;
    bad.lower_threshold = 9;
    assert!(d.edit_dest(&key, bad).is_err());
    let missing = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(addr::VIP),
        port: 443,
    };
    assert!(
        d.add_dest(&missing, DestConfig::new(rip, 443, ForwardMethod::Masq))
            .is_err()
    );
    assert!(d.delete_service(&missing).is_err());
    let svc = d.services().get(0).unwrap();
    assert_eq!(svc.dests().len(), 3);
    assert!(
        svc.dests()
            .iter()
            .all(|x| x.weight() == 1 && x.config.upper_threshold == 0)
    );
    let msg = d
        .add_dest(
            &key,
            DestConfig::new(rip, 8080, ForwardMethod::Masq).with_weight(70000),
        )
        .unwrap_err()
        .to_string();
    assert!(msg.contains("weight"), "{msg}");
}

/// The rate estimator runs on the director's own clock: driven in virtual time with a steady
/// 50 new connections per second, the estimate follows IPVS's EWMA (weight 1/4 every 2 s):
/// after n periods the kernel's fixed-point value is avg_n = avg_{n-1} + ((100 << 9) - avg_{n-1}) >> 2.
#[test]
fn rate_estimator_in_virtual_time_follows_the_ipvs_formula() {
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    let mut port = 1000u16;
    let mut expect: i64 = 0;
    for period in 1..=30u64 {
        // 100 connections during this 2-second period, spread over it.
        for i in 0..100u64 {
            let now = Time::from_millis((period - 1) * 2000 + i * 20);
            port += 1;
            run(
                &mut d,
                now,
                front(),
                &PacketSpec::tcp((addr::CLIENT, port), (addr::VIP, 80), SYN),
            );
            d.expire(now);
        }
        d.expire(Time::from_secs(period * 2));
        expect += ((100i64 << 9) - expect) >> 2;
        let shown = (expect as u64 + 0x1ff) >> 10;
        let svc = d.services().get(0).unwrap();
        assert_eq!(svc.est.rates().cps, shown, "period {period}");
    }
    let svc = d.services().get(0).unwrap();
    assert_eq!(svc.est.rates().cps, 50, "converged to the true 50 conn/s");
    assert_eq!(svc.est.rates().inpps, 50);
    // Each real server got a third of the connections.
    assert!(
        svc.dests()
            .iter()
            .all(|x| (16..=17).contains(&x.est.rates().cps))
    );
}

#[test]
fn a_failed_send_is_counted_once_as_a_tx_error() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let now = Time::from_secs(1);
    let (v, _) = run(&mut d, now, front(), &client_pkt(SYN));
    assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
    assert_eq!((d.counters().forwarded, d.counters().tx_errors), (1, 0));

    // The driver's ring was full: the frame is a tx error, no longer a forwarded one.
    d.send_failed(&v);
    assert_eq!((d.counters().forwarded, d.counters().tx_errors), (0, 1));

    // The next one goes out; a verdict that sent nothing is not a failure to send.
    let (v, _) = run(&mut d, now, front(), &client_pkt(ACK));
    assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
    d.send_failed(&Verdict::Pass);
    d.send_failed(&Verdict::Drop(DropReason::NoRoute));
    let c = d.counters();
    assert_eq!((c.forwarded, c.tx_errors), (1, 1));
    assert_eq!(
        c.rx_frames,
        c.forwarded + c.tx_errors + c.passed + c.total_drops()
    );
}

/// A frame whose VLAN tag the kernel took off into metadata belongs to the VLAN interface:
/// it is left to the kernel, never forwarded (untagged) to a real server.
#[test]
fn a_vlan_tagged_frame_is_not_forwarded() {
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    let tagged = RxMeta {
        vlan: true,
        ..front()
    };
    let (v, _) = run(&mut d, Time::from_secs(1), tagged, &client_pkt(SYN));
    assert_eq!(v, Verdict::Pass);
    assert_eq!(d.conns().len(), 0);
    let (v, _) = run(&mut d, Time::from_secs(1), front(), &client_pkt(SYN));
    assert!(matches!(v, Verdict::Transmit(_)), "untagged: forwarded");
}

/// A state with a shorter timeout moves the entry's expiry with it: an established DR
/// connection (900 s) that is reset is gone 10 s later (CLOSE), and one that ends with FIN
/// goes by its FIN_WAIT timeout, not 900 s after its last ESTABLISHED packet.
#[test]
fn a_shorter_timeout_expires_the_entry_on_time() {
    for (flags, state, secs) in [
        (RST | ACK, TcpState::Close, 10u64),
        (FIN | ACK, TcpState::FinWait, 120),
    ] {
        let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
        let t0 = Time::from_secs(1);
        run(&mut d, t0, front(), &client_pkt(SYN));
        run(&mut d, t0, front(), &client_pkt(ACK));
        assert_eq!(conn_state(&d), Some(TcpState::Established));
        // The timers run as in lvsd (every tick): the entry's timer is filed under its
        // ESTABLISHED deadline by then.
        for s in 2..100 {
            d.expire(Time::from_secs(s));
        }
        let t1 = Time::from_secs(100);
        run(&mut d, t1, front(), &client_pkt(flags));
        assert_eq!(conn_state(&d), Some(state));
        for s in 1..secs {
            d.expire(t1 + Duration::from_secs(s));
        }
        assert_eq!(
            d.conns().len(),
            1,
            "{state:?}: still there before its timeout"
        );
        d.expire(t1 + Duration::from_secs(secs + 1));
        assert_eq!(
            d.conns().len(),
            0,
            "{state:?}: gone {secs} s after the change, not at the ESTABLISHED deadline"
        );
    }
}

/// Feed raw IP bytes from the router side; the verdict.
fn run_ip(d: &mut Director, meta: RxMeta, ip: &[u8]) -> Verdict {
    let (mut buf, len) = sim::frame_with(addr::ROUTER_MAC, addr::FRONT_MAC, ip);
    d.process(Time::from_secs(1), &meta, &mut buf, sim::HEADROOM, len)
}

#[test]
fn sources_no_client_can_have_get_no_entry() {
    for method in [
        ForwardMethod::Masq,
        ForwardMethod::DirectRoute,
        ForwardMethod::Tunnel,
    ] {
        let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
        let cases = [
            (Ipv4Addr::new(0, 0, 0, 0), DropReason::MartianSource),
            (Ipv4Addr::new(127, 0, 0, 1), DropReason::MartianSource),
            (Ipv4Addr::new(169, 254, 3, 4), DropReason::MartianSource),
            (Ipv4Addr::new(224, 0, 0, 251), DropReason::MartianSource),
            (Ipv4Addr::new(240, 0, 0, 1), DropReason::MartianSource),
            (Ipv4Addr::new(255, 255, 255, 255), DropReason::MartianSource),
            (addr::VIP, DropReason::SpoofedSource),
            (addr::DIP, DropReason::SpoofedSource),
            (Ipv4Addr::new(10, 0, 1, 255), DropReason::BroadcastSource),
            (Ipv4Addr::new(192, 0, 2, 255), DropReason::BroadcastSource),
        ];
        for (src, reason) in cases {
            for syn in [
                PacketSpec::tcp((src, CPORT), (addr::VIP, 80), SYN),
                PacketSpec::udp((src, CPORT), (addr::VIP, 53), b"q"),
            ] {
                let (v, _) = run(&mut d, Time::from_secs(1), front(), &syn);
                assert_eq!(v, Verdict::Drop(reason), "{method:?} from {src}");
            }
        }
        assert!(d.conns().is_empty(), "{method:?}: no entry made");
        for (_, reason) in cases {
            assert!(d.counters().drops(reason) > 0, "{reason} counted");
        }
        // An ordinary client still gets through, so does a real server (a client of the
        // services like any other); an address made a VIP later is refused from then on.
        let (v, _) = run(&mut d, Time::from_secs(1), front(), &client_pkt(SYN));
        assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
        let syn = PacketSpec::tcp((addr::RIPS[1], CPORT), (addr::VIP, 80), SYN);
        let (v, _) = run(&mut d, Time::from_secs(1), back(), &syn);
        assert!(
            matches!(v, Verdict::Transmit(_)),
            "a real server as a client: {v:?}"
        );
        let extra = Ipv4Addr::new(198, 51, 100, 77);
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: IpAddr::V4(extra),
            port: 25,
        };
        d.add_service(ServiceConfig::new(key)).unwrap();
        let syn = PacketSpec::tcp((extra, CPORT), (addr::VIP, 80), SYN);
        let (v, _) = run(&mut d, Time::from_secs(1), front(), &syn);
        assert_eq!(v, Verdict::Drop(DropReason::SpoofedSource));
    }
}

#[test]
fn headers_the_kernel_would_refuse_are_dropped_before_any_entry() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let good = client_pkt(SYN).ip_packet();

    let mut bad_csum = good.clone();
    bad_csum[10] ^= 0x01;
    assert_eq!(
        run_ip(&mut d, front(), &bad_csum),
        Verdict::Drop(DropReason::BadChecksum)
    );

    // A loose source route option (and a record route, which is fine).
    let with_option = |kind: u8| {
        let mut ip = good.clone();
        ip.splice(20..20, [kind, 7, 4, 10, 0, 0, 1, 0]);
        let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
        p.set_header_len(28);
        p.set_total_len(p.total_len() + 8);
        p.fill_checksum();
        ip
    };
    assert_eq!(
        run_ip(&mut d, front(), &with_option(131)),
        Verdict::Drop(DropReason::SourceRoute)
    );
    assert_eq!(
        run_ip(&mut d, front(), &with_option(137)),
        Verdict::Drop(DropReason::SourceRoute)
    );

    for off in [4u8, 6] {
        let mut ip = good.clone();
        ip[32] = off << 4;
        assert_eq!(
            run_ip(&mut d, front(), &ip),
            Verdict::Drop(DropReason::Malformed),
            "offset {off}"
        );
    }
    let udp = PacketSpec::udp((addr::CLIENT, CPORT), (addr::VIP, 53), b"abcd").ip_packet();
    for ulen in [7u16, 13, 200] {
        let mut ip = udp.clone();
        ip[24..26].copy_from_slice(&ulen.to_be_bytes());
        assert_eq!(
            run_ip(&mut d, front(), &ip),
            Verdict::Drop(DropReason::Malformed),
            "udp length {ulen}"
        );
    }
    assert!(d.conns().is_empty(), "nothing of it made an entry");
    // A UDP length short of the payload is the kernel's to trim (UDP options live there).
    let mut ip = udp.clone();
    ip[24..26].copy_from_slice(&11u16.to_be_bytes());
    assert!(matches!(run_ip(&mut d, front(), &ip), Verdict::Transmit(_)));
    d.flush_connections();
    assert!(matches!(
        run_ip(&mut d, front(), &with_option(7)),
        Verdict::Transmit(_)
    ));
}

#[test]
fn ttl_runs_out_at_the_director_with_time_exceeded() {
    for method in [
        ForwardMethod::Masq,
        ForwardMethod::DirectRoute,
        ForwardMethod::Tunnel,
    ] {
        let mut d = sim::director(method, SchedulerKind::Rr, Time::ZERO);
        for ttl in [0u8, 1] {
            let mut spec = client_pkt(SYN);
            spec.ttl = ttl;
            let original = spec.ip_packet();
            let (v, out) = run(&mut d, Time::from_secs(1), front(), &spec);
            let Verdict::Transmit(tx) = v else {
                panic!("{method:?} ttl {ttl}: {v:?}")
            };
            assert_eq!(tx.ifindex, addr::FRONT, "back the way it came");
            assert_eq!(&out[0..6], &addr::ROUTER_MAC);
            let ip = ip_of(&out);
            assert!(ip.verify_checksum());
            assert_eq!((ip.src_addr(), ip.dst_addr()), (addr::VIP, addr::CLIENT));
            assert_eq!(ip.protocol(), protocol::ICMP);
            let icmp = lvs_wire::icmpv4::Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert_eq!((icmp.msg_type(), icmp.msg_code()), (11, 0));
            assert!(icmp.verify_checksum());
            assert_eq!(&icmp.data()[..28], &original[..28], "quotes the packet");
        }
        assert!(
            d.conns().is_empty(),
            "{method:?}: no entry for a dead packet"
        );
        let c = d.counters();
        assert_eq!(
            (c.drops(DropReason::TtlExceeded), c.icmp_sent, c.forwarded),
            (2, 2, 0)
        );
        // TTL 2 is forwarded with 1.
        let mut spec = client_pkt(SYN);
        spec.ttl = 2;
        let (v, out) = run(&mut d, Time::from_secs(1), front(), &spec);
        assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
        let ip = ip_of(&out);
        let inner = if method == ForwardMethod::Tunnel {
            Ipv4Packet::new_checked(ip.payload()).unwrap().ttl()
        } else {
            ip.ttl()
        };
        assert_eq!((ip.ttl(), inner), (1, 1), "{method:?}");
        assert!(ip.verify_checksum());
    }
}

#[test]
fn a_nat_reply_whose_ttl_runs_out_is_answered_from_the_director() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let (v, _) = run(&mut d, Time::from_secs(1), front(), &client_pkt(SYN));
    assert!(matches!(v, Verdict::Transmit(_)));
    let mut reply = PacketSpec::tcp((addr::RIPS[0], 8080), (addr::CLIENT, CPORT), SYN | ACK);
    reply.ttl = 1;
    let (v, out) = run(&mut d, Time::from_secs(1), back(), &reply);
    assert!(matches!(v, Verdict::Transmit(_)), "{v:?}");
    let ip = ip_of(&out);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (addr::DIP, addr::RIPS[0]));
    assert_eq!(ip.payload()[0], 11);
    assert_eq!(d.counters().drops(DropReason::TtlExceeded), 1);
}

#[test]
fn an_icmp_error_with_a_bad_checksum_is_not_translated() {
    let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
    let (v, out) = run(&mut d, Time::from_secs(1), front(), &client_pkt(SYN));
    assert!(matches!(v, Verdict::Transmit(_)));
    // The client's router says the real server's SYN-ACK (from VIP:80) could not be
    // delivered: an error quoting VIP:80 -> client.
    let quoted = PacketSpec::tcp((addr::VIP, 80), (addr::CLIENT, CPORT), SYN | ACK).ip_packet();
    let repr = lvs_wire::icmpv4::FragNeededRepr { mtu: 1400 };
    let mut icmp = vec![0u8; repr.buffer_len(28)];
    repr.emit(&mut icmp, &quoted[..28]);
    let outer = |icmp: &[u8], ttl: u8| {
        let mut ip = vec![0u8; 20 + icmp.len()];
        lvs_wire::ipv4::Ipv4Repr {
            src_addr: addr::ROUTER,
            dst_addr: addr::VIP,
            protocol: protocol::ICMP,
            payload_len: icmp.len(),
            ttl,
            dscp_ecn: 0,
            ident: 1,
            dont_frag: false,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut ip[..]));
        ip[20..].copy_from_slice(icmp);
        ip
    };
    assert!(matches!(
        run_ip(&mut d, front(), &outer(&icmp, 64)),
        Verdict::Transmit(_)
    ));
    let mut bad = icmp.clone();
    bad[12] ^= 0x40;
    assert_eq!(
        run_ip(&mut d, front(), &outer(&bad, 64)),
        Verdict::Drop(DropReason::BadChecksum)
    );
    assert_eq!(
        run_ip(&mut d, front(), &outer(&icmp, 1)),
        Verdict::Drop(DropReason::TtlExceeded)
    );
    drop(out);
}

/// A SYN flood against a persistent service: each half-open connection's template goes with
/// it when it is evicted, so templates never fill the table and clients keep connecting.
#[test]
fn a_syn_flood_on_a_persistent_service_leaves_no_templates_behind() {
    let settings = lvs_core::Settings {
        conn_limit: 4_000,
        conn_prealloc: 0,
        embryonic_limit: Some(4_000),
        ..sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO)
            .settings()
            .clone()
    };
    let mut d = Director::new(settings, Time::ZERO);
    sim::wire_network(&mut d);
    let key = sim::http_service();
    let mut cfg = ServiceConfig::new(key);
    cfg.persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        netmask: Netmask::V4(32),
    });
    d.add_service(cfg).unwrap();
    for rip in addr::RIPS {
        d.add_dest(
            &key,
            DestConfig::new(IpAddr::V4(rip), 80, ForwardMethod::DirectRoute),
        )
        .unwrap();
    }
    let now = Time::from_secs(1);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut kept_out = 0;
    for i in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let src = Ipv4Addr::from(0x2d00_0000 | (x as u32 & 0x00ff_ffff));
        let _ = run(
            &mut d,
            now,
            front(),
            &PacketSpec::tcp((src, 1000), (addr::VIP, 80), SYN),
        );
        if i % 1_000 == 999 {
            let c = Ipv4Addr::new(198, 51, 100, 30 + (i / 1_000) as u8);
            let syn = PacketSpec::tcp((c, 2000), (addr::VIP, 80), SYN);
            let ack = PacketSpec::tcp((c, 2000), (addr::VIP, 80), ACK);
            let ok = matches!(run(&mut d, now, front(), &syn).0, Verdict::Transmit(_))
                && matches!(run(&mut d, now, front(), &ack).0, Verdict::Transmit(_));
            kept_out += u32::from(!ok);
        }
    }
    let templates = d.conns().iter().filter(|(_, c)| c.is_template()).count();
    assert_eq!(kept_out, 0, "clients refused during the flood");
    assert_eq!(d.counters().drops(DropReason::TableFull), 0);
    assert!(d.conns().len() <= 4_000);
    // The 20 clients' templates and connections, and the flood's latest half-open
    // connections with theirs.
    assert!(templates <= 2_000 + 20, "{templates} templates");
}

/// `sloppy_tcp`: a connection established through one director and moved (ECMP) to a
/// second with the same table continues there on the same real server, for mh, sh and dh;
/// not for rr (another server would answer with a RST), never for a RST, and not without
/// the setting.
#[test]
fn sloppy_tcp_continues_a_moved_connection_on_the_same_real_server() {
    for (sched, sloppy, want) in [
        (SchedulerKind::Mh, true, true),
        (SchedulerKind::Sh, true, true),
        (SchedulerKind::Dh, true, true),
        (SchedulerKind::Rr, true, false),
        (SchedulerKind::Mh, false, false),
    ] {
        let mut first = sim::director(ForwardMethod::DirectRoute, sched, Time::ZERO);
        let mut second = sim::director(ForwardMethod::DirectRoute, sched, Time::ZERO);
        second.set_sloppy_tcp(sloppy);
        let now = Time::from_secs(1);
        let (_, out) = run(&mut first, now, front(), &client_pkt(SYN));
        let rs_mac = out[0..6].to_vec();
        let (v, out) = run(&mut second, now, front(), &client_pkt(ACK | PSH));
        if want {
            assert!(matches!(v, Verdict::Transmit(_)), "{sched:?}: {v:?}");
            assert_eq!(out[0..6], rs_mac[..], "{sched:?}: the same real server");
            // IPVS's input-only table takes NONE + ACK to CLOSE (10 s), refreshed by each
            // packet: the moved connection lives on as long as it carries traffic.
            assert_eq!(conn_state(&second), Some(TcpState::Close));
            let later = now + Duration::from_secs(8);
            second.expire(later);
            let (v, out) = run(&mut second, later, front(), &client_pkt(ACK));
            assert!(matches!(v, Verdict::Transmit(_)), "{sched:?}: {v:?}");
            assert_eq!(out[0..6], rs_mac[..]);
        } else {
            assert_eq!(
                v,
                Verdict::Drop(DropReason::NoConnection),
                "{sched:?} sloppy {sloppy}"
            );
            assert!(second.conns().is_empty());
        }
        let mut third = sim::director(ForwardMethod::DirectRoute, sched, Time::ZERO);
        third.set_sloppy_tcp(true);
        let (v, _) = run(&mut third, now, front(), &client_pkt(RST | ACK));
        assert_eq!(
            v,
            Verdict::Drop(DropReason::NoConnection),
            "{sched:?}: a RST"
        );
    }
}
