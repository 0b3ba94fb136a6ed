//! ipvsadm's command line, parsed by hand to keep popt's behaviour.
//!
//! What ipvsadm (1.31, `ipvsadm.c`) does and this module copies:
//! - short options combine (`-Ln`, `-At 10.0.0.1:80`, `-p300`), long options take their value
//!   after `=` or as the next word, `--persistent`/`-p` has an *optional* value (the next word
//!   is taken unless it starts with `-`), `--` ends the options;
//! - the legality table of commands × options (`commands_v_options`) with its messages
//!   ("You need to supply the 'service-address' option for the 'add-service' command", ...);
//! - the value checks and their messages (`illegal weight specified`, ...), each followed here
//!   by what to do;
//! - defaults: scheduler `wlc`, weight 1, direct routing (`-g`), persistence 300 s, netmask
//!   255.255.255.255 (IPv4) or 128 (IPv6), a real server's port is the service's when left out
//!   and always the service's for `-g`/`-i` on address services.
//!
//! Where this parser is deliberately different: the command may appear anywhere (ipvsadm
//! insists on it first), option values that depend on other options (`-M`, `-r` without a port)
//! are resolved after all options are read (ipvsadm reads them in order), the scheduler name is
//! checked here rather than by the kernel, unsupported features (`--pe`, GUE/GRE tunnels, the
//! sync daemon) are refused with a clear message, and `--reload` and `--drops` are lvsadm's
//! own.
//!
//! Host and service names are resolved as ipvsadm does (see [`crate::names`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use lvs_core::service::{DestConfig, MAX_WEIGHT, ServiceConfig};

use crate::names::{Numeric, Resolve};
use lvs_core::types::{
    DEFAULT_PERSISTENCE_TIMEOUT, Family, ForwardMethod, Netmask, Persistence, Protocol, SchedFlags,
    SchedulerKind, ServiceKey,
};

/// Longest timeout ipvsadm accepts (`MAX_TIMEOUT`, 31 days), in seconds.
pub const MAX_TIMEOUT: i64 = 86400 * 31;

/// Exit code of a value or combination error (ipvsadm's `fail(2, ...)`).
pub const EXIT_INVALID: i32 = 2;

/// Exit code of a usage error: unknown option, missing argument, no command (ipvsadm's
/// `tryhelp_exit(argv[0], -1)` and popt errors, both `exit(-1)`, seen as 255).
pub const EXIT_USAGE: i32 = 255;

/// A parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    /// What to do.
    pub command: Command,
    /// `--socket PATH`, if given.
    pub socket: Option<PathBuf>,
}

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `-h`.
    Help,
    /// `-v`.
    Version,
    /// `-A`.
    AddService(ServiceConfig),
    /// `-E`.
    EditService(ServiceConfig),
    /// `-D`.
    DeleteService(ServiceKey),
    /// `-C`.
    Clear,
    /// `-a`.
    AddDest {
        /// Service.
        key: ServiceKey,
        /// Real server.
        dest: DestConfig,
    },
    /// `-e`.
    EditDest {
        /// Service.
        key: ServiceKey,
        /// Real server.
        dest: DestConfig,
    },
    /// `-d`.
    DeleteDest {
        /// Service.
        key: ServiceKey,
        /// Real server address.
        addr: IpAddr,
        /// Real server port.
        port: u16,
    },
    /// `-L`/`-l` and its variants.
    List {
        /// Which listing.
        what: ListWhat,
        /// How to print it.
        format: Format,
    },
    /// `--set tcp tcpfin udp`.
    SetTimeouts {
        /// TCP established, seconds (0 keeps the current value).
        tcp: u64,
        /// TCP FIN_WAIT, seconds.
        tcpfin: u64,
        /// UDP, seconds.
        udp: u64,
    },
    /// `-Z [service]`.
    Zero(Option<ServiceKey>),
    /// `-R`: restore rules from standard input.
    Restore,
    /// `-S [-n]`: save rules to standard output.
    Save(Format),
    /// `--start-daemon`/`--stop-daemon` (not supported by lvsd).
    SyncDaemon {
        /// Start (else stop).
        start: bool,
        /// `master` or `backup`.
        state: String,
    },
    /// `--reload`: ask lvsd to re-read its configuration file.
    Reload,
    /// `--drops`: where lvsd lost frames (lvsadm's own; ipvsadm has no such view).
    Drops,
}

/// Which table `-L` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListWhat {
    /// Every service (also ipvsadm with no arguments).
    All,
    /// One service (`-L -t VIP:port`).
    Service(ServiceKey),
    /// Connection entries (`-L -c`).
    Connections,
    /// Timeouts (`-L --timeout`).
    Timeouts,
    /// Sync daemons (`-L --daemon`).
    Daemon,
}

/// ipvsadm's listing format flags (`FMT_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Format {
    /// `-n`: numeric addresses and ports.
    pub numeric: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--tun-info`.
    pub tun_info: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--exact`.
    pub exact: bool,
    /// `--nosort`: keep the daemon's order.
    pub nosort: bool,
}

/// Why a command line was refused. Nothing was sent to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Exit status: [`EXIT_INVALID`] or [`EXIT_USAGE`].
    pub code: i32,
    /// What was wrong and what to do, one line (usage errors add ipvsadm's "Try ..." line).
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

fn invalid(message: impl Into<String>) -> ParseError {
    ParseError {
        code: EXIT_INVALID,
        message: message.into(),
    }
}

fn usage(program: &str, message: &str) -> ParseError {
    ParseError {
        code: EXIT_USAGE,
        message: format!(
            "{message}\nTry `{program} -h' or '{program} --help' for more information."
        ),
    }
}

/// ipvsadm's commands, in the order of its `CMD_*` constants (the rows of the legality table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
    Reload,
    Drops,
}

impl Cmd {
    /// Name in ipvsadm's messages (`cmdnames`).
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Timeout => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::Reload => "reload",
            Cmd::Drops => "drops",
        }
    }

    /// The command's row of ipvsadm's `commands_v_options`: one character per option column
    /// (`+` compulsory, `x` illegal, `1` exclusive, ` ` optional).
    fn row(self) -> &'static [u8; NUMBER_OF_OPT] {
        match self {
            Cmd::Add | Cmd::Edit => b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
            Cmd::Del => b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::Flush | Cmd::Timeout | Cmd::Restore | Cmd::Reload | Cmd::Drops => {
                b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            }
            Cmd::StartDaemon => b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxx",
            Cmd::StopDaemon => b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx",
            Cmd::Save => b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::List => b" 11xxxxxxxxx11       xxxxxxx xxxxx",
            Cmd::AddDest | Cmd::EditDest => b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
            Cmd::DelDest => b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::Zero => b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        }
    }
}

/// Number of option columns in ipvsadm's legality table.
const NUMBER_OF_OPT: usize = 34;

/// ipvsadm's option columns (`OPTC_*`) that this tool knows, with their table index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Opt {
    Numeric = 0,
    Connection = 1,
    Service = 2,
    Scheduler = 3,
    Persistent = 4,
    Netmask = 5,
    Server = 6,
    Forward = 7,
    Weight = 8,
    UThreshold = 9,
    LThreshold = 10,
    Mcast = 11,
    Timeout = 12,
    Daemon = 13,
    Stats = 14,
    Rate = 15,
    Thresholds = 16,
    PersistentConn = 17,
    NoSort = 18,
    SyncId = 19,
    Exact = 20,
    OnePacket = 21,
    Pe = 22,
    SchedFlags = 23,
    McastGroup = 24,
    McastPort = 25,
    McastTtl = 26,
    SyncMaxlen = 27,
    TunInfo = 28,
    TunType = 29,
    TunPort = 30,
    TunNocsum = 31,
    TunCsum = 32,
    TunRemcsum = 33,
}

/// ipvsadm's names of the option columns (`optnames`), indexed by column.
const OPT_NAMES: [&str; NUMBER_OF_OPT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// Every option word this tool understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    AddService,
    EditService,
    DeleteService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DeleteServer,
    Set,
    Help,
    Version,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masq,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    Timeout,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    SchedFlags,
    Socket,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    McastInterface,
    SyncId,
    Daemon,
    Pe,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Reload,
    Drops,
}

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

/// (long name, short letter, tag, value) as in ipvsadm's popt table, plus `--socket`.
const OPTIONS: &[(&str, Option<char>, Tag, Arg)] = &[
    ("add-service", Some('A'), Tag::AddService, Arg::None),
    ("edit-service", Some('E'), Tag::EditService, Arg::None),
    ("delete-service", Some('D'), Tag::DeleteService, Arg::None),
    ("clear", Some('C'), Tag::Clear, Arg::None),
    ("list", Some('L'), Tag::List, Arg::None),
    ("list", Some('l'), Tag::List, Arg::None),
    ("zero", Some('Z'), Tag::Zero, Arg::None),
    ("add-server", Some('a'), Tag::AddServer, Arg::None),
    ("edit-server", Some('e'), Tag::EditServer, Arg::None),
    ("delete-server", Some('d'), Tag::DeleteServer, Arg::None),
    ("set", None, Tag::Set, Arg::None),
    ("help", Some('h'), Tag::Help, Arg::None),
    ("version", Some('v'), Tag::Version, Arg::None),
    ("tcp-service", Some('t'), Tag::Tcp, Arg::Required),
    ("udp-service", Some('u'), Tag::Udp, Arg::Required),
    ("sctp-service", None, Tag::Sctp, Arg::Required),
    ("fwmark-service", Some('f'), Tag::Fwmark, Arg::Required),
    ("scheduler", Some('s'), Tag::Scheduler, Arg::Required),
    ("persistent", Some('p'), Tag::Persistent, Arg::Optional),
    ("netmask", Some('M'), Tag::Netmask, Arg::Required),
    ("real-server", Some('r'), Tag::RealServer, Arg::Required),
    ("masquerading", Some('m'), Tag::Masq, Arg::None),
    ("ipip", Some('i'), Tag::Ipip, Arg::None),
    ("gatewaying", Some('g'), Tag::Gatewaying, Arg::None),
    ("weight", Some('w'), Tag::Weight, Arg::Required),
    ("u-threshold", Some('x'), Tag::UThreshold, Arg::Required),
    ("l-threshold", Some('y'), Tag::LThreshold, Arg::Required),
    ("numeric", Some('n'), Tag::Numeric, Arg::None),
    ("connection", Some('c'), Tag::Connection, Arg::None),
    ("timeout", None, Tag::Timeout, Arg::None),
    ("stats", None, Tag::Stats, Arg::None),
    ("rate", None, Tag::Rate, Arg::None),
    ("thresholds", None, Tag::Thresholds, Arg::None),
    ("persistent-conn", None, Tag::PersistentConn, Arg::None),
    ("nosort", None, Tag::NoSort, Arg::None),
    ("sort", None, Tag::Sort, Arg::None),
    ("exact", Some('X'), Tag::Exact, Arg::None),
    ("ipv6", Some('6'), Tag::Ipv6, Arg::None),
    ("ops", Some('o'), Tag::Ops, Arg::None),
    ("sched-flags", Some('b'), Tag::SchedFlags, Arg::Required),
    ("socket", None, Tag::Socket, Arg::Required),
    ("restore", Some('R'), Tag::Restore, Arg::None),
    ("save", Some('S'), Tag::Save, Arg::None),
    ("start-daemon", None, Tag::StartDaemon, Arg::Required),
    ("stop-daemon", None, Tag::StopDaemon, Arg::Required),
    ("mcast-interface", None, Tag::McastInterface, Arg::Required),
    ("syncid", None, Tag::SyncId, Arg::Required),
    ("daemon", None, Tag::Daemon, Arg::None),
    ("pe", None, Tag::Pe, Arg::Required),
    ("mcast-group", None, Tag::McastGroup, Arg::Required),
    ("mcast-port", None, Tag::McastPort, Arg::Required),
    ("mcast-ttl", None, Tag::McastTtl, Arg::Required),
    ("sync-maxlen", None, Tag::SyncMaxlen, Arg::Required),
    ("tun-info", None, Tag::TunInfo, Arg::None),
    ("tun-type", None, Tag::TunType, Arg::Required),
    ("tun-port", None, Tag::TunPort, Arg::Required),
    ("tun-nocsum", None, Tag::TunNocsum, Arg::None),
    ("tun-csum", None, Tag::TunCsum, Arg::None),
    ("tun-remcsum", None, Tag::TunRemcsum, Arg::None),
    ("reload", None, Tag::Reload, Arg::None),
    ("drops", None, Tag::Drops, Arg::None),
];

/// One option occurrence or a free-standing word.
enum Token {
    Opt(Tag, Option<String>),
    Word(String),
}

/// Split argv (without the program name) into option occurrences, as popt does.
fn tokenize(program: &str, args: &[String]) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut only_words = false;
    while i < args.len() {
        let word = &args[i];
        i += 1;
        if only_words || word == "-" || !word.starts_with('-') {
            out.push(Token::Word(word.clone()));
            continue;
        }
        if word == "--" {
            only_words = true;
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(&(_, _, tag, arg)) = OPTIONS.iter().find(|o| o.0 == name) else {
                return Err(usage(program, &format!("--{name}: unknown option")));
            };
            let value = match (arg, inline) {
                (Arg::None, Some(_)) => {
                    return Err(usage(
                        program,
                        &format!("--{name}: option does not take an argument"),
                    ));
                }
                (Arg::None, None) => None,
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => return Err(usage(program, &format!("--{name}: missing argument"))),
                },
                (Arg::Optional, None) => match args.get(i) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        Some(v.clone())
                    }
                    _ => None,
                },
            };
            out.push(Token::Opt(tag, value));
            continue;
        }
        // A cluster of short options: -Ln, -At, -p300.
        let cluster = &word[1..];
        for (pos, c) in cluster.char_indices() {
            let Some(&(_, _, tag, arg)) = OPTIONS.iter().find(|o| o.1 == Some(c)) else {
                return Err(usage(program, &format!("-{c}: unknown option")));
            };
            let rest = &cluster[pos + c.len_utf8()..];
            match arg {
                Arg::None => out.push(Token::Opt(tag, None)),
                Arg::Required | Arg::Optional => {
                    let value = if !rest.is_empty() {
                        Some(rest.to_string())
                    } else {
                        match args.get(i) {
                            Some(v) if arg == Arg::Required || !v.starts_with('-') => {
                                i += 1;
                                Some(v.clone())
                            }
                            Some(_) | None if arg == Arg::Optional => None,
                            _ => return Err(usage(program, &format!("-{c}: missing argument"))),
                        }
                    };
                    out.push(Token::Opt(tag, value));
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// A service as written on the command line, before defaults that depend on other options.
#[derive(Clone, Copy, Debug)]
enum SvcArg {
    Addr {
        proto: Protocol,
        addr: IpAddr,
        port: Option<u16>,
    },
    Fwmark(u32),
}

impl SvcArg {
    /// The protocol ipvsadm resolves port names with (TCP for firewall marks).
    fn proto(&self) -> Protocol {
        match *self {
            SvcArg::Addr { proto, .. } => proto,
            SvcArg::Fwmark(_) => Protocol::Tcp,
        }
    }
}

/// Everything read from the options, in ipvsadm's terms.
#[derive(Default)]
struct Raw {
    cmd: Option<Cmd>,
    options: u64,
    help: bool,
    version: bool,
    socket: Option<PathBuf>,
    service: Option<SvcArg>,
    ipv6: bool,
    scheduler: Option<String>,
    persistent: Option<u64>,
    netmask: Option<String>,
    server: Option<String>,
    tun_type: Option<String>,
    pe: Option<String>,
    daemon_state: Option<String>,
    method: Option<ForwardMethod>,
    weight: Option<u32>,
    u_threshold: Option<u32>,
    l_threshold: Option<u32>,
    one_packet: bool,
    sched_flags: Option<String>,
    format: Format,
    words: Vec<String>,
}

impl Raw {
    fn set_command(&mut self, cmd: Cmd) -> Result<(), ParseError> {
        if self.cmd.is_some() {
            return Err(invalid(
                "multiple commands specified (give one of -A -E -D -C -R -S -a -e -d -L -Z --set --reload --drops per call)",
            ));
        }
        self.cmd = Some(cmd);
        Ok(())
    }

    fn set_option(&mut self, opt: Opt) -> Result<(), ParseError> {
        let bit = 1u64 << (opt as u8);
        if self.options & bit != 0 {
            return Err(invalid(format!(
                "multiple '{}' options specified (give it once)",
                OPT_NAMES[opt as usize]
            )));
        }
        self.options |= bit;
        Ok(())
    }

    fn has(&self, opt: Opt) -> bool {
        self.options & (1u64 << (opt as u8)) != 0
    }
}

/// ipvsadm's `string_to_number`: a base-10 integer within `min..=max`.
fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| (min..=max).contains(n))
}

/// ipvsadm's `parse_timeout`.
fn parse_timeout(s: &str, min: i64) -> Result<u64, ParseError> {
    string_to_number(s, min, MAX_TIMEOUT).map(|n| n as u64).ok_or_else(|| {
        invalid(format!(
            "invalid timeout value `{s}' specified (seconds, an integer from {min} to {MAX_TIMEOUT})"
        ))
    })
}

/// ipvsadm's `parse_service` without names: `a.b.c.d[:port]`, `[v6]:port` or a bare IPv6
/// address.
pub fn parse_addr_port(buf: &str) -> Option<(IpAddr, Option<u16>)> {
    parse_service(buf, Protocol::Tcp, &Numeric)
}

/// ipvsadm's `parse_service`: `host[:port]`, `[v6]:port` or a bare IPv6 address, where host
/// is an address or a name and port a number or a service name of `proto`.
pub fn parse_service(
    buf: &str,
    proto: Protocol,
    names: &dyn Resolve,
) -> Option<(IpAddr, Option<u16>)> {
    if buf.is_empty() || buf.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = |p: &str| {
        string_to_number(p, 0, 65535)
            .map(|n| n as u16)
            .or_else(|| names.port_by_name(p, proto))
    };
    if let Some(rest) = buf.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let p = after.strip_prefix(':')?;
        // ipvsadm takes only an IPv6 literal here; lvsadm also reads back the names its
        // `-S` writes for IPv6 services (`[v6.example.com]:http`).
        let addr = match addr.parse::<std::net::Ipv6Addr>() {
            Ok(a) => IpAddr::V6(a),
            Err(_) if !addr.is_empty() => names.host_addr(addr)?,
            Err(_) => return None,
        };
        return Some((addr, Some(port(p)?)));
    }
    if let Ok(a) = buf.parse::<std::net::Ipv6Addr>() {
        return Some((IpAddr::V6(a), None));
    }
    let (host, p) = match buf.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (buf, None),
    };
    let addr = match host.parse::<Ipv4Addr>() {
        Ok(a) => IpAddr::V4(a),
        Err(_) if !host.is_empty() => names.host_addr(host)?,
        Err(_) => return None,
    };
    match p {
        Some(p) => Some((addr, Some(port(p)?))),
        None => Some((addr, None)),
    }
}

/// ipvsadm's `parse_fwmark`: 1 to 2^32-1. Also reads back the negative numbers ipvsadm's
/// `-S` writes for marks above 2^31 (it prints them with `%d`), which ipvsadm itself refuses.
fn parse_fwmark(s: &str) -> Option<u32> {
    let n = s.parse::<i64>().ok()?;
    if (1..=i64::from(u32::MAX)).contains(&n) {
        Some(n as u32)
    } else if (i64::from(i32::MIN)..0).contains(&n) {
        Some(n as i32 as u32)
    } else {
        None
    }
}

/// A contiguous dotted IPv4 netmask as a prefix length.
fn v4_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// ipvsadm's `parse_sched_flags`, checked against the scheduler the service will have.
fn parse_sched_flags(sched: &str, arg: &str) -> Result<SchedFlags, ParseError> {
    let mut flags = SchedFlags::default();
    for flag in arg.split(',').filter(|f| !f.is_empty()) {
        let (bit, needs) = match flag {
            "flag-1" => (SchedFlags::FLAG1, None),
            "flag-2" => (SchedFlags::FLAG2, None),
            "flag-3" => (SchedFlags::FLAG3, None),
            "sh-fallback" => (SchedFlags::FALLBACK, Some("sh")),
            "sh-port" => (SchedFlags::PORT, Some("sh")),
            "mh-fallback" => (SchedFlags::FALLBACK, Some("mh")),
            "mh-port" => (SchedFlags::PORT, Some("mh")),
            _ => {
                return Err(invalid(format!(
                    "invalid scheduler flag `{flag}' (use sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2 or flag-3, comma-separated)"
                )));
            }
        };
        if let Some(s) = needs
            && s != sched
        {
            return Err(invalid(format!(
                "incompatible scheduler flag `{flag}' (it needs -s {s}; this service's scheduler is {sched})"
            )));
        }
        flags = flags.union(bit);
    }
    Ok(flags)
}

/// Parse a full argv (program name first) as ipvsadm would.
///
/// `lvsadm` alone lists the table, as `ipvsadm` alone does.
pub fn parse(argv: &[String]) -> Result<Invocation, ParseError> {
    parse_with(argv, &crate::names::System::default())
}

/// [`parse`] with the given name resolver.
pub fn parse_with(argv: &[String], names: &dyn Resolve) -> Result<Invocation, ParseError> {
    let program = argv.first().map_or("lvsadm", String::as_str);
    let args = argv.get(1..).unwrap_or(&[]);
    if args.is_empty() {
        return Ok(Invocation {
            command: Command::List {
                what: ListWhat::All,
                format: Format::default(),
            },
            socket: None,
        });
    }
    let mut raw = Raw::default();
    for token in tokenize(program, args)? {
        match token {
            Token::Word(w) => raw.words.push(w),
            Token::Opt(tag, value) => apply(&mut raw, tag, value.unwrap_or_default(), names)?,
        }
    }
    if raw.help {
        return Ok(Invocation {
            command: Command::Help,
            socket: raw.socket,
        });
    }
    if raw.version {
        return Ok(Invocation {
            command: Command::Version,
            socket: raw.socket,
        });
    }
    let Some(cmd) = raw.cmd else {
        return Err(usage(
            program,
            "no command given (one of -A -E -D -C -R -S -a -e -d -L -l -Z --set --reload --drops -h -v)",
        ));
    };
    let command = build(cmd, &mut raw, names)?;
    Ok(Invocation {
        command,
        socket: raw.socket,
    })
}

/// Record one option occurrence, checking its value as ipvsadm's `parse_options` does.
fn apply(raw: &mut Raw, tag: Tag, value: String, names: &dyn Resolve) -> Result<(), ParseError> {
    match tag {
        Tag::AddService
        | Tag::EditService
        | Tag::DeleteService
        | Tag::Clear
        | Tag::List
        | Tag::Zero
        | Tag::AddServer
        | Tag::EditServer
        | Tag::DeleteServer
        | Tag::Set
        | Tag::Restore
        | Tag::Save
        | Tag::Reload
        | Tag::Drops => apply_command(raw, tag),
        Tag::StartDaemon
        | Tag::StopDaemon
        | Tag::McastInterface
        | Tag::SyncId
        | Tag::McastGroup
        | Tag::McastPort
        | Tag::McastTtl
        | Tag::SyncMaxlen
        | Tag::Daemon => apply_daemon(raw, tag, value),
        Tag::Tcp
        | Tag::Udp
        | Tag::Sctp
        | Tag::Fwmark
        | Tag::Scheduler
        | Tag::Persistent
        | Tag::Netmask
        | Tag::Pe
        | Tag::Ipv6
        | Tag::Ops
        | Tag::SchedFlags => apply_service(raw, tag, value, names),
        Tag::RealServer
        | Tag::Masq
        | Tag::Ipip
        | Tag::Gatewaying
        | Tag::Weight
        | Tag::UThreshold
        | Tag::LThreshold
        | Tag::TunType
        | Tag::TunPort
        | Tag::TunNocsum
        | Tag::TunCsum
        | Tag::TunRemcsum => apply_server(raw, tag, value),
        Tag::Numeric
        | Tag::Connection
        | Tag::Timeout
        | Tag::Stats
        | Tag::Rate
        | Tag::Thresholds
        | Tag::PersistentConn
        | Tag::NoSort
        | Tag::Sort
        | Tag::Exact
        | Tag::TunInfo => apply_listing(raw, tag),
        Tag::Help => {
            raw.help = true;
            Ok(())
        }
        Tag::Version => {
            raw.version = true;
            Ok(())
        }
        Tag::Socket => apply_socket(raw, value),
    }
}

/// Record a command option that takes no value (`-A`, `-E`, ..., `--set`, `--reload`,
/// `--drops`).
fn apply_command(raw: &mut Raw, tag: Tag) -> Result<(), ParseError> {
    raw.set_command(match tag {
        Tag::AddService => Cmd::Add,
        Tag::EditService => Cmd::Edit,
        Tag::DeleteService => Cmd::Del,
        Tag::Clear => Cmd::Flush,
        Tag::List => Cmd::List,
        Tag::Zero => Cmd::Zero,
        Tag::AddServer => Cmd::AddDest,
        Tag::EditServer => Cmd::EditDest,
        Tag::DeleteServer => Cmd::DelDest,
        Tag::Set => Cmd::Timeout,
        Tag::Restore => Cmd::Restore,
        Tag::Save => Cmd::Save,
        Tag::Reload => Cmd::Reload,
        Tag::Drops => Cmd::Drops,
        other => unreachable!("{other:?} is not a command without a value"),
    })
}

/// Record a sync-daemon command or option (`--start-daemon`, `--syncid`, `--mcast-*`, ...).
fn apply_daemon(raw: &mut Raw, tag: Tag, value: String) -> Result<(), ParseError> {
    match tag {
        Tag::StartDaemon | Tag::StopDaemon => {
            let start = tag == Tag::StartDaemon;
            raw.set_command(if start {
                Cmd::StartDaemon
            } else {
                Cmd::StopDaemon
            })?;
            if value != "master" && value != "backup" {
                return Err(invalid(if start {
                    format!(
                        "illegal start-daemon parameter specified (`{value}'; master or backup)"
                    )
                } else {
                    format!("illegal start_daemon specified (`{value}'; master or backup)")
                }));
            }
            raw.daemon_state = Some(value);
        }
        Tag::McastInterface => raw.set_option(Opt::Mcast)?,
        Tag::SyncId => {
            raw.set_option(Opt::SyncId)?;
            string_to_number(&value, 0, 255).ok_or_else(|| {
                invalid(format!("illegal syncid specified (`{value}'; 0 to 255)"))
            })?;
        }
        Tag::McastGroup => {
            raw.set_option(Opt::McastGroup)?;
            match value.parse::<IpAddr>() {
                Ok(a) if a.is_multicast() => {}
                _ => {
                    let fam = if value.contains(':') { "IPv6" } else { "IPv4" };
                    return Err(invalid(format!(
                        "invalid {fam} mcast-group `{value}' (a multicast address such as 224.0.0.81)"
                    )));
                }
            }
        }
        Tag::McastPort | Tag::McastTtl | Tag::SyncMaxlen => {
            let (opt, name, max) = match tag {
                Tag::McastPort => (Opt::McastPort, "mcast-port", 65535),
                Tag::McastTtl => (Opt::McastTtl, "mcast-ttl", 255),
                _ => (Opt::SyncMaxlen, "sync-maxlen", 65535 - 20 - 8),
            };
            raw.set_option(opt)?;
            string_to_number(&value, 1, max).ok_or_else(|| {
                invalid(format!("illegal {name} specified (`{value}'; 1 to {max})"))
            })?;
        }
        Tag::Daemon => raw.set_option(Opt::Daemon)?,
        other => unreachable!("{other:?} is not a sync-daemon option"),
    }
    Ok(())
}

/// Record a virtual-service option (`-t`/`-u`/`--sctp-service`/`-f`, `-s`, `-p`, `-M`, `--pe`,
/// `-6`, `-o`, `-b`).
fn apply_service(
    raw: &mut Raw,
    tag: Tag,
    value: String,
    names: &dyn Resolve,
) -> Result<(), ParseError> {
    match tag {
        Tag::Tcp | Tag::Udp | Tag::Sctp => {
            raw.set_option(Opt::Service)?;
            let proto = match tag {
                Tag::Tcp => Protocol::Tcp,
                Tag::Udp => Protocol::Udp,
                _ => Protocol::Sctp,
            };
            let (addr, port) = parse_service(&value, proto, names).ok_or_else(|| {
                invalid(format!(
                    "illegal virtual server address[:port] specified (`{value}'; write address[:port] such as 10.0.0.1:80, [2001:db8::1]:80 or www.example.com:http: a host name must resolve, a port name must be in /etc/services)"
                ))
            })?;
            raw.service = Some(SvcArg::Addr { proto, addr, port });
        }
        Tag::Fwmark => {
            raw.set_option(Opt::Service)?;
            let mark = parse_fwmark(&value).ok_or_else(|| {
                invalid(format!(
                    "invalid fwmark value `{value}' specified (an integer from 1 to {})",
                    u32::MAX
                ))
            })?;
            raw.service = Some(SvcArg::Fwmark(mark));
        }
        Tag::Scheduler => {
            raw.set_option(Opt::Scheduler)?;
            raw.scheduler = Some(value);
        }
        Tag::Persistent => {
            raw.set_option(Opt::Persistent)?;
            raw.persistent = Some(if value.is_empty() {
                DEFAULT_PERSISTENCE_TIMEOUT.as_secs()
            } else {
                parse_timeout(&value, 1)?
            });
        }
        Tag::Netmask => {
            raw.set_option(Opt::Netmask)?;
            raw.netmask = Some(value);
        }
        Tag::Pe => {
            raw.set_option(Opt::Pe)?;
            raw.pe = Some(value);
        }
        Tag::Ipv6 => raw.ipv6 = true,
        Tag::Ops => {
            raw.set_option(Opt::OnePacket)?;
            raw.one_packet = true;
        }
        Tag::SchedFlags => {
            raw.set_option(Opt::SchedFlags)?;
            raw.sched_flags = Some(value);
        }
        other => unreachable!("{other:?} is not a virtual-service option"),
    }
    Ok(())
}

/// Record a real-server option (`-r`, `-m`/`-i`/`-g`, `-w`, `-x`, `-y`, the `--tun-*` options
/// other than `--tun-info`).
fn apply_server(raw: &mut Raw, tag: Tag, value: String) -> Result<(), ParseError> {
    match tag {
        Tag::RealServer => {
            raw.set_option(Opt::Server)?;
            raw.server = Some(value);
        }
        Tag::Masq | Tag::Ipip | Tag::Gatewaying => {
            raw.set_option(Opt::Forward)?;
            raw.method = Some(match tag {
                Tag::Masq => ForwardMethod::Masq,
                Tag::Ipip => ForwardMethod::Tunnel,
                _ => ForwardMethod::DirectRoute,
            });
        }
        Tag::Weight => {
            raw.set_option(Opt::Weight)?;
            let w = string_to_number(&value, 0, i64::from(MAX_WEIGHT)).ok_or_else(|| {
                invalid(format!(
                    "illegal weight specified (`{value}'; a weight is an integer from 0 to {MAX_WEIGHT})"
                ))
            })?;
            raw.weight = Some(w as u32);
        }
        Tag::UThreshold | Tag::LThreshold => apply_threshold(raw, tag, value)?,
        Tag::TunType => {
            raw.set_option(Opt::TunType)?;
            if !matches!(value.as_str(), "ipip" | "gue" | "gre") {
                return Err(invalid(format!(
                    "illegal tunnel type specified (`{value}'; lvsd tunnels with ipip only: --tun-type ipip, or leave it out)"
                )));
            }
            raw.tun_type = Some(value);
        }
        Tag::TunPort => {
            raw.set_option(Opt::TunPort)?;
            string_to_number(&value, 1, 65535).ok_or_else(|| {
                invalid(format!(
                    "illegal tunnel port specified (`{value}'; 1 to 65535)"
                ))
            })?;
        }
        Tag::TunNocsum => raw.set_option(Opt::TunNocsum)?,
        Tag::TunCsum => raw.set_option(Opt::TunCsum)?,
        Tag::TunRemcsum => raw.set_option(Opt::TunRemcsum)?,
        other => unreachable!("{other:?} is not a real-server option"),
    }
    Ok(())
}

/// Record `-x` (upper) or `-y` (lower connection threshold).
fn apply_threshold(raw: &mut Raw, tag: Tag, value: String) -> Result<(), ParseError> {
    let (opt, name) = if tag == Tag::UThreshold {
        (Opt::UThreshold, "u_threshold")
    } else {
        (Opt::LThreshold, "l_threshold")
    };
    raw.set_option(opt)?;
    let n = string_to_number(&value, 0, i64::from(i32::MAX)).ok_or_else(|| {
        invalid(format!(
            "illegal {name} specified (`{value}'; a connection count from 0 to {}, 0 for none)",
            i32::MAX
        ))
    })? as u32;
    if tag == Tag::UThreshold {
        raw.u_threshold = Some(n);
    } else {
        raw.l_threshold = Some(n);
    }
    Ok(())
}

/// Record a listing option (`-n`, `-c`, `--timeout`, `--stats`, ..., `--tun-info`).
fn apply_listing(raw: &mut Raw, tag: Tag) -> Result<(), ParseError> {
    match tag {
        Tag::Numeric => {
            raw.set_option(Opt::Numeric)?;
            raw.format.numeric = true;
        }
        Tag::Connection => raw.set_option(Opt::Connection)?,
        Tag::Timeout => raw.set_option(Opt::Timeout)?,
        Tag::Stats => {
            raw.set_option(Opt::Stats)?;
            raw.format.stats = true;
        }
        Tag::Rate => {
            raw.set_option(Opt::Rate)?;
            raw.format.rate = true;
        }
        Tag::Thresholds => {
            raw.set_option(Opt::Thresholds)?;
            raw.format.thresholds = true;
        }
        Tag::PersistentConn => {
            raw.set_option(Opt::PersistentConn)?;
            raw.format.persistent_conn = true;
        }
        Tag::NoSort => {
            raw.set_option(Opt::NoSort)?;
            raw.format.nosort = true;
        }
        Tag::Sort => {}
        Tag::Exact => {
            raw.set_option(Opt::Exact)?;
            raw.format.exact = true;
        }
        Tag::TunInfo => {
            raw.set_option(Opt::TunInfo)?;
            raw.format.tun_info = true;
        }
        other => unreachable!("{other:?} is not a listing option"),
    }
    Ok(())
}

/// Record `--socket PATH` (once, not empty).
fn apply_socket(raw: &mut Raw, value: String) -> Result<(), ParseError> {
    if raw.socket.is_some() {
        return Err(invalid(
            "multiple 'socket' options specified (give it once)",
        ));
    }
    if value.is_empty() {
        return Err(invalid(
            "empty --socket path (give the path of lvsd's control socket)",
        ));
    }
    raw.socket = Some(PathBuf::from(value));
    Ok(())
}

/// ipvsadm's `generic_opt_check`: compulsory, illegal and exclusive options of a command.
fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), ParseError> {
    let row = cmd.row();
    let mut last: Option<usize> = None;
    for (j, &rule) in row.iter().enumerate() {
        let given = options & (1u64 << j) != 0;
        if !given {
            if rule == b'+' {
                return Err(invalid(format!(
                    "You need to supply the '{}' option for the '{}' command{}",
                    OPT_NAMES[j],
                    cmd.name(),
                    hint_required(j)
                )));
            }
            continue;
        }
        if rule == b'x' {
            return Err(invalid(format!(
                "Illegal '{}' option with the '{}' command (leave it out; see --help)",
                OPT_NAMES[j],
                cmd.name()
            )));
        }
        if rule == b'1' {
            if let Some(l) = last {
                return Err(invalid(format!(
                    "The option '{}' conflicts with the '{}' option in the '{}' command (give only one of them)",
                    OPT_NAMES[j],
                    OPT_NAMES[l],
                    cmd.name()
                )));
            }
            last = Some(j);
        }
    }
    Ok(())
}

fn hint_required(column: usize) -> &'static str {
    if column == Opt::Service as usize {
        " (add -t VIP:port, -u VIP:port or -f fwmark)"
    } else if column == Opt::Server as usize {
        " (add -r RIP[:port])"
    } else {
        ""
    }
}

/// The service key with its address family settled.
fn service_key(raw: &Raw) -> Option<ServiceKey> {
    Some(match raw.service? {
        SvcArg::Addr { proto, addr, port } => ServiceKey::Addr {
            proto,
            addr,
            port: port.unwrap_or(0),
        },
        SvcArg::Fwmark(mark) => ServiceKey::Fwmark {
            mark,
            family: if raw.ipv6 { Family::V6 } else { Family::V4 },
        },
    })
}

fn build(cmd: Cmd, raw: &mut Raw, names: &dyn Resolve) -> Result<Command, ParseError> {
    // Free words: the three values of --set, nothing else.
    let mut words = std::mem::take(&mut raw.words).into_iter();
    let mut timeouts = None;
    if cmd == Cmd::Timeout {
        match (words.next(), words.next(), words.next()) {
            (Some(a), Some(b), Some(c)) => {
                timeouts = Some((
                    parse_timeout(&a, 0)?,
                    parse_timeout(&b, 0)?,
                    parse_timeout(&c, 0)?,
                ));
            }
            _ => {
                return Err(invalid(
                    "--set option requires 3 timeout values (--set tcp tcpfin udp, in seconds; 0 keeps a value)",
                ));
            }
        }
    }
    if let Some(w) = words.next() {
        return Err(invalid(format!(
            "unexpected argument {w} (options take one value each; see --help)"
        )));
    }
    if raw.ipv6 && !matches!(raw.service, Some(SvcArg::Fwmark(_))) {
        return Err(invalid(
            "-6 used before -f (--ipv6 only applies to a firewall-mark service, -f MARK -6)",
        ));
    }
    // ipvsadm resolves -r with the protocol of the service given so far; lvsadm with the
    // service's, wherever -t/-u appears.
    let server = match raw.server.take() {
        Some(text) => {
            let proto = raw.service.map_or(Protocol::Tcp, |s| s.proto());
            Some(parse_service(&text, proto, names).ok_or_else(|| {
                invalid(format!(
                    "illegal real server address[:port] specified (`{text}'; write address[:port] such as 10.0.1.2, 10.0.1.2:8080, [2001:db8::2]:80 or rs1.example.com:http)"
                ))
            })?)
        }
        None => None,
    };
    let scheduler_name = raw
        .scheduler
        .clone()
        .unwrap_or_else(|| SchedulerKind::Wlc.name().to_string());
    let flags = match &raw.sched_flags {
        Some(arg) => parse_sched_flags(&scheduler_name, arg)?,
        None => SchedFlags::default(),
    };
    generic_opt_check(cmd, raw.options)?;
    let key = service_key(raw);
    if let Some(pe) = &raw.pe {
        return Err(invalid(format!(
            "persistence engine `{pe}' is not supported by lvsd (leave --pe out; -p with -M gives persistence by client address)"
        )));
    }

    match cmd {
        Cmd::Add | Cmd::Edit => {
            let key = key.expect("checked: service is compulsory");
            let persistent = raw.persistent.is_some();
            if let ServiceKey::Addr { port: 0, .. } = key
                && !persistent
            {
                return Err(invalid(
                    "Zero port specified for non-persistent service (give a port, VIP:port, or make it persistent with -p)",
                ));
            }
            if raw.one_packet
                && !matches!(
                    key,
                    ServiceKey::Addr {
                        proto: Protocol::Udp,
                        ..
                    } | ServiceKey::Fwmark { .. }
                )
            {
                return Err(invalid(
                    "One-Packet Scheduling is only for UDP virtual services (use -u, or drop -o)",
                ));
            }
            let scheduler: SchedulerKind = scheduler_name
                .parse()
                .map_err(|e| invalid(format!("{e}")))?;
            let netmask = netmask(raw, key.family())?;
            let mut config = ServiceConfig::new(key).with_scheduler(scheduler);
            config.flags = flags;
            config.one_packet = raw.one_packet;
            config.persistence = raw.persistent.map(|secs| Persistence {
                timeout: Duration::from_secs(secs),
                netmask,
            });
            Ok(if cmd == Cmd::Add {
                Command::AddService(config)
            } else {
                Command::EditService(config)
            })
        }
        Cmd::Del => Ok(Command::DeleteService(
            key.expect("checked: service is compulsory"),
        )),
        Cmd::Flush => Ok(Command::Clear),
        Cmd::Restore => Ok(Command::Restore),
        Cmd::Save => Ok(Command::Save(raw.format)),
        Cmd::Reload => Ok(Command::Reload),
        Cmd::Drops => Ok(Command::Drops),
        Cmd::StartDaemon | Cmd::StopDaemon => Ok(Command::SyncDaemon {
            start: cmd == Cmd::StartDaemon,
            state: raw.daemon_state.clone().unwrap_or_default(),
        }),
        Cmd::Zero => Ok(Command::Zero(key)),
        Cmd::Timeout => {
            let (tcp, tcpfin, udp) = timeouts.expect("parsed above");
            Ok(Command::SetTimeouts { tcp, tcpfin, udp })
        }
        Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
            let key = key.expect("checked: service is compulsory");
            let (addr, given_port) = server.expect("checked: real server is compulsory");
            let svc_port = match key {
                ServiceKey::Addr { port, .. } => port,
                ServiceKey::Fwmark { .. } => 0,
            };
            let mut port = given_port.unwrap_or(svc_port);
            if cmd == Cmd::DelDest {
                return Ok(Command::DeleteDest { key, addr, port });
            }
            let method = raw.method.unwrap_or(ForwardMethod::DirectRoute);
            tunnel_opt_check(raw, method)?;
            // DR and Tun cannot change the port: IPVS uses the service's.
            if matches!(key, ServiceKey::Addr { .. }) && method != ForwardMethod::Masq {
                port = svc_port;
            }
            if Family::of(addr) != key.family() && method != ForwardMethod::Tunnel {
                return Err(invalid(
                    "Different address family is allowed only for tunneling servers (use -i, or a real server of the service's family)",
                ));
            }
            let mut dest = DestConfig::new(addr, port, method).with_weight(raw.weight.unwrap_or(1));
            dest.upper_threshold = raw.u_threshold.unwrap_or(0);
            dest.lower_threshold = raw.l_threshold.unwrap_or(0);
            Ok(if cmd == Cmd::AddDest {
                Command::AddDest { key, dest }
            } else {
                Command::EditDest { key, dest }
            })
        }
        Cmd::List => {
            let o = raw.options;
            let bit = |opt: Opt| o & (1u64 << (opt as u8)) != 0;
            if ((bit(Opt::Connection) || bit(Opt::Timeout) || bit(Opt::Daemon))
                && (bit(Opt::Stats) || bit(Opt::Rate) || bit(Opt::Thresholds)))
                || ((bit(Opt::Timeout) || bit(Opt::Daemon)) && bit(Opt::PersistentConn))
            {
                return Err(invalid(
                    "options conflicts in the list command (--stats/--rate/--thresholds go with the service table, not with -c, --timeout or --daemon)",
                ));
            }
            let what = if bit(Opt::Connection) {
                ListWhat::Connections
            } else if let Some(key) = key {
                ListWhat::Service(key)
            } else if bit(Opt::Timeout) {
                ListWhat::Timeouts
            } else if bit(Opt::Daemon) {
                ListWhat::Daemon
            } else {
                ListWhat::All
            };
            Ok(Command::List {
                what,
                format: raw.format,
            })
        }
    }
}

/// ipvsadm's tunnel checks for `-a`/`-e`: tunnel options only with `-i`; lvsd has IP-in-IP
/// only, so GUE and GRE, and the port and checksum options that belong to them, are refused.
fn tunnel_opt_check(raw: &Raw, method: ForwardMethod) -> Result<(), ParseError> {
    let tun_opts = [
        Opt::TunType,
        Opt::TunPort,
        Opt::TunNocsum,
        Opt::TunCsum,
        Opt::TunRemcsum,
    ];
    if tun_opts.iter().any(|&o| raw.has(o)) && method != ForwardMethod::Tunnel {
        return Err(invalid(
            "Tunnel options conflict with forward method (--tun-* options apply to tunnelling servers, -i)",
        ));
    }
    if let Some(t) = raw.tun_type.as_deref()
        && t != "ipip"
    {
        return Err(invalid(format!(
            "tunnel type `{t}' is not supported by lvsd (it tunnels with IP-in-IP only: use --tun-type ipip, or leave --tun-type out)"
        )));
    }
    for &o in &tun_opts[1..] {
        if raw.has(o) {
            return Err(invalid(format!(
                "Illegal '{}' option with the 'ipip' tunnel type (tunnel ports and checksum options belong to GUE/GRE tunnels, which lvsd does not support)",
                OPT_NAMES[o as usize]
            )));
        }
    }
    Ok(())
}

/// The persistence granularity: `-M` or the family's full mask.
fn netmask(raw: &Raw, family: Family) -> Result<Netmask, ParseError> {
    let Some(text) = &raw.netmask else {
        return Ok(match family {
            Family::V4 => Netmask::V4(32),
            Family::V6 => Netmask::V6(128),
        });
    };
    match family {
        Family::V4 => {
            let mask: Ipv4Addr = text.parse().map_err(|_| {
                invalid(format!(
                    "illegal virtual server persistent mask specified (`{text}'; write a dotted mask such as 255.255.255.0)"
                ))
            })?;
            let prefix = v4_prefix(mask).ok_or_else(|| {
                invalid(format!(
                    "illegal virtual server persistent mask specified (`{text}' is not contiguous; lvsd takes masks such as 255.255.255.0)"
                ))
            })?;
            Ok(Netmask::V4(prefix))
        }
        Family::V6 => {
            let p = string_to_number(text, 1, 128).ok_or_else(|| {
                invalid(format!(
                    "illegal ipv6 netmask specified (`{text}'; a prefix length from 1 to 128)"
                ))
            })?;
            Ok(Netmask::V6(p as u8))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        std::iter::once("lvsadm")
            .chain(line.split_whitespace())
            .map(String::from)
            .collect()
    }

    #[test]
    fn legality_rows_have_every_column() {
        for cmd in [
            Cmd::Add,
            Cmd::Edit,
            Cmd::Del,
            Cmd::Flush,
            Cmd::List,
            Cmd::AddDest,
            Cmd::DelDest,
            Cmd::EditDest,
            Cmd::Timeout,
            Cmd::StartDaemon,
            Cmd::StopDaemon,
            Cmd::Restore,
            Cmd::Save,
            Cmd::Zero,
            Cmd::Reload,
            Cmd::Drops,
        ] {
            assert_eq!(cmd.row().len(), NUMBER_OF_OPT);
        }
    }

    #[test]
    fn addresses() {
        let v4 = |s: &str| parse_addr_port(s);
        assert_eq!(
            v4("10.0.0.1:80"),
            Some(("10.0.0.1".parse().unwrap(), Some(80)))
        );
        assert_eq!(v4("10.0.0.1"), Some(("10.0.0.1".parse().unwrap(), None)));
        assert_eq!(
            v4("[2001:db8::1]:443"),
            Some(("2001:db8::1".parse().unwrap(), Some(443)))
        );
        assert_eq!(
            v4("2001:db8::1"),
            Some(("2001:db8::1".parse().unwrap(), None))
        );
        assert_eq!(v4("[2001:db8::1]"), None);
        assert_eq!(v4("80"), None);
        assert_eq!(v4("10.0.0.1:"), None);
        assert_eq!(v4("10.0.0.1:65536"), None);
        assert_eq!(v4("10.0.0.300:80"), None);
        assert_eq!(v4("www.example.com:80"), None);
    }

    #[test]
    fn masks() {
        assert_eq!(v4_prefix("255.255.255.0".parse().unwrap()), Some(24));
        assert_eq!(v4_prefix("255.255.255.255".parse().unwrap()), Some(32));
        assert_eq!(v4_prefix("0.0.0.0".parse().unwrap()), Some(0));
        assert_eq!(v4_prefix("255.0.255.0".parse().unwrap()), None);
    }

    #[test]
    fn clusters_and_optional_values() {
        let inv = parse(&argv("-At 10.0.0.1:80 -p300")).unwrap();
        let Command::AddService(c) = inv.command else {
            panic!()
        };
        assert_eq!(c.persistence.unwrap().timeout, Duration::from_secs(300));
        let inv = parse(&argv("-A -t 10.0.0.1:80 -p -s rr")).unwrap();
        let Command::AddService(c) = inv.command else {
            panic!()
        };
        assert_eq!(c.persistence.unwrap().timeout, DEFAULT_PERSISTENCE_TIMEOUT);
        assert_eq!(c.scheduler, SchedulerKind::Rr);
        let inv = parse(&argv(
            "--add-service --tcp-service=10.0.0.1:80 --persistent=60",
        ))
        .unwrap();
        let Command::AddService(c) = inv.command else {
            panic!()
        };
        assert_eq!(c.persistence.unwrap().timeout, Duration::from_secs(60));
        assert!(matches!(
            parse(&argv("-Ln")).unwrap().command,
            Command::List {
                what: ListWhat::All,
                ..
            }
        ));
    }
}
