//! LVS-NAT end to end: lvsd in the director namespace, curl and a UDP client in the client
//! namespace, the lab's HTTP/UDP servers on rs1..rs3. See `lib.rs` for the fixture.
#![forbid(unsafe_code)]

use lvs_e2e::{Method, download_and_udp, reconfigure_under_load, rr_spread_and_counters, skip};

#[test]
fn nat_rr_spreads_4_4_4_and_counts() {
    if skip("nat_rr_spreads_4_4_4_and_counts") {
        return;
    }
    rr_spread_and_counters(Method::Nat, "nat_rr_spreads_4_4_4_and_counts");
}

#[test]
fn nat_50mb_download_and_udp_echo() {
    if skip("nat_50mb_download_and_udp_echo") {
        return;
    }
    download_and_udp(Method::Nat, "nat_50mb_download_and_udp_echo");
}

#[test]
fn nat_reconfigure_under_load() {
    if skip("nat_reconfigure_under_load") {
        return;
    }
    reconfigure_under_load(Method::Nat, "nat_reconfigure_under_load");
}

#[test]
fn nat_new_client_addresses_connect_without_retransmit() {
    if skip("nat_new_client_addresses_connect_without_retransmit") {
        return;
    }
    lvs_e2e::new_neighbours_cost_no_retransmit(
        Method::Nat,
        "nat_new_client_addresses_connect_without_retransmit",
    );
}

/// Sends one TCP SYN from `src:sport` to `dst:80` as a raw Ethernet frame to `dst_mac` on
/// `ifname`, with an 802.1Q tag `vlan` (0: untagged). Arguments: ifname dst_mac vlan src
/// sport dst.
const RAW_SYN_PY: &str = "import socket,struct,sys
ifname,mac,vlan,src,sport,dst=sys.argv[1:7]
vlan,sport=int(vlan),int(sport)
def csum(b):
    if len(b)%2: b+=b'\\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16
    return (~s)&0xffff
S,D=socket.inet_aton(src),socket.inet_aton(dst)
tcp=struct.pack('!HHIIBBHHH',sport,80,1,0,5<<4,0x02,64240,0,0)
tcp=tcp[:16]+struct.pack('!H',csum(S+D+struct.pack('!BBH',0,6,len(tcp))+tcp))+tcp[18:]
ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(tcp),1,0x4000,64,6,0,S,D)
ip=ip[:10]+struct.pack('!H',csum(ip))+ip[12:]
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind((ifname,0))
me=s.getsockname()[4]
eth=bytes.fromhex(mac.replace(':',''))+me
eth+=(struct.pack('!HH',0x8100,vlan) if vlan else b'')+struct.pack('!H',0x0800)
s.send(eth+ip+tcp)
";

/// A frame with a VLAN tag belongs to a VLAN interface the director does not have: the
/// kernel takes the tag off into metadata before lvsd's capture, and lvsd must not forward
/// the frame untagged to a real server (it did, until it read the tag flag). The router
/// sends a client's SYN to VIP:80 tagged with VLAN 100 (raw frames: this kernel has no VLAN
/// interfaces), and the same SYN untagged as the control.
#[test]
fn nat_vlan_tagged_frames_are_not_forwarded() {
    let test = "nat_vlan_tagged_frames_are_not_forwarded";
    if skip(test) {
        return;
    }
    let d = lvs_e2e::Director::start(Method::Nat, test);
    d.add_services("rr", &[0, 1, 2]);
    let router = d.lab().router_ns();
    let link = d.in_director(&["ip", "-o", "link", "show", lvs_lab::DIRECTOR_FRONT_IF]);
    let text = String::from_utf8_lossy(&link.stdout).to_string();
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {text}"))
        .to_string();
    let (client, vip) = (lvs_e2e::CLIENT_IP.to_string(), lvs_e2e::VIP.to_string());
    let send = |vlan: &str, sport: &str| {
        d.lab()
            .exec_ok(
                &router,
                &[
                    "python3",
                    "-c",
                    RAW_SYN_PY,
                    lvs_lab::ROUTER_FRONT_IF,
                    &mac,
                    vlan,
                    &client,
                    sport,
                    &vip,
                ],
            )
            .unwrap_or_else(|e| panic!("raw SYN: {e:#}"));
    };
    let listed = |sport: &str| {
        d.lvsadm_ok(&["-L", "-n", "-c"])
            .lines()
            .any(|l| l.contains(&format!("{client}:{sport} ")))
    };
    send("100", "41000");
    send("0", "41001");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        listed("41001"),
        "the untagged SYN was scheduled (the control)"
    );
    assert!(
        !listed("41000"),
        "the VLAN-tagged SYN was scheduled:\n{}",
        d.lvsadm_ok(&["-L", "-n", "-c"])
    );
}
