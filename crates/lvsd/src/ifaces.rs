//! The served interfaces, followed while lvsd runs.
//!
//! `--interface NAME` (repeatable) names the interfaces to serve; without it every
//! non-loopback interface is served. The netlink thread compares what the kernel has with
//! what is served after every change ([`wanted`]) and tells worker 0, which owns [`Follow`]:
//! an interface that appears (or is renamed to a listed name) gets an AF_PACKET socket per
//! worker (and, on `--datapath tc`, the kernel program at its tc ingress); one that goes (or
//! is renamed away) loses them; either way the steering table is re-hooked on the new set in
//! one nft transaction, and the change is logged.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use lvs_io::netlink::LinkInfo;
use lvs_io::{AfPacket, AfPacketConfig, RingVersion};
use tracing::{info, warn};

use crate::fastpath::{self, FastPath};

/// Which interfaces lvsd serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Every non-loopback interface.
    All,
    /// These names (`--interface`).
    Named(Vec<String>),
}

impl Policy {
    /// From `--interface`: none given means all.
    pub fn from_names(names: &[String]) -> Policy {
        if names.is_empty() {
            Policy::All
        } else {
            Policy::Named(names.to_vec())
        }
    }
}

/// The interfaces `policy` selects among `links`, by index.
pub fn wanted(policy: &Policy, links: &[LinkInfo]) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = links
        .iter()
        .filter(|l| match policy {
            Policy::All => !l.loopback,
            Policy::Named(names) => names.contains(&l.name),
        })
        .map(|l| (l.ifindex, l.name.clone()))
        .collect();
    v.sort();
    v
}

/// How the sockets of an interface are opened: one per worker, in one fanout group.
#[derive(Clone, Copy, Debug)]
pub struct SocketPlan {
    /// Data path workers.
    pub workers: u16,
    /// RX ring version.
    pub ring: RingVersion,
    /// `TPACKET_V2` frame slots per socket (`--rx-frames`).
    pub rx_frames: u32,
    /// `TPACKET_V3` blocks per socket (`--rx-blocks`).
    pub rx_blocks: u32,
}

impl SocketPlan {
    /// One socket per worker on `index`; with several workers they share a fanout group
    /// hashed by flow.
    pub fn open(&self, index: u32, name: &str) -> Result<Vec<AfPacket>> {
        let group = (std::process::id() as u16) ^ (index as u16).rotate_left(8);
        let cfg = AfPacketConfig {
            fanout: (self.workers > 1).then(|| lvs_io::Fanout::hash(group)),
            ring: self.ring,
            rx_frames: self.rx_frames,
            block_count: self.rx_blocks,
            ..AfPacketConfig::default()
        };
        (0..self.workers)
            .map(|_| {
                AfPacket::open(index, &cfg).with_context(|| {
                    format!(
                        "cannot open AF_PACKET socket on {name} (lvsd needs root / CAP_NET_RAW)"
                    )
                })
            })
            .collect()
    }
}

/// A change to one worker's sockets.
pub enum SocketChange {
    /// Receive on this socket too: the new socket and its interface's name.
    Add(Box<AfPacket>, String),
    /// Close the socket of this interface.
    Remove(u32),
    /// The interface of this index has a new name (its losses are counted under it from now
    /// on).
    Rename(u32, String),
}

/// Worker 0's record of the served interfaces, and the means to change them.
pub struct Follow {
    /// Served now, sorted by index.
    served: Vec<(u32, String)>,
    plan: SocketPlan,
    /// Each worker's channel, worker 0's own included (index = worker id).
    workers: Vec<Sender<SocketChange>>,
    /// The kernel fast path's attachments (shared with the shutdown, which detaches them).
    attached: Arc<Mutex<Vec<fastpath::Attachment>>>,
    /// The record of the qdiscs lvsd created (see [`fastpath::qdiscs_file`]).
    qdiscs: PathBuf,
}

impl Follow {
    /// Serving `served` now.
    pub fn new(
        mut served: Vec<(u32, String)>,
        plan: SocketPlan,
        workers: Vec<Sender<SocketChange>>,
        attached: Arc<Mutex<Vec<fastpath::Attachment>>>,
        qdiscs: PathBuf,
    ) -> Follow {
        served.sort();
        Follow {
            served,
            plan,
            workers,
            attached,
            qdiscs,
        }
    }

    /// Serve `wanted` from now on. Returns the interface names to hook the steering on when
    /// the served set changed (an interface that cannot be served is left out and logged).
    pub fn change(
        &mut self,
        wanted: Vec<(u32, String)>,
        fast: Option<&FastPath>,
    ) -> Option<Vec<String>> {
        if wanted == self.served {
            return None;
        }
        let mut now = Vec::with_capacity(wanted.len());
        for (index, name) in wanted {
            match self.served.iter().find(|(i, _)| *i == index) {
                Some((_, old)) => {
                    if *old != name {
                        info!(ifindex = index, from = %old, to = %name, "served interface renamed");
                        for w in &self.workers {
                            let _ = w.send(SocketChange::Rename(index, name.clone()));
                        }
                    }
                    now.push((index, name));
                }
                None => match self.add(index, &name, fast) {
                    Ok(()) => now.push((index, name)),
                    Err(e) => {
                        warn!(interface = %name, error = %format!("{e:#}"), "cannot serve a new interface")
                    }
                },
            }
        }
        let gone: Vec<(u32, String)> = std::mem::replace(&mut self.served, now)
            .into_iter()
            .filter(|(i, _)| !self.served.iter().any(|(j, _)| j == i))
            .collect();
        for (index, name) in gone {
            self.remove(index, &name, fast);
        }
        Some(self.served.iter().map(|(_, n)| n.clone()).collect())
    }

    fn add(&mut self, index: u32, name: &str, fast: Option<&FastPath>) -> Result<()> {
        let sockets = self.plan.open(index, name)?;
        let mut datapath = "afpacket";
        if let Some(fp) = fast {
            match fp.attach(index, name) {
                Ok(a) => {
                    if let Err(e) = sockets.iter().try_for_each(|s| fp.filter(s)) {
                        let _ = fp.detach(a);
                        return Err(e);
                    }
                    let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
                    datapath = a.datapath();
                    attached.push(a);
                    fastpath::write_qdiscs(&self.qdiscs, &attached);
                }
                // Without the program there, every frame must reach user space: no filter.
                Err(e) => warn!(
                    interface = name,
                    error = %format!("{e:#}"),
                    "kernel fast path not attached to a new interface: every packet on it goes through user space"
                ),
            }
        }
        for (w, s) in self.workers.iter().zip(sockets) {
            let _ = w.send(SocketChange::Add(Box::new(s), name.to_string()));
        }
        info!(
            interface = name,
            ifindex = index,
            datapath,
            "new interface served"
        );
        Ok(())
    }

    fn remove(&mut self, index: u32, name: &str, fast: Option<&FastPath>) {
        for w in &self.workers {
            let _ = w.send(SocketChange::Remove(index));
        }
        let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = attached.iter().position(|a| a.ifindex() == index) {
            // Gone with its device, usually; renamed away, it is still there.
            let a = attached.swap_remove(i);
            let _ = match fast {
                Some(fp) => fp.detach(a),
                None => a.detach(),
            };
            fastpath::write_qdiscs(&self.qdiscs, &attached);
        }
        warn!(
            interface = name,
            ifindex = index,
            "interface gone or renamed: no longer served"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, name: &str, loopback: bool) -> LinkInfo {
        LinkInfo {
            ifindex,
            name: name.into(),
            mac: None,
            mtu: 1500,
            up: true,
            loopback,
            kind: None,
        }
    }

    #[test]
    fn policy_selects_by_name_or_all_but_loopback() {
        let links = [
            link(1, "lo", true),
            link(3, "eth1", false),
            link(2, "eth0", false),
        ];
        assert_eq!(
            wanted(&Policy::All, &links),
            [(2, "eth0".to_string()), (3, "eth1".to_string())]
        );
        let named = Policy::from_names(&["eth1".into(), "eth9".into()]);
        assert_eq!(wanted(&named, &links), [(3, "eth1".to_string())]);
        assert_eq!(Policy::from_names(&[]), Policy::All);
    }
}
