use super::*;
use lvs_core::director::Settings as CoreSettings;
use lvs_core::types::SchedulerKind;
use lvs_core::{Director, Time};

const FULL: &str = r#"
[timeouts]            # optional, seconds
tcp = 900
tcpfin = 120
udp = 300

[settings]
expire_nodest_conn = true
conn_reuse_mode = 2
sloppy_tcp = true

[[service]]
protocol = "tcp"
address = "192.0.2.100:80"
scheduler = "wlc"
flags = ["flag-2"]
persistent = 300
netmask = "255.255.255.0"
one_packet = false

  [[service.real_server]]
  address = "10.0.1.11:80"
  method = "nat"
  weight = 1
  upper_threshold = 0
  lower_threshold = 0

  [[service.real_server]]
  address = "10.0.1.12:8080"
  method = "nat"
  weight = 3
  upper_threshold = 100
  lower_threshold = 50
"#;

const NAT: &str = r#"
[[service]]
protocol = "tcp"
address = "192.0.2.100:80"
scheduler = "wlc"

  [[service.real_server]]
  address = "10.0.1.11:8080"
  method = "nat"
  weight = 2

  [[service.real_server]]
  address = "10.0.1.12:8080"
  method = "nat"
"#;

const DR: &str = r#"
[[service]]
protocol = "tcp"
address = "192.0.2.100:443"
scheduler = "sh"
flags = ["sh-port", "sh-fallback"]
persistent = 600
netmask = "255.255.255.0"

  [[service.real_server]]
  address = "10.0.1.11"
  method = "dr"
"#;

const TUN: &str = r#"
[[service]]
fwmark = 7
family = "inet6"
scheduler = "mh"

  [[service.real_server]]
  address = "[2001:db8:1::11]"
  method = "tun"
  weight = 5
  upper_threshold = 1000
  lower_threshold = 800
"#;

const UDP6: &str = r#"
[[service]]
protocol = "udp"
address = "[2001:db8::53]:53"
scheduler = "rr"
one_packet = true
persistent = true
netmask = 64
real_server = [
  { address = "[2001:db8:1::21]:53", method = "nat" },
  { address = "10.0.1.22", method = "tun", weight = 0 },
]
"#;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn errs(text: &str) -> Vec<Diagnostic> {
    parse(text).expect_err("the text should be refused")
}

/// The single diagnostic of `text`, as (line, message).
fn one(text: &str) -> (usize, String) {
    let d = errs(text);
    assert_eq!(d.len(), 1, "expected one diagnostic, got {d:?}");
    (d[0].line, d[0].message.clone())
}

#[test]
fn parses_full_example() {
    let c = parse(FULL).unwrap();
    assert_eq!(
        c.timeouts,
        Some(Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300
        })
    );
    assert_eq!(
        c.settings,
        Some(Settings {
            expire_nodest_conn: true,
            expire_quiescent_template: false,
            conn_reuse_mode: 2,
            sloppy_tcp: true
        })
    );
    assert_eq!(c.services.len(), 1);
    let s = &c.services[0];
    assert_eq!(
        s.config.key,
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: v4("192.0.2.100"),
            port: 80
        }
    );
    assert_eq!(s.config.scheduler, SchedulerKind::Wlc);
    assert_eq!(s.config.flags, SchedFlags::FLAG2);
    let p = s.config.persistence.unwrap();
    assert_eq!(p.timeout, Duration::from_secs(300));
    assert_eq!(p.netmask, Netmask::V4(24));
    assert_eq!(s.dests.len(), 2);
    assert_eq!(s.dests[1].port, 8080);
    assert_eq!(s.dests[1].weight, 3);
    assert_eq!(s.dests[1].method, ForwardMethod::Masq);
    assert_eq!(
        (s.dests[1].upper_threshold, s.dests[1].lower_threshold),
        (100, 50)
    );
}

#[test]
fn parses_method_examples() {
    let nat = parse(NAT).unwrap();
    assert_eq!(nat.services[0].dests[0].weight, 2);
    assert_eq!(nat.services[0].dests[1].weight, 1, "default weight 1");
    assert!(nat.timeouts.is_none() && nat.settings.is_none());

    let dr = parse(DR).unwrap();
    let s = &dr.services[0];
    assert_eq!(s.config.scheduler, SchedulerKind::Sh);
    assert_eq!(s.config.flags, SchedFlags::FLAG1.union(SchedFlags::FLAG2));
    assert_eq!(s.dests[0].port, 443, "port defaults to the virtual port");
    assert_eq!(s.dests[0].method, ForwardMethod::DirectRoute);

    let tun = parse(TUN).unwrap();
    let s = &tun.services[0];
    assert_eq!(
        s.config.key,
        ServiceKey::Fwmark {
            mark: 7,
            family: Family::V6
        }
    );
    assert_eq!(s.dests[0].port, 0);
    assert_eq!(s.dests[0].method, ForwardMethod::Tunnel);

    let udp = parse(UDP6).unwrap();
    let s = &udp.services[0];
    assert!(s.config.one_packet);
    assert_eq!(s.config.persistence.unwrap().netmask, Netmask::V6(64));
    assert_eq!(
        s.config.persistence.unwrap().timeout,
        Duration::from_secs(300)
    );
    assert_eq!(s.dests.len(), 2);
    assert_eq!(s.dests[1].weight, 0);

    let default_method = parse(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"1.2.3.4:80\"\n[[service.real_server]]\naddress = \"10.0.0.1\"\n",
    )
    .unwrap();
    assert_eq!(
        default_method.services[0].dests[0].method,
        ForwardMethod::DirectRoute,
        "dr is the default, as ipvsadm"
    );
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn round_trip_through_to_toml() {
    for text in [FULL, NAT, DR, TUN, UDP6] {
        let c = parse(text).unwrap();
        let out = to_toml(&c);
        let back = parse(&out).unwrap_or_else(|e| panic!("{out}\n{}", render("out", &e)));
        assert_eq!(back, c, "{out}");
        assert_eq!(to_toml(&back), out, "canonical form is stable");
    }
    let out = to_toml(&parse(DR).unwrap());
    assert!(
        out.contains("flags = [\"sh-fallback\", \"sh-port\"]"),
        "{out}"
    );
    assert!(out.contains("netmask = \"255.255.255.0\""), "{out}");
    assert!(out.starts_with("# lvsd configuration"), "{out}");
}

#[test]
fn syntax_error_has_position() {
    let (line, msg) = one("[[service]]\nprotocol = \"tcp\"\naddress = \n");
    assert_eq!(line, 3);
    assert!(msg.starts_with("TOML syntax error"), "{msg}");
}

#[test]
fn unknown_keys() {
    let (line, msg) = one("\n\nbogus = 1\n");
    assert_eq!(line, 3);
    assert!(msg.contains("unknown key 'bogus'"), "{msg}");

    let (line, msg) =
        one("[[service]]\nprotocol = \"tcp\"\naddress = \"1.2.3.4:80\"\nschedular = \"rr\"\n");
    assert_eq!(line, 4);
    assert!(
        msg.contains("unknown key 'schedular' in [[service]]"),
        "{msg}"
    );

    let (line, msg) = one(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"1.2.3.4:80\"\n[[service.real_server]]\naddress = \"10.0.0.1\"\nwieght = 2\n",
    );
    assert_eq!(line, 6);
    assert!(
        msg.contains("unknown key 'wieght' in [[service.real_server]]"),
        "{msg}"
    );

    let (line, msg) = one("[timeouts]\ntcp = 1\ntcpfin = 2\nudp = 3\nsyn = 4\n");
    assert_eq!(line, 5);
    assert!(msg.contains("'syn'"), "{msg}");
}

const SVC: &str = "[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1:80\"\n";

fn with_rs(rs: &str) -> String {
    format!("{SVC}[[service.real_server]]\n{rs}")
}

#[test]
fn bad_addresses() {
    let (line, msg) = one("[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.300:80\"\n");
    assert_eq!(line, 3);
    assert!(msg.contains("is not an address"), "{msg}");

    let (line, msg) = one("[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1\"\n");
    assert_eq!(line, 3);
    assert!(msg.contains("needs a port"), "{msg}");

    let (line, msg) = one(&with_rs("address = \"10.0.0.x\"\n"));
    assert_eq!(line, 5);
    assert!(msg.contains("is not an address"), "{msg}");

    let (line, msg) = one(&with_rs("address = \"10.0.0.1:99999\"\nmethod = \"nat\"\n"));
    assert_eq!(line, 5);
    assert!(msg.contains("not a port"), "{msg}");

    let (line, msg) = one(&with_rs("method = \"nat\"\n"));
    assert_eq!(line, 4, "points at the real server table");
    assert!(msg.contains("needs an 'address'"), "{msg}");

    let (line, msg) = one("[[service]]\nscheduler = \"rr\"\n");
    assert_eq!(line, 1);
    assert!(msg.contains("needs 'protocol' and 'address'"), "{msg}");

    let (line, msg) = one("[[service]]\nprotocol = \"icmp\"\naddress = \"192.0.2.1:80\"\n");
    assert_eq!(line, 2);
    assert!(msg.contains("unknown protocol 'icmp'"), "{msg}");
}

#[test]
fn weight_and_thresholds() {
    let (line, msg) = one(&with_rs("address = \"10.0.0.1\"\nweight = 70000\n"));
    assert_eq!(line, 6);
    assert!(msg.contains("'weight' = 70000 is out of range"), "{msg}");
    assert!(msg.contains("0 to 65535"), "{msg}");

    let (line, msg) = one(&with_rs(
        "address = \"10.0.0.1\"\nupper_threshold = 10\nlower_threshold = 20\n",
    ));
    assert_eq!(line, 7);
    assert!(
        msg.contains("lower_threshold 20 is above upper_threshold 10"),
        "{msg}"
    );

    let (line, msg) = one(&with_rs("address = \"10.0.0.1\"\nweight = \"heavy\"\n"));
    assert_eq!(line, 6);
    assert!(msg.contains("must be an integer"), "{msg}");
}

#[test]
fn duplicates() {
    let text = format!("{SVC}\n# again\n{SVC}");
    let (line, msg) = one(&text);
    assert_eq!(line, 8);
    assert!(msg.contains("duplicate service TCP 192.0.2.1:80"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");

    let text =
        with_rs("address = \"10.0.0.1\"\n[[service.real_server]]\naddress = \"10.0.0.1:80\"\n");
    let (line, msg) = one(&text);
    assert_eq!(line, 7);
    assert!(msg.contains("duplicate real server 10.0.0.1:80"), "{msg}");
    assert!(msg.contains("line 5"), "{msg}");
}

#[test]
fn scheduler_and_flags() {
    let (line, msg) = one(&format!("{SVC}scheduler = \"fastest\"\n"));
    assert_eq!(line, 4);
    assert!(msg.contains("unknown scheduler 'fastest'"), "{msg}");

    let (line, msg) = one(&format!("{SVC}scheduler = \"mh\"\nflags = [\"sh-port\"]\n"));
    assert_eq!(line, 5);
    assert!(msg.contains("write \"mh-port\""), "{msg}");

    let (line, msg) = one(&format!("{SVC}flags = [\"fast\"]\n"));
    assert_eq!(line, 4);
    assert!(msg.contains("unknown scheduler flag 'fast'"), "{msg}");
}

#[test]
fn netmask_of_the_wrong_family() {
    let (line, msg) = one(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"[2001:db8::1]:80\"\npersistent = 60\nnetmask = \"255.255.255.0\"\n",
    );
    assert_eq!(line, 5);
    assert!(msg.contains("IPv4 mask but the service is IPv6"), "{msg}");

    let (line, msg) = one(&format!("{SVC}persistent = 60\nnetmask = 64\n"));
    assert_eq!(line, 5);
    assert!(msg.contains("does not fit an IPv4 service"), "{msg}");

    let (line, msg) = one(&format!(
        "{SVC}persistent = 60\nnetmask = \"255.0.255.0\"\n"
    ));
    assert_eq!(line, 5);
    assert!(msg.contains("not contiguous"), "{msg}");

    let (line, msg) = one(&format!("{SVC}netmask = 24\n"));
    assert_eq!(line, 4);
    assert!(msg.contains("needs 'persistent'"), "{msg}");
}

#[test]
fn method_family_and_port_rules() {
    let (line, msg) = one(&with_rs("address = \"10.0.0.1:8080\"\nmethod = \"dr\"\n"));
    assert_eq!(line, 5);
    assert!(msg.contains("receives on the virtual port 80"), "{msg}");

    let (line, msg) = one(&with_rs(
        "address = \"[2001:db8::5]:80\"\nmethod = \"nat\"\n",
    ));
    assert_eq!(line, 5);
    assert!(msg.contains("another address family"), "{msg}");

    let (line, msg) = one(&with_rs("address = \"10.0.0.1\"\nmethod = \"masq\"\n"));
    assert_eq!(line, 6);
    assert!(msg.contains("unknown method 'masq'"), "{msg}");

    let (line, msg) = one(&format!("{SVC}one_packet = true\n"));
    assert_eq!(line, 4);
    assert!(msg.contains("UDP"), "{msg}");

    let (line, msg) = one("[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1:0\"\n");
    assert_eq!(line, 3);
    assert!(msg.contains("port 0"), "{msg}");
    assert!(
        parse("[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1:0\"\npersistent = 60\n")
            .is_ok()
    );

    let (line, msg) = one("[[service]]\nfwmark = 1\nprotocol = \"tcp\"\n");
    assert_eq!(line, 3);
    assert!(msg.contains("no 'protocol'"), "{msg}");
}

/// One check per type and every service health key, as in `dist/lvsd.toml.example`.
const HEALTH: &str = r#"
[[service]]
protocol = "tcp"
address = "192.0.2.100:80"
quorum = 2
hysteresis = 1
sorry_server = { address = "10.0.9.9:8080", method = "nat", inhibit = true }
quorum_down = "logger -t lvsd \"quorum lost on $LVS_SERVICE\""

  [[service.real_server]]
  address = "10.0.1.11:80"
  method = "nat"

    [service.real_server.check]
    type = "http"
    path = "/health"
    status_code = "200-399"
    virtualhost = "www.example.com"
    delay_loop = 2
    connect_timeout = 1.5
    nb_get_retry = 3
    inhibit_on_failure = true

  [[service.real_server]]
  address = "10.0.1.12:80"
  method = "nat"
  check = { type = "tcp", delay_loop = 1, alpha = true }

  [[service.real_server]]
  address = "10.0.1.13:80"
  method = "nat"

    [service.real_server.check]
    type = "https"
    path = "/"
    regex = "ok|ready"

  [[service.real_server]]
  address = "10.0.1.14:80"
  method = "nat"

    [service.real_server.check]
    type = "exec"
    misc_path = "/usr/local/bin/check-app $LVS_RIP"
    misc_timeout = 3
    misc_dynamic = true

[[service]]
protocol = "udp"
address = "192.0.2.100:53"
sorry_server = { address = "10.0.9.9" }

  [[service.real_server]]
  address = "10.0.1.11"
  method = "dr"

    [service.real_server.check]
    type = "udp"
    payload_hex = "00010100000100000000000003777777076578616d706c6503636f6d0000010001"
    require_reply = true
    connect_port = 5353
"#;

#[test]
fn health_checks_and_settings_parse() {
    let c = parse(HEALTH).unwrap_or_else(|e| panic!("{}", render("h", &e)));
    let web = &c.services[0];
    let h = web.health.as_ref().unwrap();
    assert_eq!((h.quorum, h.hysteresis), (2, 1));
    let sorry = h.sorry_server.as_ref().unwrap();
    assert_eq!(
        (sorry.addr, sorry.port, sorry.inhibit),
        (v4("10.0.9.9"), 8080, true)
    );
    assert!(h.quorum_down.as_deref().unwrap().contains("\"quorum lost"));
    assert_eq!(web.checks.len(), 4);
    let http = &web.checks[&(v4("10.0.1.11"), 80)][0];
    assert_eq!(http.kind, lvs_health::CheckKind::Http);
    assert_eq!(
        (http.delay_loop, http.connect_timeout, http.retry()),
        (2.0, 1.5, 3)
    );
    assert!(http.inhibit_on_failure);
    assert!(web.checks[&(v4("10.0.1.12"), 80)][0].alpha);
    let exec = &web.checks[&(v4("10.0.1.14"), 80)][0];
    assert!(exec.dynamic && exec.command.as_deref() == Some("/usr/local/bin/check-app $LVS_RIP"));
    let dns = &c.services[1];
    assert_eq!(
        dns.health.as_ref().unwrap().quorum,
        1,
        "keepalived's default"
    );
    assert_eq!(
        dns.health
            .as_ref()
            .unwrap()
            .sorry_server
            .as_ref()
            .unwrap()
            .port,
        53,
        "the virtual port"
    );
    assert_eq!(
        dns.checks[&(v4("10.0.1.11"), 53)][0].connect_port,
        Some(5353)
    );
    // A service without health keys has no health settings.
    assert!(parse(NAT).unwrap().services[0].health.is_none());
}

#[test]
fn health_round_trips_through_to_toml() {
    let c = parse(HEALTH).unwrap();
    let out = to_toml(&c);
    let back = parse(&out).unwrap_or_else(|e| panic!("{out}\n{}", render("out", &e)));
    assert_eq!(back, c, "{out}");
    assert_eq!(to_toml(&back), out, "canonical form is stable");
    assert!(
        out.contains("    [service.real_server.check]\n    type = \"http\"\n"),
        "{out}"
    );
    assert!(out.contains("    retry = 3\n"), "{out}");
    assert!(
        !out.contains("tls_verify"),
        "defaults are not written: {out}"
    );
    assert!(
        out.contains(
            "sorry_server = { address = \"10.0.9.9:8080\", method = \"nat\", inhibit = true }"
        ),
        "{out}"
    );
}

#[test]
fn health_requests_set_every_check() {
    let c = parse(HEALTH).unwrap();
    let reqs = health_requests(&c);
    let checks = reqs
        .iter()
        .filter(|r| matches!(r, Request::SetCheck { check: Some(_), .. }))
        .count();
    let services = reqs
        .iter()
        .filter(|r| {
            matches!(
                r,
                Request::SetServiceHealth {
                    health: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!((checks, services), (5, 2));
    // What they carry is what lvs-health accepts.
    for r in reqs {
        if let Request::SetCheck {
            addr,
            port,
            check: Some(v),
            ..
        } = r
        {
            lvs_health::parse_check(v, std::net::SocketAddr::new(addr, port)).unwrap();
        }
    }
}

/// A service with one NAT real server whose check table is `check` (indented lines).
fn with_check(check: &str) -> String {
    format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1:80\"\n\n  [[service.real_server]]\n  address = \"10.0.0.1\"\n  method = \"nat\"\n\n    [service.real_server.check]\n{check}"
    )
}

#[test]
fn bad_checks_point_at_the_key() {
    // Line 9 is the [service.real_server.check] header; the keys follow from line 10.
    for (check, line, col, words) in [
        ("    type = \"icmp\"\n", 10, 5, "unknown variant `icmp`"),
        (
            "    type = \"tcp\"\n    bogus = 1\n",
            11,
            5,
            "unknown key 'bogus'",
        ),
        (
            "    type = \"tcp\"\n    delay_loop = 0\n",
            11,
            5,
            "delay_loop = 0",
        ),
        (
            "    type = \"tcp\"\n    delay_loop = \"2s\"\n",
            11,
            5,
            "'delay_loop': invalid type",
        ),
        (
            "    type = \"tcp\"\n    path = \"/\"\n",
            11,
            5,
            "'path' does not apply to a tcp check",
        ),
        (
            "    type = \"http\"\n    regex = \"(\"\n",
            11,
            5,
            "bad regular expression",
        ),
        (
            "    type = \"exec\"\n",
            9,
            5,
            "an exec check needs 'command'",
        ),
        ("    delay_loop = 1\n", 9, 5, "'type' is required"),
        (
            "    type = \"exec\"\n    misc_path = \"true\"\n    connect_ip = \"10.0.0.2\"\n",
            12,
            5,
            "'connect_ip' does not apply",
        ),
    ] {
        let text = with_check(check);
        let d = errs(&text);
        assert_eq!(d.len(), 1, "{text}\n{d:?}");
        assert_eq!((d[0].line, d[0].column), (line, col), "{text}\n{}", d[0]);
        assert!(d[0].message.starts_with("bad health check: "), "{}", d[0]);
        assert!(d[0].message.contains(words), "{}", d[0]);
    }
    // Inline form: the key inside the inline table.
    let text = with_rs("address = \"10.0.0.1\"\ncheck = { type = \"tcp\", retry = -1 }\n");
    let d = errs(&text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].column), (6, 25), "{}", d[0]);
    assert!(d[0].message.contains("'retry'"), "{}", d[0]);
}

#[test]
fn bad_service_health_points_at_the_key() {
    let base = "[[service]]\nprotocol = \"tcp\"\naddress = \"192.0.2.1:80\"\n";
    for (extra, words) in [
        ("quorum = -1\n", "'quorum'"),
        ("quorum = \"two\"\n", "'quorum'"),
        (
            "sorry_server = { address = \"10.0.9.9:80\", weight = 70000 }\n",
            "'sorry_server' weight 70000",
        ),
        (
            "sorry_server = { address = \"10.0.9.9:80\", method = \"fast\" }\n",
            "unknown variant",
        ),
        (
            "sorry_server = { addr = \"10.0.9.9\", port = 80 }\n",
            "address = \"IP:port\"",
        ),
        (
            "sorry_server = { address = \"nowhere\" }\n",
            "not an address",
        ),
        ("sorry_server = \"10.0.9.9:80\"\n", "must be a table"),
    ] {
        let d = errs(&format!("{base}{extra}"));
        assert!(!d.is_empty());
        assert_eq!(d[0].line, 4, "{extra}: {d:?}");
        assert!(
            d.iter().any(|x| x.message.contains(words)),
            "{extra}: {d:?}"
        );
    }
}

#[test]
fn every_error_is_reported() {
    let text = r#"[[service]]
protocol = "tcp"
address = "192.0.2.1:80"
scheduler = "nope"

  [[service.real_server]]
  address = "10.0.0.1"
  weight = 70000

  [[service.real_server]]
  address = "10.0.0.2"
  upper_threshold = 1
  lower_threshold = 2

[[service]]
protocol = "udp"
address = "192.0.2.1:53"
color = "blue"
"#;
    let d = errs(text);
    let lines: Vec<usize> = d.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![4, 8, 13, 18], "{d:?}");
    let shown = render("lvsd.toml", &d);
    assert!(
        shown.starts_with("lvsd.toml:4:13: unknown scheduler 'nope'"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 4);
}

#[test]
fn timeouts_need_all_three() {
    let (line, msg) = one("[timeouts]\ntcp = 900\nudp = 300\n");
    assert_eq!(line, 1);
    assert!(msg.contains("needs 'tcpfin'"), "{msg}");
    let d = errs("[timeouts]\ntcp = 0\ntcpfin = 1\nudp = 1\n");
    assert_eq!(d[0].line, 2);
}

// ---------------------------------------------------------------------------------------
// requests, diff

fn director_of(cfg: &Config) -> Director {
    let mut d = Director::new(CoreSettings::default(), Time::ZERO);
    apply(&mut d, &requests(cfg));
    d
}

fn apply(d: &mut Director, reqs: &[Request]) {
    for r in reqs {
        crate::table::apply_change(d, r.clone()).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    }
}

fn running(d: &Director) -> Config {
    let (tcp, fin, udp) = d.timeouts().get();
    Config {
        services: d
            .services()
            .iter()
            .map(|(_, s)| {
                ServiceEntry::new(*s.config(), s.dests().iter().map(|x| x.config).collect())
            })
            .collect(),
        timeouts: Some(Timeouts {
            tcp: tcp.as_secs(),
            tcpfin: fin.as_secs(),
            udp: udp.as_secs(),
        }),
        settings: None,
    }
}

#[test]
fn requests_build_from_scratch() {
    let c = parse(FULL).unwrap();
    let r = requests(&c);
    assert_eq!(r[0], Request::Clear);
    assert!(matches!(r[1], Request::SetTimeouts { tcp: 900, .. }));
    assert!(matches!(r[2], Request::AddService { .. }));
    assert_eq!(r.len(), 5);
    let d = director_of(&c);
    let mut run = running(&d);
    run.settings = c.settings;
    assert_eq!(run, c);
}

#[test]
fn unchanged_config_yields_no_request() {
    for text in [FULL, NAT, DR, TUN, UDP6] {
        let c = parse(text).unwrap();
        let d = director_of(&c);
        assert_eq!(diff(&running(&d), &c), Vec::<Request>::new(), "{text}");
    }
}

#[test]
fn one_weight_change_is_one_edit_dest() {
    let old = parse(NAT).unwrap();
    let new = parse(&NAT.replace("weight = 2", "weight = 5")).unwrap();
    let d = director_of(&old);
    let r = diff(&running(&d), &new);
    assert_eq!(r.len(), 1, "{r:?}");
    let Request::EditDest { dest, .. } = &r[0] else {
        panic!("{r:?}")
    };
    assert_eq!((dest.addr, dest.weight), (v4("10.0.1.11"), 5));
}

#[test]
fn adding_and_removing_real_servers() {
    let old = parse(NAT).unwrap();
    let added = format!(
        "{NAT}\n  [[service.real_server]]\n  address = \"10.0.1.13:8080\"\n  method = \"nat\"\n"
    );
    let new = parse(&added).unwrap();
    let mut d = director_of(&old);
    let r = diff(&running(&d), &new);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(matches!(&r[0], Request::AddDest { dest, .. } if dest.addr == v4("10.0.1.13")));
    apply(&mut d, &r);
    assert_eq!(diff(&running(&d), &new), vec![]);

    // Remove rs2, change rs1's weight, keep rs3.
    let removed = added
        .replace(
            "  [[service.real_server]]\n  address = \"10.0.1.12:8080\"\n  method = \"nat\"\n",
            "",
        )
        .replace("weight = 2", "weight = 4");
    let newer = parse(&removed).unwrap();
    let r = diff(&running(&d), &newer);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(matches!(&r[0], Request::DeleteDest { addr, .. } if *addr == v4("10.0.1.12")));
    assert!(matches!(&r[1], Request::EditDest { dest, .. } if dest.weight == 4));
    assert_eq!(
        Summary::of(&r).to_string(),
        "+0 services, -0, ~0, real servers +0 -1 ~1"
    );
    apply(&mut d, &r);
    assert_eq!(diff(&running(&d), &newer), vec![]);
}

#[test]
fn service_level_changes() {
    let old = parse(&format!("{NAT}{TUN}")).unwrap();
    // Scheduler change: one EditService, real servers untouched.
    let new = parse(&format!("{}{TUN}", NAT.replace("\"wlc\"", "\"rr\""))).unwrap();
    let mut d = director_of(&old);
    let r = diff(&running(&d), &new);
    assert!(
        matches!(&r[..], [Request::EditService { service }] if service.scheduler == SchedulerKind::Rr.into()),
        "{r:?}"
    );
    apply(&mut d, &r);
    // Drop the fwmark service, add the DR one, set timeouts.
    let newer = parse(&format!(
        "[timeouts]\ntcp = 100\ntcpfin = 10\nudp = 30\n{}{DR}",
        NAT.replace("\"wlc\"", "\"rr\"")
    ))
    .unwrap();
    let r = diff(&running(&d), &newer);
    let s = Summary::of(&r);
    assert_eq!(
        (
            s.services_added,
            s.services_deleted,
            s.dests_added,
            s.timeouts
        ),
        (1, 1, 1, true),
        "{r:?}"
    );
    assert!(matches!(r[0], Request::DeleteService { .. }));
    apply(&mut d, &r);
    assert_eq!(diff(&running(&d), &newer), vec![]);
    // A file without [timeouts] wants the defaults back.
    let r = diff(
        &running(&d),
        &parse(&format!("{}{DR}", NAT.replace("\"wlc\"", "\"rr\""))).unwrap(),
    );
    assert_eq!(
        r,
        vec![Request::SetTimeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300
        }]
    );
}

#[test]
fn listing_round_trip() {
    let c = parse(NAT).unwrap();
    let infos: Vec<lvs_api::ServiceInfo> = c
        .services
        .iter()
        .map(|s| lvs_api::ServiceInfo {
            config: s.config.into(),
            stats: Default::default(),
            rates: Default::default(),
            dests: s
                .dests
                .iter()
                .map(|d| lvs_api::DestInfo {
                    config: (*d).into(),
                    active: 0,
                    inactive: 0,
                    persistent: 0,
                    overloaded: false,
                    stats: Default::default(),
                    rates: Default::default(),
                })
                .collect(),
        })
        .collect();
    let run = from_listing(&infos, None);
    assert_eq!(run, c);
    assert!(diff(&run, &c).is_empty());
}

/// `--set` refuses what IPVS refuses (more than INT_MAX / HZ seconds) and changes nothing.
#[test]
fn timeouts_beyond_ipvs_limit_are_refused() {
    let mut d = Director::new(CoreSettings::default(), Time::ZERO);
    let before = d.timeouts().get();
    let e = crate::table::apply_change(
        &mut d,
        Request::SetTimeouts {
            tcp: u64::MAX,
            tcpfin: 0,
            udp: 0,
        },
    )
    .unwrap_err();
    assert!(e.contains("larger than IPVS allows"), "{e}");
    assert_eq!(d.timeouts().get(), before);
    let max = crate::table::MAX_TIMEOUT;
    crate::table::apply_change(
        &mut d,
        Request::SetTimeouts {
            tcp: max,
            tcpfin: 0,
            udp: 0,
        },
    )
    .unwrap();
    assert_eq!(d.timeouts().get().0.as_secs(), max);
}
