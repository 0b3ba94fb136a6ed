//! `lvsadm`: administer `lvsd` with ipvsadm's syntax and output formats.
//!
//! Existing scripts and habits keep working: the same options (`-A -t 10.0.0.1:80 -s rr`,
//! `-Ln`, `--add-server`, ...), the same messages and exit codes, and the same listing formats
//! as ipvsadm 1.31, byte for byte. Instead of talking netlink to the kernel, lvsadm sends
//! [`lvs_api::Request`]s to lvsd's control socket.
//!
//! The work is split so it can be tested without a daemon:
//! - [`args`] turns argv into an [`args::Invocation`] (or a [`args::ParseError`]);
//! - [`render`] prints replies in ipvsadm's formats;
//! - [`run`] ties them together against any [`Daemon`], returning the exit code and both
//!   output streams as an [`Outcome`]; [`run_to`] writes the connection listing to a stream
//!   as its pages arrive, so a table of a million entries is never held whole. `main.rs`
//!   only connects it to the real socket and standard output.
//!
//! Exit codes follow ipvsadm (see [`args::EXIT_INVALID`], [`args::EXIT_USAGE`],
//! [`EXIT_REFUSED`], [`EXIT_LIST_FAILED`], [`EXIT_UNREACHABLE`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
pub mod import;
pub mod names;
pub mod render;
pub mod restore;

use std::io::{Read, Write};
use std::path::Path;

use lvs_api::{Reply, Request};

use args::{Command, Format, ListWhat};
use names::{Numeric, Resolve};

/// Exit code when the daemon refuses a change: ipvsadm returns the `-1` of the failed
/// `ipvs_*` call from `main`, so the shell sees 255.
pub const EXIT_REFUSED: i32 = 255;

/// Exit code when a listing fails (ipvsadm's `exit(1)` in `list_all`, `list_service`,
/// `list_conn`, `list_timeout`), e.g. `-L -t` of a service that does not exist.
pub const EXIT_LIST_FAILED: i32 = 1;

/// Exit code when lvsd cannot be reached (ipvsadm's `fail(2, "Can't initialize ipvs ...")`).
pub const EXIT_UNREACHABLE: i32 = 2;

/// Talking to lvsd failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonError {
    /// Could not connect: lvsd is not running, or the socket path is wrong.
    Unreachable(String),
    /// Connected, but the exchange failed or the answer was not understood.
    Failed(String),
}

/// Something that answers control requests: the real socket client, or a fake in tests.
pub trait Daemon {
    /// Send `request` to the daemon at `socket` (the `--socket` path, if one was given;
    /// otherwise `$LVSD_SOCKET` or the default path).
    fn call(&mut self, socket: Option<&Path>, request: Request) -> Result<Reply, DaemonError>;
}

impl<F> Daemon for F
where
    F: FnMut(Request) -> Result<Reply, DaemonError>,
{
    fn call(&mut self, _socket: Option<&Path>, request: Request) -> Result<Reply, DaemonError> {
        self(request)
    }
}

/// What a run produced: what `main` prints and the status it exits with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    fn ok(stdout: String) -> Outcome {
        Outcome {
            code: 0,
            stdout,
            stderr: String::new(),
        }
    }

    fn err(code: i32, message: &str) -> Outcome {
        let mut stderr = message.to_string();
        if !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        Outcome {
            code,
            stdout: String::new(),
            stderr,
        }
    }
}

/// Run one command line (`argv[0]` is the program name) against `daemon`, with the process's
/// standard input (for `-R`) and the system's names.
///
/// Nothing is sent when the command line is invalid.
pub fn run(argv: &[String], daemon: &mut dyn Daemon) -> Outcome {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    run_with(argv, daemon, &mut input, &names::System::default())
}

/// [`run`] with a given standard input and name resolver.
pub fn run_with(
    argv: &[String],
    daemon: &mut dyn Daemon,
    input: &mut dyn Read,
    names: &dyn Resolve,
) -> Outcome {
    let mut streamed = Vec::new();
    let mut outcome = run_to(argv, daemon, input, names, &mut streamed);
    if !streamed.is_empty() {
        let mut stdout = String::from_utf8_lossy(&streamed).into_owned();
        stdout.push_str(&outcome.stdout);
        outcome.stdout = stdout;
    }
    outcome
}

/// [`run_with`], writing the connection listing (`-L -c`) to `out` a page at a time as lvsd
/// sends it instead of into [`Outcome::stdout`]; whatever `out` gets comes before
/// `Outcome::stdout`.
pub fn run_to(
    argv: &[String],
    daemon: &mut dyn Daemon,
    input: &mut dyn Read,
    names: &dyn Resolve,
    out: &mut dyn Write,
) -> Outcome {
    let program = argv.first().map_or("lvsadm", String::as_str);
    if argv.get(1).map(String::as_str) == Some("import") {
        return import::run(&argv[2..], names);
    }
    let inv = match args::parse_with(argv, names) {
        Ok(inv) => inv,
        Err(e) => return Outcome::err(e.code, &e.message),
    };
    let socket = inv.socket.as_deref();
    let change = |daemon: &mut dyn Daemon, request: Request| match daemon.call(socket, request) {
        Ok(Reply::Ok) => Outcome::ok(String::new()),
        Ok(Reply::Error { message }) => Outcome::err(EXIT_REFUSED, &message),
        Ok(other) => Outcome::err(EXIT_REFUSED, &unexpected(&other)),
        Err(DaemonError::Unreachable(m)) => Outcome::err(EXIT_UNREACHABLE, &m),
        Err(DaemonError::Failed(m)) => Outcome::err(EXIT_REFUSED, &m),
    };
    match inv.command {
        Command::Help => Outcome::ok(help(program)),
        Command::Version => Outcome::ok(version()),
        Command::AddService(service) => change(
            daemon,
            Request::AddService {
                service: service.into(),
            },
        ),
        Command::EditService(service) => change(
            daemon,
            Request::EditService {
                service: service.into(),
            },
        ),
        Command::DeleteService(key) => change(daemon, Request::DeleteService { key: key.into() }),
        Command::Clear => change(daemon, Request::Clear),
        Command::AddDest { key, dest } => change(
            daemon,
            Request::AddDest {
                key: key.into(),
                dest: dest.into(),
            },
        ),
        Command::EditDest { key, dest } => change(
            daemon,
            Request::EditDest {
                key: key.into(),
                dest: dest.into(),
            },
        ),
        Command::DeleteDest { key, addr, port } => change(
            daemon,
            Request::DeleteDest {
                key: key.into(),
                addr,
                port,
            },
        ),
        Command::SetTimeouts { tcp, tcpfin, udp } => {
            change(daemon, Request::SetTimeouts { tcp, tcpfin, udp })
        }
        Command::Zero(key) => change(
            daemon,
            Request::Zero {
                key: key.map(Into::into),
            },
        ),
        Command::List { what, format } => {
            let names: &dyn Resolve = if format.numeric { &Numeric } else { names };
            list(daemon, socket, what, &format, names, out)
        }
        Command::Save(format) => {
            let names: &dyn Resolve = if format.numeric { &Numeric } else { names };
            save(daemon, socket, names)
        }
        Command::Restore => restore(daemon, socket, input, names),
        Command::SyncDaemon { start, state } => Outcome::err(
            EXIT_REFUSED,
            &format!(
                "connection sync daemon not supported yet (--{}-daemon {state}): lvsd has no IPVS state sync; run one active director, and a standby configured from the same file",
                if start { "start" } else { "stop" }
            ),
        ),
        Command::Reload => reload(daemon, socket),
        Command::Drops => match daemon.call(socket, Request::Drops) {
            Ok(Reply::Drops(info)) => Outcome::ok(render::drops(&info)),
            Ok(Reply::Error { message }) => Outcome::err(EXIT_LIST_FAILED, &message),
            Ok(other) => Outcome::err(EXIT_LIST_FAILED, &unexpected(&other)),
            Err(DaemonError::Unreachable(m)) => Outcome::err(EXIT_UNREACHABLE, &m),
            Err(DaemonError::Failed(m)) => Outcome::err(EXIT_LIST_FAILED, &m),
        },
    }
}

/// `--reload`: lvsd re-reads its configuration file and applies the difference atomically.
/// On refusal lvsd's message holds the file's diagnostics, one per line; they are printed
/// as they come and the running table is unchanged.
fn reload(daemon: &mut dyn Daemon, socket: Option<&Path>) -> Outcome {
    match daemon.call(socket, Request::Reload) {
        Ok(Reply::Ok) => Outcome::ok(String::new()),
        Ok(Reply::Error { message }) => Outcome::err(
            EXIT_REFUSED,
            &format!(
                "{}\nreload refused; the running table is unchanged",
                message.trim_end()
            ),
        ),
        Ok(other) => Outcome::err(EXIT_REFUSED, &unexpected(&other)),
        Err(DaemonError::Unreachable(m)) => Outcome::err(EXIT_UNREACHABLE, &m),
        Err(DaemonError::Failed(m)) => Outcome::err(EXIT_REFUSED, &m),
    }
}

/// `-S`: the table as rules.
fn save(daemon: &mut dyn Daemon, socket: Option<&Path>, names: &dyn Resolve) -> Outcome {
    match daemon.call(socket, Request::List) {
        Ok(Reply::Services { services, .. }) => Outcome::ok(render::save(&services, names)),
        Ok(Reply::Error { message }) => Outcome::err(EXIT_LIST_FAILED, &message),
        Ok(other) => Outcome::err(EXIT_LIST_FAILED, &unexpected(&other)),
        Err(DaemonError::Unreachable(m)) => Outcome::err(EXIT_UNREACHABLE, &m),
        Err(DaemonError::Failed(m)) => Outcome::err(EXIT_LIST_FAILED, &m),
    }
}

/// `-R`: read every line, then send them as one batch.
fn restore(
    daemon: &mut dyn Daemon,
    socket: Option<&Path>,
    input: &mut dyn Read,
    names: &dyn Resolve,
) -> Outcome {
    let mut text = String::new();
    if let Err(e) = input.read_to_string(&mut text) {
        return Outcome::err(
            args::EXIT_INVALID,
            &format!("cannot read the rules from standard input: {e}; nothing was restored"),
        );
    }
    let rules = match restore::parse_rules(&text, names) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::err(e.code, &format!("{}; nothing was restored", e.message));
        }
    };
    let requests = match restore::batch(&rules) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::err(e.code, &format!("{}; nothing was restored", e.message));
        }
    };
    if requests.is_empty() {
        return Outcome::ok(String::new());
    }
    match daemon.call(socket, Request::Batch { requests }) {
        Ok(Reply::Ok) => Outcome::ok(String::new()),
        Ok(Reply::Error { message }) => {
            // Name the line: replay on a copy of the running table.
            let located = match daemon.call(socket, Request::List) {
                Ok(Reply::Services { services, .. }) => restore::locate_refusal(&services, &rules),
                _ => None,
            };
            let m = match located {
                Some((line, text, why)) => {
                    format!("line {line} ({text}): {why}; nothing was restored")
                }
                None => message,
            };
            Outcome::err(EXIT_REFUSED, &m)
        }
        Ok(other) => Outcome::err(EXIT_REFUSED, &unexpected(&other)),
        Err(DaemonError::Unreachable(m)) => Outcome::err(EXIT_UNREACHABLE, &m),
        Err(DaemonError::Failed(m)) => Outcome::err(EXIT_REFUSED, &m),
    }
}

/// `-L -c`: the entries a page at a time ([`lvs_api::CONNECTIONS_PAGE_MAX`] each), every
/// page's rows written to `out` as it arrives, in ipvsadm's format; the heading comes with
/// the first page, so a refusal prints nothing. A failure after some pages leaves them
/// printed, says what failed and exits 1.
fn connections(
    daemon: &mut dyn Daemon,
    socket: Option<&Path>,
    format: &Format,
    names: &dyn Resolve,
    out: &mut dyn Write,
) -> Outcome {
    let mut text = render::connections_title(format);
    let mut cursor: Option<u64> = None;
    loop {
        let request = Request::Connections {
            cursor,
            limit: Some(lvs_api::CONNECTIONS_PAGE_MAX),
        };
        let next = match daemon.call(socket, request) {
            Ok(Reply::Connections { conns, next }) => {
                render::connection_rows(&mut text, &conns, names);
                next
            }
            Ok(Reply::Error { message }) => return Outcome::err(EXIT_LIST_FAILED, &message),
            Ok(other) => return Outcome::err(EXIT_LIST_FAILED, &unexpected(&other)),
            Err(DaemonError::Unreachable(m)) => return Outcome::err(EXIT_UNREACHABLE, &m),
            Err(DaemonError::Failed(m)) => return Outcome::err(EXIT_LIST_FAILED, &m),
        };
        if let Err(e) = out.write_all(text.as_bytes()) {
            // `lvsadm -L -n -c | head`: the reader is gone, nothing to say to it.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Outcome {
                    code: EXIT_LIST_FAILED,
                    ..Outcome::default()
                };
            }
            return Outcome::err(
                EXIT_LIST_FAILED,
                &format!("cannot write the connection listing: {e}"),
            );
        }
        text.clear();
        match next {
            None => return Outcome::ok(String::new()),
            // Cursors grow from page to page: one that does not would loop for ever.
            Some(n) if n > cursor.unwrap_or(0) => cursor = Some(n),
            Some(n) => {
                return Outcome::err(
                    EXIT_LIST_FAILED,
                    &format!(
                        "lvsd answered a page of connections with cursor {n} after {}: the \
                         listing is incomplete (are lvsadm and lvsd the same version?)",
                        cursor.unwrap_or(0)
                    ),
                );
            }
        }
    }
}

fn list(
    daemon: &mut dyn Daemon,
    socket: Option<&Path>,
    what: ListWhat,
    format: &Format,
    names: &dyn Resolve,
    out: &mut dyn Write,
) -> Outcome {
    let request = match what {
        ListWhat::All | ListWhat::Service(_) => Request::List,
        ListWhat::Connections => return connections(daemon, socket, format, names, out),
        ListWhat::Timeouts => Request::Timeouts,
        // ipvsadm exits 1 when the daemon state cannot be read.
        ListWhat::Daemon => {
            return Outcome::err(
                EXIT_LIST_FAILED,
                "connection sync daemon not supported yet: lvsd runs no master or backup sync daemon",
            );
        }
    };
    let reply = match daemon.call(socket, request) {
        Ok(Reply::Error { message }) => return Outcome::err(EXIT_LIST_FAILED, &message),
        Ok(reply) => reply,
        Err(DaemonError::Unreachable(m)) => return Outcome::err(EXIT_UNREACHABLE, &m),
        Err(DaemonError::Failed(m)) => return Outcome::err(EXIT_LIST_FAILED, &m),
    };
    match (what, reply) {
        (
            ListWhat::All,
            Reply::Services {
                table_size,
                services,
            },
        ) => Outcome::ok(render::list_all(table_size, &services, format, names)),
        (ListWhat::Service(key), Reply::Services { services, .. }) => {
            match services.iter().find(|s| s.config.key == key.into()) {
                Some(s) => Outcome::ok(render::list_service(s, format, names)),
                // ipvs_strerror(ESRCH) for ipvs_get_service, then exit(1).
                None => Outcome::err(
                    EXIT_LIST_FAILED,
                    &format!(
                        "No such service ({}; see lvsadm -L -n for the services)",
                        render::service_name(&key)
                    ),
                ),
            }
        }
        (ListWhat::Timeouts, Reply::Timeouts { tcp, tcpfin, udp }) => {
            Outcome::ok(render::timeouts(tcp, tcpfin, udp))
        }
        (_, other) => Outcome::err(EXIT_LIST_FAILED, &unexpected(&other)),
    }
}

fn unexpected(reply: &Reply) -> String {
    format!("unexpected answer from lvsd: {reply:?} (are lvsadm and lvsd the same version?)")
}

/// `-v`: ipvsadm's line, naming what this tool speaks.
pub fn version() -> String {
    format!(
        "lvsadm v{} (ipvsadm v1.31 syntax, IPVS v{}, lvsd control protocol {})\n",
        env!("CARGO_PKG_VERSION"),
        render::IPVS_VERSION,
        lvs_api::VERSION
    )
}

/// `-h`: ipvsadm's usage, limited to what lvsadm supports.
pub fn help(program: &str) -> String {
    let p = program;
    let mut s = version();
    s.push_str(&format!(
        "Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-o]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [options]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} --reload
  {p} --drops
  {p} import ipvsadm-save|keepalived FILE [--allow-partial]
  {p} -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin (all lines or none)
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values (seconds, 0 keeps a value)
  --start-daemon              start connection sync daemon (not supported yet)
  --stop-daemon               stop connection sync daemon (not supported yet)
  --reload                    make lvsd re-read its configuration file
  --drops                     list every place lvsd lost frames, with counts (drop
                              reasons of the core, capture rings, sends, kernel fast path)
  import ipvsadm-save FILE    print ipvsadm-save rules as lvsd TOML configuration
  import keepalived FILE      print keepalived.conf virtual servers as lvsd TOML
                              (exit 3 if something affecting traffic is left out,
                              unless --allow-partial)
  --help            -h        display this help message
  --version         -v        display the version

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|twos,
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service (default timeout 300 seconds)
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                ipip only (gue and gre are not supported)
  --weight       -w weight            capacity of real server (0..65535, default 1)
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
                                      (without -n: names from /etc/hosts and /etc/services;
                                      reverse DNS is not queried)
  --sched-flags  -b flags             scheduler flags (comma-separated): sh-fallback,
                                      sh-port, mh-fallback, mh-port, flag-1, flag-2, flag-3
  --socket PATH                       lvsd's control socket (else ${env}, else {default})
  (--pe, --tun-port, --tun-[no|rem]csum and the sync daemon options are refused: lvsd does
  not support persistence engines, GUE/GRE tunnels or connection sync)

Exit status: 0 done; 2 invalid command line or lvsd unreachable; 255 unknown option,
missing command, or lvsd refused the change; 1 a listing (or --drops) failed.
",
        env = lvs_api::SOCKET_ENV,
        default = lvs_api::DEFAULT_SOCKET,
    ));
    s
}
