//! What `setup` changed, persisted under `/run/lvs-realserver/` so that `teardown` can undo it.
//!
//! `/run` is shared between network namespaces, so the file name carries the namespace's inode
//! number (from `/proc/self/ns/net`): `/run/lvs-realserver/netns-<inode>.state`.
//! The format is one `key value` pair a line.

use std::net::Ipv4Addr;
use std::path::PathBuf;

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

impl State {
    /// Path of the state file of the current network namespace.
    pub fn path() -> Result<PathBuf> {
        Ok(PathBuf::from(STATE_DIR).join(format!("netns-{}.state", netns_inode()?)))
    }

    /// Loads the state of this namespace (empty if there is none).
    pub fn load() -> Result<State> {
        let path = Self::path()?;
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
