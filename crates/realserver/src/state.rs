//! What `setup` changed, persisted under `/run/lvs-realserver/` so that `teardown` can undo it.
//!
//! `/run` is shared between network namespaces, so the file name carries the namespace's inode
//! number (from `/proc/self/ns/net`): `/run/lvs-realserver/netns-<inode>.state`.
//! The format is one `key value` pair a line.
//!
//! A namespace that is gone leaves its file behind, and the kernel may give its inode to a
//! new namespace, which must not inherit it: [`State::load`] first removes the files of
//! namespaces that no longer exist ([`sweep_stale`]).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::{Method, sysctl};

/// Directory of the state files.
pub const STATE_DIR: &str = "/run/lvs-realserver";

/// Changes made in one network namespace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    /// The VIP that was set up.
    pub vip: Option<Ipv4Addr>,
    /// The method it was set up for.
    pub method: Option<Method>,
    /// Whether the VIP was put on `lo`.
    pub vip_on_lo: bool,
    /// Whether the VIP was put on the kernel's `tunl0`.
    pub tunl0: bool,
    /// TUN device created by the user-space decapsulator.
    pub tun_dev: Option<String>,
    /// Pid of the running user-space decapsulator.
    pub decap_pid: Option<u32>,
    /// Sysctls changed, with their value before the first change: `(path, old value)`.
    pub saved: Vec<(String, String)>,
}

/// Inode number of the current network namespace.
pub fn netns_inode() -> Result<u64> {
    let link = std::fs::read_link("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
    let s = link.to_string_lossy();
    s.strip_prefix("net:[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected /proc/self/ns/net link {s:?}"))
}

/// The `N` of a `net:[N]` link (`/proc/PID/ns/net`, or an open namespace descriptor).
fn net_link_inode(link: &Path) -> Option<u64> {
    let s = link.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Inodes of every network namespace that still exists as far as this mount namespace can
/// tell: one a process is in or holds open, and one bound to a path (`ip netns add`, a
/// container runtime's bind mounts: `nsfs` entries of `/proc/self/mountinfo`).
pub fn live_netns() -> BTreeSet<u64> {
    let mut live = BTreeSet::new();
    for proc_dir in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = proc_dir.path();
        if !proc_dir
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Some(i) = std::fs::read_link(dir.join("ns/net"))
            .ok()
            .and_then(|l| net_link_inode(&l))
        {
            live.insert(i);
        }
        for fd in std::fs::read_dir(dir.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some(i) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| net_link_inode(&l))
            {
                live.insert(i);
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        // "... mount-point options ... - nsfs nsfs rw": field 5 is the mount point.
        let Some((fields, tail)) = line.split_once(" - ") else {
            continue;
        };
        if !tail.starts_with("nsfs ") {
            continue;
        }
        if let Some(point) = fields.split(' ').nth(4)
            && let Ok(m) = std::fs::metadata(point.replace("\\040", " "))
        {
            live.insert(m.ino());
        }
    }
    live
}

/// Remove the state files in `dir` whose namespace inode is not in `live`; returns how many.
/// Files that are not state files are left alone.
pub fn sweep_stale(dir: &Path, live: &BTreeSet<u64>) -> usize {
    let mut removed = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let inode = name
            .to_str()
            .and_then(|n| n.strip_prefix("netns-")?.strip_suffix(".state"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(i) = inode
            && !live.contains(&i)
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

impl State {
    /// Path of the state file of the current network namespace.
    pub fn path() -> Result<PathBuf> {
        Ok(PathBuf::from(STATE_DIR).join(format!("netns-{}.state", netns_inode()?)))
    }

    /// Loads the state of this namespace (empty if there is none), after removing the state
    /// files of namespaces that no longer exist.
    pub fn load() -> Result<State> {
        let path = Self::path()?;
        let mut live = live_netns();
        // Ours is alive whatever /proc shows (it may be mounted without our pid).
        live.insert(netns_inode()?);
        let n = sweep_stale(Path::new(STATE_DIR), &live);
        if n > 0 {
            eprintln!(
                "lvs-realserver: removed {n} state file(s) of network namespaces that no longer exist"
            );
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Self::parse(&text).with_context(|| format!("corrupt state file {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Parses the text format written by [`State::render`].
    pub fn parse(text: &str) -> Result<State> {
        let mut st = State::default();
        for (no, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            let bad = || format!("line {}: {line:?}", no + 1);
            match key {
                "vip" => st.vip = Some(rest.parse().with_context(bad)?),
                "method" => {
                    st.method = Some(match rest {
                        "dr" => Method::Dr,
                        "tun" => Method::Tun,
                        _ => bail!("{}", bad()),
                    })
                }
                "vip_on_lo" => st.vip_on_lo = rest == "1",
                "tunl0" => st.tunl0 = rest == "1",
                "tun_dev" => st.tun_dev = Some(rest.to_string()),
                "decap_pid" => st.decap_pid = Some(rest.parse().with_context(bad)?),
                "sysctl" => {
                    let (p, v) = rest.split_once(' ').with_context(bad)?;
                    st.saved.push((p.to_string(), v.to_string()));
                }
                _ => bail!("unknown key in {}", bad()),
            }
        }
        Ok(st)
    }

    /// Text form, one `key value` a line.
    pub fn render(&self) -> String {
        let mut s = String::from("# lvs-realserver state: what setup changed in this netns\n");
        if let Some(v) = self.vip {
            s += &format!("vip {v}\n");
        }
        if let Some(m) = self.method {
            s += &format!("method {}\n", m.name());
        }
        s += &format!(
            "vip_on_lo {}\ntunl0 {}\n",
            u8::from(self.vip_on_lo),
            u8::from(self.tunl0)
        );
        if let Some(d) = &self.tun_dev {
            s += &format!("tun_dev {d}\n");
        }
        if let Some(p) = self.decap_pid {
            s += &format!("decap_pid {p}\n");
        }
        for (p, v) in &self.saved {
            s += &format!("sysctl {p} {v}\n");
        }
        s
    }

    /// Writes the state file (atomically, via a temporary file).
    pub fn save(&self) -> Result<()> {
        std::fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        let path = Self::path()?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.render())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Deletes the state file of this namespace, if any.
    pub fn remove() -> Result<()> {
        match std::fs::remove_file(Self::path()?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The recorded decapsulator pid if that process still runs (and is not us).
    pub fn live_decap_pid(&self) -> Option<u32> {
        self.decap_pid
            .filter(|&p| p != std::process::id() && PathBuf::from(format!("/proc/{p}")).exists())
    }

    /// Sets a sysctl, remembering its previous value unless one is already remembered.
    pub fn set_sysctl(&mut self, path: &str, value: &str) -> Result<()> {
        let old = sysctl::read(path)?;
        if !self.saved.iter().any(|(p, _)| p == path) {
            self.saved.push((path.to_string(), old));
        }
        sysctl::write(path, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_state_files_are_swept_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("lvs-rs-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let own = netns_inode().unwrap();
        let gone = u64::from(u32::MAX) + 7; // no namespace has this inode
        for name in [
            format!("netns-{own}.state"),
            format!("netns-{gone}.state"),
            "notes.txt".to_string(),
        ] {
            std::fs::write(dir.join(name), "vip 10.0.0.1\n").unwrap();
        }
        let live = live_netns();
        assert!(live.contains(&own), "our own namespace is live: {live:?}");
        assert!(!live.contains(&gone));
        assert_eq!(sweep_stale(&dir, &live), 1);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [format!("netns-{own}.state"), "notes.txt".to_string()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_namespace_kept_only_by_its_bind_mount_is_live() {
        if !lvs_testkit::root_or_skip("a_namespace_kept_only_by_its_bind_mount_is_live") {
            return;
        }
        let name = format!("lvs-sweep-{}", std::process::id());
        let ip = |args: &[&str]| std::process::Command::new("ip").args(args).status();
        assert!(
            ip(&["netns", "add", &name]).unwrap().success(),
            "ip netns add {name}"
        );
        let inode = std::fs::metadata(format!("/run/netns/{name}")).map(|m| m.ino());
        let live = live_netns();
        let _ = ip(&["netns", "delete", &name]);
        let inode = inode.unwrap();
        assert!(
            live.contains(&inode),
            "{name} ({inode}) has no process, only its mount"
        );
        assert!(
            !live_netns().contains(&inode),
            "deleted, {name} is no longer live"
        );
    }

    #[test]
    fn round_trip() {
        let st = State {
            vip: Some(Ipv4Addr::new(10, 201, 2, 100)),
            method: Some(Method::Tun),
            vip_on_lo: true,
            tunl0: false,
            tun_dev: Some("lvsdecap0".into()),
            decap_pid: Some(42),
            saved: vec![("/proc/sys/net/ipv4/conf/all/arp_ignore".into(), "0".into())],
        };
        assert_eq!(State::parse(&st.render()).unwrap(), st);
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(State::parse("vip nope\n").is_err());
        assert!(State::parse("method udp\n").is_err());
        assert!(State::parse("frobnicate 1\n").is_err());
        assert!(State::parse("sysctl /only/path\n").is_err());
        assert_eq!(State::parse("\n# c\n").unwrap(), State::default());
    }
}
