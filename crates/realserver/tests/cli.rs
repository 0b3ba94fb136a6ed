//! CLI checks of `lvs-realserver`; the namespace test needs root and skips otherwise.

use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_lvs-realserver");

#[test]
fn bad_arguments_are_clean_errors() {
    let out = Command::new(EXE)
        .args(["setup", "--vip", "not-an-ip", "--method", "dr"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
    let out = Command::new(EXE)
        .args(["setup", "--vip", "10.0.0.1", "--method", "nat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(EXE).arg("--help").output().unwrap();
    assert!(out.status.success());
}

fn in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn dr_setup_is_idempotent_and_teardown_restores() {
    if !lvs_testkit::root_or_skip("dr_setup_is_idempotent_and_teardown_restores") {
        return;
    }
    let ns = format!("lvsrs-test-{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success()
    );
    let vip = "192.0.2.10";
    let check = || {
        for _ in 0..2 {
            let o = in_ns(&ns, &[EXE, "setup", "--vip", vip, "--method", "dr"]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let lo = in_ns(&ns, &["ip", "-o", "-4", "addr", "show", "dev", "lo"]);
        assert!(String::from_utf8_lossy(&lo.stdout).contains("192.0.2.10/32"));
        let a = in_ns(
            &ns,
            &[
                "cat",
                "/proc/sys/net/ipv4/conf/all/arp_announce",
                "/proc/sys/net/ipv4/conf/lo/arp_ignore",
            ],
        );
        assert_eq!(String::from_utf8_lossy(&a.stdout), "2\n1\n");
        // A different VIP is refused while one is set up.
        let o = in_ns(
            &ns,
            &[EXE, "setup", "--vip", "192.0.2.11", "--method", "dr"],
        );
        assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("teardown"));
        let o = in_ns(&ns, &[EXE, "teardown", "--vip", vip]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let a = in_ns(
            &ns,
            &[
                "cat",
                "/proc/sys/net/ipv4/conf/all/arp_announce",
                "/proc/sys/net/ipv4/conf/lo/arp_ignore",
            ],
        );
        assert_eq!(String::from_utf8_lossy(&a.stdout), "0\n0\n");
        let lo = in_ns(&ns, &["ip", "-o", "-4", "addr", "show", "dev", "lo"]);
        assert!(!String::from_utf8_lossy(&lo.stdout).contains("192.0.2.10"));
    };
    let res = std::panic::catch_unwind(check);
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    if let Err(e) = res {
        std::panic::resume_unwind(e);
    }
}
