//! Handing the connections over to the next lvsd on the user-space data path.
//!
//! With `--keep-forwarding-on-exit` (the shipped systemd unit sets it) a stop on `afpacket`
//! leaves the steering table in place, so that no client segment reaches the director's own
//! kernel (which would answer it with a RST) while no lvsd runs, and writes what the next
//! lvsd needs beside the control socket: the steering entries and every connection. The next
//! lvsd installs those entries at start instead of an empty table, and takes each connection
//! over ([`Director::adopt`]) once its service and real server are configured again (from
//! the file or by `lvsadm`); until then the connection's packets are dropped, not reset, and
//! the client retransmits. Connections still waiting after [`WAIT`] are given up, and the
//! inherited entries leave with them. Persistence templates are not handed over.
//!
//! The file is text, one record per line, read once and removed; a line that does not
//! parse is skipped and counted.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lvs_core::conn::TcpState;
use lvs_core::director::{AdoptError, Adoptee};
use lvs_core::types::{ForwardMethod, Protocol};
use lvs_core::{Director, Time};
use tracing::{info, warn};

use crate::steering::Spec;

/// How long handed-over connections may wait for their service after the start.
pub const WAIT: Duration = Duration::from_secs(30);

const MAGIC: &str = "lvsd-handover 1";

/// Where the handover of the lvsd serving `socket` lives.
pub fn path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".handover");
    PathBuf::from(name)
}

/// A connection as handed over: the adoptee, and how long it had left to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handed {
    /// The connection (its `seen` is set at adoption).
    pub conn: Adoptee,
    /// Time to live left at the stop.
    pub remaining: Duration,
}

/// What a stopped lvsd left for the next one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handover {
    /// Its steering entries (`local` is the new lvsd's own).
    pub spec: Spec,
    /// Its connections.
    pub conns: Vec<Handed>,
    /// Lines that did not parse.
    pub bad_lines: usize,
}

fn proto_of(n: &str) -> Option<Protocol> {
    Protocol::from_number(n.parse().ok()?)
}

fn method_of(name: &str) -> Option<ForwardMethod> {
    [
        ForwardMethod::Masq,
        ForwardMethod::DirectRoute,
        ForwardMethod::Tunnel,
    ]
    .into_iter()
    .find(|m| m.name() == name)
}

fn state_of(name: &str) -> Option<TcpState> {
    (0..lvs_core::conn::state::TCP_STATES)
        .filter_map(TcpState::from_index)
        .find(|s| s.name() == name)
}

/// Milliseconds since the Unix epoch, by the wall clock (the one clock two processes share).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn spec_lines(s: &mut String, spec: &Spec) {
    for (p, a, port) in &spec.services {
        let _ = writeln!(s, "svc {} {a} {port}", p.number());
    }
    for (p, a, port) in &spec.nat_replies {
        let _ = writeln!(s, "nat {} {a} {port}", p.number());
    }
}

fn conn_line(s: &mut String, a: &Adoptee, remaining: Duration) {
    let _ = writeln!(
        s,
        "conn {} {} {} {} {} {} {} {} {} {} {}",
        a.proto.number(),
        a.client.0,
        a.client.1,
        a.vip.0,
        a.vip.1,
        a.dest.0,
        a.dest.1.unwrap_or(a.vip.1),
        a.method.name(),
        a.state.name(),
        u8::from(a.no_output),
        remaining.as_millis(),
    );
}

/// The text of the handover of `director` at `now` (its steering `spec`), with the
/// connections a predecessor handed over that are still waiting (`pending`).
pub fn render(director: &Director, spec: &Spec, pending: Option<&Pending>, now: Time) -> String {
    let mut s = format!("{MAGIC}\nat {}\n", wall_ms());
    spec_lines(&mut s, spec);
    for (_, c) in director.conns().iter().filter(|(_, c)| !c.is_template()) {
        let a = Adoptee {
            proto: c.proto,
            client: (c.caddr, c.cport),
            vip: (c.vaddr, c.vport),
            dest: (c.daddr, Some(c.dport)),
            method: c.method,
            state: c.state,
            no_output: c.flags.has(lvs_core::conn::ConnFlags::NO_OUTPUT),
            seen: now,
        };
        conn_line(&mut s, &a, c.remaining(now));
    }
    if let Some(p) = pending.filter(|p| p.active()) {
        spec_lines(&mut s, &p.spec);
        let waited = now.saturating_since(p.since);
        for h in &p.conns {
            let left = h.remaining.saturating_sub(waited);
            if !left.is_zero() {
                conn_line(&mut s, &h.conn, left);
            }
        }
    }
    s
}

/// Parse a handover's text.
pub fn parse(text: &str) -> Result<Handover> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        bail!("not an lvsd handover (version 1)");
    }
    let mut h = Handover::default();
    let mut written = None;
    for line in lines {
        if let Some(ms) = line.strip_prefix("at ") {
            written = ms.parse::<u64>().ok();
            if written.is_none() {
                h.bad_lines += 1;
            }
        } else if parse_line(line, &mut h).is_none() {
            h.bad_lines += 1;
        }
    }
    // The time no lvsd ran counts against every connection's remaining life.
    if let Some(at) = written {
        let down = Duration::from_millis(wall_ms().saturating_sub(at));
        h.conns.retain_mut(|c| {
            c.remaining = c.remaining.saturating_sub(down);
            !c.remaining.is_zero()
        });
    }
    Ok(h)
}

fn parse_line(line: &str, h: &mut Handover) -> Option<()> {
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["svc", p, a, port] => {
            h.spec
                .services
                .insert((proto_of(p)?, a.parse().ok()?, port.parse().ok()?));
        }
        ["nat", p, a, port] => {
            h.spec
                .nat_replies
                .insert((proto_of(p)?, a.parse().ok()?, port.parse().ok()?));
        }
        ["conn", p, ca, cp, va, vp, da, dp, m, st, no_out, ms] => {
            let method = method_of(m)?;
            let dport: u16 = dp.parse().ok()?;
            h.conns.push(Handed {
                conn: Adoptee {
                    proto: proto_of(p)?,
                    client: (ca.parse().ok()?, cp.parse().ok()?),
                    vip: (va.parse().ok()?, vp.parse().ok()?),
                    dest: (
                        da.parse::<IpAddr>().ok()?,
                        (method == ForwardMethod::Masq).then_some(dport),
                    ),
                    method,
                    state: state_of(st)?,
                    no_output: match *no_out {
                        "0" => false,
                        "1" => true,
                        _ => return None,
                    },
                    seen: Time::ZERO,
                },
                remaining: Duration::from_millis(ms.parse().ok()?),
            });
        }
        _ => return None,
    }
    Some(())
}

/// Write the handover (replacing any), readable by root only.
pub fn write(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("handover.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Read and remove the handover a predecessor left, if any.
pub fn take(path: &Path) -> Option<Handover> {
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the previous lvsd's handover");
            return None;
        }
    };
    // Read once, whatever it holds.
    let _ = std::fs::remove_file(path);
    let parsed = std::str::from_utf8(&bytes)
        .map_err(anyhow::Error::from)
        .and_then(parse);
    match parsed {
        Ok(h) => {
            if h.bad_lines > 0 {
                warn!(path = %path.display(), lines = h.bad_lines, "handover lines skipped (malformed)");
            }
            info!(
                connections = h.conns.len(),
                steering_entries = h.spec.services.len() + h.spec.nat_replies.len(),
                "the previous lvsd handed over its connections: they are taken over as their services are configured"
            );
            Some(h)
        }
        Err(e) => {
            warn!(path = %path.display(), error = %format!("{e:#}"), "previous lvsd's handover ignored");
            None
        }
    }
}

/// The handed-over connections waiting for their service, and the steering entries they
/// keep meanwhile.
#[derive(Debug, Default)]
pub struct Pending {
    conns: Vec<Handed>,
    spec: Spec,
    /// When the handover was read (the connections' `remaining` counts from then).
    since: Time,
    until: Option<Time>,
    adopted: u64,
}

impl Pending {
    /// Waiting from `now` (for [`WAIT`]).
    pub fn new(h: Handover, now: Time) -> Pending {
        Pending {
            conns: h.conns,
            spec: h.spec,
            since: now,
            until: Some(now + WAIT),
            adopted: 0,
        }
    }

    /// Whether the inherited entries must stay in the steering.
    pub fn active(&self) -> bool {
        self.until.is_some()
    }

    /// Add the inherited entries to `spec` while connections wait.
    pub fn extend(&self, spec: &mut Spec) {
        if self.active() {
            spec.services.extend(self.spec.services.iter().copied());
            spec.nat_replies
                .extend(self.spec.nat_replies.iter().copied());
        }
    }

    /// Take over what the director can take now; give up at the deadline. Returns true when
    /// the wait ended in this call (the steering must drop the inherited entries).
    pub fn adopt(&mut self, director: &mut Director, now: Time) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        let mut lost = 0u64;
        let adopted = &mut self.adopted;
        let waited = now.saturating_since(self.since);
        self.conns.retain(|h| {
            let timeout = match h.conn.proto {
                Protocol::Tcp => director.timeouts().tcp(h.conn.state),
                p => director.timeouts().initial(p),
            };
            // Last seen so long before `now` that it has its remaining life left. (The
            // core's clock starts at this lvsd's start: a connection idle for longer than
            // that is taken as seen at the start, and lives that much longer.)
            let left = h.remaining.saturating_sub(waited);
            let a = Adoptee {
                seen: now - timeout.saturating_sub(left),
                ..h.conn
            };
            match director.adopt(&a, now) {
                Ok(_) => {
                    *adopted += 1;
                    false
                }
                Err(AdoptError::NoService | AdoptError::NoRealServer) => true,
                Err(AdoptError::Known | AdoptError::TableFull) => {
                    lost += 1;
                    false
                }
            }
        });
        if !self.conns.is_empty() && now < until {
            return false;
        }
        lost += self.conns.len() as u64;
        self.conns.clear();
        self.until = None;
        if lost > 0 {
            warn!(
                adopted = self.adopted,
                given_up = lost,
                "handed-over connections whose service or real server did not come back in time (or conflicted) were given up"
            );
        } else {
            info!(
                adopted = self.adopted,
                "every handed-over connection was taken over"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_core::director::RxMeta;
    use lvs_core::sim::{self, PacketSpec, addr, tcp_flags};
    use lvs_core::types::SchedulerKind;
    use std::collections::BTreeSet;

    fn connect(d: &mut Director, now: Time, cport: u16) {
        let (mut buf, len) =
            PacketSpec::tcp((addr::CLIENT, cport), (addr::VIP, 80), tcp_flags::SYN).frame();
        let meta = RxMeta {
            ifindex: addr::FRONT,
            ..RxMeta::default()
        };
        d.process(now, &meta, &mut buf, sim::HEADROOM, len);
    }

    /// A director's connections go through the text and are taken over by a new director
    /// once it has the service, with the same real servers, states and lifetimes.
    #[test]
    fn connections_survive_the_round_trip() {
        let t = Time::from_secs(100);
        let mut old = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
        for p in 0..4 {
            connect(&mut old, t, 5000 + p);
        }
        let spec = Spec::of(&old, &BTreeSet::new());
        let text = render(&old, &spec, None, t);
        let h = parse(&text).unwrap();
        assert_eq!(h.bad_lines, 0);
        assert_eq!(h.conns.len(), 4);
        assert_eq!(h.spec, spec);

        // The new director has no service yet: nothing is taken, the entries stay.
        let mut new = lvs_core::Director::new(Default::default(), Time::ZERO);
        let mut pending = Pending::new(h, Time::ZERO);
        assert!(!pending.adopt(&mut new, Time::from_secs(1)));
        let mut s = Spec::default();
        pending.extend(&mut s);
        assert_eq!(s.services, spec.services);

        let mut new = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
        let now = Time::from_secs(2);
        assert!(pending.adopt(&mut new, now), "all taken: the wait ends");
        assert!(!pending.active());
        let mut listed: Vec<_> = new
            .conns()
            .iter()
            .map(|(_, c)| (c.cport, c.daddr, c.dport, c.state, c.remaining(now)))
            .collect();
        // The 2 s between reading the handover and taking over count against each one.
        let mut before: Vec<_> = old
            .conns()
            .iter()
            .map(|(_, c)| {
                let left = c.remaining(t) - Duration::from_secs(2);
                (c.cport, c.daddr, c.dport, c.state, left)
            })
            .collect();
        listed.sort();
        before.sort();
        assert_eq!(listed, before);
    }

    #[test]
    fn bad_input_is_refused_or_counted() {
        assert!(parse("").is_err());
        assert!(parse("something else\n").is_err());
        let h = parse(&format!(
            "{MAGIC}\nsvc 6 10.0.0.1 80\nsvc x y z\nconn 6 1.2.3.4 5 10.0.0.1 80 10.0.1.1 80 Bogus ESTABLISHED 0 10\n\
             conn 6 1.2.3.4 5 10.0.0.1 80 10.0.1.1 80 Route ESTABLISHED 0 10\n"
        ))
        .unwrap();
        assert_eq!(h.bad_lines, 2);
        assert_eq!(h.spec.services.len(), 1);
        assert_eq!(h.conns.len(), 1);
        assert_eq!(h.conns[0].conn.dest.1, None, "DR keeps the VIP's port");
    }

    #[test]
    fn waiting_connections_are_given_up_at_the_deadline() {
        let mut old = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, Time::ZERO);
        connect(&mut old, Time::from_secs(1), 5000);
        let spec = Spec::of(&old, &BTreeSet::new());
        let h = parse(&render(&old, &spec, None, Time::from_secs(1))).unwrap();
        let mut new = lvs_core::Director::new(Default::default(), Time::ZERO);
        let mut pending = Pending::new(h, Time::ZERO);
        assert!(!pending.adopt(&mut new, Time::from_secs(5)));
        // Stopped again while it waits: what waits is handed over again, less the 5 s.
        let again = parse(&render(
            &new,
            &Spec::default(),
            Some(&pending),
            Time::from_secs(5),
        ))
        .unwrap();
        assert_eq!(again.spec, spec);
        assert_eq!(again.conns.len(), 1);
        assert_eq!(again.conns[0].conn, pending.conns[0].conn);
        // (Less the wall-clock time between writing and reading too: a millisecond or so.)
        let want = pending.conns[0].remaining - Duration::from_secs(5);
        let got = again.conns[0].remaining;
        assert!(
            got <= want && want - got < Duration::from_millis(500),
            "{got:?} {want:?}"
        );
        assert!(!pending.adopt(&mut new, Time::ZERO + WAIT - Duration::from_millis(1)));
        assert!(pending.active());
        assert!(pending.adopt(&mut new, Time::ZERO + WAIT));
        assert!(!pending.active());
        assert_eq!(new.conns().len(), 0);
    }
}
