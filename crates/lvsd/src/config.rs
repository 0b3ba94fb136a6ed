//! Configuration: loading, checking and reloading the `--config` file (a change is rehearsed
//! on a copy of the table, `lvs_config::table::rehearsal`, before it is applied).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lvs_api::Reply;
use tracing::{info, warn};

use crate::control::Control;
use crate::dataplane::Command;

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
            let checks: usize = cfg
                .services
                .iter()
                .flat_map(|s| s.checks.values())
                .map(Vec::len)
                .sum();
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
    /// To the worker that owns the core (the settings go there as a command).
    control: Arc<Control>,
    /// One reload at a time.
    busy: Mutex<()>,
}

impl Reloader {
    /// A reloader of `path` for the daemon whose core `control` reaches.
    pub fn new(path: PathBuf, control: Arc<Control>) -> Reloader {
        Reloader {
            path,
            control,
            busy: Mutex::new(()),
        }
    }

    /// Apply the settings (`[settings]`) of a configuration, if it has them.
    pub fn apply_settings(&self, cfg: &lvs_config::Config) {
        // Queued behind the batch just applied: any later request sees them in force.
        if let Some(s) = cfg.settings {
            self.control.send(Command::Settings(s));
        }
    }

    /// Re-read the file and hand it to `apply` (the health checks' `apply_config`), which
    /// applies it as one atomic batch: the file is compared with the operator-configured
    /// table, not the live one (the health checks undo their own overrides — servers taken
    /// out or at weight 0, the sorry server — before the comparison and keep them in the
    /// batch). A bad file (or a refused batch) leaves the running table as it was. Logs one
    /// line either way.
    pub fn reload(
        &self,
        apply: impl FnOnce(&lvs_config::Config) -> Result<String, String>,
    ) -> Reply {
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
        match apply(&wanted) {
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
/// health checks and health settings, through `apply` (the health checks' `apply_config`).
pub fn apply_initial(
    cfg: &lvs_config::Config,
    path: &Path,
    apply: impl FnOnce(&lvs_config::Config) -> Result<String, String>,
) -> anyhow::Result<()> {
    match apply(cfg) {
        Ok(_) => {
            info!(
                file = %path.display(),
                services = cfg.services.len(),
                real_servers = cfg.real_server_count(),
                health_checks = cfg.services.iter().flat_map(|s| s.checks.values()).map(Vec::len).sum::<usize>(),
                "configuration loaded"
            );
            Ok(())
        }
        Err(message) => anyhow::bail!("configuration {} refused: {message}", path.display()),
    }
}
