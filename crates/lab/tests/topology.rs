//! End-to-end checks of the lab topologies in network namespaces. They need root and skip
//! (with a message) otherwise. Every lab gets a unique prefix so tests can run in parallel.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvs_lab::{Lab, Method};

const LAB_EXE: &str = env!("CARGO_BIN_EXE_lvs-lab");

fn skip_unless_root(test: &str) -> bool {
    !lvs_testkit::root_or_skip(test)
}

/// `lvs-realserver` built next to `lvs-lab` (same target dir), if it exists.
fn realserver_exe() -> Option<PathBuf> {
    let p = PathBuf::from(LAB_EXE).parent()?.join("lvs-realserver");
    p.exists().then_some(p)
}

fn curl(lab: &Lab, ns: &str, url: &str) -> String {
    lab.exec_ok(ns, &["curl", "-sS", "-m", "5", url])
        .unwrap_or_else(|e| panic!("curl {url} from {ns}: {e:#}"))
}

fn assert_gone(prefix: &str) {
    let left: Vec<String> = lvs_lab::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        !PathBuf::from(lvs_lab::OWNER_DIR).join(prefix).exists(),
        "owner file left behind"
    );
}

/// Builds `method`, starts the servers and checks every RIP answers the client and the director.
fn reach_real_servers(method: Method) -> Lab {
    let lab = Lab::build(method, None).expect("build lab");
    lab.start_servers(PathBuf::from(LAB_EXE).as_path())
        .expect("start servers");
    for i in 0..3 {
        let url = format!("http://{}/", lab.rip(i));
        let body = curl(&lab, &lab.client_ns(), &url);
        assert_eq!(
            body.rsplit_once(':').map(|x| x.0),
            Some(format!("rs{} saw {}", i + 1, lab.client_ip()).as_str()),
            "{body}"
        );
        let body = curl(&lab, &lab.director_ns(), &url);
        assert!(
            body.starts_with(&format!("rs{} saw {}:", i + 1, lab.dip())),
            "{body}"
        );
    }
    // Deterministic blob through the router (and through the director in NAT).
    let out = lab
        .exec_ok(
            &lab.client_ns(),
            &[
                "sh",
                "-c",
                &format!(
                    "curl -sS -m 10 'http://{}/blob?size=300000' | sha256sum",
                    lab.rip(1)
                ),
            ],
        )
        .expect("blob");
    assert!(
        out.starts_with(&lvs_lab::blob::blob_sha256(300_000)),
        "{out}"
    );
    // UDP echo.
    let py = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\ns.sendto(b'hi',(sys.argv[1],5353))\nprint(s.recvfrom(200)[0].decode())";
    let out = lab
        .exec_ok(
            &lab.client_ns(),
            &["python3", "-c", py, &lab.rip(2).to_string()],
        )
        .expect("udp echo");
    assert!(
        out.starts_with(&format!("rs3 saw {}:", lab.client_ip()))
            && out.trim_end().ends_with(" hi"),
        "{out}"
    );
    lab
}

#[test]
fn nat_topology_reaches_real_servers_and_cleans_up() {
    if skip_unless_root("nat_topology_reaches_real_servers_and_cleans_up") {
        return;
    }
    let lab = reach_real_servers(Method::Nat);
    assert_eq!(lab.router_server_ip(), None);
    assert_eq!(lab.rs_gateway(), lab.dip());
    let prefix = lab.prefix().to_string();
    drop(lab);
    assert_gone(&prefix);
}

#[test]
fn dr_topology_realserver_holds_vip_and_answers_directly() {
    if skip_unless_root("dr_topology_realserver_holds_vip_and_answers_directly") {
        return;
    }
    let lab = reach_real_servers(Method::Dr);
    let prefix = lab.prefix().to_string();
    let Some(rs) = realserver_exe() else {
        let why = "the VIP part needs lvs-realserver built (cargo build -p lvs-realserver)";
        lvs_testkit::skip("dr_topology_realserver_holds_vip_and_answers_directly", why);
        return;
    };
    let rs = rs.to_str().unwrap();
    let vip = lab.vip().to_string();
    lab.exec_ok(
        &lab.rs_ns(0),
        &[rs, "setup", "--vip", &vip, "--method", "dr"],
    )
    .expect("setup dr");
    // Idempotent.
    lab.exec_ok(
        &lab.rs_ns(0),
        &[rs, "setup", "--vip", &vip, "--method", "dr"],
    )
    .expect("setup dr again");
    let lo = lab
        .exec_ok(
            &lab.rs_ns(0),
            &["ip", "-o", "-4", "addr", "show", "dev", "lo"],
        )
        .unwrap();
    assert!(lo.contains(&format!("{vip}/32")), "{lo}");
    let arp = lab
        .exec_ok(
            &lab.rs_ns(0),
            &["cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"],
        )
        .unwrap();
    assert_eq!(arp.trim(), "1");
    // Stand-in for the director's MAC rewrite: the router sends VIP traffic to rs1's MAC.
    lab.exec_ok(
        &lab.router_ns(),
        &[
            "ip",
            "route",
            "add",
            &format!("{vip}/32"),
            "via",
            &lab.rip(0).to_string(),
            "dev",
            "eth2",
        ],
    )
    .unwrap();
    let body = curl(&lab, &lab.client_ns(), &format!("http://{vip}/"));
    assert!(
        body.starts_with(&format!("rs1 saw {}:", lab.client_ip())),
        "{body}"
    );
    lab.exec_ok(&lab.rs_ns(0), &[rs, "teardown", "--vip", &vip])
        .expect("teardown");
    let lo = lab
        .exec_ok(
            &lab.rs_ns(0),
            &["ip", "-o", "-4", "addr", "show", "dev", "lo"],
        )
        .unwrap();
    assert!(!lo.contains(&vip), "{lo}");
    let arp = lab
        .exec_ok(
            &lab.rs_ns(0),
            &["cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"],
        )
        .unwrap();
    assert_eq!(arp.trim(), "0", "sysctl restored");
    drop(lab);
    assert_gone(&prefix);
}

const IPIP_SEND: &str = r#"
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
dip, rip, client, vip = sys.argv[1:5]
tcp = struct.pack('!HHIIBBHHH', 40000, 80, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
pseudo = socket.inet_aton(client) + socket.inet_aton(vip) + struct.pack('!BBH', 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack('!H', csum(pseudo + tcp)) + tcp[18:]
h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, socket.inet_aton(client), socket.inet_aton(vip))
h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
s.bind((dip, 0))
s.sendto(h + tcp, (rip, 0))
"#;

const SYNACK_RECV: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 6); s.settimeout(1)
print('ready', flush=True)
end = time.time() + 8
while time.time() < end:
    try: d = s.recv(65535)
    except socket.timeout: continue
    ihl = (d[0] & 15) * 4
    sp, dp = struct.unpack('!HH', d[ihl:ihl + 4])
    if dp == 40000:
        print(socket.inet_ntoa(d[12:16]), sp, hex(d[ihl + 13]), flush=True); sys.exit(0)
print('timeout'); sys.exit(1)
"#;

#[test]
fn tun_topology_userspace_decap_answers_client_directly() {
    if skip_unless_root("tun_topology_userspace_decap_answers_client_directly") {
        return;
    }
    let lab = reach_real_servers(Method::Tun);
    let prefix = lab.prefix().to_string();
    let Some(rs) = realserver_exe() else {
        let why = "the decap part needs lvs-realserver built (cargo build -p lvs-realserver)";
        lvs_testkit::skip("tun_topology_userspace_decap_answers_client_directly", why);
        return;
    };
    let vip = lab.vip().to_string();
    let decap = Command::new("ip")
        .args(["netns", "exec", &lab.rs_ns(1)])
        .arg(&rs)
        .args([
            "setup",
            "--vip",
            &vip,
            "--method",
            "tun",
            "--force-userspace",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start decapsulator");
    let start = Instant::now();
    while lab
        .exec(&lab.rs_ns(1), &["test", "-e", "/sys/class/net/lvsdecap0"])
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "lvsdecap0 never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client_ns(),
            "python3",
            "-c",
            SYNACK_RECV,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = listener.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).expect("listener ready");
    let (dip, rip2, client) = (
        lab.dip().to_string(),
        lab.rip(1).to_string(),
        lab.client_ip().to_string(),
    );
    // DIP -> RIP2 IP-in-IP carrying client:40000 -> VIP:80 SYN, as the director would send it.
    lab.exec_ok(
        &lab.director_ns(),
        &["python3", "-c", IPIP_SEND, &dip, &rip2, &client, &vip],
    )
    .expect("send ipip");
    let status = listener.wait().unwrap();
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut out, &mut seen).unwrap();
    assert!(status.success(), "no SYN-ACK reached the client: {seen}");
    assert_eq!(
        seen.trim(),
        format!("{vip} 80 0x12"),
        "SYN-ACK from the VIP straight to the client"
    );
    // Stop the decapsulator: it tears down and prints its counters.
    Command::new("kill")
        .args(["-TERM", &decap.id().to_string()])
        .status()
        .unwrap();
    let done = decap.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{summary} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(summary.contains("received=1 delivered=1"), "{summary}");
    let lo = lab
        .exec_ok(
            &lab.rs_ns(1),
            &["ip", "-o", "-4", "addr", "show", "dev", "lo"],
        )
        .unwrap();
    assert!(!lo.contains(&vip), "VIP removed on exit: {lo}");
    drop(lab);
    assert_gone(&prefix);
}

#[test]
fn down_and_cleanup_stale_remove_labs() {
    if skip_unless_root("down_and_cleanup_stale_remove_labs") {
        return;
    }
    // A detached lab survives drop and is removed by `down`.
    let prefix = format!("lvst{}d", std::process::id());
    let lab = Lab::build(Method::Dr, Some(prefix.clone())).unwrap();
    assert!(
        Lab::build(Method::Dr, Some(prefix.clone())).is_err(),
        "prefix clash is refused"
    );
    assert_eq!(lab.detach(), prefix);
    assert_eq!(
        lvs_lab::list_namespaces()
            .iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .count(),
        7
    );
    assert_eq!(lvs_lab::down(&prefix).unwrap().len(), 7);
    assert_gone(&prefix);
    // A lab whose owner died is removed by cleanup_stale.
    let prefix = format!("lvst{}s", std::process::id());
    let lab = Lab::build(Method::Nat, Some(prefix.clone())).unwrap();
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(lab.owner_file(), format!("{dead_pid}\n")).unwrap();
    std::mem::forget(lab); // simulate a crashed owner: no Drop
    let removed = lvs_lab::cleanup_stale().unwrap();
    assert!(removed.contains(&prefix), "{removed:?}");
    assert_gone(&prefix);
    assert!(lvs_lab::down("bad/prefix").is_err());
}
