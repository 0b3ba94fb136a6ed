//! `lvsadm`: ipvsadm's command line for lvsd. See the library for the work.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::Path;

use lvs_api::{Client, ClientError, Reply, Request};
use lvsadm::{Daemon, DaemonError};

/// The real control socket, connected on first use.
#[derive(Default)]
struct SocketDaemon {
    client: Option<Client>,
}

impl Daemon for SocketDaemon {
    fn call(&mut self, socket: Option<&Path>, request: Request) -> Result<Reply, DaemonError> {
        if self.client.is_none() {
            let path = lvs_api::socket_path(socket);
            let client =
                Client::connect(&path).map_err(|e| DaemonError::Unreachable(e.to_string()))?;
            self.client = Some(client);
        }
        let client = self.client.as_mut().expect("connected above");
        client.call(request).map_err(|e| match e {
            ClientError::Io(..) | ClientError::Protocol(_) => DaemonError::Failed(e.to_string()),
        })
    }
}

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    // The connection listing goes out a page at a time, the rest once done.
    let outcome = lvsadm::run_to(
        &argv,
        &mut SocketDaemon::default(),
        &mut stdin.lock(),
        &lvsadm::names::System::default(),
        &mut out,
    );
    // Output errors (a closed pipe) are not worth a panic; the exit status still tells.
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    std::process::exit(outcome.code);
}
