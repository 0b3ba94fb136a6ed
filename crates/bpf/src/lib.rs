//! `lvs-bpf`: the kernel fast path of the LVS director (part of the io layer).
//!
//! The programs are C, in `src/bpf/lvs.bpf.c` (built by `build.rs` with clang, embedded
//! here); this crate loads them with libbpf and keeps their maps:
//!
//! - `lvs_tc_ingress` (tc clsact ingress) forwards the packets of connections the core has
//!   installed in `lvs_conns` — NAT both ways, DR and IP-in-IP — with the same bytes as
//!   `lvs_core::rewrite`. The next hop comes from `lvs_routes` (the core's routes) and the
//!   kernel's neighbour table through `bpf_redirect_neigh`, which queues the packet while the
//!   neighbour is resolved instead of dropping it.
//! - `lvs_xdp` (XDP, for NICs with native XDP) forwards the packets of those connections the
//!   same way before the kernel builds an skb, with the MAC addresses from `lvs_neigh` (the
//!   core's neighbour table); anything else it passes up to `lvs_tc_ingress` untouched.
//! - `lvs_sock_filter` (a socket filter for lvsd's AF_PACKET sockets) lets a frame through
//!   to user space only when the tc program will not forward it; everything the kernel does
//!   not handle (new connections, ICMP errors, too-big packets, odd frames) still reaches
//!   `lvs_core::Director` as before.
//!
//! [`compile`] turns the core's connections, routes and TCP state machine into map entries;
//! [`maps`] holds the byte layouts shared with `src/bpf/lvs.h`.
//!
//! Why libbpf-rs rather than aya: libbpf is the kernel's own loader (BTF, CO-RE relocations
//! for the `sk_buff` field we read, kfunc resolution, `BPF_PROG_TEST_RUN`, tc hooks), and its
//! Rust binding builds on stable with the C programs compiled by plain clang — no bpf-linker,
//! no nightly. Every call here goes through its safe API: this crate has no `unsafe`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compile;
pub mod maps;
pub mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libbpf_rs::{
    MapCore, MapFlags, MapHandle, Object, ObjectBuilder, PrintLevel, ProgramInput, RingBuffer,
    RingBufferBuilder, TC_INGRESS, TcHookBuilder, Xdp, XdpFlags,
};

use maps::{
    ConnEntry, Counter, DestEntry, Event, Flow, NeighEntry, RouteEntry, RouteKey, StatsEntry,
    SvcEntry, SvcKey,
};

/// The compiled object.
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lvs.bpf.o"));

/// `TC_ACT_OK`: the packet goes on (to the kernel, or to user space through the tap).
pub const TC_ACT_OK: u32 = 0;
/// `TC_ACT_SHOT`: dropped.
pub const TC_ACT_SHOT: u32 = 2;
/// `TC_ACT_REDIRECT`: forwarded.
pub const TC_ACT_REDIRECT: u32 = 7;
/// `XDP_DROP`: dropped.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`: up to the stack (and so to tc ingress).
pub const XDP_PASS: u32 = 2;
/// `XDP_REDIRECT`: forwarded.
pub const XDP_REDIRECT: u32 = 4;

/// What went wrong in the fast path; says which program or map and the kernel's reason.
#[derive(Debug)]
pub enum Error {
    /// The embedded object could not be opened or a map configured.
    Open(String),
    /// The kernel refused to load a program or create a map; `log` is the verifier's (or
    /// libbpf's) account of why.
    Load {
        /// libbpf's error.
        error: String,
        /// The tail of the verifier log.
        log: String,
    },
    /// A map operation failed.
    Map {
        /// Map name.
        map: &'static str,
        /// The kernel's error.
        error: String,
    },
    /// A program could not be found, run or attached.
    Program {
        /// Program name.
        program: &'static str,
        /// The kernel's error.
        error: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Open(e) => write!(f, "cannot open the BPF object: {e}"),
            Error::Load { error, log } => write!(
                f,
                "the kernel refused the BPF data path (lvs_tc_ingress / lvs_sock_filter): {error}\n{log}"
            ),
            Error::Map { map, error } => write!(f, "BPF map {map}: {error}"),
            Error::Program { program, error } => write!(f, "BPF program {program}: {error}"),
        }
    }
}

impl std::error::Error for Error {}

/// The programs, for [`Datapath::test_run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    /// `lvs_tc_ingress`.
    TcIngress,
    /// `lvs_sock_filter`.
    SockFilter,
    /// `lvs_xdp`.
    Xdp,
}

impl Prog {
    /// The program's name in the object.
    pub const fn name(self) -> &'static str {
        match self {
            Prog::TcIngress => "lvs_tc_ingress",
            Prog::SockFilter => "lvs_sock_filter",
            Prog::Xdp => "lvs_xdp",
        }
    }
}

/// Sizes and switches fixed at load.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// Entries of `lvs_conns` (a NAT connection takes two).
    pub conn_entries: u32,
    /// Slots of `lvs_stats` (one per real server), also the size of `lvs_dests`.
    pub stats_slots: u32,
    /// Entries of `lvs_slots`, where the services' compiled scheduler tables live.
    pub sched_slots: u32,
    /// Record each forwarded packet's interface and next hop in `lvs_test` (for
    /// `BPF_PROG_TEST_RUN`, which cannot show a redirect).
    pub test_mode: bool,
    /// Interfaces where a predecessor's `lvs_tc_ingress` may still be attached (lvsd was
    /// killed, or stopped with `--keep-forwarding-on-exit`): the first one found lends its
    /// connection map to the new programs, so the flows it forwards keep their entries.
    pub adopt_from: &'a [u32],
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            conn_entries: 1 << 21,
            stats_slots: 1 << 16,
            sched_slots: 1 << 21,
            test_mode: false,
            adopt_from: &[],
        }
    }
}

/// The connection map of a predecessor's program attached at tc ingress of one of
/// `ifindexes` (by lvsd's handle and priority), with the interface it was found on.
fn predecessor_conns(ifindexes: &[u32]) -> (Option<(u32, MapHandle)>, Option<u32>) {
    let mut foreign = None;
    use libbpf_rs::query::{ProgInfoIter, ProgInfoQueryOptions};
    // A hook wants a program fd, which a query never uses: any open descriptor will do.
    let Ok(placeholder) = std::fs::File::open("/dev/null") else {
        return (None, None);
    };
    let previous = libbpf_rs::set_print(None);
    let found = ifindexes.iter().find_map(|&ifindex| {
        let idx = i32::try_from(ifindex).ok()?;
        let mut hook = libbpf_rs::TcHook::new(placeholder.as_fd());
        hook.ifindex(idx)
            .handle(TC_HANDLE)
            .priority(TC_PRIORITY)
            .attach_point(TC_INGRESS);
        let prog_id = hook.query().ok()?;
        let info =
            ProgInfoIter::with_query_opts(ProgInfoQueryOptions::default().include_map_ids(true))
                .find(|p| p.id == prog_id)?;
        // The kernel keeps 15 bytes of a program's name.
        let want = Prog::TcIngress.name();
        if info.name.to_str() != Some(&want[..want.len().min(15)]) {
            return None;
        }
        let maps: Vec<MapHandle> = info
            .map_ids
            .iter()
            .filter_map(|&id| MapHandle::from_map_id(id).ok())
            .collect();
        // A predecessor of another layout (an upgrade that changed what an entry means) is
        // not adopted: its flows break, but the new programs load and nothing is misread.
        let layout = maps
            .iter()
            .find(|m| m.name() == "lvs_config")
            .and_then(config_layout)
            .map(|l| if l == 0 { 1 } else { l });
        if layout != Some(maps::LAYOUT) {
            foreign = Some(layout.unwrap_or(0));
            return None;
        }
        maps.into_iter().find_map(|m| {
            let same_size =
                (m.key_size() as usize, m.value_size() as usize) == (Flow::LEN, ConnEntry::LEN);
            (m.name() == "lvs_conns" && same_size).then_some((ifindex, m))
        })
    });
    libbpf_rs::set_print(previous);
    (found, foreign)
}

/// The `layout` field of an `lvs_config` map's entry.
fn config_layout(m: &MapHandle) -> Option<u32> {
    let v = m.lookup(&0u32.to_ne_bytes(), MapFlags::ANY).ok()??;
    Some(u32::from_ne_bytes(v.get(4..8)?.try_into().ok()?))
}

/// One run of a program through `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (`TC_ACT_*`, or the socket filter's snap length).
    pub retval: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// Where and how a forwarded frame would have gone (test mode).
    pub out: Option<maps::TestOut>,
    /// Average time per run.
    pub duration: Duration,
}

// libbpf reports verifier logs through one process-wide print hook taking a plain function,
// so the text of a failed load is caught here; it is read and cleared by `load` only.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

fn catch_log(level: PrintLevel, msg: String) {
    if level == PrintLevel::Debug {
        return;
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.push_str(&msg);
        // Keep the end: that is where the verifier says why.
        if log.len() > 16 * 1024 {
            let cut = log.len() - 8 * 1024;
            let cut = (cut..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(0);
            log.drain(..cut);
        }
    }
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn map_err(map: &'static str) -> impl Fn(libbpf_rs::Error) -> Error {
    move |e| Error::Map {
        map,
        error: e.to_string(),
    }
}

/// The loaded programs and their maps.
pub struct Datapath {
    obj: Object,
    conns: MapHandle,
    routes: MapHandle,
    stats: MapHandle,
    counters: MapHandle,
    test: MapHandle,
    config: MapHandle,
    svcs: MapHandle,
    dests: MapHandle,
    slots: MapHandle,
    refused: MapHandle,
    neigh: MapHandle,
    ifmac: MapHandle,
    /// What `lvs_ifmac` holds (written through [`Datapath::set_interface_macs`]).
    ifmac_entries: BTreeMap<u32, [u8; 6]>,
    events_map: MapHandle,
    /// Where the connection map of a predecessor was found (it is this one's now).
    adopted_from: Option<u32>,
    /// The layout of a predecessor's connection table that was not adopted for it.
    foreign_layout: Option<u32>,
    /// The consumer of `lvs_events`; its callback decodes records into `inbox`.
    events: RingBuffer<'static>,
    inbox: Arc<Mutex<Vec<Event>>>,
    route_gen: u32,
    /// Route keys currently in `lvs_routes`, so a new set replaces the old one exactly.
    route_keys: Vec<[u8; RouteKey::LEN]>,
    /// The addresses in `lvs_refused`.
    refused_keys: BTreeMap<Ipv4Addr, ()>,
    /// What `lvs_neigh` holds.
    neigh_entries: BTreeMap<Ipv4Addr, NeighEntry>,
}

impl fmt::Debug for Datapath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datapath")
            .field("routes", &self.route_keys.len())
            .finish_non_exhaustive()
    }
}

impl Datapath {
    /// Open, size and load the programs (the kernel verifies them here) and fill the TCP
    /// transition table.
    pub fn load(opts: &Options<'_>) -> Result<Datapath, Error> {
        let mut open = ObjectBuilder::default()
            .name("lvs")
            .map_err(|e| Error::Open(e.to_string()))?
            .open_memory(OBJECT)
            .map_err(|e| Error::Open(e.to_string()))?;
        for mut m in open.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            let r = match name.as_str() {
                "lvs_conns" => m.set_max_entries(opts.conn_entries.max(2)),
                "lvs_stats" | "lvs_dests" => m.set_max_entries(opts.stats_slots.max(1)),
                "lvs_slots" => m.set_max_entries(opts.sched_slots.max(1)),
                n if n.ends_with(".rodata") => match m.initial_value_mut() {
                    // `lvs_test_mode` is the only read-only global.
                    Some(v) if v.len() >= 4 => {
                        v[..4].copy_from_slice(&u32::from(opts.test_mode).to_ne_bytes());
                        Ok(())
                    }
                    _ => Err(libbpf_rs::Error::from_raw_os_error(22)), // EINVAL,
                },
                _ => Ok(()),
            };
            r.map_err(|e| Error::Open(format!("map {name}: {e}")))?;
        }
        let (adopted, foreign_layout) = predecessor_conns(opts.adopt_from);
        if let Some((_, conns)) = &adopted {
            for mut m in open.maps_mut() {
                if m.name() == "lvs_conns" {
                    m.reuse_fd(conns.as_fd()).map_err(|e| {
                        Error::Open(format!("cannot reuse the predecessor's lvs_conns: {e}"))
                    })?;
                }
            }
        }
        let previous = libbpf_rs::set_print(Some((PrintLevel::Info, catch_log)));
        if let Ok(mut log) = LIBBPF_LOG.lock() {
            log.clear();
        }
        let loaded = open.load();
        let log = LIBBPF_LOG
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        libbpf_rs::set_print(previous);
        let obj = loaded.map_err(|e| Error::Load {
            error: e.to_string(),
            log: last_lines(&log, 40),
        })?;
        let handle = |name: &'static str, key: usize, value: usize| -> Result<MapHandle, Error> {
            let m = obj
                .maps()
                .find(|m| m.name() == name)
                .ok_or_else(|| Error::Open(format!("no map {name} in the object")))?;
            let h = MapHandle::try_from(&m).map_err(map_err(name))?;
            // The Rust encodings must match the C structs the program was built with.
            if (h.key_size() as usize, h.value_size() as usize) != (key, value) {
                return Err(Error::Open(format!(
                    "map {name} has key/value sizes {}/{} but the loader encodes {key}/{value}",
                    h.key_size(),
                    h.value_size()
                )));
            }
            Ok(h)
        };
        handle("lvs_tcp", 4, maps::TCP_TABLE_LEN)?
            .update(&0u32.to_ne_bytes(), &compile::tcp_table(), MapFlags::ANY)
            .map_err(map_err("lvs_tcp"))?;
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let events = {
            let ring = obj
                .maps()
                .find(|m| m.name() == "lvs_events")
                .ok_or_else(|| Error::Open("no map lvs_events in the object".into()))?;
            let sink = Arc::clone(&inbox);
            let mut b = RingBufferBuilder::new();
            b.add(&ring, move |rec: &[u8]| {
                if let (Some(e), Ok(mut v)) = (Event::from_bytes(rec), sink.lock()) {
                    v.push(e);
                }
                0
            })
            .map_err(map_err("lvs_events"))?;
            b.build().map_err(map_err("lvs_events"))?
        };
        let dp = Datapath {
            adopted_from: adopted.map(|(i, _)| i),
            foreign_layout,
            events,
            inbox,
            conns: handle("lvs_conns", Flow::LEN, ConnEntry::LEN)?,
            routes: handle("lvs_routes", RouteKey::LEN, RouteEntry::LEN)?,
            stats: handle("lvs_stats", 4, StatsEntry::LEN)?,
            counters: handle("lvs_counters", 4, 8)?,
            test: handle("lvs_test", 4, maps::TestOut::LEN)?,
            config: handle("lvs_config", 4, 8)?,
            svcs: handle("lvs_svcs", SvcKey::LEN, SvcEntry::LEN)?,
            dests: handle("lvs_dests", 4, DestEntry::LEN)?,
            slots: handle("lvs_slots", 4, 4)?,
            refused: handle("lvs_refused", 4, 1)?,
            neigh: handle("lvs_neigh", 4, NeighEntry::LEN)?,
            ifmac: handle("lvs_ifmac", 4, IFMAC_LEN)?,
            events_map: handle("lvs_events", 0, 0)?,
            // Entries adopted from a predecessor carry its generations: start elsewhere, so
            // none of their cached routes looks current to this program.
            route_gen: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.subsec_nanos() | 1),
            route_keys: Vec::new(),
            refused_keys: Default::default(),
            neigh_entries: BTreeMap::new(),
            ifmac_entries: BTreeMap::new(),
            obj,
        };
        // The layout goes in at once: a successor may look for it before the first routes.
        dp.write_config()?;
        Ok(dp)
    }

    fn prog(&self, p: Prog) -> Result<libbpf_rs::ProgramMut<'_>, Error> {
        self.obj
            .progs_mut()
            .find(|x| x.name() == p.name())
            .ok_or(Error::Program {
                program: p.name(),
                error: "not in the object".into(),
            })
    }

    /// Call `f` with the file descriptor of a program (to attach it somewhere).
    pub fn with_program_fd<R>(
        &self,
        p: Prog,
        f: impl FnOnce(BorrowedFd<'_>) -> R,
    ) -> Result<R, Error> {
        let prog = self.prog(p)?;
        Ok(f(prog.as_fd()))
    }

    /// Attach `lvs_tc_ingress` at the clsact ingress of `ifindex` (in the calling thread's
    /// network namespace), creating the clsact qdisc if there is none. Whether lvsd created
    /// the qdisc is remembered, so [`TcAttachment::detach`] removes only what it added.
    pub fn attach_tc(&self, ifindex: u32) -> Result<TcAttachment, Error> {
        let err = |e: libbpf_rs::Error| Error::Program {
            program: Prog::TcIngress.name(),
            error: format!("cannot attach at tc ingress of interface {ifindex}: {e}"),
        };
        self.with_program_fd(Prog::TcIngress, |fd| {
            let idx = i32::try_from(ifindex).map_err(|_| Error::Program {
                program: Prog::TcIngress.name(),
                error: format!("interface index {ifindex} out of range"),
            })?;
            let mut builder = TcHookBuilder::new(fd);
            builder
                .ifindex(idx)
                .replace(true)
                .handle(TC_HANDLE)
                .priority(TC_PRIORITY);
            let mut probe = builder.hook(TC_INGRESS);
            // Does the interface have a clsact qdisc already (someone else's filters)? The
            // probe's expected failures would be printed by libbpf: silence it meanwhile.
            let previous = libbpf_rs::set_print(None);
            let had_qdisc = probe.query().is_ok() || qdisc_exists(&mut probe);
            libbpf_rs::set_print(previous);
            let mut hook = builder.hook(TC_INGRESS);
            hook.create().map_err(err)?;
            hook.attach().map_err(err)?;
            let prog = fd.try_clone_to_owned().map_err(|e| Error::Program {
                program: Prog::TcIngress.name(),
                error: format!("cannot keep the program's descriptor: {e}"),
            })?;
            Ok(TcAttachment {
                prog,
                ifindex,
                created_qdisc: !had_qdisc,
            })
        })?
    }

    /// Attach `lvs_xdp` to `ifindex` in native (driver) mode. A predecessor's `lvs_xdp` there
    /// is replaced in one step; any other XDP program is left alone and the attach refused,
    /// as is an interface whose driver has no native XDP (with the kernel's reason).
    pub fn attach_xdp(&self, ifindex: u32) -> Result<XdpAttachment, Error> {
        let err = |what: &str, e: &dyn fmt::Display| Error::Program {
            program: Prog::Xdp.name(),
            error: format!("{what} interface {ifindex}: {e}"),
        };
        let idx = i32::try_from(ifindex).map_err(|_| err("bad index for", &"out of range"))?;
        let present = present_xdp(idx);
        self.with_program_fd(Prog::Xdp, |fd| {
            let xdp = Xdp::new(fd);
            match present {
                None => xdp
                    .attach(idx, XdpFlags::DRV_MODE | XdpFlags::UPDATE_IF_NOEXIST)
                    .map_err(|e| err("cannot attach (native mode) to", &e))?,
                Some((_, Some(old))) => xdp
                    .replace(idx, old.as_fd())
                    .map_err(|e| err("cannot replace the previous lvs_xdp on", &e))?,
                Some((id, None)) => {
                    return Err(err(
                        "another XDP program is attached to",
                        &format!("program id {id}; lvsd does not replace it"),
                    ));
                }
            }
            let prog = fd
                .try_clone_to_owned()
                .map_err(|e| err("cannot keep the program's descriptor for", &e))?;
            Ok(XdpAttachment { prog, ifindex })
        })?
    }

    /// Kernel memory the connection map takes now (`memlock` of its fdinfo: the map's own
    /// accounting of what it allocated; without preallocation it follows the entries).
    pub fn conn_map_bytes(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            self.conns.as_fd().as_raw_fd()
        ))
        .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The interface whose predecessor program lent its connection map, if one did.
    pub fn adopted_from(&self) -> Option<u32> {
        self.adopted_from
    }

    /// A predecessor's program was found whose connection table has another layout
    /// ([`maps::LAYOUT`]; 0: unreadable): its flows were not adopted.
    pub fn foreign_layout(&self) -> Option<u32> {
        self.foreign_layout
    }

    /// Every entry of the connection map (a walk of the whole map: for start-up).
    pub fn entries(&self) -> Vec<(Flow, ConnEntry)> {
        self.conns
            .keys()
            .filter_map(|k| {
                let flow = Flow::from_bytes(&k)?;
                let v = self.conns.lookup(&k, MapFlags::ANY).ok()??;
                Some((flow, ConnEntry::from_bytes(&v)?))
            })
            .collect()
    }

    /// Install (or replace) a connection entry.
    pub fn insert(&self, flow: &Flow, entry: &ConnEntry) -> Result<(), Error> {
        self.conns
            .update(&flow.to_bytes(), &entry.to_bytes(), MapFlags::ANY)
            .map_err(map_err("lvs_conns"))
    }

    /// Remove a connection entry; whether it was there.
    pub fn remove(&self, flow: &Flow) -> Result<bool, Error> {
        match self.conns.delete(&flow.to_bytes()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(map_err("lvs_conns")(e)),
        }
    }

    /// The entry of a flow.
    pub fn entry(&self, flow: &Flow) -> Result<Option<ConnEntry>, Error> {
        let v = self
            .conns
            .lookup(&flow.to_bytes(), MapFlags::ANY)
            .map_err(map_err("lvs_conns"))?;
        Ok(v.and_then(|b| ConnEntry::from_bytes(&b)))
    }

    /// Make `lvs_routes` hold exactly `routes`.
    pub fn set_routes(&mut self, routes: &[(RouteKey, RouteEntry)]) -> Result<(), Error> {
        let new: Vec<[u8; RouteKey::LEN]> = routes.iter().map(|(k, _)| k.to_bytes()).collect();
        for (k, v) in routes {
            self.routes
                .update(&k.to_bytes(), &v.to_bytes(), MapFlags::ANY)
                .map_err(map_err("lvs_routes"))?;
        }
        for old in &self.route_keys {
            if !new.contains(old) {
                let _ = self.routes.delete(old);
            }
        }
        self.route_keys = new;
        // Every entry's cached route is now stale: the program re-reads the trie once per
        // entry. Generation 0 is never current, so a fresh entry always looks its route up.
        self.route_gen = self.route_gen.wrapping_add(1).max(1);
        self.write_config()
    }

    /// `lvs_config`: the route generation and this loader's [`maps::LAYOUT`].
    fn write_config(&self) -> Result<(), Error> {
        let mut cfg = [0u8; 8];
        cfg[..4].copy_from_slice(&self.route_gen.to_ne_bytes());
        cfg[4..].copy_from_slice(&maps::LAYOUT.to_ne_bytes());
        self.config
            .update(&0u32.to_ne_bytes(), &cfg, MapFlags::ANY)
            .map_err(map_err("lvs_config"))
    }

    /// The connection-table layout the loaded program's `lvs_config` says (0 before the
    /// loader wrote it).
    pub fn layout(&self) -> Result<u32, Error> {
        config_layout(&self.config).ok_or_else(|| Error::Map {
            map: "lvs_config",
            error: "no entry 0".into(),
        })
    }

    /// Make `lvs_refused` hold exactly `addrs`: the sources new flows are never scheduled
    /// from in the kernel (the core drops them and counts why). Only the difference to the
    /// present set is written.
    pub fn set_refused(&mut self, addrs: &BTreeSet<Ipv4Addr>) -> Result<(), Error> {
        let wanted = addrs.iter().map(|a| (*a, ())).collect();
        mirror(
            &self.refused,
            "lvs_refused",
            &mut self.refused_keys,
            &wanted,
            |a| a.octets().to_vec(),
            |()| vec![1],
        )
    }

    /// Make `lvs_neigh` hold exactly `entries` (the next hops `lvs_xdp` can send to), writing
    /// only what changed.
    pub fn set_neighbours(
        &mut self,
        entries: &BTreeMap<Ipv4Addr, NeighEntry>,
    ) -> Result<(), Error> {
        mirror(
            &self.neigh,
            "lvs_neigh",
            &mut self.neigh_entries,
            entries,
            |a| a.octets().to_vec(),
            |n| n.to_bytes().to_vec(),
        )
    }

    /// Give `lvs_xdp` the MACs of the interfaces it runs on (ifindex → MAC): a frame whose
    /// destination is not its interface's MAC (or that came in elsewhere) is passed up, as
    /// tc passes one that is not `PACKET_HOST`. Only what changed is written.
    pub fn set_interface_macs(&mut self, macs: &BTreeMap<u32, [u8; 6]>) -> Result<(), Error> {
        mirror(
            &self.ifmac,
            "lvs_ifmac",
            &mut self.ifmac_entries,
            macs,
            |i| i.to_ne_bytes().to_vec(),
            |mac| {
                let mut v = vec![0u8; IFMAC_LEN];
                v[..6].copy_from_slice(mac);
                v
            },
        )
    }

    /// Say how new flows of a service are scheduled (replacing what was there, a sequence's
    /// position included).
    pub fn set_service(&self, key: &SvcKey, entry: &SvcEntry) -> Result<(), Error> {
        self.svcs
            .update(&key.to_bytes(), &entry.to_bytes(), MapFlags::ANY)
            .map_err(map_err("lvs_svcs"))
    }

    /// Forget a service (its new flows go to user space, where no service takes them).
    pub fn remove_service(&self, key: &SvcKey) -> Result<(), Error> {
        match self.svcs.delete(&key.to_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err("lvs_svcs")(e)),
        }
    }

    /// Where new flows given real server `id` (its stats slot) go.
    pub fn set_dest(&self, id: u32, entry: &DestEntry) -> Result<(), Error> {
        self.dests
            .update(&id.to_ne_bytes(), &entry.to_bytes(), MapFlags::ANY)
            .map_err(map_err("lvs_dests"))
    }

    /// Write `table` into `lvs_slots` from `base` on, in one batch.
    pub fn write_slots(&self, base: u32, table: &[u32]) -> Result<(), Error> {
        if table.is_empty() {
            return Ok(());
        }
        let end = u64::from(base) + table.len() as u64;
        if end > u64::from(self.slots.max_entries()) {
            return Err(Error::Map {
                map: "lvs_slots",
                error: format!("entries {base}..{end} past the end"),
            });
        }
        let keys: Vec<u8> = (base..base + table.len() as u32)
            .flat_map(u32::to_ne_bytes)
            .collect();
        let values: Vec<u8> = table.iter().flat_map(|v| v.to_ne_bytes()).collect();
        self.slots
            .update_batch(
                &keys,
                &values,
                table.len() as u32,
                MapFlags::ANY,
                MapFlags::ANY,
            )
            .map_err(map_err("lvs_slots"))
    }

    /// Entries of `lvs_slots`.
    pub fn sched_slots(&self) -> u32 {
        self.slots.max_entries()
    }

    /// The event ring's descriptor: readable when events wait (for epoll).
    pub fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.events_map.as_fd()
    }

    /// Move the events the program reported since the last call into `out`.
    pub fn drain_events(&self, out: &mut Vec<Event>) -> Result<(), Error> {
        self.events.consume().map_err(map_err("lvs_events"))?;
        if let Ok(mut v) = self.inbox.lock() {
            out.append(&mut v);
        }
        Ok(())
    }

    /// Give back the spare capacity of the event inbox (after a burst of reports: a SYN
    /// flood the kernel scheduled).
    pub fn shrink_buffers(&self) {
        if let Ok(mut v) = self.inbox.lock() {
            v.shrink_to(1024);
        }
    }

    /// A counter summed over CPUs.
    pub fn counter(&self, c: Counter) -> Result<u64, Error> {
        let per_cpu = self
            .counters
            .lookup_percpu(&(c as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("lvs_counters"))?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|b| b.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_ne_bytes)
            .sum())
    }

    /// A real server's packets and bytes summed over CPUs.
    pub fn stats(&self, slot: u32) -> Result<StatsEntry, Error> {
        let per_cpu = self
            .stats
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("lvs_stats"))?
            .unwrap_or_default();
        let mut s = StatsEntry::default();
        for b in per_cpu {
            if let Some(v) = StatsEntry::from_bytes(&b) {
                s.add(&v);
            }
        }
        Ok(s)
    }

    /// Run a program over `frame` in the kernel (`BPF_PROG_TEST_RUN`), `repeat` times.
    pub fn test_run(&self, p: Prog, frame: &[u8], repeat: u32) -> Result<TestRun, Error> {
        let prog = self.prog(p)?;
        let zero = 0u32.to_ne_bytes();
        let blank = vec![vec![0u8; maps::TestOut::LEN]; num_cpus()];
        let _ = self.test.update_percpu(&zero, &blank, MapFlags::ANY);
        let mut out = vec![0u8; frame.len() + 256];
        let input = ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..ProgramInput::default()
        };
        let res = prog.test_run(input).map_err(|e| Error::Program {
            program: p.name(),
            error: e.to_string(),
        })?;
        let retval = res.return_value;
        let duration = res.duration;
        let len = res.data.map_or(0, |d| d.len());
        out.truncate(len);
        let rec = self
            .test
            .lookup_percpu(&zero, MapFlags::ANY)
            .map_err(map_err("lvs_test"))?
            .unwrap_or_default();
        let out_hop = rec.iter().find_map(|b| maps::TestOut::decode(b));
        Ok(TestRun {
            retval,
            frame: out,
            out: out_hop,
            duration,
        })
    }
}

/// Make the kernel map `map` hold exactly `wanted`, given `record`, what it holds now
/// (written by this loader alone): only the difference is written. The record follows each
/// write, so that after a failure (the map full) it still says what the map holds and the
/// next call mends the rest.
fn mirror<K: Ord + Copy, V: PartialEq + Copy>(
    map: &MapHandle,
    name: &'static str,
    record: &mut BTreeMap<K, V>,
    wanted: &BTreeMap<K, V>,
    key: impl Fn(&K) -> Vec<u8>,
    value: impl Fn(&V) -> Vec<u8>,
) -> Result<(), Error> {
    let gone: Vec<K> = record
        .keys()
        .filter(|k| !wanted.contains_key(k))
        .copied()
        .collect();
    for k in gone {
        match map.delete(&key(&k)) {
            Ok(()) => {}
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
            Err(e) => return Err(map_err(name)(e)),
        }
        record.remove(&k);
    }
    for (k, v) in wanted {
        if record.get(k) == Some(v) {
            continue;
        }
        map.update(&key(k), &value(v), MapFlags::ANY)
            .map_err(map_err(name))?;
        record.insert(*k, *v);
    }
    Ok(())
}

/// Bytes of an `lvs_ifmac` value (`struct lvs_ifmac`).
const IFMAC_LEN: usize = 8;

/// tc filter handle and priority of lvsd's program (chosen so as not to clash with the
/// usual `tc filter add ... bpf` defaults of 0/49152).
const TC_HANDLE: u32 = 0x1d5;
const TC_PRIORITY: u32 = 0x1d5;

/// Whether a clsact qdisc exists on the hook's interface: a detach of a filter that is not
/// there fails with ENOENT when the qdisc exists and EINVAL when it does not.
fn qdisc_exists(hook: &mut libbpf_rs::TcHook) -> bool {
    match hook.detach() {
        Ok(()) => true,
        Err(e) => e.kind() == libbpf_rs::ErrorKind::NotFound,
    }
}

/// `lvs_tc_ingress` attached to one interface. It holds the program's descriptor rather than
/// libbpf's hook (which is not `Send`), so that whichever thread stops lvsd can detach it;
/// the hook is made again from the same constants to detach.
#[derive(Debug)]
pub struct TcAttachment {
    prog: std::os::fd::OwnedFd,
    /// The interface.
    pub ifindex: u32,
    /// Whether attaching created the clsact qdisc.
    pub created_qdisc: bool,
}

impl TcAttachment {
    /// Remove the filter, and the clsact qdisc if attaching created it.
    pub fn detach(self) -> Result<(), Error> {
        let err = |e: libbpf_rs::Error| Error::Program {
            program: Prog::TcIngress.name(),
            error: format!("cannot detach from interface {}: {e}", self.ifindex),
        };
        let idx = i32::try_from(self.ifindex).map_err(|_| Error::Program {
            program: Prog::TcIngress.name(),
            error: format!("interface index {} out of range", self.ifindex),
        })?;
        let mut builder = TcHookBuilder::new(self.prog.as_fd());
        builder.ifindex(idx).handle(TC_HANDLE).priority(TC_PRIORITY);
        let mut hook = builder.hook(TC_INGRESS);
        hook.detach().map_err(err)?;
        if self.created_qdisc {
            // Both attach points: libbpf then deletes the clsact qdisc itself.
            hook.attach_point(TC_INGRESS | libbpf_rs::TC_EGRESS);
            hook.destroy().map_err(err)?;
        }
        Ok(())
    }
}

/// The XDP program attached to an interface (native mode): its id, and a descriptor of it
/// if it is an `lvs_xdp` (a predecessor's).
fn present_xdp(idx: i32) -> Option<(u32, Option<std::os::fd::OwnedFd>)> {
    let placeholder = std::fs::File::open("/dev/null").ok()?;
    let previous = libbpf_rs::set_print(None);
    let id = Xdp::new(placeholder.as_fd())
        .query_id(idx, XdpFlags::DRV_MODE)
        .ok()
        .filter(|&id| id != 0);
    libbpf_rs::set_print(previous);
    let id = id?;
    // The kernel keeps 15 bytes of a program's name.
    let ours = libbpf_rs::query::ProgInfoIter::default()
        .find(|p| p.id == id)
        .is_some_and(|p| p.name.to_str() == Some(Prog::Xdp.name()));
    Some((
        id,
        ours.then(|| libbpf_rs::Program::fd_from_id(id).ok())
            .flatten(),
    ))
}

/// Remove a predecessor's `lvs_xdp` from `ifindex` (native mode), if there is one: for a
/// successor that forwards at tc only there, so that no program with the old maps stays in
/// front. Returns whether one was removed.
pub fn remove_predecessor_xdp(ifindex: u32) -> Result<bool, Error> {
    let Ok(idx) = i32::try_from(ifindex) else {
        return Ok(false);
    };
    let Some((_, Some(old))) = present_xdp(idx) else {
        return Ok(false);
    };
    Xdp::new(old.as_fd())
        .detach(idx, XdpFlags::DRV_MODE)
        .map_err(|e| Error::Program {
            program: Prog::Xdp.name(),
            error: format!("cannot remove the previous lvs_xdp from interface {ifindex}: {e}"),
        })?;
    Ok(true)
}

/// `lvs_xdp` attached to one interface (native mode).
#[derive(Debug)]
pub struct XdpAttachment {
    prog: std::os::fd::OwnedFd,
    /// The interface.
    pub ifindex: u32,
}

impl XdpAttachment {
    /// Remove the program, if it is still ours.
    pub fn detach(self) -> Result<(), Error> {
        let err = |e: &dyn fmt::Display| Error::Program {
            program: Prog::Xdp.name(),
            error: format!("cannot detach from interface {}: {e}", self.ifindex),
        };
        let idx = i32::try_from(self.ifindex).map_err(|_| err(&"index out of range"))?;
        let xdp = Xdp::new(self.prog.as_fd());
        // Only our own program: another one put there since is not ours to remove.
        match xdp.query_id(idx, XdpFlags::DRV_MODE) {
            Ok(id) if id != 0 && Some(id) == prog_id(self.prog.as_fd()) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(err(&e)),
        }
        xdp.detach(idx, XdpFlags::DRV_MODE).map_err(|e| err(&e))
    }
}

/// The kernel's id of a program.
fn prog_id(fd: BorrowedFd<'_>) -> Option<u32> {
    libbpf_rs::Program::id_from_fd(fd).ok()
}

fn num_cpus() -> usize {
    libbpf_rs::num_possible_cpus().unwrap_or(1)
}
