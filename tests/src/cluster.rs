//! Harness for cluster tests: real `nats-server` processes (JetStream, `sync_interval:
//! always`, routed into one cluster on loopback) and Hotline nodes (the real `hotline serve
//! --cluster … --node-id …`) that share one TLS certificate, so one CA file serves the
//! clients of every node. Nothing here stands in for NATS or the broker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Broker;

/// How long a (re)started NATS server may take to report JetStream healthy.
pub const NATS_READY: Duration = Duration::from_secs(60);

/// The `nats-server` binary (2.15.1, installed into `target/tools/bin` by `scripts/setup
/// bench`). A missing binary fails the test with how to get it: never a skip.
pub fn nats_server_bin() -> Result<PathBuf> {
    for dir in std::env::split_paths(&crate::tools_path()) {
        let path = dir.join("nats-server");
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!("nats-server not found in target/tools/bin or on PATH; install it with `scripts/setup bench`")
}

/// One `nats-server` process of a [`NatsCluster`].
struct NatsServer {
    name: String,
    /// Client port.
    port: u16,
    /// Monitoring (HTTP) port: `/healthz`, `/jsz`.
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// 1 or 3 `nats-server` processes with JetStream on free loopback ports, routed into one
/// cluster (when more than one), each with its store in its own folder under `dir`.
/// Every server is killed (SIGKILL) when this is dropped.
pub struct NatsCluster {
    dir: PathBuf,
    servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` servers (1 or 3: JetStream clusters want an odd size) with their stores,
    /// configs and logs under `dir`, and waits until JetStream is healthy on every one and
    /// (for a cluster) the meta group has a leader.
    pub fn start(dir: &Path, n: usize) -> Result<NatsCluster> {
        if n == 0 {
            bail!("a NATS cluster needs at least one server");
        }
        let bin = nats_server_bin()?;
        std::fs::create_dir_all(dir)?;
        // Hold every listener until all ports are chosen, so no two are the same.
        let listeners: Vec<TcpListener> = (0..3 * n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?;
        drop(listeners);
        let route_ports: Vec<u16> = (0..n).map(|i| ports[3 * i + 1]).collect();
        let routes = route_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect::<Vec<_>>().join(", ");
        let mut servers = Vec::new();
        for i in 0..n {
            let name = format!("nats-{i}");
            let (port, route_port, http_port) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let store = dir.join(&name).join("store");
            std::fs::create_dir_all(&store)?;
            let cluster = if n > 1 {
                format!("cluster {{\n  name: hotline-test\n  listen: 127.0.0.1:{route_port}\n  routes: [{routes}]\n}}\n")
            } else {
                String::new()
            };
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http_port}\n\
                 jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n{cluster}"
            );
            let config = dir.join(&name).join("nats.conf");
            std::fs::write(&config, text)?;
            servers.push(NatsServer { name: name.clone(), port, http_port, config, log: dir.join(&name).join("nats.log"), child: None });
        }
        let mut cluster = NatsCluster { dir: dir.to_path_buf(), servers };
        for i in 0..n {
            cluster.spawn(&bin, i)?;
        }
        cluster.wait_ready(NATS_READY)?;
        Ok(cluster)
    }

    /// How many servers the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the cluster has no server (never: [`NatsCluster::start`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The replica count streams and buckets can have here: 3, or 1 for a single server.
    pub fn replicas(&self) -> usize {
        self.servers.len().min(3)
    }

    /// The folder holding every server's config, store and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The client URL of every server (`nats://127.0.0.1:PORT`), in order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.port)).collect()
    }

    /// The client URLs comma-separated, as `hotline serve --cluster` takes them.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// The monitoring endpoint of server `i` (`/healthz`, `/jsz`, `/varz`).
    pub fn monitor(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.servers[i].http_port))
    }

    /// The log file of server `i` (appended to across restarts).
    pub fn log(&self, i: usize) -> &Path {
        &self.servers[i].log
    }

    /// Whether server `i` runs (was started and not killed or stopped since).
    pub fn is_running(&self, i: usize) -> bool {
        self.servers[i].child.is_some()
    }

    /// Kills server `i` with SIGKILL (no shutdown code runs) and reaps it.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.servers[i].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts server `i` again with the same ports, config and store, and waits until it
    /// reports JetStream healthy (its streams caught up) and the meta group has a leader.
    pub fn start_again(&mut self, i: usize) -> Result<()> {
        self.start_again_unready(i)?;
        self.wait_ready(NATS_READY)
    }

    /// Starts server `i` again with the same ports, config and store, and returns as soon
    /// as it listens (its streams may still be catching up: see [`NatsCluster::wait_ready`]).
    pub fn start_again_unready(&mut self, i: usize) -> Result<()> {
        if self.servers[i].child.is_some() {
            bail!("{} is running", self.servers[i].name);
        }
        let bin = nats_server_bin()?;
        self.spawn(&bin, i)
    }

    /// Stops every server gracefully (SIGTERM) and waits for each to exit.
    pub fn stop(&mut self) -> Result<()> {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(20);
                while child.try_wait()?.is_none() {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        bail!("{} did not stop within 20 s of SIGTERM", server.name);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Ok(())
    }

    /// `GET path` on server `i`'s monitoring endpoint: the status code and the body.
    pub fn monitor_get(&self, i: usize, path: &str) -> Result<(u16, String)> {
        http_get(self.monitor(i), path)
    }

    /// Waits (up to `limit`) until every running server answers `/healthz` with 200
    /// (JetStream enabled, its streams and consumers current) and, for a cluster, a
    /// running server names a meta leader that is itself running.
    pub fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let Err(last) = self.ready() else { return Ok(()) };
            if Instant::now() > deadline {
                bail!("NATS not ready within {limit:?}: {last:#} (logs in {})", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ready(&self) -> Result<()> {
        let running: Vec<usize> = (0..self.servers.len()).filter(|&i| self.is_running(i)).collect();
        for &i in &running {
            let (status, body) = self.monitor_get(i, "/healthz")?;
            if status != 200 {
                bail!("{} /healthz: {status} {body}", self.servers[i].name);
            }
        }
        if self.servers.len() > 1 {
            let Some(&first) = running.first() else { bail!("no server runs") };
            let (_, body) = self.monitor_get(first, "/jsz")?;
            let jsz: serde_json::Value = serde_json::from_str(&body).context("parsing /jsz")?;
            let leader = jsz["meta_cluster"]["leader"].as_str().unwrap_or_default();
            if !running.iter().any(|&i| self.servers[i].name == leader) {
                bail!("no running meta leader (leader {leader:?})");
            }
        }
        Ok(())
    }

    fn spawn(&mut self, bin: &Path, i: usize) -> Result<()> {
        let server = &mut self.servers[i];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::OpenOptions::new().create(true).append(true).open(&server.log)?;
            let mut child = Command::new(bin)
                .arg("--config")
                .arg(&server.config)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            // Up when its monitoring port answers; a port still held by the killed
            // process makes it exit at once: try again for a while.
            loop {
                if let Some(status) = child.try_wait()? {
                    if Instant::now() > deadline {
                        bail!("{} exited with {status}: {}", server.name, tail(&server.log));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    break;
                }
                if TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], server.http_port))).is_ok() {
                    server.child = Some(child);
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("{} did not listen within 10 s: {}", server.name, tail(&server.log));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // The monitoring endpoint may answer chunked: good enough for `status`/JSON checks of
    // small bodies, whose single chunk is framed by a size line and a terminator.
    let body = if response.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body.split("\r\n").skip(1).step_by(2).collect::<Vec<_>>().join("")
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// One development certificate (localhost, 127.0.0.1, ::1) for every node of a cluster:
/// installed as each node's `data/tls/{cert,key}.pem` before it starts, so the broker
/// serves it instead of making its own, and [`SharedTls::ca`] serves clients of every node.
pub struct SharedTls {
    dir: PathBuf,
}

impl SharedTls {
    /// Makes the certificate and key in `dir` (or keeps the ones already there).
    pub fn make(dir: &Path) -> Result<SharedTls> {
        std::fs::create_dir_all(dir)?;
        let tls = SharedTls { dir: dir.to_path_buf() };
        if !tls.ca().exists() {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
            let certified = rcgen::generate_simple_self_signed(names).context("generating the shared certificate")?;
            write_private(&tls.key(), certified.signing_key.serialize_pem().as_bytes())?;
            std::fs::write(tls.ca(), certified.cert.pem())?;
        }
        Ok(tls)
    }

    /// The certificate: the CA file clients of any node trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Copies the certificate and key into `data/tls/`, where a broker with data folder
    /// `data` looks for its development certificate.
    pub fn install(&self, data: &Path) -> Result<()> {
        let tls = data.join("tls");
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&tls)?;
        if !tls.join("cert.pem").exists() {
            write_private(&tls.join("key.pem"), &std::fs::read(self.key())?)?;
            std::fs::write(tls.join("cert.pem"), std::fs::read(self.ca())?)?;
        }
        Ok(())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

/// Starts Hotline node `node_id` of the cluster `nats` serves: `hotline serve --cluster
/// <urls> --node-id <node_id>` with data folder `dir/<node_id>/data`, the shared
/// certificate and `cluster.replicas` = [`NatsCluster::replicas`]. Its stderr goes to the
/// test's. [`Broker::start_again`] restarts it on the same ports and folder.
pub fn start_node(nats: &NatsCluster, node_id: &str, dir: &Path, tls: &SharedTls) -> Result<Broker> {
    start_node_with(nats, node_id, dir, tls, "", &[])
}

/// [`start_node`] with more config and arguments: `toml` is appended to the node's config
/// file right after its `[cluster]` header (so lines before any other table header set
/// `cluster.*` keys, e.g. `sweep_ms = 200`), `args` to `hotline serve`.
pub fn start_node_with(nats: &NatsCluster, node_id: &str, dir: &Path, tls: &SharedTls, toml: &str, args: &[&str]) -> Result<Broker> {
    let home = dir.join(node_id);
    let data = home.join("data");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&data)?;
    tls.install(&data)?;
    let config = home.join("hotline.toml");
    std::fs::write(&config, format!("[cluster]\nreplicas = {}\n{toml}\n", nats.replicas()))?;
    let config = config.to_str().context("temporary path is not UTF-8")?.to_string();
    let urls = nats.url_list();
    let mut all = vec!["--config", &config, "--cluster", &urls, "--node-id", node_id];
    all.extend_from_slice(args);
    Broker::start_at(data, &all, None, None).with_context(|| format!("starting node {node_id} on {urls}"))
}

/// A whole test cluster in one temporary folder: NATS servers, Hotline nodes `n1`, `n2`, …
/// and their shared certificate. Set `HOTLINE_KEEP_CLUSTER=1` to keep the folder (stores,
/// NATS logs, node data) after the test; its path is printed.
pub struct Cluster {
    pub nodes: Vec<Broker>,
    pub nats: NatsCluster,
    pub tls: SharedTls,
    /// Appended to every node's config (see [`start_node_with`]).
    toml: String,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Cluster {
    /// `servers` NATS servers (1 or 3) and `nodes` Hotline nodes on them.
    pub fn start(servers: usize, nodes: usize) -> Result<Cluster> {
        Cluster::start_with(servers, nodes, "")
    }

    /// [`Cluster::start`] with `toml` in every node's config (see [`start_node_with`]).
    pub fn start_with(servers: usize, nodes: usize, toml: &str) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_path_buf();
        let nats = NatsCluster::start(&path.join("nats"), servers)?;
        let tls = SharedTls::make(&path.join("tls"))?;
        let mut cluster = Cluster { nodes: Vec::new(), nats, tls, toml: toml.to_string(), dir: Some(dir), path };
        for _ in 0..nodes {
            cluster.add_node()?;
        }
        Ok(cluster)
    }

    /// Starts one more node (`n<count+1>`); returns its index in [`Cluster::nodes`].
    pub fn add_node(&mut self) -> Result<usize> {
        let id = format!("n{}", self.nodes.len() + 1);
        let node = start_node_with(&self.nats, &id, &self.path.join("nodes"), &self.tls, &self.toml, &[])?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// The folder holding everything.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The CA file clients of every node trust.
    pub fn ca(&self) -> PathBuf {
        self.tls.ca()
    }

    /// Connection options for node `i`.
    pub fn options(&self, i: usize) -> hotline_client::ConnectOptions {
        hotline_client::ConnectOptions::new(self.nodes[i].addr, self.ca())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes first, so none of them logs the servers going away.
        self.nodes.clear();
        if std::env::var_os("HOTLINE_KEEP_CLUSTER").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster folder kept: {}", dir.keep().display());
            }
        }
    }
}
