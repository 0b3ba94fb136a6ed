//! `import::keepalived` on a realistic keepalived.conf.

use lvs_config::{import, parse, to_toml};
use lvs_core::types::{
    Family, ForwardMethod, Netmask, Protocol, SchedFlags, SchedulerKind, ServiceKey,
};
use std::time::Duration;

const FIXTURE: &str = include_str!("fixtures/keepalived.conf");

fn note_at(notes: &[String], line: usize) -> Vec<&str> {
    let prefix = format!("line {line}: ");
    notes
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .map(String::as_str)
        .collect()
}

#[test]
fn keepalived_fixture_translates() {
    let (cfg, notes) = import::keepalived(FIXTURE);
    assert_eq!(cfg.services.len(), 4, "{cfg:#?}\n{notes:#?}");

    // NAT web farm.
    let web = &cfg.services[0];
    assert_eq!(
        web.config.key,
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "192.0.2.100".parse().unwrap(),
            port: 80
        }
    );
    assert_eq!(web.config.scheduler, SchedulerKind::Wrr);
    assert_eq!(web.dests.len(), 2);
    assert!(
        web.dests
            .iter()
            .all(|d| d.method == ForwardMethod::Masq && d.port == 8080)
    );
    assert_eq!(web.dests[0].weight, 3);
    assert_eq!(
        (web.dests[1].upper_threshold, web.dests[1].lower_threshold),
        (1000, 800)
    );

    // DR, persistent, sh flags; DR real server port forced to the virtual port.
    let https = &cfg.services[1];
    assert_eq!(https.config.scheduler, SchedulerKind::Sh);
    assert_eq!(
        https.config.flags,
        SchedFlags::FLAG1.union(SchedFlags::FLAG2)
    );
    let p = https.config.persistence.unwrap();
    assert_eq!(p.timeout, Duration::from_secs(600));
    assert_eq!(p.netmask, Netmask::V4(24));
    assert!(
        https
            .dests
            .iter()
            .all(|d| d.method == ForwardMethod::DirectRoute && d.port == 443)
    );
    assert_eq!(
        https.dests.len(),
        2,
        "'{{' on the next line still opens the block"
    );

    // fwmark, IPv6, TUN.
    let fw = &cfg.services[2];
    assert_eq!(
        fw.config.key,
        ServiceKey::Fwmark {
            mark: 7,
            family: Family::V6
        }
    );
    assert_eq!(fw.config.scheduler, SchedulerKind::Mh);
    assert_eq!(fw.dests[0].method, ForwardMethod::Tunnel);
    assert_eq!(fw.dests[0].weight, 5);

    // UDP with ops; weight 70000 is refused (noted) and 1 used.
    let dns = &cfg.services[3];
    assert!(dns.config.one_packet);
    assert_eq!(dns.dests[1].weight, 1);

    // Everything untranslated is listed with its line.
    assert!(
        note_at(&notes, 3)[0].contains("global_defs ignored"),
        "{notes:#?}"
    );
    assert!(note_at(&notes, 10)[0].contains("VRRP"), "{notes:#?}");
    assert!(
        note_at(&notes, 22)[0].contains("delay_loop 6 not translated"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 26)[0].contains("sorry_server"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 30)[0].contains("inhibit_on_failure"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 31)[0].contains("HTTP_GET of real_server 10.0.1.11 8080 not translated"),
        "{notes:#?}"
    );
    assert!(note_at(&notes, 43)[0].contains("TCP_CHECK"), "{notes:#?}");
    assert!(note_at(&notes, 57)[0].contains("quorum"), "{notes:#?}");
    assert!(note_at(&notes, 60)[0].contains("MISC_CHECK"), "{notes:#?}");
    assert!(
        note_at(&notes, 64)[0].contains("port 8443 replaced by 443"),
        "{notes:#?}"
    );
    assert!(note_at(&notes, 67)[0].contains("notify_down"), "{notes:#?}");
    assert!(
        note_at(&notes, 88)[0].contains("weight '70000'"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 91)[0].contains("virtual_server_group web not translated"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 95)[0].contains("virtual_server group web"),
        "{notes:#?}"
    );
    assert!(notes.iter().all(|n| n.starts_with("line ")), "{notes:#?}");

    // The result is a valid configuration file.
    let text = to_toml(&cfg);
    let back = parse(&text).unwrap_or_else(|e| panic!("{text}\n{e:?}"));
    assert_eq!(back, cfg);
}

#[test]
fn keepalived_defaults_and_oddities() {
    let (cfg, notes) = import::keepalived(
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n}\nvirtual_server 10.0.0.1 80 {\n}\n\
         virtual_server 10.0.0.2 25 { protocol TCP\n ops\n persistence_timeout\n real_server 10.0.1.1 25\n real_server 10.0.1.1 25\n }\n",
    );
    assert_eq!(cfg.services.len(), 2, "{notes:#?}");
    let s = &cfg.services[0];
    assert_eq!(s.config.scheduler, SchedulerKind::Wlc);
    assert_eq!(
        s.dests[0].method,
        ForwardMethod::Masq,
        "keepalived's default is NAT"
    );
    assert_eq!(s.dests[0].weight, 1);
    assert!(
        note_at(&notes, 5)[0].contains("defined twice"),
        "{notes:#?}"
    );
    let smtp = &cfg.services[1];
    assert!(!smtp.config.one_packet);
    assert_eq!(
        smtp.config.persistence.unwrap().timeout,
        Duration::from_secs(360)
    );
    assert_eq!(smtp.dests.len(), 1);
    assert!(note_at(&notes, 8)[0].contains("UDP"), "{notes:#?}");
    assert!(
        note_at(&notes, 11)[0].contains("listed twice"),
        "{notes:#?}"
    );
}
