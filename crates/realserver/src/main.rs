//! `lvs-realserver`: prepares a real server (run it inside the real server's network namespace).
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use lvs_realserver::{DEFAULT_TUN_NAME, Method};

/// Prepare a Linux real server for an LVS director's DR or Tun forwarding.
#[derive(Parser, Debug)]
#[command(name = "lvs-realserver", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Put the VIP on this host for DR or Tun. For Tun without kernel `ipip`, runs the
    /// user-space decapsulator in the foreground until SIGTERM/SIGINT, then tears down.
    Setup {
        /// The virtual IP address (IPv4).
        #[arg(long)]
        vip: Ipv4Addr,
        /// Forwarding method the director uses toward this server.
        #[arg(long, value_enum)]
        method: MethodArg,
        /// Name of the TUN device of the user-space decapsulator.
        #[arg(long, default_value = DEFAULT_TUN_NAME)]
        tun_name: String,
        /// Use the user-space decapsulator even if the kernel has `ipip`.
        #[arg(long)]
        force_userspace: bool,
    },
    /// Undo `setup`: remove the VIP and TUN/tunl0 configuration, restore saved sysctls.
    Teardown {
        /// The virtual IP address that was set up.
        #[arg(long)]
        vip: Ipv4Addr,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum MethodArg {
    /// Direct routing.
    Dr,
    /// IP-in-IP tunnelling.
    Tun,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    lvs_realserver::require_root()?;
    match cli.cmd {
        Cmd::Setup {
            vip,
            method: MethodArg::Dr,
            ..
        } => {
            lvs_realserver::setup_dr(vip)?;
            println!(
                "lvs-realserver: {vip}/32 on lo, arp_ignore=1 arp_announce=2 ({})",
                Method::Dr.name()
            );
        }
        Cmd::Setup {
            vip,
            method: MethodArg::Tun,
            tun_name,
            force_userspace,
        } => {
            if tun_name.is_empty() || tun_name.len() > 15 || tun_name.contains(['/', ' ']) {
                anyhow::bail!(
                    "--tun-name {tun_name:?} is not a valid interface name (1-15 chars, no '/' or space)"
                );
            }
            if !force_userspace && lvs_realserver::kernel_has_ipip() {
                lvs_realserver::setup_tun_kernel(vip)?;
                println!(
                    "lvs-realserver: kernel ipip: {vip}/32 on tunl0, rp_filter=0, arp sysctls set"
                );
            } else {
                let counters = lvs_realserver::run_decapsulator(vip, &tun_name)?;
                println!("lvs-realserver: decapsulator stopped: {counters}");
            }
        }
        Cmd::Teardown { vip } => {
            lvs_realserver::teardown(vip)?;
            println!("lvs-realserver: {vip} torn down");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvs-realserver: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
