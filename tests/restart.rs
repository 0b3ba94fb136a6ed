//! Restarts that lose nothing: on the kernel fast path, 20 downloads of 50 MB keep going while
//! lvsd is restarted (SIGTERM with `--keep-forwarding-on-exit`, then a new lvsd) and while it
//! is killed and started again; on AF_PACKET they keep going across SIGTERM and a start (the
//! connections are handed over in a file), and no client connection is reset. Each test names
//! its datapath, whatever `LVS_E2E_DATAPATH` says.
#![forbid(unsafe_code)]

use lvs_e2e::{Method, Restart, restart_keeps_downloads, skip};

fn run(method: Method, test: &str) {
    if skip(test) {
        return;
    }
    restart_keeps_downloads(method, test, "tc", &[Restart::Term, Restart::Kill]);
}

fn run_afpacket(method: Method, test: &str) {
    if skip(test) {
        return;
    }
    restart_keeps_downloads(method, test, "afpacket", &[Restart::Term]);
}

#[test]
fn nat_afpacket_sigterm_and_start_keep_20_downloads() {
    run_afpacket(
        Method::Nat,
        "nat_afpacket_sigterm_and_start_keep_20_downloads",
    );
}

#[test]
fn dr_afpacket_sigterm_and_start_keep_20_downloads() {
    run_afpacket(
        Method::Dr,
        "dr_afpacket_sigterm_and_start_keep_20_downloads",
    );
}

#[test]
fn tun_afpacket_sigterm_and_start_keep_20_downloads() {
    run_afpacket(
        Method::Tun,
        "tun_afpacket_sigterm_and_start_keep_20_downloads",
    );
}

#[test]
fn nat_restart_and_kill9_keep_20_downloads() {
    run(Method::Nat, "nat_restart_and_kill9_keep_20_downloads");
}

#[test]
fn dr_restart_and_kill9_keep_20_downloads() {
    run(Method::Dr, "dr_restart_and_kill9_keep_20_downloads");
}

#[test]
fn tun_restart_and_kill9_keep_20_downloads() {
    run(Method::Tun, "tun_restart_and_kill9_keep_20_downloads");
}
