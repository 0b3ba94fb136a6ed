//! `import::keepalived` on a realistic keepalived.conf.

use lvs_config::{import, parse, to_toml};
use lvs_core::types::{
    Family, ForwardMethod, Netmask, Protocol, SchedFlags, SchedulerKind, ServiceKey,
};
use lvs_health::CheckKind;
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
    assert_eq!(cfg.services.len(), 5, "{cfg:#?}\n{notes:#?}");

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
    // Health checking: checkers with their parameters, service settings copied down.
    let http = &web.checks[&("10.0.1.11".parse().unwrap(), 8080)][0];
    assert_eq!(http.kind, CheckKind::Http);
    assert_eq!(http.path.as_deref(), Some("/health"));
    assert_eq!(
        http.status_code.map(|s| s.to_string()).as_deref(),
        Some("200")
    );
    assert_eq!((http.delay_loop, http.connect_timeout), (6.0, 3.0));
    assert!(http.inhibit_on_failure, "real_server's inhibit_on_failure");
    let tcp = &web.checks[&("10.0.1.12".parse().unwrap(), 8080)][0];
    assert_eq!((tcp.kind, tcp.delay_loop), (CheckKind::Tcp, 6.0));
    assert!(!tcp.inhibit_on_failure);
    let sorry = web.health.as_ref().and_then(|h| h.sorry_server.as_ref());
    assert_eq!(
        sorry.map(|s| (s.addr, s.port)),
        Some(("10.0.9.9".parse().unwrap(), 80))
    );
    assert_eq!(https.health.as_ref().map(|h| h.quorum), Some(1));
    let exec = &https.checks[&("10.0.1.11".parse().unwrap(), 443)][0];
    assert_eq!(exec.kind, CheckKind::Exec);
    assert_eq!(exec.command.as_deref(), Some("/usr/local/bin/check https"));
    assert_eq!(https.checks.len(), 1, "10.0.1.13 has no checker");
    for line in [22, 26, 30, 31, 43, 57, 60] {
        assert!(note_at(&notes, line).is_empty(), "line {line}: {notes:#?}");
    }
    assert!(
        note_at(&notes, 64)[0].contains("port 8443 replaced by 443"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 67)[0].contains("notify_down /usr/local/bin/alert down not translated"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 88)[0].contains("weight '70000'"),
        "{notes:#?}"
    );
    // The group's one entry is a service of its own, with the block's settings.
    let grouped = &cfg.services[4];
    assert_eq!(grouped.config.key.to_string(), "TCP 192.0.2.200:80");
    assert_eq!(grouped.config.scheduler, SchedulerKind::Rr);
    assert!(note_at(&notes, 91).is_empty() && note_at(&notes, 95).is_empty());
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
    assert_eq!(
        s.config.key.to_string(),
        "UDP 10.0.0.1:80",
        "no protocol: UDP, as keepalived defaults"
    );
    assert!(
        note_at(&notes, 1)[0].contains("no protocol set: UDP"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 5)
            .iter()
            .any(|n| n.contains("defined twice")),
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

/// keepalived's health-checking shapes: settings copied down from the service and the real
/// server to the checker (the checker's own winning), `nb_get_retry` as `retry`, sorry
/// server options, quorum scripts, several checkers per real server, checkers lvsd lacks noted.
#[test]
fn keepalived_checks_translate_with_their_defaults() {
    let text = r#"
virtual_server 192.0.2.1 443 {
    delay_loop 2
    alpha
    retry 4
    lb_kind NAT
    quorum 2
    hysteresis 1
    quorum_up "/bin/logger up"
    quorum_down "/bin/logger down"
    sorry_server 10.0.9.9
    sorry_server_inhibit
    sorry_server_lvs_method DR
    real_server 10.0.1.1 8443 {
        weight 2
        SSL_GET {
            url {
                path /a
                digest 9b3a0c85a887a256d6939da88aabd8cd
            }
            url {
                path /b
            }
            nb_get_retry 7
            connect_port 9000
        }
        TCP_CHECK {
            connect_timeout 1
        }
        delay_loop 5
    }
    real_server 10.0.1.2 8443 {
        SMTP_CHECK {
            helo_name x.example
        }
    }
    real_server 10.0.1.4 8443 {
        DNS_CHECK {
            type A
            name www.example.org
        }
    }
    real_server 10.0.1.5 8443 {
        PING_CHECK {
            connect_timeout 2
        }
    }
    real_server 10.0.1.6 8443 {
        BFD_CHECK {
            name bfd1
        }
    }
    real_server 10.0.1.3 8443 {
        MISC_CHECK {
            misc_path "/bin/check 10.0.1.3"
            misc_timeout 3
            misc_dynamic
        }
    }
}
virtual_server 192.0.2.1 53 {
    protocol UDP
    real_server 10.0.1.1 53 {
        UDP_CHECK {
            payload ping
            require_reply
            connect_timeout nonsense
        }
    }
}
"#;
    let (cfg, notes) = import::keepalived(text);
    assert_eq!(cfg.services.len(), 2, "{notes:#?}");
    let s = &cfg.services[0];
    let ssl = &s.checks[&("10.0.1.1".parse().unwrap(), 8443)][0];
    assert_eq!(ssl.kind, CheckKind::Https);
    // The real server's delay_loop (after the checker) wins over the service's.
    assert_eq!(ssl.delay_loop, 5.0);
    assert!(ssl.alpha, "alpha copied down from the service");
    assert_eq!(
        ssl.retry,
        Some(7),
        "the checker's nb_get_retry wins over retry 4"
    );
    assert_eq!(ssl.connect_port, Some(9000));
    assert_eq!(ssl.path.as_deref(), Some("/a"), "the first url");
    assert!(ssl.digest.is_some());
    // Every url and every checker of the real server: it is up while all pass, as in
    // keepalived (the second url is a check of its own, with the checker's settings).
    let all = &s.checks[&("10.0.1.1".parse().unwrap(), 8443)];
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        (all[1].kind, all[1].path.as_deref()),
        (CheckKind::Https, Some("/b"))
    );
    assert_eq!((all[1].retry, all[1].digest.as_deref()), (Some(7), None));
    assert_eq!(all[2].kind, CheckKind::Tcp);
    assert_eq!(all[2].connect_timeout, 1.0);
    // SMTP, DNS and PING checkers with keepalived's parameters; BFD is not in lvsd.
    let smtp = &s.checks[&("10.0.1.2".parse().unwrap(), 8443)][0];
    assert_eq!(smtp.kind, CheckKind::Smtp);
    assert_eq!(smtp.helo_name.as_deref(), Some("x.example"));
    let dns = &s.checks[&("10.0.1.4".parse().unwrap(), 8443)][0];
    assert_eq!(dns.kind, CheckKind::Dns);
    assert_eq!(
        (dns.query_type.as_deref(), dns.query_name.as_deref()),
        (Some("A"), Some("www.example.org"))
    );
    let ping = &s.checks[&("10.0.1.5".parse().unwrap(), 8443)][0];
    assert_eq!((ping.kind, ping.connect_timeout), (CheckKind::Ping, 2.0));
    assert!(!s.checks.contains_key(&("10.0.1.6".parse().unwrap(), 8443)));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("lvsd has no BFD_CHECK checker")),
        "{notes:#?}"
    );
    let exec = &s.checks[&("10.0.1.3".parse().unwrap(), 8443)][0];
    assert_eq!(exec.command.as_deref(), Some("/bin/check 10.0.1.3"));
    assert_eq!((exec.timeout, exec.dynamic), (Some(3.0), true));
    assert_eq!(exec.retry, Some(4), "retry copied down from the service");

    let h = s.health.as_ref().expect("health settings");
    assert_eq!((h.quorum, h.hysteresis), (2, 1));
    assert_eq!(h.quorum_up.as_deref(), Some("/bin/logger up"));
    assert_eq!(h.quorum_down.as_deref(), Some("/bin/logger down"));
    let sorry = h.sorry_server.as_ref().unwrap();
    assert_eq!((sorry.addr, sorry.port), ("10.0.9.9".parse().unwrap(), 443));
    assert!(sorry.inhibit);
    assert_eq!(format!("{:?}", sorry.method), "Dr");

    let udp = &cfg.services[1].checks[&("10.0.1.1".parse().unwrap(), 53)][0];
    assert_eq!(udp.kind, CheckKind::Udp);
    assert_eq!(
        (udp.payload.as_deref(), udp.require_reply),
        (Some("ping"), Some(true))
    );
    assert_eq!(
        udp.connect_timeout, 5.0,
        "a bad value is noted and the default kept"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("connect_timeout 'nonsense' is not a number")),
        "{notes:#?}"
    );

    // What the importer writes is a configuration lvsd accepts, checks and all.
    let toml = to_toml(&cfg);
    let back = parse(&toml).unwrap_or_else(|d| panic!("{toml}\n{d:?}"));
    assert_eq!(back.services[0].checks, s.checks);
    assert_eq!(back.services[0].health, s.health);
}

/// keepalived's lexical rules and defaults: comments anywhere, braces checked with their
/// lines, groups with ranges and marks, a service's default weight, persistence from a
/// granularity alone or an all-ports service, fwmark DR servers without a port.
#[test]
fn keepalived_lexical_rules_groups_and_defaults() {
    let text = "\
virtual_server_group farm {
    192.0.2.10-12 80   # a range of the last byte
    2001:db8::a-b 80
    fwmark 9
}
virtual_server group farm {
    lb_kind DR ! keepalived comment
    weight 4
    persistence_granularity 255.255.255.0
    real_server 10.0.1.1 80
}
virtual_server 192.0.2.20 0 {
    real_server 10.0.1.2 0
}
}
vrrp_instance VI_2 {
    state MASTER
virtual_server 192.0.2.30 80 {
    real_server 10.0.1.3 80
}
";
    let (cfg, notes) = import::keepalived(text);
    let keys: Vec<String> = cfg
        .services
        .iter()
        .map(|s| s.config.key.to_string())
        .collect();
    assert_eq!(
        keys,
        // No `protocol`: UDP, keepalived's default (the mark has none).
        [
            "UDP 192.0.2.10:80",
            "UDP 192.0.2.11:80",
            "UDP 192.0.2.12:80",
            "UDP [2001:db8::a]:80",
            "UDP [2001:db8::b]:80",
            "FWM 9",
            "UDP 192.0.2.20:0",
        ],
        "{notes:#?}"
    );
    let v4 = &cfg.services[0];
    assert_eq!(
        v4.dests[0].weight, 4,
        "the service's weight is its servers' default"
    );
    assert_eq!(
        v4.dests[0].method,
        ForwardMethod::DirectRoute,
        "the comment after DR is dropped"
    );
    let p = v4
        .config
        .persistence
        .expect("a granularity alone turns persistence on");
    assert_eq!(
        (p.timeout, p.netmask),
        (Duration::from_secs(360), Netmask::V4(24))
    );
    // The IPv4 real server cannot serve the IPv6 entries (noted), but the mark can.
    assert!(cfg.services[3].dests.is_empty());
    let fwm = &cfg.services[5];
    assert_eq!(
        fwm.dests[0].port, 0,
        "a DR server of a mark service loses its port"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("line 10:") && n.contains("port 80 cleared")),
        "{notes:#?}"
    );
    let all_ports = &cfg.services[6];
    assert_eq!(
        all_ports.config.persistence.map(|p| p.timeout),
        Some(Duration::from_secs(360)),
        "port 0: keepalived's 360 s persistence"
    );
    assert!(
        note_at(&notes, 15)[0].contains("'}' closes no block"),
        "{notes:#?}"
    );
    assert!(
        note_at(&notes, 16)
            .iter()
            .any(|n| n.contains("never closed")),
        "{notes:#?}"
    );
    // Nothing of it is valid TOML only by accident.
    parse(&to_toml(&cfg)).unwrap_or_else(|d| panic!("{d:?}"));
}

/// A check probes the port written in keepalived.conf, also where forwarding moves it (a DR
/// server of a mark service loses its port; one of a port service gets the virtual port).
#[test]
fn keepalived_checks_probe_the_written_port() {
    let text = "\
virtual_server fwmark 3 {
    lb_kind DR
    real_server 10.0.1.1 8080 {
        TCP_CHECK {
        }
    }
}
virtual_server 192.0.2.1 80 {
    lb_kind DR
    sorry_server 10.0.9.9 http
    real_server 10.0.1.2 8080 {
        TCP_CHECK {
        }
    }
}
";
    let (cfg, notes) = import::keepalived(text);
    let fwm = &cfg.services[0].checks[&("10.0.1.1".parse().unwrap(), 0)][0];
    assert_eq!(fwm.connect_port, Some(8080), "{notes:#?}");
    let dr = &cfg.services[1].checks[&("10.0.1.2".parse().unwrap(), 80)][0];
    assert_eq!(dr.connect_port, Some(8080), "{notes:#?}");
    assert!(
        cfg.services[1].health.is_none(),
        "a sorry server with a bad port is not made"
    );
    assert!(note_at(&notes, 10)[0].contains("bad port"), "{notes:#?}");
}
