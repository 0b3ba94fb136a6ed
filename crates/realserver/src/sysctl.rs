//! Reading and writing IPv4 sysctls through `/proc/sys` (no `sysctl` binary needed).

use std::path::Path;

use anyhow::{Context, Result};

/// Directory holding the per-interface IPv4 sysctls.
pub const IPV4_CONF: &str = "/proc/sys/net/ipv4/conf";

/// Path of `net.ipv4.conf.<iface>.<key>`.
pub fn ipv4_conf_path(iface: &str, key: &str) -> String {
    format!("{IPV4_CONF}/{iface}/{key}")
}

/// Names under `net.ipv4.conf` (`all`, `default` and every interface), sorted.
pub fn ipv4_conf_interfaces() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(IPV4_CONF).with_context(|| format!("listing {IPV4_CONF}"))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Reads a sysctl value, trimmed.
pub fn read(path: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading sysctl {path}"))?
        .trim()
        .to_string())
}

/// Writes a sysctl value.
pub fn write(path: &str, value: &str) -> Result<()> {
    if !Path::new(path).exists() {
        anyhow::bail!("sysctl {path} does not exist (interface gone?)");
    }
    std::fs::write(path, format!("{value}\n"))
        .with_context(|| format!("writing {value} to sysctl {path}"))
}
