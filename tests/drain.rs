//! Removing a real server or a service never breaks a connection it already has (IPVS's
//! `expire_nodest_conn=0`): per method, 20 downloads of 30 MB and a loop of short requests
//! run while real server rs3 is taken away by `lvsadm -d`, by a reload of the configuration
//! file without it, by a failing health check (no `inhibit_on_failure`), by `-w 0`, or the
//! whole service by `-D`. Every download must arrive with its SHA-256 intact, and every short
//! request started while the service exists must be answered.
//!
//! On `--datapath afpacket` the kernel steering is checked too: the removed server's reply
//! entry (NAT) or the deleted service's VIP:port stays in lvsd's nftables sets while a
//! connection needs it, and leaves once the last one has expired. TCP keeps a finished
//! download 120 s in TIME_WAIT, so that last step is watched on a UDP flow (UDP timeout set
//! to 3 s with `lvsadm --set`) removed the same way at the same moment.
//!
//! Needs root and `nft` (a failure under CI=true, else a counted skip) and the binaries built
//! (`cargo build --workspace --bins`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lvs_api::{Client, Reply, Request};
use lvs_e2e::{
    Director, HTTP_PORT, Method, RIPS, UDP_PORT, VIP, answered_by, kernel_datapath, skip,
};

/// How rs3 (or the service) is taken away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    /// `lvsadm -d` of rs3 from both services.
    Delete,
    /// The configuration file without rs3, reloaded.
    Reload,
    /// rs3's health check starts failing; it has no `inhibit_on_failure`, so rs3 is removed.
    Health,
    /// `lvsadm -e ... -w 0`: rs3 stays listed and takes no new connection.
    Quiesce,
    /// `lvsadm -D` of both services.
    DeleteService,
}

const SIZE: u64 = 30_000_000;
const DOWNLOADS: usize = 20;
/// UDP connection timeout during the test, seconds.
const UDP_TIMEOUT: u64 = 3;

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Nat => "nat",
        Method::Dr => "dr",
        Method::Tun => "tun",
    }
}

/// The configuration: TCP VIP:80 over rs1..rs3 (rr), UDP VIP:5353 over rs3 alone, with the
/// lab's method; rs3 carries an exec check that fails once `down` exists; `with_rs3 = false`
/// leaves rs3 out.
fn config(method: Method, down: &str, with_rs3: bool) -> String {
    let check = format!(
        "\n    [service.real_server.check]\n    type = \"exec\"\n    command = \"test ! -e {down}\"\n    \
         delay_loop = 1\n    connect_timeout = 1\n    retry = 0\n    warmup = 0\n"
    );
    let mut s = String::new();
    for (proto, port, servers) in [("tcp", HTTP_PORT, &[0, 1, 2][..]), ("udp", UDP_PORT, &[2])] {
        s.push_str(&format!(
            "[[service]]\nprotocol = \"{proto}\"\naddress = \"{VIP}:{port}\"\nscheduler = \"rr\"\n"
        ));
        for &i in servers.iter().filter(|&&i| with_rs3 || i != 2) {
            s.push_str(&format!(
                "\n  [[service.real_server]]\n  address = \"{}:{port}\"\n  method = \"{}\"\n  weight = 1\n",
                RIPS[i],
                method_name(method)
            ));
            if i == 2 {
                s.push_str(&check);
            }
        }
        s.push('\n');
    }
    s
}

/// Write-and-rename, as editors and configuration management do.
fn write(path: &PathBuf, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Elements of one of lvsd's nftables sets in the director namespace, one per entry.
fn set_elements(d: &Director, set: &str) -> Vec<String> {
    let out = d.in_director(&["nft", "list", "set", "netdev", "lvsd", set]);
    assert!(
        out.status.success(),
        "nft list set {set}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(start) = text.find("elements = {") else {
        return Vec::new();
    };
    let body = &text[start + "elements = {".len()..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.split(',')
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|e| !e.is_empty())
        .collect()
}

/// The steering entry a removal must keep: rs3's replies (NAT) or the VIP:port (a deleted
/// service), as `(set, element)`; `None` where the method has nothing to keep for rs3.
fn kept_entry(
    method: Method,
    removal: Removal,
    proto: &str,
    port: u16,
) -> Option<(String, String)> {
    match removal {
        Removal::DeleteService => Some(("svc_ip".into(), format!("{VIP} . {proto} . {port}"))),
        _ if method == Method::Nat => {
            Some(("nat_ip".into(), format!("{} . {proto} . {port}", RIPS[2])))
        }
        _ => None,
    }
}

fn has(d: &Director, entry: &(String, String)) -> bool {
    set_elements(d, &entry.0).contains(&entry.1)
}

/// One short request of the loop: when it ran and who answered (or why not).
#[derive(Debug, Clone)]
struct Sample {
    start: Instant,
    result: Result<usize, String>,
}

fn remove(d: &Director, removal: Removal, file: &PathBuf, down: &str) {
    let rs3 = |port: u16| format!("{}:{port}", RIPS[2]);
    match removal {
        Removal::Delete => {
            d.lvsadm_ok(&[
                "-d",
                "-t",
                &format!("{VIP}:{HTTP_PORT}"),
                "-r",
                &rs3(HTTP_PORT),
            ]);
            d.lvsadm_ok(&[
                "-d",
                "-u",
                &format!("{VIP}:{UDP_PORT}"),
                "-r",
                &rs3(UDP_PORT),
            ]);
        }
        Removal::Reload => {
            write(file, &config(d.method(), down, false));
            let mut c = Client::connect(d.socket()).expect("control socket");
            assert_eq!(c.call(Request::Reload).unwrap(), Reply::Ok);
        }
        Removal::Health => {
            std::fs::write(down, "down").unwrap();
        }
        Removal::Quiesce => {
            let m = lvs_e2e::forward_flag(d.method());
            for (p, port) in [("-t", HTTP_PORT), ("-u", UDP_PORT)] {
                let vp = format!("{VIP}:{port}");
                d.lvsadm_ok(&["-e", p, &vp, "-r", &rs3(port), m, "-w", "0"]);
            }
        }
        Removal::DeleteService => {
            d.lvsadm_ok(&["-D", "-t", &format!("{VIP}:{HTTP_PORT}")]);
            d.lvsadm_ok(&["-D", "-u", &format!("{VIP}:{UDP_PORT}")]);
        }
    }
}

/// Whether the removal has taken effect in the listing (rs3 gone or at weight 0, or the
/// service gone).
fn took_effect(d: &Director, removal: Removal) -> bool {
    let list = d.lvsadm_ok(&["-L", "-n"]);
    let rs3 = format!("{}:{HTTP_PORT}", RIPS[2]);
    match removal {
        Removal::DeleteService => !list.contains(&format!("{VIP}:{HTTP_PORT}")),
        Removal::Quiesce => list
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("-> "))
            .map(|r| r.split_whitespace().collect::<Vec<_>>())
            .any(|f| f.len() >= 3 && f[0] == rs3 && f[2] == "0"),
        _ => !list.contains(&rs3),
    }
}

fn run(method: Method, removal: Removal, test: &str) {
    if skip(test) {
        return;
    }
    let mut d = Director::without_lvsd(method, test);
    let file = PathBuf::from(format!("{}.toml", d.socket().display()));
    let down = format!("{}.down", d.socket().display());
    let _ = std::fs::remove_file(&down);
    write(&file, &config(method, &down, true));
    let file_arg = file.to_str().unwrap().to_string();
    d.set_lvsd_args(&["--config", &file_arg]);
    d.start_lvsd();
    d.lvsadm_ok(&["--set", "0", "0", &UDP_TIMEOUT.to_string()]);
    let d = Arc::new(d);
    // Wait for rs3's first health check to pass (it starts up, as keepalived's checks do).
    std::thread::sleep(Duration::from_millis(1500));

    let script = format!(
        "set -o pipefail; curl -sS --limit-rate 3M -m 60 'http://{VIP}/blob?size={SIZE}' | sha256sum"
    );
    let downloads: Vec<Child> = (0..DOWNLOADS)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", &d.lab().client_ns(), "bash", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("curl")
        })
        .collect();
    // The short-request loop, each request a new connection; it ends with the downloads, or
    // at the removal of the service (later requests have no service to go to).
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let looping = {
        let (d, stop, samples) = (Arc::clone(&d), Arc::clone(&stop), Arc::clone(&samples));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let start = Instant::now();
                let result = d
                    .try_curl(&format!("http://{VIP}/"))
                    .and_then(|b| answered_by(&b).ok_or_else(|| format!("odd answer {b:?}")));
                samples.lock().unwrap().push(Sample { start, result });
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    // A UDP flow to rs3, alive when the removal happens.
    let echo = d.udp("drain");
    assert_eq!(
        answered_by(&echo),
        Some(2),
        "UDP VIP:5353 is served by rs3: {echo}"
    );
    let mut looping = Some(looping);
    if removal == Removal::DeleteService {
        // The loop's last request must be over before the service goes (a SYN sent just
        // after the removal has no service to go to).
        stop.store(true, Ordering::SeqCst);
        if let Some(l) = looping.take() {
            l.join().expect("request loop panicked");
        }
    }
    let removed_at = Instant::now();
    remove(&d, removal, &file, &down);
    while !took_effect(&d, removal) {
        assert!(
            removed_at.elapsed() < Duration::from_secs(10),
            "{removal:?} did not take effect:\n{}\n{}",
            d.lvsadm_ok(&["-L", "-n"]),
            d.lvsd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let effective = Instant::now();
    eprintln!(
        "{method} {removal:?}: in effect after {:?}; rs3 had these connections:\n{}",
        effective - removed_at,
        d.lvsadm_ok(&["-L", "-n", "-c"])
            .lines()
            .filter(|l| l.contains(RIPS[2].to_string().as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The steering keeps what the lingering connections need (afpacket only: the kernel fast
    // path finds connections in its own map).
    let steering = !kernel_datapath();
    let tcp_entry = kept_entry(method, removal, "tcp", HTTP_PORT);
    let udp_entry = kept_entry(method, removal, "udp", UDP_PORT);
    if steering && let (Some(t), Some(u)) = (&tcp_entry, &udp_entry) {
        assert!(
            has(&d, t),
            "{removal:?}: {t:?} left steering while downloads run"
        );
        if removal == Removal::Quiesce {
            assert!(has(&d, u), "-w 0 keeps {u:?}");
        } else {
            // The UDP flow expires UDP_TIMEOUT s after its last packet; the entry goes with it.
            let mut seen = false;
            let deadline = Instant::now() + Duration::from_secs(UDP_TIMEOUT + 5);
            while has(&d, u) {
                seen = true;
                assert!(
                    Instant::now() < deadline,
                    "{removal:?}: {u:?} still in steering {} s after its last connection's timeout\n{}",
                    UDP_TIMEOUT + 5,
                    d.lvsadm_ok(&["-L", "-n", "-c"])
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(
                seen,
                "{removal:?}: {u:?} left steering at once, while its UDP flow lived"
            );
            eprintln!(
                "{method} {removal:?}: {u:?} left steering {:?} after the removal",
                removed_at.elapsed()
            );
            assert!(
                has(&d, t),
                "{removal:?}: {t:?} must stay while its TCP connections exist"
            );
        }
    }

    let expect = lvs_lab::blob::blob_sha256(SIZE);
    let mut broken = Vec::new();
    for (i, c) in downloads.into_iter().enumerate() {
        let out = c.wait_with_output().expect("wait");
        let sum = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if !out.status.success() || sum != expect {
            broken.push(format!(
                "download {i}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(l) = looping {
        l.join().expect("request loop panicked");
    }
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&down);
    assert!(
        broken.is_empty(),
        "{method} {removal:?}: {} of {DOWNLOADS} downloads broken:\n{}\nlvsd log:\n{}",
        broken.len(),
        broken.join("\n"),
        d.lvsd_log()
    );

    let samples = samples.lock().unwrap().clone();
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{method} {removal:?}: {} of {} short requests failed: {failed:?}",
        failed.len(),
        samples.len()
    );
    let late_rs3 = samples
        .iter()
        .filter(|s| s.start > effective && s.result == Ok(2))
        .count();
    assert_eq!(
        late_rs3, 0,
        "{method} {removal:?}: rs3 took new connections after its removal"
    );
    let by_rs3 = samples.iter().filter(|s| s.result == Ok(2)).count();
    eprintln!(
        "{method} {removal:?}: {DOWNLOADS} downloads intact; {} short requests answered ({by_rs3} by rs3, all before the removal)",
        samples.len()
    );
}

macro_rules! drain_tests {
    ($($name:ident: $method:expr, $removal:expr;)*) => {$(
        #[test]
        fn $name() {
            run($method, $removal, stringify!($name));
        }
    )*};
}

drain_tests! {
    nat_delete_real_keeps_downloads: Method::Nat, Removal::Delete;
    nat_reload_without_real_keeps_downloads: Method::Nat, Removal::Reload;
    nat_health_removal_keeps_downloads: Method::Nat, Removal::Health;
    nat_weight_0_keeps_downloads: Method::Nat, Removal::Quiesce;
    nat_delete_service_keeps_downloads: Method::Nat, Removal::DeleteService;
    dr_delete_real_keeps_downloads: Method::Dr, Removal::Delete;
    dr_reload_without_real_keeps_downloads: Method::Dr, Removal::Reload;
    dr_health_removal_keeps_downloads: Method::Dr, Removal::Health;
    dr_weight_0_keeps_downloads: Method::Dr, Removal::Quiesce;
    dr_delete_service_keeps_downloads: Method::Dr, Removal::DeleteService;
    tun_delete_real_keeps_downloads: Method::Tun, Removal::Delete;
    tun_reload_without_real_keeps_downloads: Method::Tun, Removal::Reload;
    tun_health_removal_keeps_downloads: Method::Tun, Removal::Health;
    tun_weight_0_keeps_downloads: Method::Tun, Removal::Quiesce;
    tun_delete_service_keeps_downloads: Method::Tun, Removal::DeleteService;
}
