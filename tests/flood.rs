//! A SYN flood from random sources does not keep clients out (issue 11): trafgen, on the
//! router's link to the director and as fast as one CPU lets it, sends TCP SYNs to VIP:80
//! from random addresses of 10.250.0.0/16 and random ports for 30 s, while the client
//! fetches `http://VIP/` with curl in a loop (a new connection each time, 5 s at most per
//! request) during the flood and for 20 s after it. At least 99 % of the client's requests
//! must succeed in each of the two periods; lvsd's table never holds more than the embryonic
//! limit of half-open entries; and lvsd's resident memory, bounded during the flood, comes
//! back to within 10 % (or 8 MiB, whichever is more: the allocator's granularity) of what it
//! was before once the flood's entries expired.
//!
//! On `--datapath afpacket` the capture ring, not lvsd's table, is what a flood at that rate
//! overwhelms (see the comment at the assertion): the 99 % during the flood is asserted on
//! the kernel fast path, everything else on both.
//!
//! The flood's entries live for SYN_RECV's timeout: lvsd runs with `--tcp-timeout
//! syn_recv=10` and `time_wait=10` (IPVS's 60 and 120 s would only make the test wait longer)
//! and the default embryonic limit (an eighth of the 1,048,576-entry table: 131,072).
//! On the `tc` datapath the kernel schedules the rr service's SYNs itself and reports them;
//! the same limit holds in the core, which removes what it evicts from the kernel's table.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use lvs_e2e::{Director, Method, VIP, skip, skip_without_trafgen};

const FLOOD_SECS: u64 = 30;
const AFTER_SECS: u64 = 20;

/// `ok` and `failed` requests of the client loop, split at the flood's end.
#[derive(Debug, Default)]
struct Tally {
    ok: u32,
    failed: u32,
    slowest: f64,
}

impl Tally {
    fn ratio(&self) -> f64 {
        f64::from(self.ok) / f64::from((self.ok + self.failed).max(1))
    }
}

fn rss_kib(pid: u32) -> u64 {
    lvs_e2e::status_kib(pid, "VmRSS:")
}

/// The mappings of `pid` holding the most resident memory, for a failure's message.
fn biggest_mappings(pid: u32) -> String {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return String::new();
    };
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first()
            .is_some_and(|a| a.contains('-') && !a.ends_with(':'))
        {
            name = format!("{} {}", f[0], f.get(5).unwrap_or(&"[anon]"));
        } else if f.first() == Some(&"Rss:") {
            maps.push((f[1].parse().unwrap_or(0), name.clone()));
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    maps.iter()
        .take(8)
        .map(|(k, n)| format!("{k} KiB {n}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn tx_packets(d: &Director, ns: &str, dev: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/tx_packets");
    d.lab()
        .exec_ok(ns, &["cat", &path])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_syn_flood_keeps_no_client_out_and_its_memory_comes_back() {
    const TEST: &str = "a_syn_flood_keeps_no_client_out_and_its_memory_comes_back";
    if skip(TEST) || skip_without_trafgen(TEST) {
        return;
    }
    let mut d = Director::without_lvsd(Method::Nat, TEST);
    d.set_lvsd_args(&[
        "--tcp-timeout",
        "syn_recv=10",
        "--tcp-timeout",
        "time_wait=10",
    ]);
    d.start_lvsd();
    d.add_services("rr", &[0, 1, 2]);
    let (router, client) = (d.lab().router_ns(), d.lab().client_ns());
    // The servers' answers to the made-up sources end at the router.
    d.lab()
        .exec_ok(
            &router,
            &["ip", "route", "add", "blackhole", "10.250.0.0/16"],
        )
        .expect("blackhole route");
    // A few requests first, so that every neighbour is known and the memory settled.
    for _ in 0..6 {
        d.curl_vip();
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.lvsd_pid();
    let baseline = rss_kib(pid);
    eprintln!(
        "before the flood: RSS {baseline} KiB; largest: {}",
        biggest_mappings(pid)
    );

    // The client loop: a new connection per request, during the flood and after it.
    let total = FLOOD_SECS + AFTER_SECS + 2;
    let loop_script = format!(
        "end=$(( $(date +%s) + {total} )); while [ $(date +%s) -lt $end ]; do \
         t=$(date +%s.%N); r=$(curl -s -o /dev/null -m 5 -w '%{{http_code}} %{{time_total}}' http://{VIP}/); \
         echo \"$t $r\"; sleep 0.05; done"
    );
    let loop_child = std::process::Command::new("ip")
        .args(["netns", "exec", &client, "bash", "-c", &loop_script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("client loop");
    std::thread::sleep(Duration::from_secs(2));
    let sent_before = tx_packets(&d, &router, "eth1");
    let flood_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let t0 = Instant::now();
    let mut generator = d.trafgen(
        &format!(
            "ipv4(da={VIP}, sa=drnd({}, {}), ttl=64, df), \
             tcp(sp=drnd(1024, 65535), dp=80, seq=drnd(), syn, win=64240)",
            0x0afa_0000u32, 0x0afa_ffffu32
        ),
        FLOOD_SECS,
    );
    let mut peak_rss = baseline;
    let mut peak_conns = 0usize;
    let mut embryonic_evicted = 0;
    while t0.elapsed() < Duration::from_secs(FLOOD_SECS + 1) {
        std::thread::sleep(Duration::from_millis(1000));
        peak_rss = peak_rss.max(rss_kib(pid));
        let c = d.counters();
        peak_conns = peak_conns.max(c.conns);
        embryonic_evicted = c.embryonic_evicted;
    }
    generator.wait();
    let flood_secs = t0.elapsed().as_secs_f64().min(FLOOD_SECS as f64);
    let sent = tx_packets(&d, &router, "eth1") - sent_before;
    let flood_end = flood_start + flood_secs;
    let out = loop_child.wait_with_output().expect("client loop output");

    let (mut during, mut after) = (Tally::default(), Tally::default());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [t, code, took] = f[..] else { continue };
        let (Ok(t), Ok(took)) = (t.parse::<f64>(), took.parse::<f64>()) else {
            continue;
        };
        let tally = if t < flood_start {
            continue;
        } else if t < flood_end {
            &mut during
        } else {
            &mut after
        };
        if code == "200" {
            tally.ok += 1;
        } else {
            tally.failed += 1;
        }
        tally.slowest = tally.slowest.max(took);
    }
    let c = d.counters();
    eprintln!(
        "flood: {sent} SYNs in {flood_secs:.1} s ({:.0}/s); client during {during:?} ({:.2} %), \
         after {after:?} ({:.2} %); table peak {peak_conns} entries, {embryonic_evicted} \
         embryonic entries evicted, table_full {}; RSS {baseline} KiB before, {peak_rss} KiB at \
         the peak",
        sent as f64 / flood_secs,
        during.ratio() * 100.0,
        after.ratio() * 100.0,
        c.drops
            .iter()
            .find(|(r, _)| r == "table_full")
            .map_or(0, |(_, n)| *n)
    );
    assert!(sent > 100_000, "the generator sent only {sent} SYNs");
    if lvs_e2e::kernel_datapath() {
        assert!(
            during.ok + during.failed >= 20,
            "too few requests during the flood: {during:?}"
        );
        assert!(during.ratio() >= 0.99, "during the flood: {during:?}");
    } else {
        // On AF_PACKET every SYN crosses the capture ring to user space, which takes a few
        // ten thousand a second (this debug build; some 120,000 released) of the ~450,000
        // trafgen sends when the kernel does nothing else for them: the ring drops the
        // clients' SYNs with the flood's, before lvsd sees them. Not asserted here; the kernel
        // fast path (the default datapath) is the answer to a flood. What lvsd itself does
        // is the same on both: checked below.
        eprintln!(
            "afpacket: {:.1} % of the client's requests succeeded during the flood (the capture ring's limit, not asserted)",
            during.ratio() * 100.0
        );
    }
    assert!(after.ratio() >= 0.99, "after the flood: {after:?}");
    // The flood's half-open entries are capped (131,072), the legitimate ones are few.
    assert!(peak_conns <= 131_072 + 5_000, "table peak {peak_conns}");
    // 131,072 entries at a few hundred bytes each (slab, two indexes, timers): well below
    // 160 MiB above the baseline.
    assert!(
        peak_rss <= baseline + 160 * 1024,
        "RSS {peak_rss} KiB at the peak, {baseline} KiB before"
    );

    // SYN_RECV's 10 s, then the tick that gives memory back (every 10 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut rss = rss_kib(pid);
    let bound = baseline + (baseline / 10).max(8 * 1024);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        rss = rss_kib(pid);
        if d.counters().conns < 1_000 && rss <= bound {
            break;
        }
    }
    let conns = d.counters().conns;
    eprintln!(
        "after the flood: {conns} entries, RSS {rss} KiB (bound {bound} KiB); largest: {}",
        biggest_mappings(pid)
    );
    assert!(conns < 1_000, "{conns} entries 40 s after the flood");
    assert!(
        rss <= bound,
        "RSS {rss} KiB after the flood drained, {baseline} KiB before it, {peak_rss} KiB at its peak"
    );
}
