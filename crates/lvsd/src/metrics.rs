//! The Prometheus / OpenMetrics endpoint (`--metrics-listen ADDR`, off unless set).
//!
//! `GET /metrics` answers with the OpenMetrics text format (`prometheus-client`'s encoder);
//! `GET /` with a short page pointing there. Each scrape asks the data path for the service
//! table and the director counters through the same channel as the control socket
//! ([`Control::call`]), and reads the per-worker packet counters and the sockets' losses
//! (capture rings, sends: [`crate::losses`]) from [`Shared`]; nothing is
//! kept between scrapes, so `lvsadm -Z` shows up as a counter reset, which Prometheus handles.
//!
//! The server is a plain [`TcpListener`] served by one thread, one connection at a time, with
//! 5 s read/write timeouts. Deliberately no async runtime (axum, hyper, tokio): the data path
//! must not share a runtime, its threads or its scheduling with anything else, and one scrape
//! every few seconds needs no async stack (nor the dozens of crates that come with one).
//!
//! Names follow the Prometheus conventions: an `lvs_` prefix, `_total` on counters, base units
//! (bytes). Labels are low-cardinality: services and real servers, never clients.
//! Services carry `protocol` (`tcp`, `udp`, `sctp`), `vip` and `port`, or `fwmark` and
//! `family` (`ipv4`, `ipv6`) for firewall-mark services; real servers add `real_server`,
//! `real_port` and `method` (`masq`, `route`, `tunnel`, as lvsadm's Forward column).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use lvs_api::{CountersInfo, DestInfo, HealthInfo, Reply, Request, ServiceHealthInfo, ServiceInfo};
// Listings arrive in the protocol's types; ipvsadm's names come from the core's.
use lvs_api::{Family, Rates, ServiceKey, Stats};
use lvs_core::types as core;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tracing::{info, warn};

use crate::control::Control;
use crate::dataplane::Shared;
use crate::losses::SocketTotals;

/// The media type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long one client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// The page served at `/`.
const INDEX: &str = "<!doctype html>\n<html><head><title>lvsd</title></head><body>\n\
<h1>lvsd</h1>\n<p>Metrics of this LVS director: <a href=\"/metrics\">/metrics</a> \
(OpenMetrics text format).</p>\n</body></html>\n";

/// Everything one scrape shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The service table.
    pub services: Vec<ServiceInfo>,
    /// Director-wide counters.
    pub counters: CountersInfo,
    /// Frames received by each data path worker, indexed by worker id.
    pub worker_packets: Vec<u64>,
    /// Each socket's capture ring and send counters, by interface and worker.
    pub sockets: Vec<SocketTotals>,
    /// Checked real servers ([`Request::Health`]); with none, the health families are left
    /// out rather than shown empty.
    pub health_servers: Vec<HealthInfo>,
    /// Services with health settings (quorum, sorry server).
    pub health_services: Vec<ServiceHealthInfo>,
}

/// Bind the metrics listener. Done early so a bad or busy address stops lvsd before it
/// touches the network.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let l = TcpListener::bind(addr).with_context(|| {
        format!("cannot listen for metrics on {addr} (address in use or not local? see --metrics-listen)")
    })?;
    l.set_nonblocking(true)
        .context("cannot make the metrics listener non-blocking")?;
    Ok(l)
}

/// Serve metrics on `listener` in a thread of its own until `stop` is set.
pub fn spawn(
    listener: TcpListener,
    control: Arc<Control>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    if let Ok(a) = listener.local_addr() {
        info!(listen = %a, "serving metrics at http://{a}/metrics");
    }
    std::thread::Builder::new()
        .name("lvsd-metrics".into())
        .spawn(move || {
            serve(listener, &stop, move || {
                snapshot(&control, &shared).map(|s| encode(&s))
            })
        })
        .context("cannot start the metrics thread")
}

/// Ask the data path for the service table and the counters.
pub fn snapshot(control: &Control, shared: &Shared) -> Result<Snapshot, String> {
    let services = match control.call(Request::List) {
        Reply::Services { services, .. } => services,
        Reply::Error { message } => return Err(message),
        other => return Err(format!("unexpected answer to List: {other:?}")),
    };
    let counters = match control.call(Request::Counters) {
        Reply::Counters(c) => c,
        Reply::Error { message } => return Err(message),
        other => return Err(format!("unexpected answer to Counters: {other:?}")),
    };
    // Health is optional: without a health module answering, the scrape goes on without it.
    let (health_servers, health_services) = match control.call(Request::Health) {
        Reply::Health { servers, services } => (servers, services),
        _ => (Vec::new(), Vec::new()),
    };
    let worker_packets = shared
        .worker_packets
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    Ok(Snapshot {
        services,
        counters,
        worker_packets,
        sockets: shared.losses.totals(),
        health_servers,
        health_services,
    })
}

/// Clients answered at once; one more gets a quick 503. Idle or slow clients hold a slot
/// for [`IO_TIMEOUT`] at most, so they cannot keep scrapes waiting.
const MAX_CLIENTS: usize = 8;

/// Accept and answer clients, each on its own thread (at most [`MAX_CLIENTS`]), until
/// `stop` is set. `render` produces the `/metrics` body, or the reason it cannot (answered
/// with 503).
fn serve(
    listener: TcpListener,
    stop: &AtomicBool,
    render: impl Fn() -> Result<String, String> + Send + Sync + 'static,
) {
    let render = Arc::new(render);
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = respond(
                        &mut stream,
                        "503 Service Unavailable\r\nRetry-After: 1",
                        "text/plain",
                        "too many metrics clients at once\n",
                        false,
                    );
                    // Take what the request has sent (a moment at most) so that closing does
                    // not reset the answer.
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
                    let _ = stream.read(&mut [0u8; 1024]);
                    continue;
                }
                let (render, slot) = (
                    Arc::clone(&render),
                    crate::control::Slot(Arc::clone(&active)),
                );
                let spawned = std::thread::Builder::new()
                    .name("lvsd-metrics-client".into())
                    .spawn(move || {
                        let _slot = slot;
                        if let Err(e) = answer(stream, &*render) {
                            warn!(%peer, error = %e, "metrics request failed");
                        }
                    });
                if let Err(e) = spawned {
                    warn!(error = %e, "cannot start a thread for a metrics client");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Read one request head and answer it; the connection is closed afterwards.
fn answer(
    mut stream: TcpStream,
    render: &impl Fn() -> Result<String, String>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    // The whole request head within IO_TIMEOUT, not each read: a client trickling bytes
    // cannot hold its slot longer.
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request head not complete in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
                false,
            );
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut stream,
            "405 Method Not Allowed\r\nAllow: GET, HEAD",
            "text/plain",
            "only GET and HEAD\n",
            false,
        );
    }
    match path {
        "/metrics" => match render() {
            Ok(body) => respond(&mut stream, "200 OK", CONTENT_TYPE, &body, head_only),
            Err(e) => respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                &format!("cannot read the data path's counters: {e}\n"),
                head_only,
            ),
        },
        "/" => respond(
            &mut stream,
            "200 OK",
            "text/html; charset=utf-8",
            INDEX,
            head_only,
        ),
        _ => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            "not found: metrics are at /metrics\n",
            head_only,
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

/// Encode a snapshot in the OpenMetrics text format.
pub fn encode(s: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(s.clone())));
    let mut out = String::with_capacity(4096 + 4096 * s.services.len());
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        // Only a value the format cannot carry gets here; say so in the exposition itself.
        out.clear();
        let _ = writeln!(out, "# EOF");
    }
    out
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        director(&mut enc, s)?;
        services(&mut enc, &s.services)?;
        real_servers(&mut enc, &s.services)?;
        node_ipvs(&mut enc, &s.services)?;
        if !s.health_servers.is_empty() || !s.health_services.is_empty() {
            health(&mut enc, &s.health_servers, &s.health_services)?;
        }
        Ok(())
    }
}

/// One counter family. `name` is the full name without `_total`; with a unit it ends in the
/// unit (`lvs_service_bytes` with [`Unit::Bytes`]).
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> std::fmt::Result {
    let base = match &unit {
        Some(u) => name
            .strip_suffix(u.as_str())
            .and_then(|b| b.strip_suffix('_'))
            .unwrap_or(name),
        None => name,
    };
    let mut m = enc.encode_descriptor(base, help, unit.as_ref(), MetricType::Counter)?;
    let series: Vec<(Labels, u64)> = series.into_iter().collect();
    if let [(labels, v)] = &series[..]
        && labels.is_empty()
    {
        return ConstCounter::new(*v).encode(m);
    }
    for (labels, v) in series {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One gauge family.
fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, i64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    let series: Vec<(Labels, i64)> = series.into_iter().collect();
    if let [(labels, v)] = &series[..]
        && labels.is_empty()
    {
        return ConstGauge::new(*v).encode(m);
    }
    for (labels, v) in series {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge_value(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

fn director(enc: &mut DescriptorEncoder, s: &Snapshot) -> std::fmt::Result {
    let c = &s.counters;
    let none = || Labels::new();
    // With the kernel fast path most frames never reach the core: those it forwarded count
    // as received and forwarded (each frame once: the kernel forwards, or the core sees it).
    let in_kernel: u64 = c
        .kernel
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "nat_in" | "nat_out" | "direct_route" | "tunnel"))
        .map(|(_, v)| *v)
        .sum();
    counters(
        enc,
        "lvs_frames_received",
        "Frames for the director: handed to the forwarding core, or (datapath tc) forwarded by the kernel fast path",
        None,
        [(none(), c.rx_frames + in_kernel)],
    )?;
    counters(
        enc,
        "lvs_frames_forwarded",
        "Frames forwarded to a real server or a client, by the core and (datapath tc) the kernel fast path",
        None,
        [(none(), c.forwarded + in_kernel)],
    )?;
    counters(
        enc,
        "lvs_frames_passed",
        "Frames left to the director's kernel (not virtual-service traffic)",
        None,
        [(none(), c.passed)],
    )?;
    counters(
        enc,
        "lvs_icmp_sent",
        "ICMP errors the director generated (fragmentation needed, packet too big)",
        None,
        [(none(), c.icmp_sent)],
    )?;
    counters(
        enc,
        "lvs_drops",
        "Frames dropped, by reason",
        None,
        c.drops
            .iter()
            .map(|(reason, n)| (vec![("reason", reason.clone())], *n)),
    )?;
    counters(
        enc,
        "lvs_tx_errors",
        "Frames the io layer failed to queue or segment for sending",
        None,
        [(none(), c.tx_errors)],
    )?;
    gauges(
        enc,
        "lvs_frames_held",
        "Frames waiting for their next hop's MAC address (they leave forwarded, or dropped as neighbour_unresolved)",
        [(none(), gauge_value(c.held))],
    )?;
    counters(
        enc,
        "lvs_neighbour_waits",
        "Frames that had to wait for their next hop's MAC address (held while the kernel resolved it)",
        None,
        [(none(), c.held_total)],
    )?;
    counters(
        enc,
        "lvs_embryonic_evicted",
        "Half-open TCP entries (never past SYN_RECV) removed to make room for new connections: the table full or the embryonic limit reached (SYN-flood defence)",
        None,
        [(none(), c.embryonic_evicted)],
    )?;
    if !c.kernel.is_empty() {
        counters(
            enc,
            "lvs_kernel_fast_path",
            "What the kernel fast path (datapath tc) did, by counter: frames seen, forwarded per method, handed to user space, not ours, errors, state changes",
            None,
            c.kernel
                .iter()
                .map(|(name, n)| (vec![("counter", name.clone())], *n)),
        )?;
    }
    gauges(
        enc,
        "lvs_connection_table_entries",
        "Entries in the connection table (connections and persistence templates)",
        [(none(), gauge_value(c.conns))],
    )?;
    gauges(
        enc,
        "lvs_connection_table_capacity",
        "Most entries the connection table holds (--conn-limit)",
        [(none(), gauge_value(c.conn_limit))],
    )?;
    counters(
        enc,
        "lvs_worker_packets",
        "Frames received by each data path worker's sockets, before any filtering",
        None,
        s.worker_packets
            .iter()
            .enumerate()
            .map(|(i, n)| (vec![("worker", i.to_string())], *n)),
    )?;
    sockets(enc, &s.sockets)
}

/// What the AF_PACKET sockets lost: the kernel's capture ring statistics per socket
/// (interface and worker), and the sends per worker (a worker sends every frame through the
/// socket it came in on, whatever interface it leaves by, so sends are not per interface).
fn sockets(enc: &mut DescriptorEncoder, socks: &[SocketTotals]) -> std::fmt::Result {
    let ring = |s: &SocketTotals| {
        vec![
            ("interface", s.interface.clone()),
            ("worker", s.worker.to_string()),
        ]
    };
    for (name, help, value) in [
        (
            "lvs_capture_ring_packets",
            "Frames the kernel offered to a worker's capture ring on an interface, dropped ones included",
            (|s| s.ring_packets) as fn(&SocketTotals) -> u64,
        ),
        (
            "lvs_capture_ring_drops",
            "Frames the kernel dropped because a worker's capture ring was full (raise --rx-frames, or --rx-blocks with --rx-ring v3)",
            |s| s.ring_drops,
        ),
        (
            "lvs_capture_ring_freezes",
            "Times a worker's capture ring froze with every block held by lvsd (--rx-ring v3; always 0 on v2)",
            |s| s.ring_freezes,
        ),
        (
            "lvs_capture_ring_malformed_slots",
            "Capture ring slots skipped because their offsets did not lie inside their block",
            |s| s.ring_malformed,
        ),
    ] {
        counters(
            enc,
            name,
            help,
            None,
            socks.iter().map(|s| (ring(s), value(s))),
        )?;
    }
    let mut workers: Vec<usize> = socks.iter().map(|s| s.worker).collect();
    workers.sort_unstable();
    workers.dedup();
    let sum = |w: usize, f: fn(&SocketTotals) -> u64| -> u64 {
        socks.iter().filter(|s| s.worker == w).map(f).sum()
    };
    let worker = |w: usize| vec![("worker", w.to_string())];
    counters(
        enc,
        "lvs_socket_tx_frames",
        "Frames the kernel accepted from a worker's sends (sendmmsg)",
        None,
        workers.iter().map(|&w| (worker(w), sum(w, |s| s.tx_sent))),
    )?;
    counters(
        enc,
        "lvs_socket_tx_drops",
        "Frames a worker's sends lost, by errno: enobufs (qdisc or device queue full), eagain (socket send buffer full), error (any other)",
        None,
        workers.iter().flat_map(|&w| {
            [
                ("enobufs", sum(w, |s| s.tx_enobufs)),
                ("eagain", sum(w, |s| s.tx_eagain)),
                ("error", sum(w, |s| s.tx_errors)),
            ]
            .map(|(reason, n)| (with(worker(w), "reason", reason), n))
        }),
    )
}

/// The family node_exporter's `ipvs` collector exports for kernel IPVS, with its names,
/// types, help texts and labels, so that dashboards and alerts written for it work unchanged:
/// totals over the services (from `/proc/net/ip_vs_stats` there; here summed over the
/// services configured now, so a deleted service's share leaves them), and per real server
/// (`local_address`, `local_port`, `remote_address`, `remote_port`, `proto` as IPVS prints
/// it, `local_mark` for firewall-mark services with an empty address and port 0, as the
/// collector does), with rows of identical labels summed as the collector sums them.
fn node_ipvs(enc: &mut DescriptorEncoder, svcs: &[ServiceInfo]) -> std::fmt::Result {
    let mut total = Stats::default();
    for s in svcs {
        // Saturating: a counter must never go back.
        let t = &s.stats;
        total.conns = total.conns.saturating_add(t.conns);
        total.inpkts = total.inpkts.saturating_add(t.inpkts);
        total.outpkts = total.outpkts.saturating_add(t.outpkts);
        total.inbytes = total.inbytes.saturating_add(t.inbytes);
        total.outbytes = total.outbytes.saturating_add(t.outbytes);
    }
    let none = || Labels::new();
    for (name, help, v) in [
        (
            "node_ipvs_connections",
            "The total number of connections made.",
            total.conns,
        ),
        (
            "node_ipvs_incoming_packets",
            "The total number of incoming packets.",
            total.inpkts,
        ),
        (
            "node_ipvs_outgoing_packets",
            "The total number of outgoing packets.",
            total.outpkts,
        ),
        (
            "node_ipvs_incoming_bytes",
            "The total amount of incoming data.",
            total.inbytes,
        ),
        (
            "node_ipvs_outgoing_bytes",
            "The total amount of outgoing data.",
            total.outbytes,
        ),
    ] {
        counters(enc, name, help, None, [(none(), v)])?;
    }
    // (active, inactive, weight) per label set.
    let mut rows: std::collections::BTreeMap<Labels, (u64, u64, u64)> =
        std::collections::BTreeMap::new();
    for s in svcs {
        let (addr, port, proto, mark) = match s.config.key {
            ServiceKey::Addr { proto, addr, port } => (
                addr.to_string(),
                port,
                core::Protocol::from(proto).name().to_ascii_uppercase(),
                String::new(),
            ),
            ServiceKey::Fwmark { mark, .. } => {
                (String::new(), 0, "FWM".to_string(), mark.to_string())
            }
        };
        for d in &s.dests {
            let labels = vec![
                ("local_address", addr.clone()),
                ("local_port", port.to_string()),
                ("remote_address", d.config.addr.to_string()),
                ("remote_port", d.config.port.to_string()),
                ("proto", proto.clone()),
                ("local_mark", mark.clone()),
            ];
            let e = rows.entry(labels).or_default();
            e.0 = e.0.saturating_add(u64::from(d.active));
            e.1 = e.1.saturating_add(u64::from(d.inactive));
            e.2 = e.2.saturating_add(u64::from(d.config.weight));
        }
    }
    gauges(
        enc,
        "node_ipvs_backend_connections_active",
        "The current active connections by local and remote address.",
        rows.iter().map(|(l, v)| (l.clone(), gauge_value(v.0))),
    )?;
    gauges(
        enc,
        "node_ipvs_backend_connections_inactive",
        "The current inactive connections by local and remote address.",
        rows.iter().map(|(l, v)| (l.clone(), gauge_value(v.1))),
    )?;
    gauges(
        enc,
        "node_ipvs_backend_weight",
        "The current backend weight by local and remote address.",
        rows.iter().map(|(l, v)| (l.clone(), gauge_value(v.2))),
    )
}

/// Labels of a service.
pub fn service_labels(key: &ServiceKey) -> Labels {
    match *key {
        ServiceKey::Addr { proto, addr, port } => vec![
            (
                "protocol",
                core::Protocol::from(proto).name().to_ascii_lowercase(),
            ),
            ("vip", addr.to_string()),
            ("port", port.to_string()),
        ],
        ServiceKey::Fwmark { mark, family } => vec![
            ("fwmark", mark.to_string()),
            (
                "family",
                match family {
                    Family::V4 => "ipv4",
                    Family::V6 => "ipv6",
                }
                .to_string(),
            ),
        ],
    }
}

/// Labels of a real server of a service.
pub fn real_server_labels(key: &ServiceKey, d: &DestInfo) -> Labels {
    let mut l = service_labels(key);
    l.push(("real_server", d.config.addr.to_string()));
    l.push(("real_port", d.config.port.to_string()));
    l.push((
        "method",
        core::ForwardMethod::from(d.config.method)
            .name()
            .to_ascii_lowercase(),
    ));
    l
}

fn with(mut l: Labels, k: &'static str, v: &str) -> Labels {
    l.push((k, v.to_string()));
    l
}

/// The traffic and rate families of one kind of object (`lvs_service_*` or
/// `lvs_real_server_*`).
fn traffic(
    enc: &mut DescriptorEncoder,
    prefix: &str,
    what: &str,
    rows: &[(Labels, Stats, Rates)],
) -> std::fmt::Result {
    let dir2 = |f: fn(&Stats) -> (u64, u64)| {
        rows.iter().flat_map(move |(l, s, _)| {
            let (i, o) = f(s);
            [
                (with(l.clone(), "direction", "in"), i),
                (with(l.clone(), "direction", "out"), o),
            ]
        })
    };
    let rate2 = |f: fn(&Rates) -> (u64, u64)| {
        rows.iter().flat_map(move |(l, _, r)| {
            let (i, o) = f(r);
            [
                (with(l.clone(), "direction", "in"), gauge_value(i)),
                (with(l.clone(), "direction", "out"), gauge_value(o)),
            ]
        })
    };
    counters(
        enc,
        &format!("{prefix}_connections"),
        &format!("Connections scheduled to the {what}"),
        None,
        rows.iter().map(|(l, s, _)| (l.clone(), s.conns)),
    )?;
    counters(
        enc,
        &format!("{prefix}_packets"),
        &format!(
            "Packets of the {what}: in = client to real server, out = real server to client \
             (through the director: NAT only)"
        ),
        None,
        dir2(|s| (s.inpkts, s.outpkts)),
    )?;
    counters(
        enc,
        &format!("{prefix}_bytes"),
        &format!("IP bytes of the {what}, by direction as for packets"),
        Some(Unit::Bytes),
        dir2(|s| (s.inbytes, s.outbytes)),
    )?;
    gauges(
        enc,
        &format!("{prefix}_estimated_connections_per_second"),
        &format!("New connections per second to the {what} (IPVS estimator: 2 s, EWMA 1/4)"),
        rows.iter().map(|(l, _, r)| (l.clone(), gauge_value(r.cps))),
    )?;
    gauges(
        enc,
        &format!("{prefix}_estimated_packets_per_second"),
        &format!("Packets per second of the {what} (IPVS estimator)"),
        rate2(|r| (r.inpps, r.outpps)),
    )?;
    gauges(
        enc,
        &format!("{prefix}_estimated_bytes_per_second"),
        &format!("Bytes per second of the {what} (IPVS estimator)"),
        rate2(|r| (r.inbps, r.outbps)),
    )
}

fn services(enc: &mut DescriptorEncoder, svcs: &[ServiceInfo]) -> std::fmt::Result {
    {
        let mut m = enc.encode_descriptor(
            "lvs_service",
            "A virtual service and its scheduler",
            None,
            MetricType::Info,
        )?;
        for s in svcs {
            let labels = service_labels(&s.config.key);
            let sched = [(
                "scheduler",
                core::SchedulerKind::from(s.config.scheduler).name(),
            )];
            m.encode_family(&labels)?.encode_info(&sched)?;
        }
    }
    gauges(
        enc,
        "lvs_service_real_servers",
        "Real servers of the service",
        svcs.iter()
            .map(|s| (service_labels(&s.config.key), gauge_value(s.dests.len()))),
    )?;
    let rows: Vec<(Labels, Stats, Rates)> = svcs
        .iter()
        .map(|s| (service_labels(&s.config.key), s.stats, s.rates))
        .collect();
    traffic(enc, "lvs_service", "service", &rows)
}

fn real_servers(enc: &mut DescriptorEncoder, svcs: &[ServiceInfo]) -> std::fmt::Result {
    let all: Vec<(Labels, &DestInfo)> = svcs
        .iter()
        .flat_map(|s| {
            s.dests
                .iter()
                .map(|d| (real_server_labels(&s.config.key, d), d))
        })
        .collect();
    let rows: Vec<(Labels, Stats, Rates)> = all
        .iter()
        .map(|(l, d)| (l.clone(), d.stats, d.rates))
        .collect();
    traffic(enc, "lvs_real_server", "real server", &rows)?;
    let per = |f: fn(&DestInfo) -> i64| all.iter().map(move |(l, d)| (l.clone(), f(d)));
    gauges(
        enc,
        "lvs_real_server_active_connections",
        "Connections in TCP ESTABLISHED (ipvsadm's ActiveConn)",
        per(|d| i64::from(d.active)),
    )?;
    gauges(
        enc,
        "lvs_real_server_inactive_connections",
        "Connections in any other state, UDP included (ipvsadm's InActConn)",
        per(|d| i64::from(d.inactive)),
    )?;
    gauges(
        enc,
        "lvs_real_server_persistent_connections",
        "Persistence templates pointing at the real server",
        per(|d| i64::from(d.persistent)),
    )?;
    gauges(
        enc,
        "lvs_real_server_weight",
        "Scheduling weight (0 = quiescent: no new connections)",
        per(|d| i64::from(d.config.weight)),
    )?;
    gauges(
        enc,
        "lvs_real_server_overloaded",
        "1 while the real server is over its upper connection threshold",
        per(|d| i64::from(d.overloaded)),
    )
}

/// The health families. Real servers carry the service labels, `real_server` and `real_port`
/// but no `method`: a server that failed its check without `inhibit_on_failure` is out of
/// the service table, and is shown all the same (join with `ignoring(method)`).
fn health(
    enc: &mut DescriptorEncoder,
    servers: &[HealthInfo],
    svcs: &[ServiceHealthInfo],
) -> std::fmt::Result {
    let rows: Vec<(Labels, &HealthInfo)> = servers
        .iter()
        .map(|h| {
            let mut l = service_labels(&h.key);
            l.push(("real_server", h.addr.to_string()));
            l.push(("real_port", h.port.to_string()));
            (l, h)
        })
        .collect();
    let per = |f: fn(&HealthInfo) -> Option<i64>| {
        rows.iter()
            .filter_map(move |(l, h)| f(h).map(|v| (l.clone(), v)))
    };
    gauges(
        enc,
        "lvs_real_server_up",
        "1 when the health checker considers the real server up, 0 when down",
        per(|h| Some(i64::from(h.up))),
    )?;
    gauges(
        enc,
        "lvs_real_server_last_check_success",
        "1 when the real server's last health check passed, 0 when it failed (absent before the first)",
        per(|h| h.last_ok.map(i64::from)),
    )?;
    gauges(
        enc,
        "lvs_real_server_last_check_timestamp_seconds",
        "Unix time of the real server's last health check",
        per(|h| h.last_at.map(gauge_value)),
    )?;
    gauges(
        enc,
        "lvs_real_server_health_state_change_timestamp_seconds",
        "Unix time at which the real server entered its current health state",
        per(|h| Some(gauge_value(h.since))),
    )?;
    counters(
        enc,
        "lvs_real_server_health_checks",
        "Health checks run against the real server",
        None,
        rows.iter().map(|(l, h)| (l.clone(), h.checks)),
    )?;
    counters(
        enc,
        "lvs_real_server_health_check_failures",
        "Health checks of the real server that failed",
        None,
        rows.iter().map(|(l, h)| (l.clone(), h.failures)),
    )?;
    gauges(
        enc,
        "lvs_service_quorum_up",
        "1 while the service's up real servers reach its quorum, 0 when the quorum is lost",
        svcs.iter()
            .map(|s| (service_labels(&s.key), i64::from(s.quorum_up))),
    )?;
    gauges(
        enc,
        "lvs_service_sorry_server_active",
        "1 while the service's sorry server takes the traffic",
        svcs.iter()
            .map(|s| (service_labels(&s.key), i64::from(s.sorry_active))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_core::service::{DestConfig, ServiceConfig};
    use lvs_core::types::{ForwardMethod, Protocol, SchedulerKind};
    use std::collections::BTreeMap;
    use std::process::{Command, Stdio};

    fn stats(n: u64) -> Stats {
        Stats {
            conns: n,
            inpkts: n * 10,
            outpkts: n * 8,
            inbytes: n * 1000,
            outbytes: n * 9000,
        }
    }

    fn dest(addr: &str, port: u16, method: ForwardMethod, n: u64) -> DestInfo {
        DestInfo {
            config: (DestConfig::new(addr.parse().unwrap(), port, method).with_weight(3)).into(),
            active: 2,
            inactive: 5,
            persistent: 1,
            overloaded: true,
            stats: stats(n),
            rates: Rates {
                cps: n,
                inpps: n * 2,
                outpps: n * 3,
                inbps: n * 4,
                outbps: n * 5,
            },
        }
    }

    fn tcp_key() -> ServiceKey {
        ServiceKey::Addr {
            proto: Protocol::Tcp.into(),
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        }
    }

    fn fwm_key() -> ServiceKey {
        ServiceKey::Fwmark {
            mark: 7,
            family: Family::V6,
        }
    }

    fn health_info(addr: &str, up: bool, last_ok: Option<bool>) -> HealthInfo {
        HealthInfo {
            key: tcp_key(),
            addr: addr.parse().unwrap(),
            port: 8080,
            check: format!("tcp connect {addr}:8080"),
            up,
            since: 1_700_000_000,
            last_ok,
            last: "connection refused".into(),
            last_at: last_ok.map(|_| 1_700_000_100),
            checks: 12,
            failures: 3,
            weight: u32::from(up),
            listed: up,
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            services: vec![
                ServiceInfo {
                    config: ServiceConfig::new(tcp_key().into())
                        .with_scheduler(SchedulerKind::Rr)
                        .into(),
                    stats: stats(3),
                    rates: Rates {
                        cps: 11,
                        inpps: 12,
                        outpps: 13,
                        inbps: 14,
                        outbps: 15,
                    },
                    dests: vec![
                        dest("10.0.1.2", 8080, ForwardMethod::Masq, 1),
                        dest("10.0.1.3", 8080, ForwardMethod::Masq, 2),
                    ],
                },
                ServiceInfo {
                    config: ServiceConfig::new(fwm_key().into()).into(),
                    stats: stats(4),
                    rates: Rates::default(),
                    dests: vec![dest("2001:db8::5", 0, ForwardMethod::DirectRoute, 4)],
                },
            ],
            counters: CountersInfo {
                rx_frames: 100,
                forwarded: 90,
                passed: 7,
                icmp_sent: 1,
                conns: 42,
                conn_limit: 4096,
                drops: vec![("malformed".into(), 2), ("no_route".into(), 0)],
                tx_errors: 3,
                held: 5,
                held_total: 9,
                embryonic_evicted: 0,
                datapath: "tc".into(),
                kernel: vec![("nat_in".into(), 11), ("to_user".into(), 4)],
            },
            worker_packets: vec![60, 45],
            sockets: vec![
                SocketTotals {
                    worker: 0,
                    interface: "eth0".into(),
                    ring_packets: 1000,
                    ring_drops: 17,
                    ring_freezes: 2,
                    ring_malformed: 1,
                    tx_sent: 800,
                    tx_enobufs: 4,
                    tx_eagain: 5,
                    tx_errors: 6,
                },
                SocketTotals {
                    worker: 0,
                    interface: "eth1".into(),
                    tx_sent: 20,
                    tx_errors: 1,
                    ..SocketTotals::default()
                },
                SocketTotals {
                    worker: 1,
                    interface: "eth0".into(),
                    ring_packets: 30,
                    ..SocketTotals::default()
                },
            ],
            health_servers: vec![health_info("10.0.1.2", true, Some(true)), {
                let mut h = health_info("10.0.1.3", false, None);
                h.listed = false;
                h
            }],
            health_services: vec![ServiceHealthInfo {
                key: tcp_key(),
                quorum: 2,
                hysteresis: 0,
                quorum_up: false,
                weight_sum: 1,
                sorry_server: Some("10.0.9.9:80".into()),
                sorry_active: true,
            }],
        }
    }

    /// Parse with the reference parser (scripts/parse-metrics.py); sample key → value.
    fn parse(text: &str) -> Option<BTreeMap<String, f64>> {
        let Some(py) = lvs_testkit::metrics_parser_python() else {
            let why = "Python's prometheus_client is not installed (scripts/install-deps.sh)";
            lvs_testkit::skip("metrics exposition checks", why);
            return None;
        };
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/parse-metrics.py"
        );
        let mut child = Command::new(py)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the parser");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the OpenMetrics parser refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = BTreeMap::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let (k, v) = line.rsplit_once(' ').expect("KEY VALUE");
            assert!(
                m.insert(k.to_string(), v.parse().unwrap()).is_none(),
                "duplicate sample {k}"
            );
        }
        Some(m)
    }

    const TCP: &str = r#"port="80",protocol="tcp",vip="10.0.0.1""#;
    const RS1: &str = r#"method="masq",port="80",protocol="tcp",real_port="8080",real_server="10.0.1.2",vip="10.0.0.1""#;
    const FWM_RS: &str =
        r#"family="ipv6",fwmark="7",method="route",real_port="0",real_server="2001:db8::5""#;

    #[test]
    fn snapshot_encodes_and_parses() {
        let text = encode(&sample());
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE lvs_service_bytes counter\n# UNIT lvs_service_bytes bytes\n")
        );
        assert!(
            text.contains(&format!(
                "lvs_service_info{{{}}} 1",
                r#"scheduler="rr",protocol="tcp",vip="10.0.0.1",port="80""#
            )),
            "{text}"
        );
        let Some(m) = parse(&text) else { return };
        let get = |k: &str| {
            *m.get(k)
                .unwrap_or_else(|| panic!("no sample {k} in\n{text}"))
        };
        // Director.
        // 100 to the core (90 forwarded), 11 forwarded by the kernel.
        assert_eq!(get("lvs_frames_received_total"), 111.0);
        assert_eq!(get("lvs_frames_forwarded_total"), 101.0);
        assert_eq!(get("lvs_frames_passed_total"), 7.0);
        assert_eq!(get("lvs_icmp_sent_total"), 1.0);
        assert_eq!(get(r#"lvs_drops_total{reason="malformed"}"#), 2.0);
        assert_eq!(get(r#"lvs_drops_total{reason="no_route"}"#), 0.0);
        assert_eq!(get("lvs_tx_errors_total"), 3.0);
        assert_eq!(get("lvs_frames_held"), 5.0);
        assert_eq!(get("lvs_neighbour_waits_total"), 9.0);
        assert_eq!(get(r#"lvs_kernel_fast_path_total{counter="nat_in"}"#), 11.0);
        assert_eq!(get("lvs_connection_table_entries"), 42.0);
        assert_eq!(get("lvs_connection_table_capacity"), 4096.0);
        assert_eq!(get(r#"lvs_worker_packets_total{worker="0"}"#), 60.0);
        assert_eq!(get(r#"lvs_worker_packets_total{worker="1"}"#), 45.0);
        // Capture rings per socket, sends per worker (over its sockets).
        let expected = r#"
lvs_capture_ring_packets_total{interface="eth0",worker="0"} 1000
lvs_capture_ring_drops_total{interface="eth0",worker="0"} 17
lvs_capture_ring_freezes_total{interface="eth0",worker="0"} 2
lvs_capture_ring_malformed_slots_total{interface="eth0",worker="0"} 1
lvs_capture_ring_packets_total{interface="eth0",worker="1"} 30
lvs_capture_ring_drops_total{interface="eth1",worker="0"} 0
lvs_socket_tx_frames_total{worker="0"} 820
lvs_socket_tx_frames_total{worker="1"} 0
lvs_socket_tx_drops_total{reason="enobufs",worker="0"} 4
lvs_socket_tx_drops_total{reason="eagain",worker="0"} 5
lvs_socket_tx_drops_total{reason="error",worker="0"} 7
lvs_socket_tx_drops_total{reason="error",worker="1"} 0"#;
        for (k, v) in expected.lines().filter_map(|l| l.rsplit_once(' ')) {
            assert_eq!(get(k).to_string(), v, "{k}");
        }
        // Services.
        assert_eq!(get(&format!("lvs_service_connections_total{{{TCP}}}")), 3.0);
        assert_eq!(
            get(&format!(
                r#"lvs_service_packets_total{{direction="in",{TCP}}}"#
            )),
            30.0
        );
        assert_eq!(
            get(&format!(
                r#"lvs_service_bytes_total{{direction="out",{TCP}}}"#
            )),
            27000.0
        );
        assert_eq!(
            get(&format!(
                "lvs_service_estimated_connections_per_second{{{TCP}}}"
            )),
            11.0
        );
        assert_eq!(
            get(&format!(
                r#"lvs_service_estimated_bytes_per_second{{direction="out",{TCP}}}"#
            )),
            15.0
        );
        assert_eq!(get(&format!("lvs_service_real_servers{{{TCP}}}")), 2.0);
        // node_exporter's ipvs family: totals over both services (3 + 4 connections).
        assert_eq!(get("node_ipvs_connections_total"), 7.0);
        assert_eq!(get("node_ipvs_incoming_packets_total"), 70.0);
        assert_eq!(get("node_ipvs_outgoing_packets_total"), 56.0);
        assert_eq!(get("node_ipvs_incoming_bytes_total"), 7000.0);
        assert_eq!(get("node_ipvs_outgoing_bytes_total"), 63000.0);
        let backend = r#"local_address="10.0.0.1",local_mark="",local_port="80",proto="TCP",remote_address="10.0.1.2",remote_port="8080""#;
        assert_eq!(
            get(&format!(
                "node_ipvs_backend_connections_active{{{backend}}}"
            )),
            2.0
        );
        assert_eq!(
            get(&format!(
                "node_ipvs_backend_connections_inactive{{{backend}}}"
            )),
            5.0
        );
        assert_eq!(get(&format!("node_ipvs_backend_weight{{{backend}}}")), 3.0);
        let fwm = r#"local_address="",local_mark="7",local_port="0",proto="FWM",remote_address="2001:db8::5",remote_port="0""#;
        assert_eq!(get(&format!("node_ipvs_backend_weight{{{fwm}}}")), 3.0);
        assert!(
            text.contains("# TYPE node_ipvs_backend_weight gauge\n")
                && text.contains("# TYPE node_ipvs_connections counter\n"),
            "{text}"
        );
        assert_eq!(
            get(r#"lvs_service_connections_total{family="ipv6",fwmark="7"}"#),
            4.0
        );
        // Real servers.
        assert_eq!(
            get(&format!("lvs_real_server_connections_total{{{RS1}}}")),
            1.0
        );
        assert_eq!(
            get(&format!(
                r#"lvs_real_server_packets_total{{direction="out",{RS1}}}"#
            )),
            8.0
        );
        assert_eq!(
            get(&format!(
                r#"lvs_real_server_bytes_total{{direction="in",{RS1}}}"#
            )),
            1000.0
        );
        assert_eq!(
            get(&format!(
                r#"lvs_real_server_estimated_packets_per_second{{direction="out",{RS1}}}"#
            )),
            3.0
        );
        assert_eq!(
            get(&format!("lvs_real_server_active_connections{{{RS1}}}")),
            2.0
        );
        assert_eq!(
            get(&format!("lvs_real_server_inactive_connections{{{RS1}}}")),
            5.0
        );
        assert_eq!(
            get(&format!("lvs_real_server_persistent_connections{{{RS1}}}")),
            1.0
        );
        assert_eq!(get(&format!("lvs_real_server_weight{{{RS1}}}")), 3.0);
        assert_eq!(get(&format!("lvs_real_server_overloaded{{{RS1}}}")), 1.0);
        assert_eq!(
            get(&format!("lvs_real_server_connections_total{{{FWM_RS}}}")),
            4.0
        );
        // Health: no method label (a removed server is still shown).
        let h1 =
            r#"port="80",protocol="tcp",real_port="8080",real_server="10.0.1.2",vip="10.0.0.1""#;
        let h2 = h1.replace("10.0.1.2", "10.0.1.3");
        assert_eq!(get(&format!("lvs_real_server_up{{{h1}}}")), 1.0);
        assert_eq!(get(&format!("lvs_real_server_up{{{h2}}}")), 0.0);
        assert_eq!(
            get(&format!("lvs_real_server_last_check_success{{{h1}}}")),
            1.0
        );
        assert!(!m.contains_key(&format!("lvs_real_server_last_check_success{{{h2}}}")));
        assert_eq!(
            get(&format!(
                "lvs_real_server_last_check_timestamp_seconds{{{h1}}}"
            )),
            1_700_000_100.0
        );
        assert_eq!(
            get(&format!(
                "lvs_real_server_health_state_change_timestamp_seconds{{{h2}}}"
            )),
            1_700_000_000.0
        );
        assert_eq!(
            get(&format!("lvs_real_server_health_checks_total{{{h1}}}")),
            12.0
        );
        assert_eq!(
            get(&format!(
                "lvs_real_server_health_check_failures_total{{{h2}}}"
            )),
            3.0
        );
        assert_eq!(get(&format!("lvs_service_quorum_up{{{TCP}}}")), 0.0);
        assert_eq!(
            get(&format!("lvs_service_sorry_server_active{{{TCP}}}")),
            1.0
        );
    }

    #[test]
    fn empty_snapshot_parses_and_health_is_absent_without_a_checker() {
        let s = Snapshot::default();
        let text = encode(&s);
        assert!(!text.contains("lvs_real_server_up"), "{text}");
        let Some(m) = parse(&text) else { return };
        assert_eq!(m["lvs_frames_received_total"], 0.0);
        assert_eq!(m["lvs_connection_table_capacity"], 0.0);
    }

    #[test]
    fn huge_values_do_not_break_the_exposition() {
        let mut s = sample();
        s.counters.conn_limit = usize::MAX;
        s.services[0].stats.inbytes = u64::MAX;
        let text = encode(&s);
        assert!(
            text.contains("lvs_connection_table_capacity 9223372036854775807"),
            "{text}"
        );
        assert!(text.contains(&format!("{}", u64::MAX)), "{text}");
    }

    /// Every `lvs_*` name the sample dashboard queries is one this module exports.
    #[test]
    fn grafana_dashboard_uses_exported_names() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/grafana-dashboard.json"
        );
        let dash = std::fs::read_to_string(path).expect("docs/grafana-dashboard.json");
        let v: serde_json::Value = serde_json::from_str(&dash).expect("valid JSON");
        assert!(v["panels"].as_array().is_some_and(|p| p.len() >= 6));
        let text = encode(&sample());
        let mut names = 0;
        for (i, _) in dash.match_indices("lvs_") {
            let name: String = dash[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "lvs_" || dash[..i].ends_with(|c: char| c.is_ascii_alphanumeric()) {
                continue;
            }
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{name}{{"))
                        || l.starts_with(&format!("{name} "))),
                "the dashboard queries {name}, which lvsd does not export"
            );
            names += 1;
        }
        assert!(names >= 15, "{names}");
    }

    fn http(addr: SocketAddr, request: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn http_endpoint_answers_metrics_index_404_405_and_503() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let fail = Arc::new(AtomicBool::new(false));
        let server = {
            let (stop, fail) = (Arc::clone(&stop), Arc::clone(&fail));
            std::thread::spawn(move || {
                serve(listener, &stop, move || {
                    if fail.load(Ordering::Relaxed) {
                        Err("the data path did not answer in 10 s".into())
                    } else {
                        Ok(encode(&sample()))
                    }
                })
            })
        };
        let ok = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("lvs_frames_received_total 111\n") && body.ends_with("# EOF\n"));

        let head_only = http(addr, "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert!(head_only.starts_with("HTTP/1.1 200 OK") && head_only.ends_with("\r\n\r\n"));
        let index = http(addr, "GET / HTTP/1.1\r\n\r\n");
        assert!(index.starts_with("HTTP/1.1 200 OK") && index.contains("href=\"/metrics\""));
        assert!(http(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let post = http(addr, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD"));
        fail.store(true, Ordering::Relaxed);
        let down = http(addr, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(
            down.starts_with("HTTP/1.1 503 ") && down.contains("did not answer"),
            "{down}"
        );
        // Clients that never send their request hold a slot each (for IO_TIMEOUT at most),
        // not the server: a scrape meanwhile is answered at once.
        let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let t = std::time::Instant::now();
        assert!(http(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(
            t.elapsed() < IO_TIMEOUT,
            "a scrape waited for idle clients: {:?}",
            t.elapsed()
        );
        // One client more than the slots: told so at once.
        let more: Vec<TcpStream> = (0..MAX_CLIENTS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let busy = http(addr, "GET / HTTP/1.1\r\n\r\n");
        assert!(busy.starts_with("HTTP/1.1 503 "), "{busy}");
        drop((idle, more));

        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    }
}
