//! Kernel steering: make the kernel ignore what lvsd forwards, and nothing else.
//!
//! lvsd taps every frame with AF_PACKET (`ETH_P_ALL`), which sees a frame before the
//! nftables `netdev ingress` hook does. An ingress `drop` for exactly the traffic lvsd
//! forwards therefore takes it away from the kernel (no RST from the director for VIP:port,
//! no second copy of a NAT reply forwarded by the kernel) while ARP for the VIP, ping, ssh
//! and the box's own traffic go on as before.
//!
//! Everything lives in one table, `netdev lvsd`, replaced atomically by `nft -f -` on every
//! change and deleted on stop; a stale table left by a crash is replaced at the next start.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use lvs_core::Director;
use lvs_core::types::{ForwardMethod, Protocol, ServiceKey};

/// Name of the nftables table lvsd owns.
pub const TABLE: &str = "lvsd";

/// What must be taken from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// `(proto, VIP, port)` of every address service (port 0 = all ports).
    pub services: BTreeSet<(Protocol, IpAddr, u16)>,
    /// `(proto, RIP, port)` of every NAT real server: its replies are lvsd's to rewrite.
    pub nat_replies: BTreeSet<(Protocol, IpAddr, u16)>,
    /// The director's own addresses: replies addressed to them (health checks) stay the kernel's.
    pub local: BTreeSet<IpAddr>,
}

impl Spec {
    /// What the director's current service table needs.
    pub fn of(d: &Director, local: &BTreeSet<IpAddr>) -> Spec {
        let mut spec = Spec {
            local: local.clone(),
            ..Spec::default()
        };
        for (_, svc) in d.services().iter() {
            if let ServiceKey::Addr { proto, addr, port } = svc.config().key {
                spec.services.insert((proto, addr, port));
                for dest in svc.dests() {
                    if dest.config.method == ForwardMethod::Masq {
                        spec.nat_replies.insert((proto, dest.addr(), dest.port()));
                    }
                }
            }
        }
        spec
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "ip" } else { "ip6" }
}

/// The nft script that replaces the table with what `spec` needs on `devices`.
pub fn script(spec: &Spec, devices: &[String]) -> String {
    let mut s = String::new();
    // Create-then-delete makes the replacement work whether or not the table exists, all in
    // one transaction.
    s.push_str(&format!(
        "table netdev {TABLE} {{}}\ndelete table netdev {TABLE}\n"
    ));
    s.push_str(&format!("table netdev {TABLE} {{\n"));
    for (i, dev) in devices.iter().enumerate() {
        s.push_str(&format!(
            "  chain in{i} {{\n    type filter hook ingress device \"{}\" priority -500; policy accept;\n",
            dev.replace('"', "")
        ));
        for &(proto, addr, port) in &spec.services {
            let p = proto_name(proto);
            if port == 0 {
                s.push_str(&format!(
                    "    {} daddr {addr} meta l4proto {p} drop\n",
                    family(addr)
                ));
            } else {
                s.push_str(&format!(
                    "    {} daddr {addr} {p} dport {port} drop\n",
                    family(addr)
                ));
            }
        }
        for &(proto, addr, port) in &spec.nat_replies {
            let fam = family(addr);
            let locals: Vec<String> = spec
                .local
                .iter()
                .filter(|l| family(**l) == fam)
                .map(|l| l.to_string())
                .collect();
            let not_local = if locals.is_empty() {
                String::new()
            } else {
                format!(" {fam} daddr != {{ {} }}", locals.join(", "))
            };
            let sport = if port == 0 {
                String::new()
            } else {
                format!(" {} sport {port}", proto_name(proto))
            };
            let l4 = if port == 0 {
                format!(" meta l4proto {}", proto_name(proto))
            } else {
                String::new()
            };
            s.push_str(&format!(
                "    {fam} saddr {addr}{l4}{sport}{not_local} drop\n"
            ));
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

fn nft(input: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (install the nftables package)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft refused the steering rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Install or replace the rules.
pub fn apply(spec: &Spec, devices: &[String]) -> Result<()> {
    nft(&script(spec, devices))
}

/// Remove lvsd's table (no error if it is not there).
pub fn remove() -> Result<()> {
    nft(&format!(
        "table netdev {TABLE} {{}}\ndelete table netdev {TABLE}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_covers_services_and_nat_replies() {
        let mut spec = Spec::default();
        spec.services
            .insert((Protocol::Tcp, "10.0.0.100".parse().unwrap(), 80));
        spec.services
            .insert((Protocol::Udp, "10.0.0.100".parse().unwrap(), 0));
        spec.nat_replies
            .insert((Protocol::Tcp, "10.0.1.11".parse().unwrap(), 8080));
        spec.local.insert("10.0.1.1".parse().unwrap());
        spec.local.insert("10.0.0.100".parse().unwrap());
        let s = script(&spec, &["eth0".into(), "eth1".into()]);
        assert!(s.starts_with("table netdev lvsd {}\ndelete table netdev lvsd\n"));
        assert!(s.contains("type filter hook ingress device \"eth1\" priority -500;"));
        assert!(s.contains("ip daddr 10.0.0.100 tcp dport 80 drop"));
        assert!(s.contains("ip daddr 10.0.0.100 meta l4proto udp drop"));
        assert!(s.contains(
            "ip saddr 10.0.1.11 tcp sport 8080 ip daddr != { 10.0.0.100, 10.0.1.1 } drop"
        ));
        assert_eq!(s.matches("chain in").count(), 2);
    }
}
