//! `lvsadm import ipvsadm-save FILE` and `lvsadm import keepalived FILE`: another tool's
//! configuration as lvsd's TOML on standard output, and what could not be translated on
//! standard error.

use lvs_config::{Config, ServiceEntry, Timeouts};

use crate::Outcome;
use crate::args::{self, Command};
use crate::names::Resolve;
use crate::restore::words;

const USAGE: &str = "usage: lvsadm import ipvsadm-save|keepalived FILE [--allow-partial] (FILE may be - for standard input)";

/// Exit status of an import that left out something affecting traffic (without
/// `--allow-partial`): the TOML is still printed, for review.
pub const EXIT_PARTIAL: i32 = 3;

/// Run `import` with its arguments (after the word `import`).
pub fn run(argv: &[String], names: &dyn Resolve) -> Outcome {
    let allow_partial = argv.iter().any(|a| a == "--allow-partial");
    let rest: Vec<&str> = argv
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--allow-partial")
        .collect();
    let (kind, file) = match rest.as_slice() {
        [k, f] => (*k, *f),
        _ => return Outcome::err(args::EXIT_INVALID, USAGE),
    };
    if !matches!(kind, "ipvsadm-save" | "keepalived") {
        return Outcome::err(
            args::EXIT_INVALID,
            &format!("unknown import format `{kind}'; {USAGE}"),
        );
    }
    let text = if file == "-" {
        let mut s = String::new();
        match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            Ok(_) => s,
            Err(e) => {
                return Outcome::err(
                    args::EXIT_INVALID,
                    &format!("cannot read standard input: {e}"),
                );
            }
        }
    } else {
        match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::err(
                    args::EXIT_INVALID,
                    &format!("cannot read {file}: {e} (give the path of the file to import)"),
                );
            }
        }
    };
    // (note, affects traffic): every ipvsadm-save line left out changes the table.
    let (cfg, notes): (Config, Vec<(String, bool)>) = if kind == "keepalived" {
        let (cfg, notes) = lvs_config::import::keepalived_report(&text);
        let notes = notes
            .into_iter()
            .map(|n| (n.to_string(), n.affects_traffic))
            .collect();
        (cfg, notes)
    } else {
        let (cfg, notes) = ipvsadm_save(&text, names);
        (cfg, notes.into_iter().map(|n| (n, true)).collect())
    };
    let mut stderr = String::new();
    for (n, traffic) in &notes {
        let tag = if *traffic {
            ""
        } else {
            "(no effect on traffic) "
        };
        stderr.push_str(&format!("{file}: {tag}{n}\n"));
    }
    let partial = notes.iter().filter(|(_, t)| *t).count();
    let code = if partial > 0 && !allow_partial {
        stderr.push_str(&format!(
            "{file}: {partial} item(s) affecting traffic were not translated (above): the configuration printed would not forward as the original does; review it, then rerun with --allow-partial to accept it\n"
        ));
        EXIT_PARTIAL
    } else {
        0
    };
    Outcome {
        code,
        stdout: lvs_config::to_toml(&cfg),
        stderr,
    }
}

/// Translate ipvsadm-save rules (as `-R` reads them) into a configuration, with one note per
/// line that could not be translated (`line N: ...`). The lines are replayed in order, so
/// `-C`, `-D`, `-E`, `-e` and `-d` lines have their effect.
pub fn ipvsadm_save(text: &str, names: &dyn Resolve) -> (Config, Vec<String>) {
    let mut cfg = Config::default();
    let mut notes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let w = words(raw);
        if w.is_empty() {
            continue;
        }
        let argv: Vec<String> = std::iter::once("lvsadm".to_string()).chain(w).collect();
        let command = match args::parse_with(&argv, names) {
            Ok(inv) => inv.command,
            Err(e) => {
                let first = e.message.lines().next().unwrap_or("").to_string();
                notes.push(format!(
                    "line {line}: not translated ({}): {first}",
                    raw.trim()
                ));
                continue;
            }
        };
        if let Err(why) = replay(&mut cfg, command) {
            notes.push(format!(
                "line {line}: not translated ({}): {why}",
                raw.trim()
            ));
        }
    }
    (cfg, notes)
}

fn replay(cfg: &mut Config, command: Command) -> Result<(), String> {
    let find = |cfg: &Config, key| cfg.services.iter().position(|s| s.config.key == key);
    match command {
        Command::AddService(config) => {
            if find(cfg, config.key).is_some() {
                return Err(format!("service {} is already defined above", config.key));
            }
            cfg.services.push(ServiceEntry::new(config, Vec::new()));
        }
        Command::EditService(config) => {
            let i = find(cfg, config.key)
                .ok_or_else(|| format!("no service {} defined above", config.key))?;
            cfg.services[i].config = config;
        }
        Command::DeleteService(key) => {
            let i = find(cfg, key).ok_or_else(|| format!("no service {key} defined above"))?;
            cfg.services.remove(i);
        }
        Command::Clear => cfg.services.clear(),
        Command::AddDest { key, dest } => {
            let i = find(cfg, key).ok_or_else(|| {
                format!("real server for service {key}, which is not defined above")
            })?;
            let dests = &mut cfg.services[i].dests;
            if dests
                .iter()
                .any(|d| d.addr == dest.addr && d.port == dest.port)
            {
                return Err("this real server is already defined above".into());
            }
            dests.push(dest);
        }
        Command::EditDest { key, dest } => {
            let i = find(cfg, key).ok_or_else(|| format!("no service {key} defined above"))?;
            let d = cfg.services[i]
                .dests
                .iter_mut()
                .find(|d| d.addr == dest.addr && d.port == dest.port)
                .ok_or("no such real server defined above")?;
            *d = dest;
        }
        Command::DeleteDest { key, addr, port } => {
            let i = find(cfg, key).ok_or_else(|| format!("no service {key} defined above"))?;
            let dests = &mut cfg.services[i].dests;
            let j = dests
                .iter()
                .position(|d| d.addr == addr && d.port == port)
                .ok_or("no such real server defined above")?;
            dests.remove(j);
        }
        Command::SetTimeouts { tcp, tcpfin, udp } => {
            let t = cfg.timeouts.get_or_insert_with(Timeouts::default);
            // 0 keeps a value, as --set does.
            if tcp != 0 {
                t.tcp = tcp;
            }
            if tcpfin != 0 {
                t.tcpfin = tcpfin;
            }
            if udp != 0 {
                t.udp = udp;
            }
        }
        Command::Zero(_) => return Err("-Z zeroes counters; a configuration has none".into()),
        _ => return Err("not a table change (only -A -E -D -C -a -e -d --set are)".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_api::Request;
    use lvs_core::service::{DestConfig, ServiceConfig};
    use lvs_core::types::{
        ForwardMethod, Netmask, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceKey,
    };
    use std::time::Duration;

    /// lvsd logs each change in ipvsadm's words (`lvs_config::rules::request_words`):
    /// replayed as ipvsadm-save lines, they rebuild exactly the table the requests make.
    #[test]
    fn logged_changes_are_ipvsadm_commands_that_rebuild_the_table() {
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.1.0.100".parse().unwrap(),
            port: 80,
        };
        let v6 = ServiceKey::Addr {
            proto: Protocol::Udp,
            addr: "2001:db8::1".parse().unwrap(),
            port: 53,
        };
        let mut svc = ServiceConfig::new(key).with_scheduler(SchedulerKind::Sh);
        svc.persistence = Some(Persistence {
            timeout: Duration::from_secs(300),
            netmask: Netmask::V4(24),
        });
        svc.flags = SchedFlags::FLAG2;
        let mut rs = DestConfig::new("192.168.10.13".parse().unwrap(), 8080, ForwardMethod::Masq)
            .with_weight(3);
        rs.upper_threshold = 100;
        rs.lower_threshold = 10;
        let dr = DestConfig::new(
            "192.168.10.14".parse().unwrap(),
            80,
            ForwardMethod::DirectRoute,
        );
        let tun = DestConfig::new("2001:db8::9".parse().unwrap(), 53, ForwardMethod::Tunnel);
        let requests = [
            Request::AddService {
                service: svc.into(),
            },
            Request::AddDest {
                key: key.into(),
                dest: rs.into(),
            },
            Request::AddDest {
                key: key.into(),
                dest: dr.into(),
            },
            Request::EditDest {
                key: key.into(),
                dest: dr.with_weight(0).into(),
            },
            Request::AddService {
                service: ServiceConfig::new(v6)
                    .with_scheduler(SchedulerKind::Rr)
                    .into(),
            },
            Request::AddDest {
                key: v6.into(),
                dest: tun.into(),
            },
            Request::DeleteDest {
                key: v6.into(),
                addr: tun.addr,
                port: tun.port,
            },
            Request::SetTimeouts {
                tcp: 0,
                tcpfin: 60,
                udp: 0,
            },
        ];
        let lines: Vec<String> = requests
            .iter()
            .map(|r| lvs_config::rules::request_words(r).expect("a table change"))
            .collect();
        assert_eq!(
            lines[0],
            "-A -t 10.1.0.100:80 -s sh -p 300 -M 255.255.255.0 -b sh-port"
        );
        assert_eq!(
            lines[1],
            "-a -t 10.1.0.100:80 -r 192.168.10.13:8080 -m -w 3 -x 100 -y 10"
        );
        assert_eq!(lines[6], "-d -u [2001:db8::1]:53 -r [2001:db8::9]:53");
        let (cfg, notes) = ipvsadm_save(&lines.join("\n"), &crate::names::Numeric);
        assert!(notes.is_empty(), "{notes:?}\n{lines:#?}");
        assert_eq!(cfg.services.len(), 2);
        assert_eq!(cfg.services[0].config, svc);
        assert_eq!(cfg.services[0].dests, vec![rs, dr.with_weight(0)]);
        assert!(cfg.services[1].dests.is_empty());
        assert_eq!(cfg.timeouts.map(|t| t.tcpfin), Some(60));
        assert_eq!(lvs_config::rules::request_words(&Request::List), None);
    }
}
