//! The control socket: one JSON request per line in, one reply per line out.
//!
//! Root only (the socket is mode 0600 in a root-owned directory). Each client gets a thread;
//! requests go to the data path worker, which applies them between packet batches; after a
//! change the steering rules are brought in line before the reply is written.
//!
//! Bounded, so that no client (a stuck script, a hostile local process) can take the control
//! plane down: at most [`Limits::clients`] connections at once (one more is answered with an
//! error and closed), each closed after [`Limits::idle`] without a request, and a request
//! line of at most [`Limits::line`] bytes; a line that is not UTF-8 gets an error reply.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// The bounds of the control socket.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once.
    pub clients: usize,
    /// A connection with no request for this long is closed.
    pub idle: Duration,
    /// Longest request line, in bytes (a whole configuration as one batch fits).
    pub line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            clients: 32,
            idle: Duration::from_secs(60),
            line: 32 << 20,
        }
    }
}

/// A taken client slot, given back when dropped (also if the client's thread panics).
pub struct Slot(pub Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn error_line(message: String) -> String {
    let mut text = serde_json::to_string(&Reply::Error { message })
        .unwrap_or_else(|_| r#"{"result":"error","message":"internal"}"#.into());
    text.push('\n');
    text
}

/// Accept clients until `stop` is set, within `limits`.
pub fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    stop: Arc<AtomicBool>,
    path: PathBuf,
    limits: Limits,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                if active.fetch_add(1, Ordering::SeqCst) >= limits.clients {
                    active.fetch_sub(1, Ordering::SeqCst);
                    warn!(
                        limit = limits.clients,
                        "control connection refused: too many at once"
                    );
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = stream.write_all(
                        error_line(format!(
                            "too many control connections at once ({}): try again",
                            limits.clients
                        ))
                        .as_bytes(),
                    );
                    continue;
                }
                let (c, slot) = (Arc::clone(&control), Slot(Arc::clone(&active)));
                let spawned = std::thread::Builder::new()
                    .name("lvsd-client".into())
                    .spawn(move || {
                        let _slot = slot;
                        client(stream, &c, &limits);
                    });
                // (A thread that could not start dropped its slot with the closure.)
                if let Err(e) = spawned {
                    warn!(error = %e, "cannot start a thread for a control connection: closed");
                }
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

/// Serve one connection: a reply per request line, within `limits`.
fn client(stream: UnixStream, control: &Control, limits: &Limits) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(limits.idle));
    let _ = stream.set_write_timeout(Some(limits.idle));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // One byte more than the limit tells an over-long line from one that fits.
        let n = match std::io::Read::take(&mut reader, limits.line as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return, // closed, idle too long, or broken
            Ok(n) => n,
        };
        if n > limits.line {
            let _ = out.write_all(
                error_line(format!(
                    "request longer than {} bytes, the control socket's limit: closing",
                    limits.line
                ))
                .as_bytes(),
            );
            return;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => {
                let reply = match parse_request(line.trim_end()) {
                    Ok(req) => control.call(req),
                    Err(message) => Reply::Error { message },
                };
                let mut text = serde_json::to_string(&reply)
                    .unwrap_or_else(|_| r#"{"result":"error","message":"internal"}"#.into());
                text.push('\n');
                text
            }
            Err(e) => error_line(format!(
                "request is not UTF-8 (invalid byte at offset {}): send JSON text",
                e.valid_up_to()
            )),
        };
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Instant;

    /// A control whose worker never answers: the requests here never reach it.
    fn control() -> (Arc<Control>, std::sync::mpsc::Receiver<Command>) {
        let (tx, rx) = channel();
        let (wake, _other) = UnixStream::pair().unwrap();
        let applier = Arc::new(steering::Applier::new(
            Vec::new(),
            steering::Spec::default(),
        ));
        (Arc::new(Control::new(tx, wake, applier)), rx)
    }

    fn read_line(s: &mut UnixStream) -> String {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn bad_bytes_long_lines_and_idle_clients_are_bounded() {
        let (c, _rx) = control();
        let limits = Limits {
            clients: 4,
            idle: Duration::from_millis(300),
            line: 64,
        };
        let (mut us, them) = UnixStream::pair().unwrap();
        let (c2, l2) = (Arc::clone(&c), limits);
        let t = std::thread::spawn(move || client(them, &c2, &l2));
        // Not UTF-8: an error reply, and the connection stays usable.
        us.write_all(b"{\"v\":1,\"op\":\xff}\n").unwrap();
        let r = read_line(&mut us);
        assert!(r.contains("not UTF-8"), "{r}");
        us.write_all(b"not json\n").unwrap();
        let r = read_line(&mut us);
        assert!(r.contains(r#""result":"error""#), "{r}");
        // Longer than the limit: an error, then closed.
        // (One write: the server may close before a second one.)
        let mut long = vec![b'x'; 100];
        long.push(b'\n');
        us.write_all(&long).unwrap();
        let r = read_line(&mut us);
        assert!(r.contains("longer than 64 bytes"), "{r}");
        t.join().unwrap();
        assert_eq!(us.read(&mut [0u8; 8]).unwrap_or(0), 0, "closed");

        // Idle: closed after the limit.
        let (_us, them) = UnixStream::pair().unwrap();
        let (c3, l3) = (Arc::clone(&c), limits);
        let start = Instant::now();
        std::thread::spawn(move || client(them, &c3, &l3))
            .join()
            .unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[test]
    fn one_client_too_many_is_told_and_closed() {
        let (c, _rx) = control();
        let dir = std::env::temp_dir().join(format!("lvsd-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let limits = Limits {
            clients: 1,
            idle: Duration::from_secs(5),
            line: 1024,
        };
        let (s, p) = (Arc::clone(&stop), path.clone());
        let server = std::thread::spawn(move || serve(listener, c, s, p, limits));
        let _first = UnixStream::connect(&path).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let mut second = UnixStream::connect(&path).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let r = read_line(&mut second);
        assert!(r.contains("too many control connections"), "{r}");
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
