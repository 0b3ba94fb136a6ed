//! `lvs-lab demo`: the README's main command. For NAT, DR and Tun in turn: build the lab, start
//! the real servers' HTTP/UDP echo, prepare the real servers, start `lvsd` in the director
//! namespace, configure `TCP VIP:80` and `UDP VIP:5353` with `rr` over rs1..rs3 through
//! `lvsadm` (printing each command as an operator would type it), send curl requests and one
//! UDP datagram from the client, print which real server answered and which client address it
//! saw, the director's tables and packet counters, then tear everything down.
//!
//! `lvsd`, `lvsadm` and `lvs-realserver` are taken from the directory of the running `lvs-lab`
//! (so `cargo build --release --bins` then `target/release/lvs-lab demo`).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lvs_lab::{CLIENT_IP, Lab, Method, RIPS, VIP};

/// The binaries the demo drives.
struct Bins {
    lab: PathBuf,
    lvsd: PathBuf,
    lvsadm: PathBuf,
    realserver: PathBuf,
}

impl Bins {
    fn locate() -> Result<Bins> {
        let lab = std::env::current_exe().context("locating lvs-lab")?;
        let dir = lab
            .parent()
            .context("lvs-lab has no directory")?
            .to_path_buf();
        let find = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if !p.is_file() {
                bail!(
                    "{} not found next to lvs-lab: build every binary first \
                     (`cargo build --release --bins`, or run scripts/demo.sh)",
                    p.display()
                );
            }
            Ok(p)
        };
        Ok(Bins {
            lvsd: find("lvsd")?,
            lvsadm: find("lvsadm")?,
            realserver: find("lvs-realserver")?,
            lab,
        })
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Nat => "NAT",
        Method::Dr => "DR",
        Method::Tun => "Tun",
    }
}

fn forward_flag(m: Method) -> &'static str {
    match m {
        Method::Nat => "-m",
        Method::Dr => "-g",
        Method::Tun => "-i",
    }
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL; the exit status if it could be reaped.
fn terminate(c: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = c.try_wait() {
        return Some(st);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    c.wait().ok()
}

/// Per-method outcome.
struct Outcome {
    line: String,
    ok: bool,
}

/// One method's run; processes it started are stopped when it is dropped.
struct Run<'a> {
    bins: &'a Bins,
    method: Method,
    lab: Lab,
    socket: PathBuf,
    log: PathBuf,
    lvsd: Option<Child>,
    decaps: Vec<Child>,
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.lvsd.take() {
            terminate(&mut c, Duration::from_secs(5));
        }
        for mut c in self.decaps.drain(..) {
            terminate(&mut c, Duration::from_secs(3));
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Run<'_> {
    fn say_ns(&self, role: &str, cmd: &str) {
        println!("[{role}]# {cmd}");
    }

    fn lvsadm(&self, args: &[&str]) -> Result<String> {
        println!("[director]# lvsadm {}", args.join(" "));
        let out = Command::new(&self.bins.lvsadm)
            .args(args)
            .env("LVSD_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .output()
            .context("running lvsadm")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "`lvsadm {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(stdout)
    }

    fn lvsd_log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn prepare_real_servers(&mut self) -> Result<()> {
        let vip = VIP.to_string();
        let rs = self.bins.realserver.to_str().context("non-UTF-8 path")?;
        for i in 0..RIPS.len() {
            let ns = self.lab.rs_ns(i);
            let role = format!("rs{}", i + 1);
            match self.method {
                Method::Nat => {}
                Method::Dr => {
                    self.say_ns(
                        &role,
                        &format!("lvs-realserver setup --vip {vip} --method dr"),
                    );
                    let out = self
                        .lab
                        .exec_ok(&ns, &[rs, "setup", "--vip", &vip, "--method", "dr"])?;
                    print!("{out}");
                }
                Method::Tun => {
                    self.say_ns(
                        &role,
                        &format!("lvs-realserver setup --vip {vip} --method tun &"),
                    );
                    if let Some((c, line)) = lvs_lab::start_tun_decapsulator(&ns, rs, &vip)
                        .with_context(|| format!("preparing {role} for Tun"))?
                    {
                        println!("  {line}");
                        self.decaps.push(c);
                    }
                }
            }
        }
        Ok(())
    }

    fn start_lvsd(&mut self) -> Result<()> {
        self.say_ns(
            "director",
            &format!("lvsd --socket {} &", self.socket.display()),
        );
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.lab.director_ns()])
            .arg(&self.bins.lvsd)
            .arg("--socket")
            .arg(&self.socket)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting lvsd")?;
        self.lvsd = Some(child);
        let start = Instant::now();
        loop {
            if self.socket.exists()
                && Command::new(&self.bins.lvsadm)
                    .args(["-L", "-n"])
                    .env("LVSD_SOCKET", &self.socket)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                break;
            }
            if let Some(st) = self.lvsd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.lvsd = None;
                bail!("lvsd exited at start-up ({st}):\n{}", self.lvsd_log_tail());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "lvsd's socket did not answer within 10 s:\n{}",
                    self.lvsd_log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("[director]# export LVSD_SOCKET={}", self.socket.display());
        Ok(())
    }

    fn configure(&self) -> Result<()> {
        let m = forward_flag(self.method);
        for (p, port) in [("-t", 80u16), ("-u", 5353)] {
            let vp = format!("{VIP}:{port}");
            self.lvsadm(&["-A", p, &vp, "-s", "rr"])?;
            for rip in RIPS {
                let rp = format!("{rip}:{port}");
                self.lvsadm(&["-a", p, &vp, "-r", &rp, m])?;
            }
        }
        Ok(())
    }

    /// Runs the method's whole demo; `Err` for set-up failures.
    fn run(&mut self, requests: usize) -> Result<Outcome> {
        let name = method_name(self.method);
        let mut problems = Vec::new();
        self.prepare_real_servers()?;
        self.start_lvsd()?;
        self.configure()?;

        let url = format!("http://{VIP}/");
        println!();
        println!("[client]$ for i in $(seq {requests}); do curl -s {url}; done");
        let mut per = [0usize; 3];
        let mut seen: Vec<Ipv4Addr> = Vec::new();
        let mut answered = 0;
        for n in 1..=requests {
            let out = self
                .lab
                .exec(&self.lab.client_ns(), &["curl", "-sS", "-m", "5", &url])?;
            let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match parse_answer(&body) {
                Some((rs, client)) if out.status.success() => {
                    answered += 1;
                    per[rs] += 1;
                    if !seen.contains(&client) {
                        seen.push(client);
                    }
                    println!(
                        "  request {n:>3}: answered by rs{} ({}), which saw client {}",
                        rs + 1,
                        RIPS[rs],
                        body.split(" saw ").nth(1).unwrap_or("?")
                    );
                    if client != CLIENT_IP {
                        problems.push(format!(
                            "request {n}: rs{} saw {client}, not the client's {CLIENT_IP}",
                            rs + 1
                        ));
                    }
                }
                _ => {
                    println!(
                        "  request {n:>3}: FAILED {} {}",
                        body,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    problems.push(format!("request {n} failed"));
                }
            }
        }
        let (lo, hi) = (per.iter().min().copied(), per.iter().max().copied());
        if answered == requests && hi.unwrap_or(0) - lo.unwrap_or(0) > 1 {
            problems.push(format!("rr spread is uneven: {per:?}"));
        }

        println!();
        println!("[client]$ lvs-lab udp-request {VIP}:5353 hello");
        let exe = self.bins.lab.to_str().context("non-UTF-8 path")?;
        let out = self.lab.exec(
            &self.lab.client_ns(),
            &[exe, "udp-request", &format!("{VIP}:5353"), "hello"],
        )?;
        let udp = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let udp_ok = out.status.success()
            && parse_answer(&udp).is_some_and(|(_, c)| c == CLIENT_IP)
            && udp.ends_with(" hello");
        if udp_ok {
            println!("  UDP answer: {udp}");
        } else {
            println!(
                "  UDP request FAILED: {udp} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            problems.push("the UDP request failed".into());
        }

        println!();
        print!("{}", self.lvsadm(&["-L", "-n"])?);
        println!();
        print!("{}", self.lvsadm(&["-L", "-n", "--stats"])?);
        let exact = Command::new(&self.bins.lvsadm)
            .args(["-L", "-n", "--stats", "--exact"])
            .env("LVSD_SOCKET", &self.socket)
            .output()
            .context("running lvsadm")?;
        let (in_pkts, out_pkts) = total_packets(&String::from_utf8_lossy(&exact.stdout));
        match self.method {
            Method::Nat if out_pkts == 0 => {
                problems.push("NAT: no reply packet went through the director".into())
            }
            Method::Dr | Method::Tun if out_pkts != 0 => problems.push(format!(
                "{name}: {out_pkts} reply packets went through the director"
            )),
            _ => {}
        }

        println!();
        let Some(mut lvsd) = self.lvsd.take() else {
            bail!("lvsd is not running");
        };
        self.say_ns("director", &format!("kill -TERM {}    # lvsd", lvsd.id()));
        let status = terminate(&mut lvsd, Duration::from_secs(5));
        let left = self
            .lab
            .exec(
                &self.lab.director_ns(),
                &["nft", "list", "table", "netdev", "lvsd"],
            )?
            .status
            .success();
        if status.and_then(|s| s.code()) == Some(0) && !left && !self.socket.exists() {
            println!("  lvsd exited 0; steering table `netdev lvsd` and control socket removed");
        } else {
            println!(
                "  lvsd stop: {status:?}; steering table left: {left}; socket left: {}",
                self.socket.exists()
            );
            problems.push("lvsd did not stop cleanly".into());
        }

        let seen_s = if seen.is_empty() {
            "none".to_string()
        } else {
            seen.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut line = format!(
            "{name}: {answered}/{requests} answered, rs1={} rs2={} rs3={}, client address seen: \
             {seen_s}, UDP {}, director saw {in_pkts} in / {out_pkts} out packets",
            per[0],
            per[1],
            per[2],
            if udp_ok { "ok" } else { "FAILED" }
        );
        if !problems.is_empty() {
            let _ = write!(line, " -- FAILED: {}", problems.join("; "));
        }
        Ok(Outcome {
            line,
            ok: problems.is_empty(),
        })
    }
}

/// `rsN saw IP:PORT ...` → (N-1, IP).
fn parse_answer(body: &str) -> Option<(usize, Ipv4Addr)> {
    let n: usize = body.strip_prefix("rs")?.split(' ').next()?.parse().ok()?;
    let ip = body
        .split(" saw ")
        .nth(1)?
        .split(':')
        .next()?
        .parse()
        .ok()?;
    (1..=3).contains(&n).then_some((n - 1, ip))
}

/// Sums InPkts/OutPkts of the service lines of `lvsadm -L -n --stats --exact`.
fn total_packets(text: &str) -> (u64, u64) {
    let mut total = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 7 && ["TCP", "UDP", "SCTP", "FWM"].contains(&f[0]) {
            total.0 += f[3].parse::<u64>().unwrap_or(0);
            total.1 += f[4].parse::<u64>().unwrap_or(0);
        }
    }
    total
}

/// Runs the demo for `methods`; returns whether everything worked.
pub fn run(methods: &[Method], requests: usize) -> Result<bool> {
    if !lvs_lab::is_root() {
        bail!("the demo needs root (network namespaces, AF_PACKET, nftables): run it with sudo");
    }
    let nft = Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !nft.is_ok_and(|s| s.success()) {
        bail!("`nft` not found: lvsd needs nftables (run scripts/install-deps.sh)");
    }
    let bins = Bins::locate()?;
    if let Ok(stale) = lvs_lab::cleanup_stale()
        && !stale.is_empty()
    {
        println!("removed stale labs: {}", stale.join(" "));
    }
    let mut summary = Vec::new();
    let mut all_ok = true;
    for &method in methods {
        let name = method_name(method);
        println!();
        println!("================ LVS-{name} ================");
        let lab = Lab::build(method, None)?;
        println!("{}", lab.describe().trim_end());
        lab.start_servers(&bins.lab)
            .context("starting the real servers' HTTP/UDP echo")?;
        let tag = format!("{}-{method}", std::process::id());
        let mut run = Run {
            bins: &bins,
            method,
            socket: PathBuf::from(format!("/tmp/lvs-lab-demo-{tag}.sock")),
            log: PathBuf::from(format!("/tmp/lvs-lab-demo-{tag}.log")),
            lab,
            lvsd: None,
            decaps: Vec::new(),
        };
        let outcome = run.run(requests).unwrap_or_else(|e| Outcome {
            line: format!("{name}: FAILED: {e:#}"),
            ok: false,
        });
        if !outcome.ok {
            let tail = run.lvsd_log_tail();
            if !tail.is_empty() {
                println!("lvsd log (last lines):\n{tail}");
            }
        }
        drop(run);
        println!("  lab {name} removed");
        println!();
        println!("{}", outcome.line);
        all_ok &= outcome.ok;
        summary.push(outcome.line);
    }
    println!();
    println!("================ summary ================");
    for l in &summary {
        println!("{l}");
    }
    Ok(all_ok)
}

/// `lvs-lab udp-request ADDR PAYLOAD`: one datagram, print the answer (3 tries, 2 s each).
pub fn udp_request(addr: std::net::SocketAddr, payload: &str) -> Result<String> {
    let sock = std::net::UdpSocket::bind(if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .context("binding a UDP socket")?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 65536];
    for _ in 0..3 {
        sock.send_to(payload.as_bytes(), addr)
            .with_context(|| format!("sending to {addr}"))?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).with_context(|| format!("receiving from {addr}")),
        }
    }
    bail!("no answer from {addr} after 3 tries")
}
