//! lvsadm against a daemon that holds real state: `lvs_core::Director` behind the same
//! request handling as lvsd (batches rehearsed on a copy, all or none). `-S | -R` round
//! trips, `-R` of a hand-written ipvsadm-save file, and the errors a new user meets, each
//! leaving the table unchanged.

use lvs_api::{Reply, Request, ServiceInfo};
use lvs_core::director::Director;
use lvsadm::names::{Fixed, Numeric};
use lvsadm::{Daemon, DaemonError, Outcome};

/// A stand-in lvsd: the director and timeouts, changed only by whole requests.
struct Stateful {
    d: Director,
    calls: usize,
}

fn director() -> Director {
    lvs_config::table::from_listing(&[]).expect("an empty table")
}

fn apply(d: &mut Director, r: Request) -> Result<(), String> {
    lvs_config::table::apply_change(d, r)
}

fn list(d: &Director) -> Vec<ServiceInfo> {
    lvs_config::table::listing(d)
}

impl Daemon for Stateful {
    fn call(
        &mut self,
        _socket: Option<&std::path::Path>,
        request: Request,
    ) -> Result<Reply, DaemonError> {
        self.calls += 1;
        Ok(match request {
            Request::List => Reply::Services {
                table_size: 4096,
                services: list(&self.d),
            },
            Request::Timeouts => {
                let (t, f, u) = self.d.timeouts().get();
                Reply::Timeouts {
                    tcp: t.as_secs(),
                    tcpfin: f.as_secs(),
                    udp: u.as_secs(),
                }
            }
            Request::Batch { requests } => {
                match lvs_config::table::apply_batch(&mut self.d, requests) {
                    Ok(()) => Reply::Ok,
                    Err(message) => Reply::Error { message },
                }
            }
            Request::Zero { .. } => Reply::Ok,
            other => match apply(&mut self.d, other) {
                Ok(()) => Reply::Ok,
                Err(message) => Reply::Error { message },
            },
        })
    }
}

impl Stateful {
    fn new() -> Stateful {
        Stateful {
            d: director(),
            calls: 0,
        }
    }

    fn run(&mut self, line: &str, stdin: &str) -> Outcome {
        let argv: Vec<String> = std::iter::once("lvsadm")
            .chain(line.split_whitespace())
            .map(String::from)
            .collect();
        lvsadm::run_with(&argv, self, &mut stdin.as_bytes(), &Numeric)
    }

    fn ok(&mut self, line: &str, stdin: &str) -> String {
        let out = self.run(line, stdin);
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{line}");
        out.stdout
    }

    fn listing(&mut self) -> String {
        self.ok("-L -n", "") + &self.ok("-L -n --thresholds", "") + &self.ok("-L --timeout", "")
    }
}

fn golden(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// The golden table's save file: every scheduler, method, fwmark, persistence, IPv6, SCTP.
#[test]
fn save_restore_round_trip() {
    let mut lvs = Stateful::new();
    lvs.ok("-R", &golden("save.txt"));
    lvs.ok("--set 1000 100 200", "");
    let before = lvs.listing();
    let saved = lvs.ok("-S -n", "");
    assert_eq!(
        saved,
        golden("save.txt"),
        "save of the restored golden table"
    );
    // The thresholds of the golden table are not in ipvsadm's save format; add one to see
    // that the listing compares them.
    assert!(before.contains("TCP  10.0.0.1:80 rr"));
    lvs.ok("-C", "");
    assert_eq!(lvs.ok("-S -n", ""), "");
    lvs.ok("-R", &saved);
    let after = lvs.listing();
    // Timeouts are not part of -S (as in ipvsadm); everything else is identical.
    assert_eq!(before, after);
    assert_eq!(lvs.ok("-S -n", ""), saved);
    // Names in, names out: -S without -n writes names that -R reads back.
    let names = Fixed::new(&golden("services"), &golden("hosts"));
    let argv = |s: &str| -> Vec<String> {
        std::iter::once("lvsadm")
            .chain(s.split_whitespace())
            .map(String::from)
            .collect()
    };
    let named = lvsadm::run_with(&argv("-S"), &mut lvs, &mut std::io::empty(), &names);
    assert!(
        named.stdout.contains("-A -t www.example.com:http -s rr"),
        "{}",
        named.stdout
    );
    lvs.ok("-C", "");
    let out = lvsadm::run_with(&argv("-R"), &mut lvs, &mut named.stdout.as_bytes(), &names);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(lvs.ok("-S -n", ""), saved);
}

const HAND_WRITTEN: &str = "\
# /etc/sysconfig/ipvsadm, written by hand
# web
-A -t 192.168.10.1:80 -s wlc

-a -t 192.168.10.1:80 -r 10.1.1.1:80 -m -w 3
-a -t 192.168.10.1:80 -r 10.1.1.2:80 -m -w 1   # the small one
ipvsadm -A -u 192.168.10.1:53 -s rr
ipvsadm -a -u 192.168.10.1:53 -r 10.1.1.3 -g
-A -f 100 -s sh -p -b sh-port
\t-a -f 100 -r 10.1.1.4 -i -w 2 --tun-type ipip
-A -t [2001:db8::80]:443 -s mh -p 120 -M 64
-a -t [2001:db8::80]:443 -r [2001:db8::81]:443 -g -w 1 -x 1000 -y 800
--set 900 60 300
";

#[test]
fn restore_hand_written_ipvsadm_save_file() {
    let mut lvs = Stateful::new();
    lvs.ok("-R", HAND_WRITTEN);
    assert_eq!(lvs.calls, 1, "one batch");
    assert_eq!(
        lvs.ok("-S -n", ""),
        "\
-A -t 192.168.10.1:80 -s wlc
-a -t 192.168.10.1:80 -r 10.1.1.1:80 -m -w 3
-a -t 192.168.10.1:80 -r 10.1.1.2:80 -m -w 1
-A -u 192.168.10.1:53 -s rr
-a -u 192.168.10.1:53 -r 10.1.1.3:53 -g -w 1
-A -t [2001:db8::80]:443 -s mh -p 120 -M 64
-a -t [2001:db8::80]:443 -r [2001:db8::81]:443 -g -w 1
-A -f 100 -s sh -p 300 -b sh-port
-a -f 100 -r 10.1.1.4:0 -i -w 2 --tun-type ipip
"
    );
    assert!(lvs.ok("-L -n --thresholds", "").contains(
        "  -> [2001:db8::81]:443           1000       800        0          0         \n"
    ));
    assert_eq!(
        lvs.ok("-L --timeout", ""),
        "Timeout (tcp tcpfin udp): 900 60 300\n"
    );
}

/// (what a new user types, stdin for -R, expected start of the message, exit code)
const MISTAKES: &[(&str, &str, &str, i32)] = &[
    (
        "-A -s rr",
        "",
        "You need to supply the 'service-address' option for the 'add-service' command",
        2,
    ),
    (
        "-a -r 10.0.1.9",
        "",
        "You need to supply the 'service-address' option for the 'add-server' command",
        2,
    ),
    (
        "-A -t 10.0.0.256:80",
        "",
        "illegal virtual server address[:port] specified",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.x",
        "",
        "illegal real server address[:port] specified",
        2,
    ),
    (
        "-A -t 10.0.0.9:80 -s wrrr",
        "",
        "unknown scheduler 'wrrr'",
        2,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.9 -w 70000",
        "",
        "illegal weight specified",
        2,
    ),
    (
        "-a -t 10.0.0.99:80 -r 10.0.1.9",
        "",
        "No such service (TCP 10.0.0.99:80)",
        255,
    ),
    (
        "-A -t 10.0.0.1:80 -s wlc",
        "",
        "Service already exists (TCP 10.0.0.1:80)",
        255,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m",
        "",
        "Destination already exists (10.0.1.2:80)",
        255,
    ),
    (
        "-a -t 10.0.0.1:80 -r 10.0.1.9 -i --tun-type gue --tun-port 6080",
        "",
        "tunnel type `gue' is not supported",
        2,
    ),
    (
        "-A -t 10.0.0.9:80 --pe sip",
        "",
        "persistence engine `sip' is not supported",
        2,
    ),
    (
        "--start-daemon master",
        "",
        "connection sync daemon not supported yet",
        255,
    ),
    (
        "-L --daemon",
        "",
        "connection sync daemon not supported yet",
        1,
    ),
    // -R: a bad line names its number; nothing of the file is applied.
    (
        "-R",
        "-A -t 10.0.0.9:80 -s rr\n-a -t 10.0.0.9:80 -r 10.0.9.1 -w 70000\n",
        "line 2 (-a -t 10.0.0.9:80 -r 10.0.9.1 -w 70000): illegal weight specified",
        2,
    ),
    (
        "-R",
        "-A -t 10.0.0.9:80 -s rr\n\n# dup\n-A -t 10.0.0.1:80\n",
        "line 4 (-A -t 10.0.0.1:80): Service already exists (TCP 10.0.0.1:80); nothing was restored",
        255,
    ),
    (
        "-R",
        "-A -t 10.0.0.9:80 -s rr\n-a -t 10.0.0.10:80 -r 10.0.9.1\n",
        "line 2 (-a -t 10.0.0.10:80 -r 10.0.9.1): No such service (TCP 10.0.0.10:80)",
        255,
    ),
    (
        "-R",
        "-A -t 10.0.0.9:80 -s rr\n-L -n\n",
        "line 2 (-L -n): only table changes can be restored",
        2,
    ),
    (
        "-R",
        "-A -t 10.0.0.9:80 -s fastest\n",
        "line 1 (-A -t 10.0.0.9:80 -s fastest): unknown scheduler 'fastest'",
        2,
    ),
];

#[test]
fn mistakes_leave_the_table_unchanged() {
    let mut lvs = Stateful::new();
    lvs.ok("-A -t 10.0.0.1:80 -s rr", "");
    lvs.ok("-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m", "");
    let table = lvs.listing();
    for &(line, stdin, message, code) in MISTAKES {
        let out = lvs.run(line, stdin);
        assert!(
            out.stderr.starts_with(message),
            "{line}: got {:?}",
            out.stderr
        );
        assert_eq!(out.code, code, "{line}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{line}");
        assert_eq!(lvs.listing(), table, "{line} changed the table");
    }
}
