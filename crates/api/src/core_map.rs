//! The one place where the protocol's types ([`crate::types`]) and the core's are converted,
//! in both directions. Every match is exhaustive, so a variant added on either side does not
//! compile until it is mapped here (and, if it is a protocol change, documented).

use lvs_core::service as cs;
use lvs_core::stats as cst;
use lvs_core::types as ct;

use crate::types as w;

/// `From` both ways between a wire enum and a core enum with unit variants of the same names.
macro_rules! same_unit_variants {
    ($wire:ident <=> $core:ident: $($v:ident),+ $(,)?) => {
        impl From<ct::$core> for w::$wire {
            fn from(x: ct::$core) -> Self {
                match x { $(ct::$core::$v => w::$wire::$v,)+ }
            }
        }
        impl From<w::$wire> for ct::$core {
            fn from(x: w::$wire) -> Self {
                match x { $(w::$wire::$v => ct::$core::$v,)+ }
            }
        }
    };
}

same_unit_variants!(Protocol <=> Protocol: Tcp, Udp, Sctp);
same_unit_variants!(Family <=> Family: V4, V6);
same_unit_variants!(ForwardMethod <=> ForwardMethod: Masq, DirectRoute, Tunnel);
same_unit_variants!(SchedulerKind <=> SchedulerKind:
    Rr, Wrr, Lc, Wlc, Lblc, Lblcr, Dh, Sh, Sed, Nq, Fo, Ovf, Mh, Twos);

/// `From` both ways between a wire struct and a core struct whose fields convert one by one.
macro_rules! same_fields {
    ($wire:path, $core:path, { $($f:ident),+ $(,)? }) => {
        impl From<$core> for $wire {
            fn from(x: $core) -> Self {
                Self { $($f: x.$f.into(),)+ }
            }
        }
        impl From<$wire> for $core {
            fn from(x: $wire) -> Self {
                Self { $($f: x.$f.into(),)+ }
            }
        }
    };
}

same_fields!(w::DestConfig, cs::DestConfig, {
    addr, port, weight, method, upper_threshold, lower_threshold
});
same_fields!(w::Stats, cst::Stats, { conns, inpkts, outpkts, inbytes, outbytes });
same_fields!(w::Rates, cst::Rates, { cps, inpps, outpps, inbps, outbps });
same_fields!(w::Persistence, ct::Persistence, { timeout, netmask });

impl From<ct::ServiceKey> for w::ServiceKey {
    fn from(k: ct::ServiceKey) -> Self {
        match k {
            ct::ServiceKey::Addr { proto, addr, port } => w::ServiceKey::Addr {
                proto: proto.into(),
                addr,
                port,
            },
            ct::ServiceKey::Fwmark { mark, family } => w::ServiceKey::Fwmark {
                mark,
                family: family.into(),
            },
        }
    }
}

impl From<w::ServiceKey> for ct::ServiceKey {
    fn from(k: w::ServiceKey) -> Self {
        match k {
            w::ServiceKey::Addr { proto, addr, port } => ct::ServiceKey::Addr {
                proto: proto.into(),
                addr,
                port,
            },
            w::ServiceKey::Fwmark { mark, family } => ct::ServiceKey::Fwmark {
                mark,
                family: family.into(),
            },
        }
    }
}

impl From<ct::Netmask> for w::Netmask {
    fn from(m: ct::Netmask) -> Self {
        match m {
            ct::Netmask::V4(p) => w::Netmask::V4(p),
            ct::Netmask::V6(p) => w::Netmask::V6(p),
        }
    }
}

impl From<w::Netmask> for ct::Netmask {
    fn from(m: w::Netmask) -> Self {
        match m {
            w::Netmask::V4(p) => ct::Netmask::V4(p),
            w::Netmask::V6(p) => ct::Netmask::V6(p),
        }
    }
}

impl From<ct::SchedFlags> for w::SchedFlags {
    fn from(f: ct::SchedFlags) -> Self {
        w::SchedFlags(f.0)
    }
}

impl From<w::SchedFlags> for ct::SchedFlags {
    fn from(f: w::SchedFlags) -> Self {
        ct::SchedFlags(f.0)
    }
}

impl From<cs::ServiceConfig> for w::ServiceConfig {
    fn from(s: cs::ServiceConfig) -> Self {
        w::ServiceConfig {
            key: s.key.into(),
            scheduler: s.scheduler.into(),
            flags: s.flags.into(),
            persistence: s.persistence.map(Into::into),
            one_packet: s.one_packet,
        }
    }
}

impl From<w::ServiceConfig> for cs::ServiceConfig {
    fn from(s: w::ServiceConfig) -> Self {
        cs::ServiceConfig {
            key: s.key.into(),
            scheduler: s.scheduler.into(),
            flags: s.flags.into(),
            persistence: s.persistence.map(Into::into),
            one_packet: s.one_packet,
        }
    }
}

/// ipvsadm's spelling (`TCP 10.0.0.1:80`, `FWM 7`), which is the core's.
impl std::fmt::Display for w::ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        ct::ServiceKey::from(*self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scheduler and method survives the round trip core → wire → core.
    #[test]
    fn round_trips() {
        for k in ct::SchedulerKind::ALL {
            assert_eq!(ct::SchedulerKind::from(w::SchedulerKind::from(k)), k);
        }
        for m in [
            ct::ForwardMethod::Masq,
            ct::ForwardMethod::DirectRoute,
            ct::ForwardMethod::Tunnel,
        ] {
            assert_eq!(ct::ForwardMethod::from(w::ForwardMethod::from(m)), m);
        }
        let key = ct::ServiceKey::Fwmark {
            mark: 7,
            family: ct::Family::V6,
        };
        let mut s = cs::ServiceConfig::new(key).with_scheduler(ct::SchedulerKind::Mh);
        s.flags = ct::SchedFlags::FLAG2;
        s.persistence = Some(ct::Persistence {
            timeout: std::time::Duration::from_secs(360),
            netmask: ct::Netmask::V6(64),
        });
        assert_eq!(cs::ServiceConfig::from(w::ServiceConfig::from(s)), s);
        let d = cs::DestConfig::new("10.0.0.2".parse().unwrap(), 80, ct::ForwardMethod::Tunnel)
            .with_weight(9);
        assert_eq!(cs::DestConfig::from(w::DestConfig::from(d)), d);
    }
}
