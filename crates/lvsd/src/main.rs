//! `lvsd`: the LVS director daemon.
//!
//! Runs in the foreground (systemd `Type=notify`: READY, RELOADING, STOPPING and watchdog pings
//! through `NOTIFY_SOCKET` when it is set, see [`notify`]), serves every non-loopback interface of its
//! network namespace unless `--interface` narrows it (following them as they come and go:
//! [`ifaces`]), takes the virtual services' traffic
//! from the kernel (see [`steering`]), forwards it with NAT, DR or Tun, and answers
//! `lvsadm` on its control socket. SIGTERM or SIGINT stops it and removes every rule it
//! installed.
//!
//! `--config FILE` loads a declarative configuration (see the `lvs-config` crate) at start, as
//! one atomic batch; SIGHUP or `lvsadm --reload` re-reads it and applies only the difference.
//! `--check-config FILE` validates a file and exits.
#![forbid(unsafe_code)]

mod config;
mod control;
mod dataplane;
mod fastpath;
mod handover;
mod health;
mod ifaces;
mod listing;
mod losses;
mod metrics;
mod netsync;
mod notify;
mod steering;

use std::io::{IsTerminal, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use lvs_core::director::Settings;
use lvs_core::{Director, Time};
use lvs_io::AfPacket;
use tracing::{error, info, warn};

/// The LVS director daemon.
#[derive(Parser, Debug)]
#[command(
    name = "lvsd",
    version,
    about = "Linux Virtual Server director: NAT, direct routing and IP tunnelling in user space"
)]
struct Args {
    /// Control socket path.
    #[arg(long, env = "LVSD_SOCKET", default_value = lvs_api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Interface to serve (repeatable; it must exist at start). Default: every non-loopback
    /// interface. Interfaces that appear, go or are renamed later are followed (logged).
    #[arg(long = "interface", short = 'i')]
    interfaces: Vec<String>,
    /// Most connection entries kept (ipvsadm's table size).
    #[arg(long, default_value_t = 1 << 20)]
    conn_limit: usize,
    /// Most TCP entries that have not completed their handshake (SYN_RECV), the SYN-flood
    /// defence: past it, or with the table full, a new connection takes the place of the
    /// oldest such entry (counted as `embryonic_evicted`). Default: an eighth of
    /// --conn-limit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    embryonic_limit: Option<u64>,
    /// The timeout of one TCP state, `STATE=SECONDS` (repeatable): any of NONE,
    /// ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK,
    /// LISTEN, SYNACK, e.g. `--tcp-timeout syn_recv=10`. IPVS's defaults otherwise; `--set`
    /// (and [timeouts]) still set ESTABLISHED and FIN_WAIT.
    #[arg(long = "tcp-timeout", value_parser = parse_tcp_timeout)]
    tcp_timeouts: Vec<(lvs_core::conn::TcpState, u64)>,
    /// Data path worker threads. Each has a socket per interface; the sockets of an interface
    /// form a fanout group hashed by flow.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// RX ring: `v2` delivers each frame at once (lowest latency, ~18 MiB per socket); `v3`
    /// batches frames into blocks handed over when full or after 1 ms (denser, 4 MiB per
    /// socket, but adds up to 1 ms per packet at low rates).
    #[arg(long, default_value_t = lvs_io::RingVersion::V2)]
    rx_ring: lvs_io::RingVersion,
    /// `--rx-ring v2`: frame slots in each socket's receive ring, rounded up to whole ring
    /// blocks (15 slots each with 4 KiB pages; a slot holds a frame of up to 64 KiB in 68 KiB). A burst larger than
    /// the ring while the worker is busy is dropped by the kernel (`lvsadm --drops`, ring
    /// `full`): raise it when those drops grow.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=16_384))]
    rx_frames: u32,
    /// `--rx-ring v3`: 256 KiB blocks in each socket's receive ring (default 16: 4 MiB). The
    /// kernel drops frames while every block is held (ring `full` and `freezes` in
    /// `lvsadm --drops`): raise it when those grow.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4_096))]
    rx_blocks: u32,
    /// Configuration file (TOML) to load at start and re-apply on SIGHUP / `lvsadm --reload`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate a configuration file and exit: prints `FILE:LINE:COL: message` per error and
    /// exits 1, or prints a summary and exits 0. Needs no privileges.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Print a shell completion script for lvsd (bash, zsh, fish, elvish, powershell) and
    /// exit.
    #[arg(long, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
    /// Keep polling the receive rings this many microseconds after the last frame before
    /// sleeping (0 = sleep at once). Spends CPU to save wake-ups at moderate packet rates.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    busy_poll_us: u32,
    /// Where established flows are forwarded: `tc` = in the kernel (eBPF at tc ingress of
    /// every served interface), `xdp` = the same with XDP in front of tc on every interface
    /// (refused where the driver has no native XDP), `afpacket` = every packet through user
    /// space, `auto` = `tc`, with XDP in front on NICs that take it (not on veths or other
    /// virtual links), else `afpacket` (each choice logged).
    #[arg(long, value_enum, default_value_t = DatapathArg::Auto)]
    datapath: DatapathArg,
    /// On SIGTERM/SIGINT, leave the kernel fast path attached and the steering table in
    /// place, so established flows keep being forwarded by the kernel until the next lvsd
    /// (which adopts them) starts: for restarts and upgrades. On `afpacket` the steering table
    /// stays and the connections are handed over to the next lvsd in `SOCKET.handover`.
    /// Without it a stop removes everything lvsd attached.
    #[arg(long)]
    keep_forwarding_on_exit: bool,
    /// Log filter (tracing syntax), e.g. `info` or `lvsd=debug`.
    #[arg(long, env = "LVSD_LOG", default_value = "info")]
    log: String,
    /// Log line format: `text` (colour only on a terminal) or `json` (one object per line,
    /// for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve Prometheus / OpenMetrics metrics over HTTP at `GET /metrics` on this address,
    /// e.g. `127.0.0.1:9101` or `[::]:9101`. Off unless set.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--datapath`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DatapathArg {
    /// The kernel fast path where it loads and attaches (XDP on NICs), else AF_PACKET.
    Auto,
    /// The kernel fast path at tc ingress; refuse to start without it.
    Tc,
    /// XDP in front of tc ingress on every interface; refuse to start without it.
    Xdp,
    /// Every packet through user space over AF_PACKET rings.
    Afpacket,
}

/// Load the kernel fast path and attach it to every served interface and socket, as
/// `--datapath` asks; `None` means AF_PACKET only.
fn fast_path(
    choice: DatapathArg,
    conn_limit: usize,
    now: Time,
    ifaces: &[(u32, String)],
    sockets: &[Vec<AfPacket>],
    qdiscs: &std::path::Path,
    net: &lvs_core::net::NetTable,
) -> Result<Option<(fastpath::FastPath, Vec<fastpath::Attachment>)>> {
    let attach = |xdp| -> Result<(fastpath::FastPath, Vec<fastpath::Attachment>)> {
        let served: Vec<u32> = ifaces.iter().map(|(i, _)| *i).collect();
        let mut fp = fastpath::FastPath::load(conn_limit, now, &served, xdp)?;
        // Routes before the program replaces a predecessor's: adopted flows need them.
        let _ = fp.set_routes(net);
        let mut attached = Vec::new();
        // A predecessor killed before it could clean up left the qdiscs it created: they are
        // ours to remove at the end (the list lives beside the control socket).
        let inherited = fastpath::read_qdiscs(qdiscs);
        for (index, name) in ifaces {
            match fp.attach(*index, name) {
                Ok(mut a) => {
                    a.tc.created_qdisc |= inherited.contains(index);
                    attached.push(a);
                }
                Err(e) => {
                    fastpath::detach(attached, qdiscs);
                    return Err(e);
                }
            }
        }
        fastpath::write_qdiscs(qdiscs, &attached);
        // Now that it is known where lvs_xdp runs: the neighbours it may redirect to.
        fp.set_neighbours(net);
        for s in sockets.iter().flatten() {
            if let Err(e) = fp.filter(s) {
                fastpath::detach(attached, qdiscs);
                return Err(e);
            }
        }
        Ok((fp, attached))
    };
    // Every packet goes through user space: a killed predecessor's lvs_xdp must not go on
    // forwarding in front on its old maps.
    let no_xdp = || {
        for (index, name) in ifaces {
            fastpath::remove_predecessor_xdp(*index, name);
        }
    };
    match choice {
        DatapathArg::Afpacket => {
            no_xdp();
            Ok(None)
        }
        DatapathArg::Xdp => attach(fastpath::XdpPolicy::Everywhere).map(Some),
        DatapathArg::Tc => attach(fastpath::XdpPolicy::Off).map(Some),
        DatapathArg::Auto => match attach(fastpath::XdpPolicy::Nics) {
            Ok(x) => Ok(Some(x)),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "kernel fast path unavailable; every packet goes through user space (datapath afpacket)"
                );
                no_xdp();
                Ok(None)
            }
        },
    }
}

/// `STATE=SECONDS` for --tcp-timeout, bounded as `--set` is.
fn parse_tcp_timeout(s: &str) -> std::result::Result<(lvs_core::conn::TcpState, u64), String> {
    let (name, secs) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not STATE=SECONDS (e.g. syn_recv=10)"))?;
    let state = lvs_core::conn::TcpState::from_name(name).ok_or_else(|| {
        format!(
            "'{name}' is no TCP state (one of {})",
            lvs_core::conn::TcpState::ALL
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let secs: u64 = secs
        .trim()
        .parse()
        .map_err(|_| format!("'{secs}' is not a number of seconds"))?;
    let max = u64::from(i32::MAX as u32) / 250;
    if secs == 0 || secs > max {
        return Err(format!("{secs} s: a timeout is 1 to {max} seconds"));
    }
    Ok((state, secs))
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        u64::from_le_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
    }
}

fn main() {
    let args = Args::parse();
    if let Some(shell) = args.completions {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Args::command(), "lvsd", &mut std::io::stdout());
        return;
    }
    if let Some(path) = &args.check_config {
        std::process::exit(config::check(path));
    }
    // Memory a SYN flood's entries took goes back to the system once they are gone.
    let _ = lvs_io::map_large_allocations();
    let filter =
        tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => log.json().init(),
        // Colour only for a person at a terminal: not in the journal or a log file.
        LogFormat::Text => log
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
    if let Err(e) = run(args) {
        // Once, through the log (which is stderr), with the whole chain of causes.
        error!("{e:#}");
        std::process::exit(1);
    }
}

fn served_interfaces(names: &[String]) -> Result<Vec<(u32, String)>> {
    if names.is_empty() {
        let all = lvs_io::iface::interfaces().context("cannot list interfaces")?;
        if all.is_empty() {
            bail!("no non-loopback interface to serve in this network namespace");
        }
        return Ok(all.into_iter().map(|i| (i.index, i.name)).collect());
    }
    names
        .iter()
        .map(|n| {
            lvs_io::iface::ifindex(n)
                .map(|i| (i, n.clone()))
                .with_context(|| format!("no interface named '{n}' (see `ip link`)"))
        })
        .collect()
}

fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    // Refuse to start on a bad file, before touching anything.
    let initial =
        match &args.config {
            Some(path) => Some(config::load(path).map_err(|diags| {
                anyhow::anyhow!("configuration refused, not starting:\n{diags}")
            })?),
            None => None,
        };
    let ifaces = served_interfaces(&args.interfaces)?;
    let names: Vec<String> = ifaces.iter().map(|(_, n)| n.clone()).collect();
    let metrics_listener = args.metrics_listen.map(metrics::bind).transpose()?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handler")?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("cannot install signal handler")?;

    let per_worker = open_sockets(&args, &ifaces)?;
    // Replace whatever a predecessor left: with the entries it handed over (its connections
    // are taken over as their services come back), else with no rule (after a crash).
    let handed = handover::take(&handover::path(&args.socket)).map(|h| {
        let indexes: Vec<u32> = ifaces.iter().map(|(i, _)| *i).collect();
        let spec = steering::Spec {
            local: netsync::snapshot(&indexes)
                .map(|(_, l)| l)
                .unwrap_or_default(),
            ..h.spec.clone()
        };
        (h, spec)
    });
    let first = handed.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
    steering::install(&first, &names).context("cannot install kernel steering")?;

    // Until `Running` exists (it undoes everything itself), a failure removes the table here.
    let (running, shared, datapath) = match start_data_path(
        &args,
        initial.as_ref(),
        &ifaces,
        per_worker,
        &stop,
        start,
        handed,
    ) {
        Ok(r) => r,
        Err(e) => {
            let _ = steering::remove();
            return Err(e);
        }
    };
    let reloader = args
        .config
        .clone()
        .map(|p| config::Reloader::new(p, Arc::clone(&running.control)));
    let health = match health::start(Arc::clone(&running.control), reloader) {
        Ok(h) => h,
        Err(e) => {
            running.stop_after_failure();
            return Err(e.context("cannot start the health checks"));
        }
    };
    // The data path is up: apply the configuration file as one atomic batch.
    if let (Some(cfg), Some(path)) = (&initial, &args.config)
        && let Err(e) = config::apply_initial(cfg, path, |c| health.apply_config(c))
    {
        running.stop_after_failure();
        return Err(e);
    }
    let served = (names.as_slice(), datapath);
    serve(
        &args,
        running,
        &health,
        shared,
        metrics_listener,
        &hup,
        served,
    )
}

/// Build the core, load the kernel fast path (datapath tc) and start the workers and the
/// netlink thread: what [`Running`] then owns.
fn start_data_path(
    args: &Args,
    initial: Option<&lvs_config::Config>,
    ifaces: &[(u32, String)],
    per_worker: Vec<Vec<AfPacket>>,
    stop: &Arc<AtomicBool>,
    start: Instant,
    handed: Option<(handover::Handover, steering::Spec)>,
) -> Result<(Running, Arc<dataplane::Shared>, &'static str)> {
    let indexes: Vec<u32> = ifaces.iter().map(|(i, _)| *i).collect();
    let (mut director, local) = new_director(args, initial, &indexes);
    let now = Time::from_nanos(start.elapsed().as_nanos() as u64);
    let qdiscs = fastpath::qdiscs_file(&args.socket);
    let (fast, attached) = match fast_path(
        args.datapath,
        args.conn_limit,
        now,
        ifaces,
        &per_worker,
        &qdiscs,
        &director.net,
    )? {
        Some((fp, a)) => (Some(fp), a),
        None => (None, Vec::new()),
    };
    if fast.is_some() {
        director.enable_journal();
    }
    let datapath = match (&fast, attached.iter().any(|a| a.xdp.is_some())) {
        (None, _) => "afpacket",
        (Some(_), true) => "xdp",
        (Some(_), false) => "tc",
    };

    let (cmd_tx, cmd_rx) = channel();
    let (res_tx, res_rx) = channel();
    let (wake_tx, wake_rx) = UnixStream::pair().context("socketpair")?;
    let wake = Arc::new(Mutex::new(wake_tx.try_clone()?));
    let shared = Arc::new(dataplane::Shared {
        director: Mutex::new(director),
        worker_packets: (0..args.workers)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
        losses: losses::Registry::default(),
        worker_beat: (0..args.workers)
            .map(|_| std::sync::atomic::AtomicU64::new(now.as_nanos()))
            .collect(),
        start,
        stop: Arc::clone(stop),
        busy_poll: Duration::from_micros(u64::from(args.busy_poll_us)),
    });
    let names: Vec<String> = ifaces.iter().map(|(_, n)| n.clone()).collect();
    let (handed, installed) = match handed {
        Some((h, spec)) => (Some(h), spec),
        None => (None, steering::Spec::default()),
    };
    let applier = Arc::new(steering::Applier::new(names, installed));
    let (steer_tx, steer_rx) = channel::<steering::Change>();
    let refresher = {
        let a = Arc::clone(&applier);
        std::thread::Builder::new()
            .name("lvsd-steering".into())
            .spawn(move || {
                // Ends when the worker that sends is gone.
                for change in steer_rx {
                    let (r, what) = match &change {
                        steering::Change::Spec(v) => (a.apply(v), "after connections ended"),
                        steering::Change::Devices(d, v) => {
                            (a.set_devices(d.clone(), v), "for the new set of interfaces")
                        }
                    };
                    if let Err(e) = r {
                        warn!(error = %format!("{e:#}"), "steering update {what} failed");
                    }
                }
            })?
    };
    let attached = Arc::new(Mutex::new(attached));
    let (to_workers, from_follow): (Vec<_>, Vec<_>) = (0..args.workers).map(|_| channel()).unzip();
    let follow = ifaces::Follow::new(
        ifaces.to_vec(),
        socket_plan(args),
        to_workers,
        Arc::clone(&attached),
        qdiscs.clone(),
    );
    let control_part = dataplane::ControlPart {
        commands: cmd_rx,
        wake: wake_rx,
        local,
        resolve: res_tx,
        to_resolve: Vec::with_capacity(64),
        to_recheck: Vec::new(),
        next_recheck: std::time::Instant::now(),
        released: Vec::new(),
        fast,
        steer: steer_tx,
        follow,
        handover: handed.map_or_else(Default::default, |h| handover::Pending::new(h, now)),
        seq: 0,
        freed: 0,
        trim: dataplane::Trim::default(),
    };
    let workers = spawn_workers(&shared, (per_worker, ifaces), from_follow, control_part)?;
    let sync = {
        let (c, w, s) = (cmd_tx.clone(), wake, Arc::clone(stop));
        let policy = ifaces::Policy::from_names(&args.interfaces);
        std::thread::Builder::new()
            .name("lvsd-netsync".into())
            .spawn(move || netsync::run(policy, c, w, res_rx, s))?
    };
    let running = Running {
        stop: Arc::clone(stop),
        control: Arc::new(control::Control::new(cmd_tx, wake_tx, applier)),
        workers,
        refresher,
        sync,
        attached,
        qdiscs,
        shared: Arc::clone(&shared),
        handover: handover::path(&args.socket),
        threads: Vec::new(),
        socket: None,
    };
    Ok((running, shared, datapath))
}

/// Open the control socket and the metrics endpoint, then serve until SIGTERM or SIGINT
/// (SIGHUP reloads the configuration file), and shut down.
fn serve(
    args: &Args,
    mut running: Running,
    health: &health::Health,
    shared: Arc<dataplane::Shared>,
    metrics_listener: Option<std::net::TcpListener>,
    hup: &AtomicBool,
    (names, datapath): (&[String], &str),
) -> Result<()> {
    let stop = Arc::clone(&running.stop);
    if let Err(e) = start_servers(args, &mut running, shared, metrics_listener) {
        running.stop_after_failure();
        return Err(e);
    }
    info!(socket = %args.socket.display(), interfaces = ?names, datapath, "lvsd started");
    // Serving: the data path is up, the configuration applied, the control socket bound.
    let status = format!("serving {} interface(s), datapath {datapath}", names.len());
    notify::ready(&status);

    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if hup.swap(false, Ordering::Relaxed) {
            if health.can_reload() {
                notify::reloading();
                let _ = health.reload();
                notify::ready(&status);
            } else {
                warn!("SIGHUP ignored: lvsd was started without --config");
            }
        }
    }
    info!("stopping");
    notify::stopping();
    running.shutdown(args.keep_forwarding_on_exit)
}

/// Bind the control socket and start its server, the metrics server and (under a systemd
/// watchdog) the watchdog.
fn start_servers(
    args: &Args,
    running: &mut Running,
    shared: Arc<dataplane::Shared>,
    metrics_listener: Option<std::net::TcpListener>,
) -> Result<()> {
    let listener = control::bind(&args.socket)?;
    running.socket = Some(args.socket.clone());
    let stop = &running.stop;
    let watchdog_shared = Arc::clone(&shared);
    if let Some(l) = metrics_listener {
        let (c, s, st) = (Arc::clone(&running.control), shared, Arc::clone(stop));
        running.threads.push(metrics::spawn(l, c, s, st)?);
    }
    let (c, s, p) = (
        Arc::clone(&running.control),
        Arc::clone(stop),
        args.socket.clone(),
    );
    let server = std::thread::Builder::new()
        .name("lvsd-control".into())
        .spawn(move || control::serve(listener, c, s, p, control::Limits::default()))?;
    running.threads.push(server);
    let stop = Arc::clone(&running.stop);
    if let Some(w) = notify::spawn_watchdog(args.socket.clone(), watchdog_shared, stop)? {
        running.threads.push(w);
    }
    Ok(())
}

fn socket_plan(args: &Args) -> ifaces::SocketPlan {
    ifaces::SocketPlan {
        workers: args.workers,
        ring: args.rx_ring,
        rx_frames: args.rx_frames,
        rx_blocks: args.rx_blocks,
    }
}

/// One socket per (worker, interface); an interface's sockets share a fanout group.
fn open_sockets(args: &Args, ifaces: &[(u32, String)]) -> Result<Vec<Vec<AfPacket>>> {
    let mut per_worker: Vec<Vec<AfPacket>> = (0..args.workers).map(|_| Vec::new()).collect();
    for (index, name) in ifaces {
        for (sockets, s) in per_worker
            .iter_mut()
            .zip(socket_plan(args).open(*index, name)?)
        {
            sockets.push(s);
        }
    }
    Ok(per_worker)
}

/// The core with the file's connection-handling settings and the kernel's routes,
/// neighbours and local addresses as they are now.
fn new_director(
    args: &Args,
    initial: Option<&lvs_config::Config>,
    indexes: &[u32],
) -> (Director, std::collections::BTreeSet<std::net::IpAddr>) {
    let policy = initial.and_then(|c| c.settings).unwrap_or_default();
    let settings = Settings {
        expire_nodest_conn: policy.expire_nodest_conn,
        expire_quiescent_template: policy.expire_quiescent_template,
        conn_reuse_mode: policy.conn_reuse_mode,
        sloppy_tcp: policy.sloppy_tcp,
        conn_limit: args.conn_limit,
        embryonic_limit: args.embryonic_limit.map(|n| n as usize),
        hash_seed: random_seed(),
        sched_seed: random_seed(),
        ..Settings::default()
    };
    let mut director = Director::new(settings, Time::ZERO);
    for &(state, secs) in &args.tcp_timeouts {
        director.set_tcp_timeout(state, std::time::Duration::from_secs(secs));
    }
    let mut local = std::collections::BTreeSet::new();
    match netsync::snapshot(indexes) {
        Ok((t, l)) => {
            director.net = t;
            local = l;
        }
        Err(e) => warn!(error = %e, "cannot read the kernel's tables yet"),
    }
    (director, local)
}

/// Start one data path thread per socket set (on the interfaces `names`); the first one gets
/// the control part.
fn spawn_workers(
    shared: &Arc<dataplane::Shared>,
    (per_worker, names): (Vec<Vec<AfPacket>>, &[(u32, String)]),
    changes: Vec<std::sync::mpsc::Receiver<ifaces::SocketChange>>,
    control: dataplane::ControlPart,
) -> Result<Vec<JoinHandle<Option<dataplane::Leftovers>>>> {
    let mut control = Some(control);
    let mut workers = Vec::new();
    for (id, (sockets, changes)) in per_worker.into_iter().zip(changes).enumerate() {
        let w = dataplane::Worker::new(
            id,
            Arc::clone(shared),
            (sockets, names),
            control.take(),
            changes,
        )
        .context("cannot set up a data path worker")?;
        workers.push(
            std::thread::Builder::new()
                .name(format!("lvsd-worker{id}"))
                .spawn(move || w.run())?,
        );
    }
    Ok(workers)
}

/// What a started lvsd has to take down, and the one sequence that does it.
struct Running {
    stop: Arc<AtomicBool>,
    control: Arc<control::Control>,
    workers: Vec<JoinHandle<Option<dataplane::Leftovers>>>,
    /// Applies the steering changes that follow expiring connections.
    refresher: JoinHandle<()>,
    sync: JoinHandle<()>,
    /// The kernel fast path's attachments (worker 0 adds those of new interfaces).
    attached: Arc<Mutex<Vec<fastpath::Attachment>>>,
    qdiscs: PathBuf,
    /// The data path's state (the connections to hand over at a stop).
    shared: Arc<dataplane::Shared>,
    /// Where the connections are handed over (see [`handover`]).
    handover: PathBuf,
    /// The control server and the metrics server, once started.
    threads: Vec<JoinHandle<()>>,
    /// The control socket, once bound by this process.
    socket: Option<PathBuf>,
}

impl Running {
    /// [`Running::shutdown`] with everything removed, when start-up failed half-way; the
    /// start-up error is the one to report, so a failure to undo is only logged.
    fn stop_after_failure(self) {
        if let Err(undo) = self.shutdown(false) {
            error!(error = %format!("{undo:#}"), "while stopping after a failed start");
        }
    }

    /// Stop every thread and undo what lvsd set up, in the order that keeps the kernel from
    /// forwarding half-configured: the servers and workers stop first, then the kernel fast
    /// path is detached (unless `keep_forwarding` and it is attached: it stays for the next
    /// lvsd to adopt, and so do the steering rules), then the steering rules go.
    fn shutdown(self, keep_forwarding: bool) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        if let Ok(mut w) = self.control.wake.lock() {
            use std::io::Write;
            let _ = w.write_all(&[1]);
        }
        let mut left = None;
        for w in self.workers {
            if let Ok(Some(l)) = w.join() {
                left = Some(l);
            }
        }
        let _ = self.refresher.join();
        let attached =
            std::mem::take(&mut *self.attached.lock().unwrap_or_else(|p| p.into_inner()));
        let on_tc = !attached.is_empty();
        // On afpacket the connections go to the next lvsd in a file, and the rules stay so
        // that the kernel never answers their packets meanwhile.
        let handed = (keep_forwarding && !on_tc)
            .then(|| hand_over(&self.shared, &self.handover, left.as_ref()))
            .flatten();
        let keep = keep_forwarding && (on_tc || handed.is_some());
        if !keep {
            // The kernel stops forwarding before the steering rules go.
            fastpath::detach(attached, &self.qdiscs);
        } else {
            // tc alone carries the flows until the next lvsd: lvs_xdp would go on with the
            // MACs of this moment (nobody keeps lvs_neigh now), tc's bpf_redirect_neigh asks
            // the kernel's live neighbour table.
            for mut a in attached {
                let ifindex = a.ifindex();
                if let Some(x) = a.xdp.take()
                    && let Err(e) = x.detach()
                {
                    warn!(ifindex, error = %e, "lvs_xdp stays in front of tc with the last neighbours");
                }
            }
        }
        let _ = self.sync.join();
        let removed = if keep {
            Ok(())
        } else {
            self.control
                .steering
                .remove()
                .context("cannot remove the kernel steering rules")
        };
        if let Some(socket) = &self.socket {
            let _ = std::fs::remove_file(socket);
        }
        match (&removed, keep, handed) {
            (Err(_), _, _) => {}
            (Ok(()), true, None) => info!(
                "stopped; the kernel fast path stays attached and keeps forwarding established flows (--keep-forwarding-on-exit): the next lvsd adopts them"
            ),
            (Ok(()), true, Some(n)) => info!(
                connections = n,
                file = %self.handover.display(),
                "stopped; the steering rules stay and the connections are handed over to the next lvsd (--keep-forwarding-on-exit)"
            ),
            (Ok(()), false, _) => info!("stopped; steering rules removed"),
        }
        removed
    }
}

/// Write the connections and the steering entries for the next lvsd (after the workers
/// stopped: nothing changes any more). Returns how many connections, or `None` (logged)
/// when the file could not be written.
fn hand_over(
    shared: &dataplane::Shared,
    path: &std::path::Path,
    left: Option<&dataplane::Leftovers>,
) -> Option<usize> {
    let director = shared.director.lock().unwrap_or_else(|p| p.into_inner());
    let spec = steering::Spec::of(&director, &std::collections::BTreeSet::new());
    let pending = left.map(|l| &l.handover);
    let text = handover::render(&director, &spec, pending, shared.now());
    match handover::write(path, &text) {
        Ok(()) => Some(
            director
                .conns()
                .iter()
                .filter(|(_, c)| !c.is_template())
                .count(),
        ),
        Err(e) => {
            error!(error = %format!("{e:#}"), "cannot hand the connections over: removing the steering rules");
            None
        }
    }
}
