//! LVS-DR end to end: lvsd in the director namespace, curl and a UDP client in the client
//! namespace, the lab's HTTP/UDP servers on rs1..rs3. See `lib.rs` for the fixture.
#![forbid(unsafe_code)]

use lvs_e2e::{Method, download_and_udp, reconfigure_under_load, rr_spread_and_counters, skip};

#[test]
fn dr_rr_spreads_4_4_4_and_counts() {
    if skip("dr_rr_spreads_4_4_4_and_counts") {
        return;
    }
    rr_spread_and_counters(Method::Dr, "dr_rr_spreads_4_4_4_and_counts");
}

#[test]
fn dr_50mb_download_and_udp_echo() {
    if skip("dr_50mb_download_and_udp_echo") {
        return;
    }
    download_and_udp(Method::Dr, "dr_50mb_download_and_udp_echo");
}

#[test]
fn dr_reconfigure_under_load() {
    if skip("dr_reconfigure_under_load") {
        return;
    }
    reconfigure_under_load(Method::Dr, "dr_reconfigure_under_load");
}

#[test]
fn dr_new_client_addresses_connect_without_retransmit() {
    if skip("dr_new_client_addresses_connect_without_retransmit") {
        return;
    }
    lvs_e2e::new_neighbours_cost_no_retransmit(
        Method::Dr,
        "dr_new_client_addresses_connect_without_retransmit",
    );
}
