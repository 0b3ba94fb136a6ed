//! lvsd's lifecycle end to end: after SIGTERM no steering rule, address, route, link flag,
//! qdisc, process or socket of lvsd is left in the director namespace; after a crash
//! (SIGKILL) the next lvsd replaces the stale rules and starts clean.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use lvs_e2e::{Director, HTTP_PORT, Method, VIP, answered_by, skip};

/// Everything of the director namespace lvsd could change, as text. IPv6 (link-local
/// addresses finishing DAD) and carrier/operstate (the bridge port coming up) change by
/// themselves while the lab settles, so they are left out.
fn director_state(d: &Director) -> String {
    let mut s = String::new();
    for cmd in [
        &["ip", "-4", "-o", "addr", "show"][..],
        &["ip", "-d", "-o", "link", "show"],
        &["ip", "-4", "route", "show", "table", "all"],
        &["ip", "rule", "show"],
        &["tc", "qdisc", "show"],
        &["nft", "list", "ruleset"],
        &[
            "sysctl",
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.rp_filter",
        ],
    ] {
        let out = d.in_director(cmd);
        let text = String::from_utf8_lossy(&out.stdout)
            .replace("NO-CARRIER,", "")
            .replace("state DOWN ", "state UP ");
        s += &format!(
            "$ {}\n{text}{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    s
}

fn steering_table(d: &Director) -> Option<String> {
    let out = d.in_director(&["nft", "list", "table", "netdev", "lvsd"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// With no lvsd rule, the director's kernel owns VIP:80 again and, with nothing listening,
/// answers the client's SYN with a RST: curl fails fast with "connection refused".
fn assert_kernel_refuses(d: &Director) {
    let err = d
        .try_curl(&format!("http://{VIP}/"))
        .expect_err("nothing listens on the director");
    assert!(
        err.contains("refused") || err.contains("(7)"),
        "expected a RST from the director's kernel, got: {err}"
    );
}

/// Whether lvsd's nft table takes VIP:80/tcp from the kernel (as a rule or a set element).
fn steers_http(table: &str) -> bool {
    table.contains(&format!("ip daddr {VIP} tcp dport {HTTP_PORT} "))
        || table.contains(&format!("{VIP} . tcp . {HTTP_PORT}"))
}

fn configure_and_check(d: &Director) {
    d.add_services("rr", &[0, 1, 2]);
    let body = d.curl_vip();
    assert!(answered_by(&body).is_some(), "{body:?}");
    let table = steering_table(d).expect("lvsd's table exists while it runs");
    assert!(
        steers_http(&table),
        "steering rule for the service:\n{table}"
    );
}

fn assert_clean_stop(d: &mut Director, before: &str) {
    let status = d.stop_lvsd();
    assert_eq!(
        status.code(),
        Some(0),
        "lvsd must exit 0 on SIGTERM ({status}):\n{}",
        d.lvsd_log()
    );
    assert!(
        steering_table(d).is_none(),
        "`nft list table netdev lvsd` must fail after SIGTERM"
    );
    assert!(
        !d.socket().exists(),
        "control socket {} left behind",
        d.socket().display()
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", &d.lab().director_ns()])
        .output()
        .expect("ip netns pids");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "processes left in the director namespace: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let after = director_state(d);
    assert_eq!(before, after, "director namespace changed by lvsd");
    assert_kernel_refuses(d);
}

#[test]
fn sigterm_leaves_nothing_behind() {
    let test = "sigterm_leaves_nothing_behind";
    if skip(test) {
        return;
    }
    let mut d = Director::without_lvsd(Method::Nat, test);
    let before = director_state(&d);
    assert!(steering_table(&d).is_none(), "no lvsd table before start");
    d.start_lvsd();
    configure_and_check(&d);
    assert_clean_stop(&mut d, &before);
}

#[test]
fn restart_after_kill9_replaces_stale_rules() {
    let test = "restart_after_kill9_replaces_stale_rules";
    if skip(test) {
        return;
    }
    let mut d = Director::without_lvsd(Method::Dr, test);
    let before = director_state(&d);
    d.start_lvsd();
    configure_and_check(&d);
    d.kill_lvsd();
    // A crash leaves the rules (VIP:80 is now black-holed) and the socket file.
    let stale = steering_table(&d).expect("a killed lvsd leaves its table");
    assert!(steers_http(&stale), "{stale}");
    let curl = d
        .lab()
        .exec(
            &d.lab().client_ns(),
            &["curl", "-sS", "-m", "2", &format!("http://{VIP}/")],
        )
        .expect("curl");
    if lvs_e2e::datapath() == "tc" {
        // The kernel program outlives the process and schedules new flows of an rr service
        // from the tables it was given: the service keeps answering.
        assert_eq!(
            curl.status.code(),
            Some(0),
            "the kernel fast path keeps serving after kill -9"
        );
    } else {
        // ... so VIP:80 is taken from the kernel and nobody forwards it: the SYN goes
        // unanswered.
        assert_eq!(
            curl.status.code(),
            Some(28),
            "curl must time out while the stale rules drop"
        );
    }
    assert!(d.socket().exists(), "a killed lvsd leaves its socket file");

    d.start_lvsd();
    let table = steering_table(&d).expect("table of the new lvsd");
    assert!(
        !steers_http(&table),
        "the new lvsd must replace the stale rules with its own (none yet):\n{table}"
    );
    let list = d.lvsadm_ok(&["-L", "-n"]);
    assert!(!list.contains("TCP") && !list.contains("UDP"), "{list}");
    assert_kernel_refuses(&d);
    configure_and_check(&d);
    assert_clean_stop(&mut d, &before);
}

#[test]
fn a_start_that_fails_after_the_data_path_is_up_leaves_nothing_behind() {
    let test = "failed_start_leaves_nothing_behind";
    if skip(test) {
        return;
    }
    let d = Director::without_lvsd(Method::Nat, test);
    let before = director_state(&d);
    // The steering table and (datapath tc) the kernel fast path are set up before the
    // control socket is bound; a socket that cannot be created fails the start there.
    let socket = "/proc/lvsd-cannot-bind-here.sock";
    let mut child = d
        .lvsd_command(std::path::Path::new(socket))
        // No NO_COLOR: a pipe is not a terminal, so the log must carry no colour codes.
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start lvsd");
    let t = std::time::Instant::now();
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if t.elapsed() > std::time::Duration::from_secs(20) {
            lvs_e2e::terminate(&mut child, std::time::Duration::from_secs(5));
            panic!("lvsd did not exit within 20 s with an unusable socket {socket}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        !status.success(),
        "lvsd started with socket {socket}: {err}"
    );
    assert!(err.contains(socket), "the error names the socket: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {err:?}"
    );
    assert_eq!(
        err.matches("cannot bind control socket").count(),
        1,
        "the start-up error is printed once: {err}"
    );
    assert!(
        steering_table(&d).is_none(),
        "a failed start left lvsd's nft table behind: {err}"
    );
    assert_eq!(
        before,
        director_state(&d),
        "director namespace changed by a failed start"
    );
}

/// Runs `args` in namespace `ns`; panics with the output if it fails.
fn ip_ok(d: &Director, ns: &str, args: &[&str]) {
    d.lab()
        .exec_ok(ns, args)
        .unwrap_or_else(|e| panic!("{}: {e:#}", args.join(" ")));
}

fn wait_for_log(d: &Director, needle: &str, within: Duration) {
    let t = Instant::now();
    while !d.lvsd_log().contains(needle) {
        assert!(
            t.elapsed() < within,
            "no '{needle}' in lvsd's log within {within:?}:\n{}",
            d.lvsd_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (2 s at most) until lvsd's steering table satisfies `ok`.
fn wait_for_steering(d: &Director, what: &str, ok: impl Fn(&str) -> bool) {
    let t = Instant::now();
    loop {
        let table = steering_table(d).expect("steering table");
        if ok(&table) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "steering not {what}:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An interface that appears after lvsd started (a veth moved into the director's namespace,
/// renamed, with a second VIP on it) is served within a second: a service on that VIP,
/// configured before the interface existed, answers. Renamed again, it stays served under
/// its new name. Removing it leaves lvsd running, says so in the log, and the first VIP keeps
/// working.
#[test]
fn an_interface_added_later_is_served_and_its_removal_logged() {
    if skip("an_interface_added_later_is_served_and_its_removal_logged") {
        return;
    }
    let d = Director::start(Method::Nat, "iface_follow");
    d.add_services("rr", &[0, 1, 2]);
    let vip2 = "10.201.9.100";
    let vp2 = format!("{vip2}:{HTTP_PORT}");
    d.lvsadm_ok(&["-A", "-t", &vp2, "-s", "rr"]);
    for i in 0..3 {
        let rp = format!("{}:{HTTP_PORT}", lvs_e2e::RIPS[i]);
        d.lvsadm_ok(&["-a", "-t", &vp2, "-r", &rp, "-m"]);
    }
    // Applied changes are logged in ipvsadm's words.
    let first_rs = format!(
        "configuration applied change=-a -t {vp2} -r {}:{HTTP_PORT} -m -w 1",
        lvs_e2e::RIPS[0]
    );
    assert!(d.lvsd_log().contains(&first_rs), "{}", d.lvsd_log());
    let (router, director) = (d.lab().router_ns(), d.lab().director_ns());
    ip_ok(
        &d,
        &router,
        &[
            "ip", "link", "add", "lvsnew0", "type", "veth", "peer", "name", "lvsnew1",
        ],
    );
    ip_ok(
        &d,
        &router,
        &["ip", "addr", "add", "10.201.9.1/24", "dev", "lvsnew0"],
    );
    ip_ok(&d, &router, &["ip", "link", "set", "lvsnew0", "up"]);
    ip_ok(
        &d,
        &router,
        &["ip", "link", "set", "lvsnew1", "netns", &director],
    );
    ip_ok(
        &d,
        &director,
        &["ip", "link", "set", "lvsnew1", "name", "eth9"],
    );
    // Served while still down: its sockets carry an error (ENETDOWN) that lvsd must read,
    // or its workers would spin on them.
    wait_for_log(&d, "new interface served", Duration::from_secs(2));
    let cpu = d.lvsd_cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = d.lvsd_cpu_ticks() - cpu;
    assert!(
        used < 30,
        "lvsd used {used}/100 s of CPU in 1 s with an idle, down interface"
    );
    ip_ok(
        &d,
        &director,
        &["ip", "addr", "add", "10.201.9.2/24", "dev", "eth9"],
    );
    ip_ok(
        &d,
        &director,
        &["ip", "addr", "add", &format!("{vip2}/24"), "dev", "eth9"],
    );
    ip_ok(&d, &director, &["ip", "link", "set", "eth9", "up"]);
    let up = Instant::now();
    let url = format!("http://{vip2}/");
    let served_after = loop {
        let out = d
            .lab()
            .exec(&d.lab().client_ns(), &["curl", "-sS", "-m", "0.3", &url])
            .expect("curl");
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && answered_by(&body).is_some() {
            break up.elapsed();
        }
        assert!(
            up.elapsed() < Duration::from_secs(5),
            "{url} not served 5 s after its interface came up: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.lvsd_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("a service on a new interface answered {served_after:?} after the link came up");
    assert!(
        served_after < Duration::from_secs(1),
        "served only after {served_after:?}"
    );
    wait_for_log(&d, "new interface served", Duration::from_secs(1));
    wait_for_steering(&d, "hooked on eth9", |t| t.contains("\"eth9\""));
    for _ in 0..3 {
        let body = d.curl(&url);
        assert!(answered_by(&body).is_some(), "{body}");
    }
    // The new socket's capture ring is counted under the interface's name.
    let has_ring = |name: &str| {
        let drops = d.lvsadm_ok(&["--drops"]);
        let found = drops
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["ring", "full", name]));
        (found, drops)
    };
    let (found, drops) = has_ring("eth9");
    assert!(found, "no ring row for eth9 in lvsadm --drops:\n{drops}");

    // Renamed (every non-loopback interface is served): still served, under its new name.
    ip_ok(&d, &director, &["ip", "link", "set", "eth9", "down"]);
    ip_ok(
        &d,
        &director,
        &["ip", "link", "set", "eth9", "name", "eth8"],
    );
    ip_ok(&d, &director, &["ip", "link", "set", "eth8", "up"]);
    wait_for_log(&d, "from=eth9 to=eth8", Duration::from_secs(2));
    wait_for_steering(&d, "re-hooked on eth8", |t| {
        t.contains("\"eth8\"") && !t.contains("\"eth9\"")
    });
    let renamed = Instant::now();
    while d
        .try_curl(&url)
        .map(|b| answered_by(&b))
        .ok()
        .flatten()
        .is_none()
    {
        assert!(
            renamed.elapsed() < Duration::from_secs(5),
            "{url} not served after the rename:\n{}",
            d.lvsd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its losses from now on are counted under the new name, the earlier ones stay.
    let (found, drops) = has_ring("eth8");
    assert!(found, "no ring row for eth8 after the rename:\n{drops}");
    assert!(has_ring("eth9").0, "{drops}");

    ip_ok(&d, &router, &["ip", "link", "del", "lvsnew0"]);
    wait_for_log(&d, "no longer served", Duration::from_secs(2));
    wait_for_steering(&d, "eth8 unhooked", |t| !t.contains("\"eth8\""));
    assert!(
        d.lvsadm_ok(&["-L", "-n"]).contains(&vp2),
        "lvsd still answers"
    );
    let body = d.curl_vip();
    assert!(
        answered_by(&body).is_some(),
        "the first VIP still served: {body}"
    );
    let log = d.lvsd_log();
    assert!(!log.contains("receive failed"), "{log}");
}

/// `--log-format json`: every log line is one JSON object (here the start-up error of an
/// interface that does not exist), with its level and message.
#[test]
fn json_logs_are_one_object_per_line() {
    let b = lvs_e2e::bins();
    let out = std::process::Command::new(&b.lvsd)
        .args([
            "--log-format",
            "json",
            "--socket",
            "/tmp/lvs-e2e-json-log.sock",
            "--interface",
            "lvs-no-such-if0",
        ])
        .env_remove("LVSD_LOG")
        .output()
        .expect("run lvsd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let l = lines[0];
    assert!(l.starts_with('{') && l.ends_with('}'), "a JSON object: {l}");
    assert!(l.contains(r#""level":"ERROR""#), "{l}");
    assert!(l.contains("no interface named 'lvs-no-such-if0'"), "{l}");
    assert!(l.contains(r#""timestamp":""#), "{l}");
}
