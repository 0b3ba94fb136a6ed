//! Restarts that lose nothing: on the kernel fast path, 20 downloads of 50 MB keep going while
//! lvsd is restarted (SIGTERM with `--keep-forwarding-on-exit`, then a new lvsd) and while it
//! is killed and started again. These run on `--datapath tc` whatever `LVS_E2E_DATAPATH` says:
//! on AF_PACKET a restart cannot keep a flow.
#![forbid(unsafe_code)]

use lvs_e2e::{Method, Restart, restart_keeps_downloads, skip};

fn run(method: Method, test: &str) {
    if skip(test) {
        return;
    }
    restart_keeps_downloads(method, test, &[Restart::Term, Restart::Kill]);
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
