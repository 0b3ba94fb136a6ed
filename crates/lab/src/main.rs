//! `lvs-lab`: build/remove the LVS lab topologies and run the lab's test servers.
#![forbid(unsafe_code)]

mod demo;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use lvs_lab::{Lab, Method};

/// LVS lab: network-namespace topologies for NAT, DR and Tun, plus test servers.
#[derive(Parser, Debug)]
#[command(name = "lvs-lab", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build a topology, print its plan, and keep it until SIGINT/SIGTERM (or detach).
    Up {
        /// Forwarding method the topology is built for.
        #[arg(long, value_enum)]
        method: MethodArg,
        /// Namespace name prefix (default: lvs<pid>-0).
        #[arg(long)]
        prefix: Option<String>,
        /// Also start `serve` on rs1..rs3 (HTTP port 80, UDP port 5353).
        #[arg(long)]
        serve: bool,
        /// Leave the lab in place and exit; remove it later with `down --prefix`.
        #[arg(long)]
        detach: bool,
    },
    /// Remove the lab with this prefix (kills its processes, deletes its namespaces).
    Down {
        /// The lab's namespace name prefix.
        #[arg(long)]
        prefix: String,
    },
    /// Remove labs whose owner process has died (detached labs are kept).
    CleanupStale,
    /// Run the HTTP server and UDP echo of a real server (in the foreground).
    Serve {
        /// Name put in every answer.
        #[arg(long)]
        name: String,
        /// HTTP port (0 disables).
        #[arg(long, default_value_t = 80)]
        http_port: u16,
        /// UDP echo port (0 disables).
        #[arg(long, default_value_t = 5353)]
        udp_port: u16,
        /// Bind this address only (default: all addresses).
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Maximum concurrent HTTP connections.
        #[arg(long, default_value_t = 256)]
        max_conns: usize,
    },
    /// Print the SHA-256 of the blob served by `GET /blob?size=N`.
    BlobSha256 {
        /// Blob size in bytes.
        size: u64,
    },
    /// Run NAT, DR and Tun one after another through lvsd (needs root and the other binaries
    /// next to lvs-lab) and show who answered, the client address seen and the counters.
    Demo {
        /// Run only this method.
        #[arg(long, value_enum)]
        method: Option<MethodArg>,
        /// HTTP requests per method.
        #[arg(long, default_value_t = 12)]
        requests: usize,
    },
    /// Send one UDP datagram and print the answer (3 tries, 2 s each); used by the demo.
    UdpRequest {
        /// Destination `IP:PORT`.
        addr: SocketAddr,
        /// Payload (UTF-8).
        payload: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum MethodArg {
    /// LVS-NAT.
    Nat,
    /// LVS-DR (direct routing).
    Dr,
    /// LVS-Tun (IP-in-IP).
    Tun,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Nat => Method::Nat,
            MethodArg::Dr => Method::Dr,
            MethodArg::Tun => Method::Tun,
        }
    }
}

fn wait_for_signal() -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Up {
            method,
            prefix,
            serve,
            detach,
        } => {
            let method = method.into();
            let lab = Lab::build(method, prefix)?;
            if serve {
                lab.start_servers(&std::env::current_exe().context("locating lvs-lab")?)?;
            }
            print!("{}", lab.describe());
            if detach {
                let p = lab.detach();
                println!("detached; remove with: lvs-lab down --prefix {p}");
            } else {
                println!("up; Ctrl-C or SIGTERM removes it");
                wait_for_signal()?;
            }
        }
        Cmd::Down { prefix } => {
            let removed = lvs_lab::down(&prefix)?;
            println!("removed {} namespace(s) of lab {prefix}", removed.len());
        }
        Cmd::CleanupStale => {
            let stale = lvs_lab::cleanup_stale()?;
            println!(
                "removed {} stale lab(s){}{}",
                stale.len(),
                if stale.is_empty() { "" } else { ": " },
                stale.join(" ")
            );
        }
        Cmd::Serve {
            name,
            http_port,
            udp_port,
            bind,
            max_conns,
        } => {
            if max_conns == 0 {
                anyhow::bail!("--max-conns must be at least 1");
            }
            let cfg = lvs_lab::serve::ServeConfig {
                name,
                http_port,
                udp_port,
                bind,
                max_conns,
            };
            lvs_lab::serve::start(cfg.clone()).with_context(|| {
                format!("binding HTTP port {http_port} / UDP port {udp_port} (in use? need root for <1024?)")
            })?;
            eprintln!(
                "lvs-lab serve: {} listening on http {} udp {}",
                cfg.name, http_port, udp_port
            );
            wait_for_signal()?;
        }
        Cmd::BlobSha256 { size } => println!("{}", lvs_lab::blob::blob_sha256(size)),
        Cmd::Demo { method, requests } => {
            if requests == 0 {
                anyhow::bail!("--requests must be at least 1");
            }
            let methods = match method {
                Some(m) => vec![m.into()],
                None => vec![Method::Nat, Method::Dr, Method::Tun],
            };
            if !demo::run(&methods, requests)? {
                anyhow::bail!("the demo found problems (see above)");
            }
        }
        Cmd::UdpRequest { addr, payload } => println!("{}", demo::udp_request(addr, &payload)?),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvs-lab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
