//! The control socket: one JSON request per line in, one reply per line out.
//!
//! Root only (the socket is mode 0600 in a root-owned directory). One thread
//! (`lvsd-control`) accepts the connections and reads their request lines, all of them at once
//! and without blocking (`poll`); a pool of [`Limits::handlers`] threads, started with the
//! server, takes each complete line, sends the request to the data path worker (which applies
//! it between packet batches; after a change the steering rules are brought in line before
//! the reply is written) and writes the reply. No thread is started per client, so neither
//! many clients nor a task limit (systemd's `TasksMax`, a full pids cgroup) keeps the control
//! plane from answering.
//!
//! Bounded, so that no client (a stuck script, a hostile local process) can take the control
//! plane down:
//! - at most [`Limits::clients`] connections at once. One more makes room: the connection
//!   that has waited longest for its next request is told and closed (an idle one before one
//!   in the middle of a line); only when every connection has a request under way is the
//!   newcomer told and closed instead;
//! - a connection with no request for [`Limits::idle`] is told and closed, and so is one
//!   whose request line is not complete [`Limits::line_time`] after its first byte (a client
//!   trickling a byte at a time);
//! - a request line is at most [`Limits::line`] bytes (longer: an error, then closed); a line
//!   that is not UTF-8 or not a request gets an error reply and the connection stays open;
//! - a reply (each page of a whole connection listing) must be taken by the client within
//!   [`Limits::write_time`], or the connection is closed.
//!
//! The connection listing is written a page at a time ([`crate::listing`]), so a table of a
//! million entries costs lvsd one page of memory, and forwarding goes on between pages.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lvs_api::{Reply, Request, parse_request};
use rustix::event::{PollFd, PollFlags, Timespec};
use tracing::{error, info, warn};

use crate::dataplane::Command;
use crate::listing;
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

    /// Queue `cmd` for the worker that owns the core, and wake it; false once the worker is
    /// gone.
    pub fn send(&self, cmd: Command) -> bool {
        let sent = self.commands.lock().is_ok_and(|c| c.send(cmd).is_ok());
        if sent && let Ok(mut w) = self.wake.lock() {
            let _ = w.write_all(&[1]);
        }
        sent
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
        if !self.send(Command::Api(req, tx)) {
            return Reply::Error {
                message: "lvsd is shutting down".into(),
            };
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
    /// Longest request line, in bytes with its newline (a whole configuration as one batch
    /// fits).
    pub line: usize,
    /// A request line must be complete this long after its first byte.
    pub line_time: Duration,
    /// A reply (or one page of a whole connection listing) must be taken by the client
    /// within this.
    pub write_time: Duration,
    /// Threads that answer requests (started with the server, never per client).
    pub handlers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            clients: 32,
            idle: Duration::from_secs(60),
            line: 32 << 20,
            line_time: Duration::from_secs(10),
            write_time: Duration::from_secs(10),
            handlers: 4,
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
    reply_line(&Reply::Error { message })
}

fn reply_line(reply: &Reply) -> String {
    let mut text = serde_json::to_string(reply)
        .unwrap_or_else(|_| r#"{"result":"error","message":"internal"}"#.into());
    text.push('\n');
    text
}

/// How long the accepting thread sleeps at most (it looks at the stop flag in between).
const TICK: Duration = Duration::from_millis(100);
/// Bytes read from one connection before the others get their turn.
const READ_TURN: usize = 1 << 20;
/// Connections accepted before the open ones get their turn.
const ACCEPT_TURN: usize = 64;
/// How often refusals, evictions and timeouts are summed up in the log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A complete request line for a handler, and where its reply goes.
struct Job {
    id: u64,
    line: Vec<u8>,
    stream: Arc<UnixStream>,
}

/// A handler is done with a connection's request: read the next one, or close it.
struct Done {
    id: u64,
    keep: bool,
}

/// One connection, as the accepting thread sees it.
struct Client {
    id: u64,
    stream: Arc<UnixStream>,
    /// What has arrived of the next request lines.
    buf: Vec<u8>,
    /// Bytes of `buf` known to hold no newline.
    scanned: usize,
    /// A request is with a handler: nothing more is read until it is answered.
    busy: bool,
    /// The client shut its side: answer what is complete, then close.
    eof: bool,
    closed: bool,
    /// Accepted, or its last reply written.
    waiting_since: Instant,
    /// First byte of the line being received.
    line_start: Option<Instant>,
}

impl Client {
    /// Tell the client why it is closed (as far as its socket takes it now), and close it.
    fn close_with(&mut self, message: String) {
        let _ = (&*self.stream).write(error_line(message).as_bytes());
        self.closed = true;
    }
}

/// What the log sums up every [`LOG_EVERY`].
#[derive(Default)]
struct Tally {
    refused: u64,
    evicted: u64,
    idle: u64,
    slow_lines: u64,
    since: Option<Instant>,
}

impl Tally {
    fn log(&mut self, now: Instant) {
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) < LOG_EVERY {
            return;
        }
        if self.refused + self.evicted + self.idle + self.slow_lines > 0 {
            warn!(
                refused_all_busy = self.refused,
                closed_to_make_room = self.evicted,
                closed_idle = self.idle,
                closed_slow_line = self.slow_lines,
                "control connections closed in the last {} s",
                now.duration_since(since).as_secs()
            );
        }
        *self = Tally {
            since: Some(now),
            ..Tally::default()
        };
    }
}

/// Accept clients until `stop` is set, within `limits`.
pub fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    stop: Arc<AtomicBool>,
    path: PathBuf,
    limits: Limits,
) {
    match Server::start(listener, control, limits) {
        Ok(mut server) => server.run(&stop),
        Err(e) => error!(error = %e, "the control socket cannot be served"),
    }
    let _ = std::fs::remove_file(&path);
}

struct Server {
    listener: UnixListener,
    control: Arc<Control>,
    limits: Limits,
    clients: Vec<Client>,
    next_id: u64,
    /// To the handlers; `None` when none could be started (requests are then answered on
    /// this thread).
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    done_tx: Sender<Done>,
    /// Written by a handler after each [`Done`], to end the wait.
    wake: UnixStream,
    wake_tx: Arc<UnixStream>,
    chunk: Vec<u8>,
    tally: Tally,
}

impl Server {
    fn start(listener: UnixListener, control: Arc<Control>, limits: Limits) -> Result<Server> {
        listener.set_nonblocking(true)?;
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let wake_tx = Arc::new(wake_tx);
        let (done_tx, done) = channel();
        let (jobs_tx, jobs) = channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let mut started = 0;
        for i in 0..limits.handlers.max(1) {
            let (jobs, control, done, wake) = (
                Arc::clone(&jobs),
                Arc::clone(&control),
                done_tx.clone(),
                Arc::clone(&wake_tx),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("lvsd-ctl-{i}"))
                .spawn(move || handler(&jobs, &control, &limits, &done, &wake));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => warn!(error = %e, "cannot start a control request thread"),
            }
        }
        if started == 0 {
            warn!(
                "no control request thread could be started: requests are answered one at a time by the accepting thread"
            );
        }
        Ok(Server {
            listener,
            control,
            limits,
            clients: Vec::new(),
            next_id: 0,
            jobs: (started > 0).then_some(jobs_tx),
            done,
            done_tx,
            wake,
            wake_tx,
            chunk: vec![0; 64 << 10],
            tally: Tally::default(),
        })
    }

    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let (accept, ready) = self.wait();
            self.finish();
            if accept {
                self.accept();
            }
            for id in ready {
                if let Some(i) = self.index(id) {
                    self.read(i);
                }
            }
            let now = Instant::now();
            self.expire(now);
            self.clients.retain(|c| !c.closed);
            self.tally.log(now);
        }
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.clients.iter().position(|c| c.id == id && !c.closed)
    }

    /// Wait for a connection, a readable client or a handler's [`Done`], at most until the
    /// next deadline; whether the listener is ready, and the clients that are.
    fn wait(&mut self) -> (bool, Vec<u64>) {
        let now = Instant::now();
        let reading: Vec<&Client> = self
            .clients
            .iter()
            .filter(|c| !c.busy && !c.closed && !c.eof)
            .collect();
        let timeout = reading
            .iter()
            .map(|c| self.deadline(c))
            .min()
            .map_or(TICK, |d| d.saturating_duration_since(now).min(TICK));
        let mut fds = Vec::with_capacity(reading.len() + 2);
        fds.push(PollFd::new(&self.listener, PollFlags::IN));
        fds.push(PollFd::new(&self.wake, PollFlags::IN));
        fds.extend(
            reading
                .iter()
                .map(|c| PollFd::new(&*c.stream, PollFlags::IN)),
        );
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        if rustix::event::poll(&mut fds, Some(&ts)).is_err() {
            return (false, Vec::new());
        }
        let accept = !fds[0].revents().is_empty();
        let ready = reading
            .iter()
            .zip(&fds[2..])
            .filter(|(_, f)| !f.revents().is_empty())
            .map(|(c, _)| c.id)
            .collect();
        if !fds[1].revents().is_empty() {
            let mut sink = [0u8; 256];
            while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        }
        (accept, ready)
    }

    /// When a client that is not busy is closed unless it sends something.
    fn deadline(&self, c: &Client) -> Instant {
        match c.line_start {
            Some(start) => start + self.limits.line_time,
            None => c.waiting_since + self.limits.idle,
        }
    }

    /// Take the handlers' [`Done`]s: next request, or close.
    fn finish(&mut self) {
        while let Ok(Done { id, keep }) = self.done.try_recv() {
            let Some(i) = self.index(id) else { continue };
            let c = &mut self.clients[i];
            c.busy = false;
            if !keep {
                c.closed = true;
                continue;
            }
            let now = Instant::now();
            c.waiting_since = now;
            // Bytes of the next request that came with this one start its line now.
            c.line_start = (!c.buf.is_empty()).then_some(now);
            self.lines(i);
        }
    }

    /// Accept what is waiting (a turn's worth). Each new client's request is read at once
    /// (a client writes it right after connecting): one under way is never closed to make
    /// room for the next newcomer.
    fn accept(&mut self) {
        for _ in 0..ACCEPT_TURN {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, most likely: the waiting connection stays queued.
                    warn!(error = %e, "accept failed");
                    break;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.clients.iter().filter(|c| !c.closed).count() >= self.limits.clients
                && !self.make_room()
            {
                self.tally.refused += 1;
                let _ = (&stream).write(
                    error_line(format!(
                        "{} ({}, each with a request under way): try again",
                        lvs_api::REFUSED_BUSY,
                        self.limits.clients
                    ))
                    .as_bytes(),
                );
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.clients.retain(|c| !c.closed);
            self.clients.push(Client {
                id,
                stream: Arc::new(stream),
                buf: Vec::new(),
                scanned: 0,
                busy: false,
                eof: false,
                closed: false,
                waiting_since: Instant::now(),
                line_start: None,
            });
            self.read(self.clients.len() - 1);
        }
    }

    /// Close the connection that has waited longest for its next request, an idle one
    /// before one in the middle of a line; false when every connection has a request under
    /// way.
    fn make_room(&mut self) -> bool {
        let victim = self
            .clients
            .iter_mut()
            .filter(|c| !c.busy && !c.closed)
            .min_by_key(|c| {
                (
                    c.line_start.is_some(),
                    c.line_start.unwrap_or(c.waiting_since),
                )
            });
        let Some(c) = victim else {
            return false;
        };
        c.close_with(format!(
            "{}: more than {} at once, and this one waited longest for its next request \
             (connect again to send one)",
            lvs_api::CLOSED_FOR_ROOM,
            self.limits.clients
        ));
        self.tally.evicted += 1;
        true
    }

    /// Read what client `i` sent (a turn's worth), then hand on a complete line.
    fn read(&mut self, i: usize) {
        let room = self.limits.line + 1;
        let c = &mut self.clients[i];
        if c.busy || c.closed || c.eof {
            return;
        }
        let mut taken = 0;
        while taken < READ_TURN {
            // One byte more than the limit tells an over-long line from one that fits.
            let want = room
                .saturating_sub(c.buf.len())
                .min(self.chunk.len())
                .min(READ_TURN - taken);
            if want == 0 {
                break;
            }
            match (&*c.stream).read(&mut self.chunk[..want]) {
                Ok(0) => {
                    c.eof = true;
                    break;
                }
                Ok(n) => {
                    if c.buf.is_empty() {
                        c.line_start = Some(Instant::now());
                    }
                    c.buf.extend_from_slice(&self.chunk[..n]);
                    taken += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.closed = true;
                    return;
                }
            }
        }
        self.lines(i);
    }

    /// Hand client `i`'s next complete line to a handler (blank lines are skipped); close
    /// it when its line is too long, or when it shut its side and nothing is left to answer.
    fn lines(&mut self, i: usize) {
        let limit = self.limits.line;
        loop {
            let c = &mut self.clients[i];
            if c.busy || c.closed {
                return;
            }
            let Some(at) = c.buf[c.scanned..].iter().position(|b| *b == b'\n') else {
                c.scanned = c.buf.len();
                if c.buf.len() > limit {
                    c.close_with(format!(
                        "request longer than {limit} bytes, the control socket's limit: closing"
                    ));
                } else if c.eof {
                    c.closed = true;
                }
                return;
            };
            let end = c.scanned + at + 1;
            let rest = c.buf.split_off(end);
            let mut line = std::mem::replace(&mut c.buf, rest);
            c.scanned = 0;
            if !c.buf.is_empty() {
                c.line_start = Some(Instant::now());
            } else {
                c.line_start = None;
            }
            if line.len() > limit {
                c.close_with(format!(
                    "request longer than {limit} bytes, the control socket's limit: closing"
                ));
                return;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            line.pop();
            c.busy = true;
            let job = Job {
                id: c.id,
                line,
                stream: Arc::clone(&c.stream),
            };
            let unsent = match &self.jobs {
                Some(jobs) => jobs.send(job).err().map(|e| e.0),
                None => Some(job),
            };
            if let Some(job) = unsent {
                self.jobs = None;
                self.inline(job);
            }
        }
    }

    /// Answer on this thread (no handler thread could be started).
    fn inline(&mut self, job: Job) {
        let id = job.id;
        let keep = answer(&self.control, &self.limits, job);
        let _ = self.done_tx.send(Done { id, keep });
        let _ = (&*self.wake_tx).write(&[1]);
    }

    /// Close the clients whose line or idle time ran out.
    fn expire(&mut self, now: Instant) {
        let limits = self.limits;
        for c in self.clients.iter_mut().filter(|c| !c.busy && !c.closed) {
            match c.line_start {
                Some(start) if now >= start + limits.line_time => {
                    self.tally.slow_lines += 1;
                    c.close_with(format!(
                        "request line not complete {} s after its first byte: closing (send \
                         each request as one line at once)",
                        limits.line_time.as_secs_f64()
                    ));
                }
                None if now >= c.waiting_since + limits.idle => {
                    self.tally.idle += 1;
                    c.close_with(format!(
                        "no request for {} s: closing (connect again to send one)",
                        limits.idle.as_secs_f64()
                    ));
                }
                _ => {}
            }
        }
    }
}

/// A handler thread: answer jobs until the server is gone.
fn handler(
    jobs: &Mutex<Receiver<Job>>,
    control: &Control,
    limits: &Limits,
    done: &Sender<Done>,
    wake: &UnixStream,
) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let id = job.id;
        // A panic closes that one connection; the thread goes on with the next job.
        let keep = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer(control, limits, job)
        }))
        .unwrap_or(false);
        if done.send(Done { id, keep }).is_err() {
            return;
        }
        let _ = (&*wake).write(&[1]);
    }
}

/// Answer one request line; whether the connection stays open.
fn answer(control: &Control, limits: &Limits, job: Job) -> bool {
    let out = &*job.stream;
    let within = limits.write_time;
    let line = match std::str::from_utf8(&job.line) {
        Ok(line) => line,
        Err(e) => {
            let text = error_line(format!(
                "request is not UTF-8 (invalid byte at offset {}): send JSON text",
                e.valid_up_to()
            ));
            return send(out, text.as_bytes(), within).is_ok();
        }
    };
    let req = match parse_request(line.trim_end()) {
        Ok(req) => req,
        Err(message) => {
            return send(out, error_line(message).as_bytes(), within).is_ok();
        }
    };
    // The whole connection table: a page at a time, never all of it in memory.
    if let Request::Connections {
        cursor,
        limit: None,
    } = req
    {
        return match listing::write_all(|r| control.call(r), |b| send(out, b, within), cursor) {
            Ok(()) => true,
            Err(listing::Stop::Refused(message)) => {
                send(out, error_line(message).as_bytes(), within).is_ok()
            }
            Err(listing::Stop::Cut(e)) => {
                warn!(error = %e, "connection listing cut short: connection closed");
                false
            }
        };
    }
    let reply = control.call(req);
    send(out, reply_line(&reply).as_bytes(), within).is_ok()
}

/// Write all of `bytes` to a non-blocking stream within `within`.
fn send(mut out: &UnixStream, mut bytes: &[u8], within: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + within;
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(
                        ErrorKind::TimedOut,
                        format!(
                            "the client did not take its reply within {} s",
                            within.as_secs_f64()
                        ),
                    ));
                }
                let ts = Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [PollFd::new(&out, PollFlags::OUT)];
                let _ = rustix::event::poll(&mut fds, Some(&ts));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;

    /// A control whose worker answers `version` after `delay`, and pages of a table of
    /// `conns` made-up entries; nothing else reaches it in these tests.
    fn control(delay: Duration, conns: u32) -> Arc<Control> {
        let (tx, rx) = channel::<Command>();
        let (wake, _other) = UnixStream::pair().unwrap();
        std::mem::forget(_other);
        let applier = Arc::new(steering::Applier::new(
            Vec::new(),
            steering::Spec::default(),
        ));
        std::thread::spawn(move || {
            while let Ok(cmd) = rx.recv() {
                let Command::Api(req, reply) = cmd else {
                    continue;
                };
                std::thread::sleep(delay);
                let answer = match req {
                    Request::Version => Reply::Version {
                        protocol: lvs_api::VERSION,
                        daemon: "test".into(),
                    },
                    Request::Connections { cursor, limit } => fake_page(conns, cursor, limit),
                    other => Reply::Error {
                        message: format!("not in this test: {other:?}"),
                    },
                };
                let _ = reply.send((answer, None));
            }
        });
        Arc::new(Control::new(tx, wake, applier))
    }

    /// Entries `cursor..` of a table of `n`, client port = slot.
    fn fake_page(n: u32, cursor: Option<u64>, limit: Option<u32>) -> Reply {
        let from = cursor.unwrap_or(0) as u32;
        let to = n.min(from + limit.unwrap_or(u32::MAX).min(lvs_api::CONNECTIONS_PAGE_MAX));
        let conns = (from..to).map(fake_conn).collect();
        Reply::Connections {
            conns,
            next: (to < n).then_some(u64::from(to)),
        }
    }

    fn fake_conn(i: u32) -> lvs_api::ConnInfo {
        lvs_api::ConnInfo {
            proto: lvs_api::Protocol::Udp,
            caddr: "198.51.100.10".parse().unwrap(),
            cport: i as u16,
            vaddr: "192.0.2.1".parse().unwrap(),
            vport: 53,
            daddr: "10.0.1.11".parse().unwrap(),
            dport: 53,
            state: "UDP".into(),
            expires_secs: 300,
            method: lvs_api::ForwardMethod::Masq,
            template: false,
        }
    }

    /// A server on a socket of its own with `limits`; stopped when dropped.
    struct Running {
        path: PathBuf,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Running {
        fn new(name: &str, limits: Limits, c: Arc<Control>) -> Running {
            let dir = std::env::temp_dir().join(format!("lvsd-ctl-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("s.sock");
            let listener = bind(&path).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let (s, p) = (Arc::clone(&stop), path.clone());
            let thread = Some(std::thread::spawn(move || serve(listener, c, s, p, limits)));
            Running { path, stop, thread }
        }

        fn connect(&self) -> UnixStream {
            let s = UnixStream::connect(&self.path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn limits() -> Limits {
        Limits {
            clients: 4,
            idle: Duration::from_secs(5),
            line: 64,
            line_time: Duration::from_secs(5),
            write_time: Duration::from_secs(5),
            handlers: 2,
        }
    }

    /// One line, without its newline ("" at the end of the stream).
    fn read_line(s: &mut UnixStream) -> String {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8(line).unwrap()
    }

    fn closed(s: &mut UnixStream) -> bool {
        s.read(&mut [0u8; 8]).map_or(true, |n| n == 0)
    }

    const VERSION: &[u8] = b"{\"v\":1,\"op\":\"version\"}\n";

    #[test]
    fn bad_bytes_garbage_and_long_lines_get_errors() {
        let r = Running::new("bad", limits(), control(Duration::ZERO, 0));
        let mut us = r.connect();
        // Not UTF-8: an error reply, and the connection stays usable.
        us.write_all(b"{\"v\":1,\"op\":\xff}\n").unwrap();
        let l = read_line(&mut us);
        assert!(l.contains("not UTF-8"), "{l}");
        us.write_all(b"not json\n\n   \n{\"v\":1}\n").unwrap();
        let l = read_line(&mut us);
        assert!(l.contains("not valid JSON"), "{l}");
        let l = read_line(&mut us);
        assert!(l.contains("bad request"), "blank lines skipped: {l}");
        us.write_all(VERSION).unwrap();
        assert!(read_line(&mut us).contains(r#""result":"version""#));
        // Longer than the limit: an error, then closed (one write: the server may close
        // before a second one).
        let mut long = vec![b'x'; 100];
        long.push(b'\n');
        us.write_all(&long).unwrap();
        let l = read_line(&mut us);
        assert!(l.contains("longer than 64 bytes"), "{l}");
        assert!(closed(&mut us));
        // The limit without a newline in sight.
        let mut us = r.connect();
        us.write_all(&[b'{'; 65]).unwrap();
        let l = read_line(&mut us);
        assert!(l.contains("longer than 64 bytes"), "{l}");
        // Requests sent together are answered in order, and a client that shuts its side
        // after its requests (as `socat` does) still gets every answer.
        let mut us = r.connect();
        us.write_all(b"nope\n{\"v\":1,\"op\":\"version\"}\nnope again\n")
            .unwrap();
        us.shutdown(Shutdown::Write).unwrap();
        assert!(read_line(&mut us).contains("not valid JSON"));
        assert!(read_line(&mut us).contains(r#""result":"version""#));
        assert!(read_line(&mut us).contains("not valid JSON"));
        assert!(closed(&mut us));
    }

    #[test]
    fn idle_clients_and_trickled_lines_are_closed_in_time() {
        let limits = Limits {
            idle: Duration::from_millis(400),
            line_time: Duration::from_millis(600),
            ..limits()
        };
        let r = Running::new("idle", limits, control(Duration::ZERO, 0));
        let start = Instant::now();
        let mut idle = r.connect();
        let l = read_line(&mut idle);
        let took = start.elapsed();
        assert!(l.contains("no request for 0.4 s"), "{l}");
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(closed(&mut idle));
        // A byte every 100 ms is never idle, but its line must be done in 600 ms.
        let mut slow = r.connect();
        let start = Instant::now();
        let mut told = String::new();
        for b in VERSION.iter().cycle().filter(|b| **b != b'\n') {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if start.elapsed() > Duration::from_secs(3) {
                break;
            }
            slow.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 256];
            if let Ok(n) = slow.read(&mut buf) {
                told = String::from_utf8_lossy(&buf[..n]).into_owned();
                break;
            }
            slow.set_nonblocking(false).unwrap();
        }
        let took = start.elapsed();
        assert!(
            told.contains("not complete 0.6 s after its first byte"),
            "{told:?}"
        );
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // A request answered restarts the idle time; the next one is served.
        let mut us = r.connect();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(250));
            us.write_all(VERSION).unwrap();
            assert!(read_line(&mut us).contains(r#""result":"version""#));
        }
    }

    #[test]
    fn a_new_client_closes_the_longest_idle_one_never_a_busy_one() {
        let limits = Limits {
            clients: 2,
            ..limits()
        };
        let r = Running::new("room", limits, control(Duration::from_millis(600), 0));
        let mut first = r.connect();
        std::thread::sleep(Duration::from_millis(50));
        let mut second = r.connect();
        // Started a line: goes after the idle one.
        second.write_all(b"{\"v\":").unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let mut third = r.connect();
        third.write_all(VERSION).unwrap();
        let l = read_line(&mut first);
        assert!(l.contains("closed to make room"), "{l}");
        assert!(closed(&mut first));
        let mut fourth = r.connect();
        let l = read_line(&mut second);
        assert!(l.contains("closed to make room"), "{l}");
        // third's request is under way: not closed, answered.
        assert!(read_line(&mut third).contains(r#""result":"version""#));
        // Both slots busy: the newcomer is told.
        fourth.write_all(VERSION).unwrap();
        third.write_all(VERSION).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let mut fifth = r.connect();
        let l = read_line(&mut fifth);
        assert!(l.contains("too many control connections at once (2"), "{l}");
        assert!(read_line(&mut fourth).contains(r#""result":"version""#));
        assert!(read_line(&mut third).contains(r#""result":"version""#));
    }

    #[test]
    fn a_whole_listing_is_streamed_and_a_client_that_does_not_read_is_dropped() {
        let limits = Limits {
            clients: 1,
            write_time: Duration::from_millis(500),
            ..limits()
        };
        let r = Running::new("list", limits, control(Duration::ZERO, 40_000));
        let mut us = r.connect();
        let mut lines = std::io::BufReader::new(us.try_clone().unwrap());
        let mut read_line = |_: &mut UnixStream| {
            let mut l = String::new();
            std::io::BufRead::read_line(&mut lines, &mut l).unwrap();
            l.trim_end().to_string()
        };
        us.write_all(b"{\"v\":1,\"op\":\"connections\"}\n").unwrap();
        let line = read_line(&mut us);
        let whole = serde_json::to_string(&Reply::Connections {
            conns: (0..40_000).map(fake_conn).collect(),
            next: None,
        })
        .unwrap();
        assert!(line == whole, "the listing differs from serde's line");
        // A page, as lvsadm asks.
        us.write_all(b"{\"v\":1,\"op\":\"connections\",\"cursor\":39990,\"limit\":100}\n")
            .unwrap();
        let page: Reply = serde_json::from_str(&read_line(&mut us)).unwrap();
        assert_eq!(page, fake_page(40_000, Some(39_990), Some(100)));
        // A client asking for the whole table and not reading it holds its slot for the
        // write time, not longer.
        us.write_all(b"{\"v\":1,\"op\":\"connections\"}\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        loop {
            let mut next = r.connect();
            let _ = next.write_all(VERSION);
            let l = super::tests::read_line(&mut next);
            if l.contains(r#""result":"version""#) {
                break;
            }
            assert!(l.contains("too many control connections"), "{l}");
            assert!(start.elapsed() < Duration::from_secs(3), "slot still held");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
    }
}
