//! Keeps the core's view of interfaces, routes and neighbours in step with the kernel.
//!
//! A thread dumps the kernel's tables over rtnetlink at start, again whenever the netlink
//! monitor reports a change (and at least every few seconds), and sends the result to the
//! worker. The worker asks the kernel to resolve the next hops the core is missing (it holds
//! their frames meanwhile) and names them on a channel: the next dump, soon after, carries
//! their MAC.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use lvs_core::net::{Interface, NetTable, Route};
use lvs_io::netlink::{self, Monitor, Snapshot};
use lvs_wire::ethernet::EthernetAddress;
use tracing::warn;

use crate::dataplane::Command;
use crate::ifaces::{self, Policy};

/// Build the core's table from a kernel snapshot, for the interfaces lvsd serves.
pub fn table(snap: &Snapshot, served: &[u32]) -> (NetTable, BTreeSet<IpAddr>) {
    let mut t = NetTable::default();
    let local: BTreeSet<IpAddr> = snap.addrs.iter().map(|a| a.addr).collect();
    for l in snap.links.iter().filter(|l| served.contains(&l.ifindex)) {
        t.set_interface(Interface {
            ifindex: l.ifindex,
            name: l.name.clone(),
            mac: EthernetAddress(l.mac.unwrap_or_default()),
            mtu: l.mtu.min(u32::from(u16::MAX)) as u16,
            addrs: snap
                .addrs
                .iter()
                .filter(|a| a.ifindex == l.ifindex)
                .map(|a| a.addr)
                .collect(),
        });
    }
    let routes = snap
        .routes
        .iter()
        .filter(|r| served.contains(&r.ifindex))
        .map(|r| Route {
            prefix: r.dst,
            len: r.dst_len,
            ifindex: r.ifindex,
            gateway: r.gateway,
            src: r.prefsrc,
        })
        .collect();
    t.set_routes(routes);
    for n in &snap.neighbours {
        if let Some(mac) = n.mac
            && served.contains(&n.ifindex)
        {
            t.set_neighbour(n.addr, n.ifindex, EthernetAddress(mac));
            if n.state & lvs_io::netlink::NUD_STALE != 0 {
                t.mark_unconfirmed(n.addr);
            }
        }
    }
    (t, local)
}

/// One dump, converted.
pub fn snapshot(served: &[u32]) -> Result<(NetTable, BTreeSet<IpAddr>)> {
    let snap = netlink::dump()?;
    Ok(table(&snap, served))
}

/// Run until `stop`: push fresh tables to the worker, soon after it asked for a resolution.
pub fn run(
    policy: Policy,
    commands: Sender<Command>,
    wake: Arc<Mutex<UnixStream>>,
    resolve: Receiver<(u32, IpAddr)>,
    stop: Arc<AtomicBool>,
) {
    let mut monitor = match Monitor::open() {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(error = %e, "netlink monitor unavailable; polling the kernel tables every second");
            None
        }
    };
    let mut last = Instant::now();
    let mut pending_resolution = false;
    while !stop.load(Ordering::Relaxed) {
        let changed = match monitor.as_mut() {
            Some(m) => m.wait(Duration::from_millis(100)).unwrap_or(true),
            None => {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        };
        let mut asked = false;
        while resolve.try_recv().is_ok() {
            asked = true;
        }
        pending_resolution |= asked;
        let due = last.elapsed() >= Duration::from_secs(if pending_resolution { 0 } else { 5 });
        if !(changed || due) {
            continue;
        }
        if pending_resolution && !changed {
            // Give ARP a moment before the next dump.
            std::thread::sleep(Duration::from_millis(20));
        }
        match netlink::dump() {
            Ok(snap) => {
                pending_resolution = false;
                last = Instant::now();
                // Interfaces that appeared, went or were renamed: worker 0 changes what it
                // serves before it sees a table of the new set. Sent with every table, so an
                // interface worker 0 could not serve is tried again (it ignores an unchanged
                // set).
                let served = ifaces::wanted(&policy, &snap.links);
                if commands.send(Command::Interfaces(served.clone())).is_err() {
                    return;
                }
                let indexes: Vec<u32> = served.iter().map(|(i, _)| *i).collect();
                let (table, local) = table(&snap, &indexes);
                if commands.send(Command::Net(Box::new(table), local)).is_err() {
                    return;
                }
                if let Ok(mut w) = wake.lock() {
                    let _ = w.write_all(&[1]);
                }
            }
            Err(e) => warn!(error = %e, "cannot read the kernel's routing tables"),
        }
    }
}
