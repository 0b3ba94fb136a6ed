//! What happens to connections and persistence templates when health checks take a real
//! server down: `expire_nodest_conn` (removal) and `expire_quiescent_template` (weight 0),
//! as in IPVS.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use lvs_core::director::{Director, RxMeta, Verdict};
use lvs_core::service::{DestConfig, ServiceConfig};
use lvs_core::sim::{self, PacketSpec, addr, tcp_flags::*};
use lvs_core::types::{ForwardMethod, Netmask, Persistence, SchedulerKind};
use lvs_core::{DropReason, Time};

fn front() -> RxMeta {
    RxMeta {
        ifindex: addr::FRONT,
        ..RxMeta::default()
    }
}

/// Index of the real server a frame was sent to (by destination MAC), if forwarded.
fn sent_to(d: &mut Director, now: Time, spec: &PacketSpec) -> Result<usize, Verdict> {
    let (mut buf, len) = spec.frame();
    match d.process(now, &front(), &mut buf, sim::HEADROOM, len) {
        Verdict::Transmit(t) => {
            let mac: [u8; 6] = buf[t.start..t.start + 6].try_into().unwrap();
            Ok((0..3)
                .find(|&i| addr::rs_mac(i) == mac)
                .expect("a real server"))
        }
        v => Err(v),
    }
}

fn persistent_director(expire_quiescent_template: bool) -> Director {
    let key = sim::http_service();
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    let mut cfg = ServiceConfig::new(key).with_scheduler(SchedulerKind::Rr);
    cfg.persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        netmask: Netmask::V4(32),
    });
    d.edit_service(cfg).unwrap();
    d.set_policy(false, expire_quiescent_template, 1);
    d
}

fn syn(port: u16) -> PacketSpec {
    PacketSpec::tcp((Ipv4Addr::new(198, 51, 100, 7), port), (addr::VIP, 80), SYN)
}

#[test]
fn quiescent_server_keeps_its_template_unless_expire_quiescent_template() {
    for expire in [false, true] {
        let mut d = persistent_director(expire);
        let now = Time::from_secs(1);
        let first = sent_to(&mut d, now, &syn(1000)).unwrap();
        // Health check with inhibit_on_failure: weight 0.
        let rip = match d.services().get(0).unwrap().dests()[first].addr() {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => unreachable!(),
        };
        d.edit_dest(
            &sim::http_service(),
            DestConfig::new(IpAddr::V4(rip), 80, ForwardMethod::DirectRoute).with_weight(0),
        )
        .unwrap();
        let next = sent_to(&mut d, now, &syn(1001)).unwrap();
        if expire {
            assert_ne!(
                next, first,
                "the template of a quiescent server is not used"
            );
        } else {
            assert_eq!(
                next, first,
                "IPVS default: persistence sticks to a quiescent server"
            );
        }
    }
}

#[test]
fn removed_server_template_is_replaced() {
    let mut d = persistent_director(false);
    let now = Time::from_secs(1);
    let first = sent_to(&mut d, now, &syn(1000)).unwrap();
    let rip = d.services().get(0).unwrap().dests()[first].addr();
    // Health check without inhibit_on_failure: removal.
    d.delete_dest(&sim::http_service(), rip, 80).unwrap();
    let next = sent_to(&mut d, now, &syn(1001)).unwrap();
    assert_ne!(next, first, "a removed server's template is never used");
}

#[test]
fn removed_server_connection_is_dropped_at_next_packet_with_expire_nodest_conn() {
    let mut d = sim::director(ForwardMethod::DirectRoute, SchedulerKind::Rr, Time::ZERO);
    d.set_policy(true, false, 1);
    let now = Time::from_secs(1);
    let first = sent_to(&mut d, now, &syn(2000)).unwrap();
    let rip = d.services().get(0).unwrap().dests()[first].addr();
    d.delete_dest(&sim::http_service(), rip, 80).unwrap();
    let ack = PacketSpec::tcp((Ipv4Addr::new(198, 51, 100, 7), 2000), (addr::VIP, 80), ACK);
    assert_eq!(
        sent_to(&mut d, now, &ack),
        Err(Verdict::Drop(DropReason::DestRemoved))
    );
    // The client's retry (a new SYN from the same port) gets a live server.
    let again = sent_to(&mut d, now, &syn(2000)).unwrap();
    assert_ne!(again, first);
}
