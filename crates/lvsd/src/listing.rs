//! The connection listing, a page at a time (`lvsadm -L -n -c`).
//!
//! A table of a million entries is never copied whole: the worker answers one page of at
//! most [`CONNECTIONS_PAGE_MAX`] entries per [`Request::Connections`] under the director's
//! lock, and the control socket writes each page out before it asks for the next, so
//! forwarding goes on between pages and lvsd's memory for a listing is one page's, whatever
//! the table's size. The cursor is the slot index after the page's last entry: entries do
//! not move between slots, so an entry alive from the first page to the last is listed
//! exactly once (one created meanwhile in a slot already passed is not, as a listing of
//! IPVS's `/proc/net/ip_vs_conn` may miss it).
//!
//! [`Request::Connections`]: lvs_api::Request::Connections

use lvs_api::{CONNECTIONS_PAGE_MAX, ConnInfo, Reply, Request};
use lvs_core::conn::Conn;
use lvs_core::{Director, Time};

use crate::fastpath::FastPath;

/// One page: at most `limit` entries (at most [`CONNECTIONS_PAGE_MAX`]) from slot `cursor`
/// on, and the cursor of the next page when there is one. `None` limit: the largest page.
pub fn page(
    director: &Director,
    now: Time,
    fast: Option<&FastPath>,
    cursor: Option<u64>,
    limit: Option<u32>,
) -> Reply {
    let started = std::time::Instant::now();
    let limit = limit
        .unwrap_or(CONNECTIONS_PAGE_MAX)
        .min(CONNECTIONS_PAGE_MAX) as usize;
    let from = cursor.unwrap_or(0);
    // A cursor past every slot (u32) lists nothing.
    let start = u32::try_from(from).unwrap_or(u32::MAX);
    let mut entries = director.conns().iter_from(start);
    let conns: Vec<ConnInfo> = entries
        .by_ref()
        .take(limit)
        .map(|(_, c)| info(c, now, fast))
        .collect();
    // A page that ends where the table does says so: no empty last round trip.
    let next = entries.next().map(|(id, _)| u64::from(id.index));
    // The time the data path waited for this page (benches/list-conns.sh sums it up).
    tracing::debug!(
        from,
        entries = conns.len(),
        micros = started.elapsed().as_micros() as u64,
        "connection page"
    );
    Reply::Connections { conns, next }
}

/// An entry as the API lists it.
fn info(c: &Conn, now: Time, fast: Option<&FastPath>) -> ConnInfo {
    ConnInfo {
        proto: c.proto.into(),
        caddr: c.caddr,
        cport: c.cport,
        vaddr: c.vaddr,
        vport: c.vport,
        daddr: c.daddr,
        dport: c.dport,
        state: c.state.name().to_string(),
        // The kernel may have forwarded packets since the core last saw one.
        expires_secs: fast
            .and_then(|f| f.last_seen(c))
            .map(|seen| seen + c.timeout)
            .filter(|e| *e > c.expires)
            .map_or(c.remaining(now), |e| e.saturating_since(now))
            .as_secs(),
        method: c.method.into(),
        template: c.is_template(),
    }
}

/// Why a whole listing stopped before its end.
#[derive(Debug)]
pub enum Stop {
    /// A page came back as an error (the data path did not answer): nothing written yet.
    Refused(String),
    /// Writing to the client failed, or the data path failed after the first page: the
    /// reply line is cut, so the connection must be closed.
    Cut(String),
}

/// The whole listing from `cursor` as one reply line, the same bytes as the serialized
/// `Reply::Connections` without `next`, asked for with `fetch` and written with `write` a
/// page at a time (`write` gets each piece; the last ends with the newline).
pub fn write_all(
    mut fetch: impl FnMut(Request) -> Reply,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
    cursor: Option<u64>,
) -> Result<(), Stop> {
    let mut cursor = cursor;
    let mut buf: Vec<u8> = br#"{"result":"connections","conns":["#.to_vec();
    let (mut written, mut any) = (false, false);
    loop {
        let reply = fetch(Request::Connections {
            cursor,
            limit: Some(CONNECTIONS_PAGE_MAX),
        });
        let (conns, next) = match reply {
            Reply::Connections { conns, next } => (conns, next),
            Reply::Error { message } if !written => return Err(Stop::Refused(message)),
            Reply::Error { message } => return Err(Stop::Cut(message)),
            other => return Err(Stop::Cut(format!("unexpected page {other:?}"))),
        };
        for c in &conns {
            if std::mem::replace(&mut any, true) {
                buf.push(b',');
            }
            serde_json::to_writer(&mut buf, c).map_err(|e| Stop::Cut(e.to_string()))?;
        }
        if next.is_none() {
            buf.extend_from_slice(b"]}\n");
        }
        written = true;
        write(&buf).map_err(|e| Stop::Cut(e.to_string()))?;
        buf.clear();
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_core::director::RxMeta;
    use lvs_core::sim::{self, PacketSpec, addr};
    use lvs_core::types::{ForwardMethod, SchedulerKind};
    use std::collections::BTreeSet;
    use std::time::Duration;

    /// A director with `n` UDP entries from distinct client ports (1024 on); those of odd
    /// ports expire after 10 s, the others after 300 s.
    fn director(n: u16) -> Director {
        let now = Time::ZERO;
        let mut d = sim::director(ForwardMethod::Masq, SchedulerKind::Rr, now);
        for port in 1024..1024 + n {
            let udp = if port % 2 == 1 { 10 } else { 300 };
            d.set_timeouts(Duration::ZERO, Duration::ZERO, Duration::from_secs(udp));
            send(&mut d, port, now);
        }
        assert_eq!(d.conns().len(), usize::from(n));
        d
    }

    fn send(d: &mut Director, port: u16, now: Time) {
        let meta = RxMeta {
            ifindex: addr::FRONT,
            ..RxMeta::default()
        };
        let (mut buf, len) = PacketSpec::udp((addr::CLIENT, port), (addr::VIP, 53), b"q")
            .macs(addr::ROUTER_MAC, addr::FRONT_MAC)
            .frame();
        d.process(now, &meta, &mut buf, sim::HEADROOM, len);
    }

    fn pages(d: &Director, limit: u32) -> (Vec<ConnInfo>, usize) {
        let (mut all, mut cursor, mut rounds) = (Vec::new(), None, 0);
        loop {
            rounds += 1;
            let Reply::Connections { conns, next } = page(d, Time::ZERO, None, cursor, Some(limit))
            else {
                panic!("not a page");
            };
            assert!(conns.len() <= limit as usize);
            all.extend(conns);
            match next {
                Some(n) => cursor = Some(n),
                None => return (all, rounds),
            }
        }
    }

    #[test]
    fn pages_list_every_entry_once_and_end_without_an_empty_page() {
        let d = director(1000);
        let (all, rounds) = pages(&d, 100);
        assert_eq!(
            rounds, 10,
            "1000 entries in pages of 100: no empty 11th page"
        );
        let ports: BTreeSet<u16> = all.iter().map(|c| c.cport).collect();
        assert_eq!(ports.len(), 1000);
        let (odd, rounds) = pages(&d, 333);
        assert_eq!((odd.len(), rounds), (1000, 4));
        // The pages together are the table in slot order, as one whole listing.
        let Reply::Connections { conns, next } = page(&d, Time::ZERO, None, None, None) else {
            panic!()
        };
        assert_eq!((conns, next), (all, None));
        // A limit above the maximum is the maximum.
        let Reply::Connections { conns, .. } = page(&d, Time::ZERO, None, None, Some(u32::MAX))
        else {
            panic!()
        };
        assert_eq!(conns.len(), 1000);
    }

    #[test]
    fn entries_gone_or_new_between_pages_leave_the_others_listed_once() {
        let mut d = director(300);
        let Reply::Connections { conns, next } = page(&d, Time::ZERO, None, None, Some(100)) else {
            panic!()
        };
        let mut seen: Vec<u16> = conns.iter().map(|c| c.cport).collect();
        // Between pages the odd ports' entries expire and new flows come (into the freed
        // slots, lowest first: some before the cursor, some after).
        let later = Time::from_secs(20);
        assert_eq!(d.expire(later), 150);
        for port in 2000..2100 {
            send(&mut d, port, later);
        }
        let mut cursor = next;
        while let Some(c) = cursor {
            let Reply::Connections { conns, next } = page(&d, later, None, Some(c), Some(64))
            else {
                panic!()
            };
            seen.extend(conns.iter().map(|c| c.cport));
            cursor = next;
        }
        let unique: BTreeSet<u16> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no entry twice");
        for port in (1024..1324u16).filter(|p| p % 2 == 0) {
            assert!(
                unique.contains(&port),
                "{port} lived throughout but is not listed"
            );
        }
        let new = unique.iter().filter(|p| **p >= 2000).count();
        assert!(
            new > 0 && new < 100,
            "new flows after the cursor only: {new}"
        );
    }

    /// The whole listing of `d` as [`write_all`] writes it, and in how many writes.
    fn whole(d: &Director) -> (Vec<u8>, usize) {
        let (mut out, mut writes) = (Vec::new(), 0);
        write_all(
            |r| match r {
                Request::Connections { cursor, limit } => page(d, Time::ZERO, None, cursor, limit),
                _ => panic!("{r:?}"),
            },
            |b| {
                writes += 1;
                out.extend_from_slice(b);
                Ok(())
            },
            None,
        )
        .unwrap();
        (out, writes)
    }

    #[test]
    fn a_whole_listing_is_the_reply_line_serde_writes() {
        let d = director(40_000);
        let (out, writes) = whole(&d);
        assert_eq!(writes, 3, "40,000 entries in three pages of 16,384 at most");
        let Reply::Connections { conns, .. } = page(&d, Time::ZERO, None, None, Some(u32::MAX))
        else {
            panic!()
        };
        let all: Vec<ConnInfo> = d
            .conns()
            .iter()
            .map(|(_, c)| info(c, Time::ZERO, None))
            .collect();
        assert_eq!(conns.len(), CONNECTIONS_PAGE_MAX as usize);
        let mut expected = serde_json::to_string(&Reply::Connections {
            conns: all,
            next: None,
        })
        .unwrap();
        expected.push('\n');
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        // An empty table, and a failure before anything was written.
        let (out, writes) = whole(&director(0));
        assert_eq!(out, b"{\"result\":\"connections\",\"conns\":[]}\n");
        assert_eq!(writes, 1);
        let refused = write_all(
            |_| Reply::Error {
                message: "the data path did not answer in 10 s".into(),
            },
            |_| panic!("nothing to write"),
            None,
        );
        assert!(matches!(refused, Err(Stop::Refused(m)) if m.contains("10 s")));
    }
}
