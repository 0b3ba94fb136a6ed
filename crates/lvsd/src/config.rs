//! Configuration: a shadow director holding only the service table, used to rehearse a batch
//! of changes before applying it for real; loading, checking and reloading the `--config`
//! file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lvs_api::Reply;
use lvs_core::director::Settings;
use lvs_core::{Director, Time};
use tracing::{info, warn};

use crate::dataplane::Shared;

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

/// Read and validate a configuration file; on error, every diagnostic as
/// `FILE:LINE:COL: message`, one per line.
pub fn load(path: &Path) -> Result<lvs_config::Config, String> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read the file: {e}"))?;
    lvs_config::parse(&text).map_err(|d| lvs_config::render(&name, &d))
}

/// `lvsd --check-config FILE`: validate only. Prints `FILE:LINE:COL: message` per error on
/// stderr and returns 1, or prints `configuration OK: N services, M real servers` (and
/// `, K health checks` when there are) and
/// returns 0.
pub fn check(path: &Path) -> i32 {
    match load(path) {
        Ok(cfg) => {
            let checks: usize = cfg.services.iter().map(|s| s.checks.len()).sum();
            println!(
                "configuration OK: {} services, {} real servers{}",
                cfg.services.len(),
                cfg.real_server_count(),
                if checks > 0 {
                    format!(", {checks} health checks")
                } else {
                    String::new()
                }
            );
            0
        }
        Err(diags) => {
            eprintln!("{diags}");
            1
        }
    }
}

/// Re-applies the `--config` file on SIGHUP and [`Request::Reload`].
pub struct Reloader {
    path: PathBuf,
    shared: Arc<Shared>,
    /// One reload at a time.
    busy: Mutex<()>,
}

impl Reloader {
    /// A reloader of `path` for the daemon whose data path state is `shared`.
    pub fn new(path: PathBuf, shared: Arc<Shared>) -> Reloader {
        Reloader {
            path,
            shared,
            busy: Mutex::new(()),
        }
    }

    /// Apply the settings (`[settings]`) of a configuration, if it has them.
    pub fn apply_settings(&self, cfg: &lvs_config::Config) {
        if let Some(s) = cfg.settings
            && let Ok(mut d) = self.shared.director.lock()
        {
            d.set_policy(
                s.expire_nodest_conn,
                s.expire_quiescent_template,
                s.conn_reuse_mode,
            );
        }
    }

    /// Re-read the file and apply it as one atomic batch. The file is compared with the
    /// operator-configured table, not the live one: the health module undoes its own
    /// overrides (servers taken out or at weight 0, the sorry server) before the comparison
    /// and keeps them in the batch (see [`crate::health::Health::apply_config`]). A bad file
    /// (or a refused batch) leaves the running table as it was. Logs one line either way.
    pub fn reload(&self) -> Reply {
        let _one = self.busy.lock();
        let file = self.path.display().to_string();
        let refuse = |why: String| {
            warn!(file = %file, "configuration reload refused, running table kept:\n{why}");
            Reply::Error {
                message: format!("configuration reload refused, running table kept:\n{why}"),
            }
        };
        let wanted = match load(&self.path) {
            Ok(c) => c,
            Err(diags) => return refuse(diags),
        };
        let Some(health) = crate::health::get() else {
            return refuse("the health module is not running (a bug)".into());
        };
        match health.apply_config(&wanted) {
            Ok(summary) => {
                self.apply_settings(&wanted);
                info!(file = %file, "configuration reloaded: {summary}");
                Reply::Ok
            }
            Err(message) => refuse(message),
        }
    }
}

/// Apply the `--config` file at start (on the empty table) as one atomic batch, with its
/// health checks and health settings.
pub fn apply_initial(cfg: &lvs_config::Config, path: &Path) -> anyhow::Result<()> {
    let Some(health) = crate::health::get() else {
        anyhow::bail!("the health module is not running (a bug)");
    };
    match health.apply_config(cfg) {
        Ok(_) => {
            info!(
                file = %path.display(),
                services = cfg.services.len(),
                real_servers = cfg.real_server_count(),
                health_checks = cfg.services.iter().map(|s| s.checks.len()).sum::<usize>(),
                "configuration loaded"
            );
            Ok(())
        }
        Err(message) => anyhow::bail!("configuration {} refused: {message}", path.display()),
    }
}
