//! Configuration copies: a shadow director holding only the service table, used to rehearse
//! a batch of changes before applying it for real.

use lvs_core::director::Settings;
use lvs_core::{Director, Time};

/// A director with the same services, real servers and timeouts as `d`, and no connections.
pub fn shadow(d: &Director) -> Director {
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
