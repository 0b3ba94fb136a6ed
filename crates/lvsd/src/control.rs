//! The control socket: one JSON request per line in, one reply per line out.
//!
//! Root only (the socket is mode 0600 in a root-owned directory). Each client gets a thread;
//! requests go to the data path worker, which applies them between packet batches; after a
//! change the steering rules are brought in line before the reply is written.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lvs_api::{Reply, Request, parse_request};
use tracing::{info, warn};

use crate::dataplane::Command;
use crate::steering;

/// Who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An operator: the socket, a reload, the metrics' table reads.
    Operator,
    /// The health checks, applying their own changes (not logged as the operator's, not
    /// followed by them again).
    Health,
}

/// What stands in front of the table for an operator's requests: the health checks, which
/// answer their own requests (and the reload, whose configuration carries checks) and follow
/// the operator's changes.
pub trait Hooks: Send + Sync {
    /// Answer `req` here, or `None` to let it through.
    fn intercept(&self, req: &Request) -> Option<Reply>;
    /// What of an operator's change matters to the hook, taken before it is applied.
    fn observe(&self, req: &Request) -> Option<Request>;
    /// An observed change was applied.
    fn applied(&self, observed: Request);
}

/// Shared by the client threads.
pub struct Control {
    /// To the worker.
    pub commands: Mutex<Sender<Command>>,
    /// Wakes the worker when a command is queued.
    pub wake: Mutex<UnixStream>,
    /// Applies steering updates, in order.
    pub steering: Arc<steering::Applier>,
    /// The health checks, once started ([`Control::set_hooks`]).
    hooks: OnceLock<Arc<dyn Hooks>>,
}

impl Control {
    /// The control path to the worker behind `commands`, woken through `wake`.
    pub fn new(
        commands: Sender<Command>,
        wake: UnixStream,
        steering: Arc<steering::Applier>,
    ) -> Control {
        Control {
            commands: Mutex::new(commands),
            wake: Mutex::new(wake),
            steering,
            hooks: OnceLock::new(),
        }
    }

    /// Put `hooks` in front of operators' requests (once).
    pub fn set_hooks(&self, hooks: Arc<dyn Hooks>) -> Result<()> {
        if self.hooks.set(hooks).is_err() {
            bail!("control hooks set twice");
        }
        Ok(())
    }

    /// An operator's request: through the hooks, then to the worker.
    pub fn call(&self, req: Request) -> Reply {
        self.call_as(Origin::Operator, req)
    }

    /// Send a request to the worker and wait for the reply; apply steering after a change.
    pub fn call_as(&self, origin: Origin, req: Request) -> Reply {
        let hooks = self.hooks.get().filter(|_| origin == Origin::Operator);
        if let Some(reply) = hooks.and_then(|h| h.intercept(&req)) {
            return reply;
        }
        let observed = hooks.and_then(|h| h.observe(&req));
        if matches!(req, Request::Reload) {
            return Reply::Error {
                message: "lvsd was started without --config: there is no file to reload \
                          (start lvsd with --config FILE)"
                    .into(),
            };
        }
        let (tx, rx) = channel();
        let change = req.is_change();
        let summary = match &req {
            // A whole configuration can be one batch: count it rather than print it.
            lvs_api::Request::Batch { requests } => {
                Some(format!("batch: {}", lvs_config::Summary::of(requests)))
            }
            // In ipvsadm's words (`-a -t 10.1.0.100:80 -r 192.168.10.13:80 -m -w 1`), else
            // the request as the protocol writes it (docs/control-api.md).
            _ if change => {
                lvs_config::rules::request_words(&req).or_else(|| serde_json::to_string(&req).ok())
            }
            _ => None,
        };
        if self
            .commands
            .lock()
            .map(|c| c.send(Command::Api(req, tx)))
            .is_err()
        {
            return Reply::Error {
                message: "lvsd is shutting down".into(),
            };
        }
        if let Ok(mut w) = self.wake.lock() {
            let _ = w.write_all(&[1]);
        }
        let Ok((reply, spec)) = rx.recv_timeout(Duration::from_secs(10)) else {
            return Reply::Error {
                message: "the data path did not answer in 10 s".into(),
            };
        };
        if let Some(spec) = spec {
            if let Err(e) = self.steering.apply(&spec) {
                warn!(error = %e, "steering update failed");
                return Reply::Error {
                    message: format!("change applied, but the kernel steering failed: {e:#}"),
                };
            }
            // Health changes log their own line (see `health`).
            if let Some(s) = summary.filter(|_| origin == Origin::Operator) {
                info!(change = %s, "configuration applied");
            }
        }
        if let (true, Some(h), Some(o)) = (matches!(reply, Reply::Ok), hooks, observed) {
            h.applied(o);
        }
        reply
    }
}

/// Bind the control socket: create the directory, refuse to steal a live daemon's socket,
/// remove a stale one, set mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "another lvsd is already listening on {} (stop it, or pass --socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("cannot bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accept clients until `stop` is set.
pub fn serve(listener: UnixListener, control: Arc<Control>, stop: Arc<AtomicBool>, path: PathBuf) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let c = Arc::clone(&control);
                std::thread::spawn(move || client(stream, &c));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

fn client(stream: UnixStream, control: &Control) {
    let _ = stream.set_nonblocking(false);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match parse_request(&line) {
            Ok(req) => control.call(req),
            Err(message) => Reply::Error { message },
        };
        let mut text = serde_json::to_string(&reply)
            .unwrap_or_else(|_| r#"{"result":"error","message":"internal"}"#.into());
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}
