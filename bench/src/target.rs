//! The Hotline broker a workload talks to: one the benchmark starts (`hotline serve` beside
//! it, temporary data folder) or one already running (`--addr`, `--ca`, `--data`,
//! `--admin`, `--broker-pid`). Registers numbers through its development SMS outbox, reads
//! its admin endpoint, its data folder and its process (CPU, memory) in /proc.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hotline_client::{Client, ClientError, ConnectOptions};
use hotline_protocol::ErrorCode;
use hotline_tests::Broker;

use crate::sys;

/// Which broker to measure (flattened into every workload that talks to one).
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Measure the broker already running at HOST:PORT (its QUIC address) instead of
    /// starting one. Registering the benchmark's numbers needs `--data`.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    /// With --addr: the certificate (PEM) to trust [default: DIR/tls/cert.pem of --data].
    #[arg(long, value_name = "PATH", requires = "addr")]
    pub ca: Option<PathBuf>,
    /// With --addr: the broker's data folder (its `--data`). The benchmark reads the
    /// registration codes from DIR/sms-outbox.jsonl (the development SMS provider, the
    /// only one), the certificate, the store's disk usage and the plugin folder there.
    #[arg(long, value_name = "DIR", requires = "addr")]
    pub data: Option<PathBuf>,
    /// With --addr: the broker's admin endpoint (metrics, plugins).
    #[arg(long, value_name = "HOST:PORT", requires = "addr", default_value = "127.0.0.1:9464")]
    pub admin: SocketAddr,
    /// With --addr: the broker's process id, for its CPU time and memory (/proc). Without
    /// it those figures are not reported.
    #[arg(long, value_name = "PID", requires = "addr")]
    pub broker_pid: Option<u32>,
    /// With --addr: more nodes of the same cluster (QUIC addresses, comma-separated): the
    /// workload's clients log in round-robin on --addr and these (registration goes
    /// through --addr; the CPU and memory figures are --addr's process only).
    #[arg(long, value_name = "HOST:PORT,...", requires = "addr", value_delimiter = ',')]
    pub nodes: Vec<SocketAddr>,
    /// Storage durability of the broker the benchmark starts: fsync or buffered.
    #[arg(long, default_value = "fsync")]
    pub durability: String,
}

/// A broker to measure, started here or already running.
pub struct Target {
    /// The broker process the benchmark started (killed when dropped).
    _owned: Option<Broker>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca: PathBuf,
    /// Data folder, if known.
    pub data: Option<PathBuf>,
    pub pid: Option<u32>,
    /// Where [`Target::login`] connects, in turn: `addr`, then `--nodes`.
    nodes: Vec<SocketAddr>,
    logins: std::sync::atomic::AtomicUsize,
    /// Prefix of the benchmark's phone numbers: fixed for a fresh broker, from the clock
    /// for a running one (the registrar allows 5 code requests per number and hour).
    prefix: String,
}

/// The broker config the benchmark starts with: `durability`, and up to 2 s per plugin call
/// so that registering many numbers at once survives a busy machine (messages take far
/// less; a message whose router call timed out would show as failed).
fn config(durability: &str) -> String {
    format!("[storage]\ndurability = \"{durability}\"\n\n[plugins]\ncall_timeout_ms = 2000\n")
}

impl Target {
    /// Starts a broker, or describes the one given with `--addr`.
    pub fn new(args: &BrokerArgs) -> Result<Target> {
        if !["fsync", "buffered"].contains(&args.durability.as_str()) {
            bail!("--durability is fsync or buffered, not {:?}", args.durability);
        }
        let Some(addr) = args.addr else {
            let broker = Broker::start_with_config(&config(&args.durability))?;
            return Ok(Target {
                addr: broker.addr,
                admin: broker.admin,
                ca: broker.data.join("tls/cert.pem"),
                data: Some(broker.data.clone()),
                pid: broker.pid(),
                nodes: vec![broker.addr],
                logins: Default::default(),
                _owned: Some(broker),
                prefix: "+1555".into(),
            });
        };
        let ca = match (&args.ca, &args.data) {
            (Some(ca), _) => ca.clone(),
            (None, Some(data)) => data.join("tls/cert.pem"),
            (None, None) => bail!("--addr needs --ca PATH or --data DIR (whose tls/cert.pem is trusted)"),
        };
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        Ok(Target {
            _owned: None,
            addr,
            admin: args.admin,
            ca,
            data: args.data.clone(),
            pid: args.broker_pid,
            nodes: std::iter::once(addr).chain(args.nodes.iter().copied()).collect(),
            logins: Default::default(),
            prefix: format!("+2{:05}", secs % 100_000),
        })
    }

    /// `n` phone numbers for this run; `group` (0-9) keeps different roles apart.
    pub fn phones(&self, group: u32, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{}{group}{i:06}", self.prefix)).collect()
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.addr, self.ca.clone())
    }

    /// The broker's process, for CPU time and memory (None: not known).
    pub fn process(&self) -> Option<sys::Process> {
        self.pid.map(sys::Process::new)
    }

    /// The data folder, or an error naming the flag that gives it.
    pub fn data(&self) -> Result<&PathBuf> {
        self.data.as_ref().context("this needs the broker's data folder: --data DIR")
    }

    /// The admin endpoint.
    pub fn admin(&self) -> Admin {
        Admin(self.admin)
    }

    /// Logs `phone` in on a new connection, to the next node in turn (`--nodes`).
    pub async fn login(&self, phone: &str, key: &str) -> Result<Client> {
        let turn = self.logins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let options = ConnectOptions::new(self.nodes[turn % self.nodes.len()], self.ca.clone());
        let mut client = Client::connect(&options).await?;
        client.login(phone, key).await.with_context(|| format!("logging in {phone}"))?;
        Ok(client)
    }

    /// Registers `phones` as an app does (request a code, read the SMS, verify), on
    /// `workers` connections: all codes are requested, the outbox is read once, then the
    /// codes are verified. Returns the keys in `phones`' order.
    pub async fn register(&self, phones: &[String], workers: usize) -> Result<Vec<String>> {
        let outbox = self
            .data()
            .context("registering the benchmark's numbers reads the broker's SMS outbox")?
            .join("sms-outbox.jsonl");
        let workers = workers.clamp(1, phones.len().max(1));
        let shares: Vec<Vec<(usize, String)>> =
            (0..workers).map(|w| phones.iter().cloned().enumerate().skip(w).step_by(workers).collect()).collect();
        let mut requests = Vec::new();
        for share in shares.clone() {
            let options = self.options();
            requests.push(tokio::spawn(async move {
                let mut client = Client::connect(&options).await?;
                for (_, phone) in &share {
                    request_code(&mut client, phone).await?;
                }
                anyhow::Ok(client)
            }));
        }
        let mut clients = Vec::new();
        for request in requests {
            clients.push(request.await??);
        }
        let text = std::fs::read_to_string(&outbox).with_context(|| format!("reading the SMS outbox {}", outbox.display()))?;
        let mut codes = std::collections::HashMap::new();
        for line in text.lines() {
            let sms: serde_json::Value = serde_json::from_str(line)?;
            let (Some(to), Some(text)) = (sms["to"].as_str(), sms["text"].as_str()) else { continue };
            if let Some(code) = text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 5) {
                codes.insert(to.to_string(), code.to_string());
            }
        }
        let mut verifies = Vec::new();
        for (mut client, share) in clients.into_iter().zip(shares) {
            let share: Vec<(usize, String, Option<String>)> =
                share.into_iter().map(|(i, phone)| (i, phone.clone(), codes.get(&phone).cloned())).collect();
            verifies.push(tokio::spawn(async move {
                let mut keys = Vec::new();
                for (i, phone, code) in share {
                    let code = code.with_context(|| format!("no SMS to {phone} in the outbox"))?;
                    // A registrar call that ran out of time may have used the code: such
                    // numbers register again one by one below.
                    match client.verify(&phone, &code).await {
                        Ok(key) => keys.push((i, Some(key))),
                        Err(ClientError::Refused { .. }) => keys.push((i, None)),
                        Err(e) => return Err(e).with_context(|| format!("verifying {phone}")),
                    }
                }
                client.close().await;
                anyhow::Ok(keys)
            }));
        }
        let mut keys = vec![String::new(); phones.len()];
        for verify in verifies {
            for (i, key) in verify.await?? {
                keys[i] = match key {
                    Some(key) => key,
                    None => self.register_one(&phones[i], &outbox).await?,
                };
            }
        }
        Ok(keys)
    }

    /// Registers one number (request, read the outbox, verify).
    async fn register_one(&self, phone: &str, outbox: &std::path::Path) -> Result<String> {
        let mut client = Client::connect(&self.options()).await?;
        request_code(&mut client, phone).await?;
        let text = std::fs::read_to_string(outbox).with_context(|| format!("reading the SMS outbox {}", outbox.display()))?;
        let code = text
            .lines()
            .rev()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|sms| sms["to"] == phone)
            .and_then(|sms| sms["text"].as_str().and_then(|t| t.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 5)).map(String::from))
            .with_context(|| format!("no SMS to {phone} in the outbox"))?;
        let key = client.verify(phone, &code).await.with_context(|| format!("verifying {phone}"))?;
        client.close().await;
        Ok(key)
    }
}

/// A broker's admin HTTP endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub SocketAddr);

impl Admin {
    /// `GET path`: the body (an error unless 200).
    pub fn get(&self, path: &str) -> Result<String> {
        let url = format!("http://{}{path}", self.0);
        let body = ureq::get(&url).call().with_context(|| format!("GET {url} (the admin endpoint: --admin)"))?.body_mut().read_to_string()?;
        Ok(body)
    }

    /// The `GET /api/plugins` report.
    pub fn plugins(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.get("/api/plugins")?)?)
    }

    /// The value of metric line `name` (exactly, labels included) in `GET /metrics`.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let body = self.get("/metrics")?;
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .with_context(|| format!("no metric {name} in /metrics"))
    }
}

/// Asks a code for `phone`, retrying a `Retryable` refusal (a busy registrar) a few times.
async fn request_code(client: &mut Client, phone: &str) -> Result<()> {
    let mut tries = 0;
    loop {
        match client.request_code(phone).await {
            Ok(_) => return Ok(()),
            Err(ClientError::Refused { error: ErrorCode::Retryable, .. }) if tries < 5 => tries += 1,
            Err(e) => return Err(e).with_context(|| format!("requesting a code for {phone}")),
        }
    }
}
