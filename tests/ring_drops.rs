//! Frames the kernel drops because lvsd's capture ring is full are counted, in the metrics
//! (`lvs_capture_ring_*_total{interface,worker}`) and in `lvsadm --drops` (`ring full`), and
//! both say the same. lvsd runs with the smallest ring it accepts (`--rx-ring v3
//! --rx-blocks 1`: one 256 KiB block, so every frame that arrives while lvsd holds the block is
//! dropped and the ring freezes), and the router, next to the director's front interface,
//! sends bursts of 1,200-byte UDP datagrams to a VIP port that no service has (each frame goes
//! to user space on either datapath and is left to the kernel) until lvsd counts drops. See
//! `lib.rs` for the fixture.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use lvs_e2e::{Director, Method, VIP, skip};

/// Where lvsd serves metrics, inside the director namespace.
const LISTEN: &str = "127.0.0.1:9101";

/// One burst: `COUNT` datagrams of 1,200 bytes to `VIP:PORT` as fast as Python sends them;
/// prints how many the socket took.
const BURST: &str = "import socket,sys\n\
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
    s.setsockopt(socket.SOL_SOCKET,socket.SO_SNDBUF,4<<20)\n\
    dst=(sys.argv[1],int(sys.argv[2])); data=b'x'*1200; sent=0\n\
    for _ in range(int(sys.argv[3])):\n\
    \x20   try:\n\
    \x20       s.sendto(data,dst); sent+=1\n\
    \x20   except OSError:\n\
    \x20       pass\n\
    print(sent)\n";

/// The samples of one family in an exposition: labels (as written) → value.
fn family(text: &str, name: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_string(), value.parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// `interface` → count of the `ring full` rows of `lvsadm --drops` (summed over workers).
fn ring_full(table: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for l in table.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let ["ring", "full", iface, _worker, count] = f[..] {
            *out.entry(iface.to_string()).or_default() += count.parse::<u64>().expect("count");
        }
    }
    out
}

fn scrape(d: &Director) -> String {
    let url = format!("http://{LISTEN}/metrics");
    let out = d.in_director(&["curl", "-sS", "-m", "10", &url]);
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_full_capture_ring_is_counted_in_metrics_and_lvsadm() {
    const TEST: &str = "a_full_capture_ring_is_counted_in_metrics_and_lvsadm";
    if skip(TEST) {
        return;
    }
    let mut d = Director::without_lvsd(Method::Nat, TEST);
    d.set_lvsd_args(&[
        "--rx-ring",
        "v3",
        "--rx-blocks",
        "1",
        "--metrics-listen",
        LISTEN,
    ]);
    d.start_lvsd();
    // Every drop reason of the core is listed, zeros included, and each socket's ring.
    let before = d.lvsadm_ok(&["--drops"]);
    assert!(
        before.starts_with("Frames lost since lvsd started (datapath "),
        "{before}"
    );
    for reason in ["malformed", "no_route", "table_full"] {
        assert!(
            before
                .lines()
                .any(|l| l.split_whitespace().take(2).eq(["core", reason])),
            "no core {reason} row in:\n{before}"
        );
    }
    assert!(ring_full(&before).contains_key("eth0"), "{before}");

    let router = d.lab().router_ns();
    let (vip, port) = (VIP.to_string(), "9".to_string());
    let mut sent = 0u64;
    let mut drops = 0;
    for _ in 0..10 {
        let out = d
            .lab()
            .exec(&router, &["python3", "-c", BURST, &vip, &port, "20000"])
            .expect("python3 in the router namespace");
        assert!(
            out.status.success(),
            "burst: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sent += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
        // Workers read the kernel's ring statistics once a second.
        std::thread::sleep(Duration::from_millis(1500));
        drops = ring_full(&d.lvsadm_ok(&["--drops"]))
            .get("eth0")
            .copied()
            .unwrap_or(0);
        if drops > 0 {
            break;
        }
    }
    eprintln!("{sent} datagrams sent; the ring of eth0 dropped {drops}");
    assert!(
        drops > 0,
        "no ring drop counted after {sent} datagrams into a one-block ring:\n{}",
        d.lvsadm_ok(&["--drops"])
    );

    // Quiet now: another second and the counts stand still; the two views must agree.
    std::thread::sleep(Duration::from_millis(1500));
    let table = d.lvsadm_ok(&["--drops"]);
    let text = scrape(&d);
    let table_again = d.lvsadm_ok(&["--drops"]);
    eprintln!("lvsadm --drops:\n{table}");
    assert_eq!(table, table_again, "the counts moved without traffic");
    let rings = ring_full(&table);
    let metric = family(&text, "lvs_capture_ring_drops_total");
    let eth0 = r#"{interface="eth0",worker="0"}"#;
    assert_eq!(
        metric.get(eth0).copied(),
        rings.get("eth0").copied(),
        "lvsadm --drops:\n{table}\nmetrics: {metric:?}"
    );
    assert!(metric[eth0] > 0);
    // The kernel offered at least the frames it dropped; a v3 ring drops only while frozen.
    let packets = family(&text, "lvs_capture_ring_packets_total");
    assert!(packets[eth0] >= metric[eth0], "{packets:?} {metric:?}");
    let freezes = family(&text, "lvs_capture_ring_freezes_total");
    assert!(freezes[eth0] > 0, "{freezes:?}");
    let freezes_row = table
        .lines()
        .find(|l| l.split_whitespace().take(3).eq(["ring", "freezes", "eth0"]))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(freezes_row, Some(freezes[eth0]), "{table}");
    // The other interface saw no burst: its ring is listed, with its own count.
    assert!(rings.contains_key("eth1"), "{table}");
    assert!(
        text.contains("# TYPE lvs_socket_tx_drops counter"),
        "the send losses are exported too"
    );
}
