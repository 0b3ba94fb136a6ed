//! Requests applied to a service table: what lvsd does with each change it is sent, what a
//! rehearsal of a batch does on a copy, and the table listed back as the protocol carries it.
//!
//! The one implementation of the change requests, shared by lvsd, `lvsadm -R` (which replays
//! a refused batch locally to name the failing line) and the tests' stand-in daemons. Which
//! requests are changes is [`Request::is_change`]'s to say.

use std::time::Duration;

use lvs_api::{DestInfo, Request, ServiceInfo};
use lvs_core::Director;
use lvs_core::director::Settings;
use lvs_core::time::Time;

/// The largest timeout `--set` takes: IPVS refuses more than `INT_MAX / HZ` seconds (with
/// Debian's HZ = 250).
pub const MAX_TIMEOUT: u64 = i32::MAX as u64 / 250;

/// Apply one change request to `d`. A request that is not a change (or a batch, which holds
/// changes) is refused, and nothing is changed on any error.
pub fn apply_change(d: &mut Director, r: Request) -> Result<(), String> {
    let res = match r {
        Request::AddService { service } => d.add_service(service.into()),
        Request::EditService { service } => d.edit_service(service.into()),
        Request::DeleteService { key } => d.delete_service(&key.into()),
        Request::Clear => {
            d.clear();
            Ok(())
        }
        Request::AddDest { key, dest } => d.add_dest(&key.into(), dest.into()),
        Request::EditDest { key, dest } => d.edit_dest(&key.into(), dest.into()),
        Request::DeleteDest { key, addr, port } => d.delete_dest(&key.into(), addr, port),
        Request::SetTimeouts { tcp, tcpfin, udp } => {
            if let Some(big) = [tcp, tcpfin, udp].into_iter().find(|t| *t > MAX_TIMEOUT) {
                return Err(format!(
                    "timeout {big} s is larger than IPVS allows ({MAX_TIMEOUT} s, INT_MAX / HZ)"
                ));
            }
            d.set_timeouts(
                Duration::from_secs(tcp),
                Duration::from_secs(tcpfin),
                Duration::from_secs(udp),
            );
            Ok(())
        }
        Request::Batch { .. } => return Err("a batch cannot contain a batch".into()),
        other => return Err(format!("{other:?} is not a change")),
    };
    res.map_err(|e| e.to_string())
}

/// Apply `requests` all or none: each is first applied to a [`rehearsal`] copy of `d`, and
/// `d` is changed only when all of them succeed there. The error is the message for the
/// client: "batch refused, nothing applied: " and why.
pub fn apply_batch(d: &mut Director, requests: Vec<Request>) -> Result<(), String> {
    let mut copy = rehearsal(d);
    for r in &requests {
        apply_change(&mut copy, r.clone())
            .map_err(|e| format!("batch refused, nothing applied: {e}"))?;
    }
    for r in requests {
        // Cannot fail after a successful rehearsal; say so loudly if it does.
        apply_change(d, r).map_err(|e| format!("batch failed half-way (bug): {e}"))?;
    }
    Ok(())
}

/// A copy of `d`'s configuration (services, real servers, timeouts, settings) without its
/// connections: what a change is tried on before it is made.
pub fn rehearsal(d: &Director) -> Director {
    let settings = Settings {
        conn_limit: 1,
        conn_prealloc: 0,
        ..d.settings().clone()
    };
    let mut s = Director::new(settings, Time::ZERO);
    for (_, svc) in d.services().iter() {
        let key = svc.config().key;
        // Cannot fail: the configuration was valid where it came from.
        let _ = s.add_service(*svc.config());
        for dest in svc.dests() {
            let _ = s.add_dest(&key, dest.config);
        }
    }
    let (tcp, fin, udp) = d.timeouts().get();
    s.set_timeouts(tcp, fin, udp);
    s
}

/// A director holding the services of a listing (default settings, no connections), or the
/// first error that refused one of them.
pub fn from_listing(services: &[ServiceInfo]) -> Result<Director, String> {
    let mut d = Director::new(
        Settings {
            conn_prealloc: 0,
            ..Settings::default()
        },
        Time::ZERO,
    );
    for s in services {
        let config: lvs_core::service::ServiceConfig = s.config.into();
        d.add_service(config).map_err(|e| e.to_string())?;
        for x in &s.dests {
            d.add_dest(&config.key, x.config.into())
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(d)
}

/// The service table as the protocol lists it.
pub fn listing(d: &Director) -> Vec<ServiceInfo> {
    d.services()
        .iter()
        .map(|(_, s)| ServiceInfo {
            config: (*s.config()).into(),
            stats: s.stats.into(),
            rates: s.est.rates().into(),
            dests: s
                .dests()
                .iter()
                .map(|x| DestInfo {
                    config: x.config.into(),
                    active: x.active,
                    inactive: x.inactive,
                    persistent: x.persistent,
                    overloaded: x.overloaded,
                    stats: x.stats.into(),
                    rates: x.est.rates().into(),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_api::{DestConfig, ForwardMethod, Protocol, SchedFlags, SchedulerKind};
    use lvs_api::{ServiceConfig, ServiceKey};

    fn key() -> ServiceKey {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        }
    }

    fn add_service() -> Request {
        Request::AddService {
            service: ServiceConfig {
                key: key(),
                scheduler: SchedulerKind::Rr,
                flags: SchedFlags::default(),
                persistence: None,
                one_packet: false,
            },
        }
    }

    fn add_dest(last: u8) -> Request {
        Request::AddDest {
            key: key(),
            dest: DestConfig {
                addr: format!("10.0.1.{last}").parse().unwrap(),
                port: 80,
                weight: 1,
                method: ForwardMethod::Masq,
                upper_threshold: 0,
                lower_threshold: 0,
            },
        }
    }

    #[test]
    fn a_batch_is_all_or_none() {
        let mut d = from_listing(&[]).unwrap();
        // The third change repeats the second: refused, and the first two are not made.
        let err = apply_batch(&mut d, vec![add_service(), add_dest(11), add_dest(11)]);
        let err = err.unwrap_err();
        assert!(err.starts_with("batch refused, nothing applied: "), "{err}");
        assert!(err.contains("already exists"), "{err}");
        assert!(listing(&d).is_empty());

        apply_batch(&mut d, vec![add_service(), add_dest(11), add_dest(12)]).unwrap();
        let l = listing(&d);
        assert_eq!((l.len(), l[0].dests.len()), (1, 2));
        assert_eq!(l[0].config.scheduler, SchedulerKind::Rr);

        // The listing rebuilds the same table; the rehearsal copy holds it too.
        assert_eq!(listing(&from_listing(&l).unwrap()), l);
        assert_eq!(listing(&rehearsal(&d)), l);
    }

    #[test]
    fn only_changes_are_applied() {
        let mut d = from_listing(&[]).unwrap();
        for r in [Request::List, Request::Health, Request::Version] {
            assert!(!r.is_change());
            assert!(
                apply_change(&mut d, r)
                    .unwrap_err()
                    .contains("is not a change")
            );
        }
        let nested = Request::Batch {
            requests: vec![Request::Clear],
        };
        assert!(nested.is_change());
        assert!(apply_change(&mut d, nested).unwrap_err().contains("batch"));
        assert!(add_service().is_change());
        apply_change(&mut d, add_service()).unwrap();
        assert_eq!(listing(&d).len(), 1);
    }
}
