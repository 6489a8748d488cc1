//! Harness for end-to-end tests: starts the real `hotline` binary on a free port with its
//! own data folder, registers numbers through the real SMS outbox, and connects real QUIC
//! clients. Nothing here stands in for the broker.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hotline_client::{Client, ConnectOptions};

pub mod cluster;

/// Path of a binary of this workspace (`hotline`, `hotline-chat`). `cargo test --workspace`
/// (and `cargo nextest run --workspace`) builds them before any test runs, because the
/// host and client crates have integration tests of their own.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("HOTLINE_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    // Tests run from target/<profile>/deps/, other tools (the benchmark) from target/<profile>/.
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(path.exists(), "{} not found; run the tests with `cargo test --workspace`", path.display());
    path
}

/// Resident memory (VmRSS in /proc) of process `pid` ("self" for this one), in bytes.
pub fn rss_bytes(pid: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Datagrams the kernel dropped at the UDP socket(s) bound to local `port` (IPv4 and IPv6)
/// because the receive buffer was full: the `drops` column of /proc/net/udp and udp6.
pub fn udp_drops(port: u16) -> Result<u64> {
    let mut total = 0;
    let mut found = false;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "sl local_address rem_address st ... drops": local_address is HEXIP:HEXPORT.
            let local_port = fields.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                found = true;
                total += fields.last().and_then(|d| d.parse::<u64>().ok()).with_context(|| format!("malformed line in {table}: {line}"))?;
            }
        }
    }
    if !found {
        bail!("no UDP socket on port {port} in /proc/net/udp or /proc/net/udp6");
    }
    Ok(total)
}

/// Where a broker's stderr goes.
enum StderrTo {
    /// The test's own stderr.
    Inherit,
    /// Appended to a file.
    File(PathBuf),
    /// A pipe, taken with [`Broker::take_stderr`].
    Pipe,
}

/// A running `hotline serve` with its own data folder. Killed when dropped.
pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The admin HTTP endpoint (metrics, plugin API).
    pub admin: SocketAddr,
    /// The media HTTPS endpoint (`None` when `media.enabled = false`).
    pub media: Option<SocketAddr>,
    pub data: PathBuf,
    extra_args: Vec<String>,
    /// Extra environment variables of the broker process.
    envs: Vec<(String, String)>,
    /// Where the broker's stderr goes.
    stderr_to: StderrTo,
    /// The stderr of the broker process, when it goes to a pipe and was not yet taken.
    stderr: Option<ChildStderr>,
    _dir: Option<tempfile::TempDir>,
}

/// HTTP response headers: (name in lower case, value), in order.
pub type Headers = Vec<(String, String)>;

impl Broker {
    /// Starts a broker in a fresh temporary data folder.
    pub fn start() -> Result<Broker> {
        Broker::start_with(&[])
    }

    /// Starts a broker in a fresh temporary data folder with extra `serve` arguments.
    pub fn start_with(args: &[&str]) -> Result<Broker> {
        Broker::start_full(args, &[], false)
    }

    /// Starts a broker with extra `serve` arguments and environment variables, its stderr
    /// on a pipe (take it with [`Broker::take_stderr`] and keep reading it).
    pub fn start_capturing_stderr(args: &[&str], envs: &[(&str, &str)]) -> Result<Broker> {
        Broker::start_full(args, envs, true)
    }

    /// Starts a broker in a fresh temporary data folder with `toml` as its config file.
    pub fn start_with_config(toml: &str) -> Result<Broker> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("hotline.toml");
        std::fs::write(&config, toml)?;
        let config = config.to_str().context("temporary path is not UTF-8")?.to_string();
        Broker::launch(dir.path().join("data"), &["--config", &config], &[], StderrTo::Inherit, Some(dir))
    }

    fn start_full(args: &[&str], envs: &[(&str, &str)], capture_stderr: bool) -> Result<Broker> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let stderr_to = if capture_stderr { StderrTo::Pipe } else { StderrTo::Inherit };
        Broker::launch(data, args, envs, stderr_to, Some(dir))
    }

    /// Starts a broker on data folder `data` (made if missing) with extra `serve`
    /// arguments, its stderr appended to `stderr_log` if given. `dir` is kept until the
    /// broker is dropped.
    pub fn start_at(data: PathBuf, args: &[&str], stderr_log: Option<PathBuf>, dir: Option<tempfile::TempDir>) -> Result<Broker> {
        let stderr_to = stderr_log.map_or(StderrTo::Inherit, StderrTo::File);
        Broker::launch(data, args, &[], stderr_to, dir)
    }

    fn launch(data: PathBuf, args: &[&str], envs: &[(&str, &str)], stderr_to: StderrTo, dir: Option<tempfile::TempDir>) -> Result<Broker> {
        let mut broker = Broker {
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            media: None,
            data,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            stderr_to,
            stderr: None,
            _dir: dir,
        };
        let any = "127.0.0.1:0".parse().unwrap();
        broker.spawn(any, any, any)?;
        Ok(broker)
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `GET path` on the admin endpoint: the status code and the body.
    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        let (status, _, body) = self.admin_get_with_headers(path)?;
        Ok((status, body))
    }

    /// `GET path` on the admin endpoint: the status code, the response headers (names in
    /// lower case) and the body.
    pub fn admin_get_with_headers(&self, path: &str) -> Result<(u16, Headers, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.admin).context("connecting to the admin endpoint")?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.admin)?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        Ok((status, headers, body.to_string()))
    }

    /// The value of a metric line `name` (exactly, labels included) in `/metrics`.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let (_, body) = self.admin_get("/metrics")?;
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .with_context(|| format!("no metric {name} in /metrics"))
    }

    /// Datagrams the kernel dropped at the broker's UDP socket because its receive buffer
    /// was full (see [`udp_drops`]).
    pub fn udp_drops(&self) -> Result<u64> {
        udp_drops(self.addr.port())
    }

    /// Resident memory of the broker process, in bytes (see [`rss_bytes`]).
    pub fn rss_bytes(&self) -> Result<u64> {
        rss_bytes(&self.pid().context("the broker is not running")?.to_string())
    }

    fn spawn(&mut self, listen: SocketAddr, admin: SocketAddr, media: SocketAddr) -> Result<()> {
        let stderr = match &self.stderr_to {
            StderrTo::Inherit => Stdio::inherit(),
            StderrTo::File(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
            StderrTo::Pipe => Stdio::piped(),
        };
        let mut child = Command::new(bin("hotline"))
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--admin")
            .arg(admin.to_string())
            .arg("--media")
            .arg(media.to_string())
            .args(&self.extra_args)
            .env("HOTLINE_LOG", std::env::var("HOTLINE_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting hotline")?;
        self.stderr = child.stderr.take();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().context("hotline exited before listening")??;
        // "hotline listening on ADDR admin ADDR media ADDR|off (data DIR)"
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["hotline", "listening", "on", addr, "admin", admin, "media", media, ..] => {
                self.addr = addr.parse()?;
                self.admin = admin.parse()?;
                self.media = if *media == "off" { None } else { Some(media.parse()?) };
            }
            _ => bail!("unexpected first line {line:?}"),
        }
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
        Ok(())
    }

    /// The broker's stderr pipe (started with [`Broker::start_capturing_stderr`]). Read it
    /// continuously (e.g. on a thread) so the broker never blocks on a full pipe.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// Stops the broker gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        bail!("hotline exited with {status}");
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("hotline did not stop within 20 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Kills the broker with SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the broker again on the same data folder and the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// Starts a stopped or killed broker again on the same data folder and port.
    pub fn start_again(&mut self) -> Result<()> {
        let (addr, admin) = (self.addr, self.admin);
        let media = self.media.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn(addr, admin, media) {
                Ok(()) => return Ok(()),
                // The old process's socket may linger for a moment after a kill.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart failed, retrying: {e:#}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connection options for this broker.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.addr, self.data.join("tls/cert.pem"))
    }

    /// A connected client that said Hello.
    pub async fn connect(&self) -> Result<Client> {
        Ok(Client::connect(&self.options()).await?)
    }

    /// The latest (5-digit, the default registrar's) code sent to `phone` through the
    /// development SMS outbox.
    pub fn sms_code(&self, phone: &str) -> Result<String> {
        self.sms_code_of(phone, 5)
    }

    /// The latest `digits`-long code sent to `phone` through the development SMS outbox.
    pub fn sms_code_of(&self, phone: &str, digits: usize) -> Result<String> {
        let text = std::fs::read_to_string(self.data.join("sms-outbox.jsonl")).context("reading SMS outbox")?;
        for line in text.lines().rev() {
            let sms: serde_json::Value = serde_json::from_str(line)?;
            if sms["to"] == phone {
                let body = sms["text"].as_str().unwrap_or_default();
                let code: String = body
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|w| w.len() == digits)
                    .with_context(|| format!("no {digits}-digit code in {body:?}"))?
                    .to_string();
                return Ok(code);
            }
        }
        bail!("no SMS to {phone}")
    }

    /// Registers `phone` the way an app does: request a code, read the SMS, verify.
    /// Returns the key.
    pub async fn register(&self, phone: &str) -> Result<String> {
        let mut client = self.connect().await?;
        client.request_code(phone).await?;
        let key = client.verify(phone, &self.sms_code(phone)?).await?;
        client.close().await;
        Ok(key)
    }

    /// Registers many numbers at once: `workers` connections request codes, the SMS outbox
    /// is read once, then the same connections verify. Returns the keys in `phones`' order.
    /// (Reading the outbox per number, as [`Broker::register`] does, is quadratic.)
    pub async fn register_many(&self, phones: &[String], workers: usize) -> Result<Vec<String>> {
        let workers = workers.clamp(1, phones.len().max(1));
        let mut clients = Vec::new();
        for _ in 0..workers {
            clients.push(self.connect().await?);
        }
        let shares: Vec<Vec<(usize, String)>> = (0..workers)
            .map(|w| {
                phones
                    .iter()
                    .cloned()
                    .enumerate()
                    .skip(w)
                    .step_by(workers)
                    .collect()
            })
            .collect();
        let requests = clients
            .into_iter()
            .zip(shares.clone())
            .map(|(mut client, share)| {
                tokio::spawn(async move {
                    for (_, phone) in &share {
                        // `Retryable` when the registrar's call ran out of time (its 100 ms
                        // are wall-clock time, short on a busy machine): ask again, as an app would.
                        let mut tries = 0;
                        while let Err(e) = client.request_code(phone).await {
                            tries += 1;
                            if tries == 5
                                || !matches!(
                                    e,
                                    hotline_client::ClientError::Refused {
                                        error: hotline_protocol::ErrorCode::Retryable,
                                        ..
                                    }
                                )
                            {
                                return Err(e.into());
                            }
                        }
                    }
                    anyhow::Ok(client)
                })
            });
        let mut clients = Vec::new();
        for request in requests.collect::<Vec<_>>() {
            clients.push(request.await??);
        }
        let outbox = std::fs::read_to_string(self.data.join("sms-outbox.jsonl"))
            .context("reading SMS outbox")?;
        let mut codes = std::collections::HashMap::new();
        for line in outbox.lines() {
            let sms: serde_json::Value = serde_json::from_str(line)?;
            let (Some(to), Some(text)) = (sms["to"].as_str(), sms["text"].as_str()) else {
                continue;
            };
            if let Some(code) = text
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 5)
            {
                codes.insert(to.to_string(), code.to_string());
            }
        }
        let verifies = clients.into_iter().zip(shares).map(|(mut client, share)| {
            let codes: Vec<(usize, String, Option<String>)> = share
                .into_iter()
                .map(|(i, phone)| {
                    let code = codes.get(&phone).cloned();
                    (i, phone, code)
                })
                .collect();
            tokio::spawn(async move {
                let mut keys = Vec::new();
                for (i, phone, code) in codes {
                    let code = code.with_context(|| format!("no SMS to {phone}"))?;
                    // A call that ran out of time may have used the code: such numbers
                    // register again one by one below.
                    match client.verify(&phone, &code).await {
                        Ok(key) => keys.push((i, Some(key))),
                        Err(hotline_client::ClientError::Refused { .. }) => keys.push((i, None)),
                        Err(e) => return Err(e.into()),
                    }
                }
                client.close().await;
                anyhow::Ok(keys)
            })
        });
        let mut keys = vec![String::new(); phones.len()];
        for verify in verifies.collect::<Vec<_>>() {
            for (i, key) in verify.await?? {
                keys[i] = match key {
                    Some(key) => key,
                    None => self.register(&phones[i]).await?,
                };
            }
        }
        Ok(keys)
    }

    /// A client logged in as `phone`.
    pub async fn login(&self, phone: &str, key: &str) -> Result<Client> {
        let mut client = self.connect().await?;
        client.login(phone, key).await?;
        Ok(client)
    }

    /// `hotline inspect` of the (stopped) broker's storage.
    pub fn inspect(&self) -> Result<serde_json::Value> {
        let out = Command::new(bin("hotline")).arg("inspect").arg("--data").arg(&self.data).output()?;
        if !out.status.success() {
            bail!("hotline inspect failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// `hotline plugins list --json` against this broker's admin endpoint.
    pub fn plugins(&self) -> Result<serde_json::Value> {
        let out = Command::new(bin("hotline"))
            .args(["plugins", "--admin", &self.admin.to_string(), "list", "--json"])
            .output()?;
        if !out.status.success() {
            bail!("hotline plugins list failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The current version (12 hex digits) of `slot`.
    pub fn current_version(&self, slot: &str) -> Result<String> {
        let report = self.plugins()?;
        report["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["slot"] == slot && (v["state"] == "current" || v["state"] == "probation"))
            .and_then(|v| v["version"].as_str().map(String::from))
            .with_context(|| format!("no current {slot} version in {report}"))
    }

    /// The plugin folder.
    pub fn plugin_dir(&self) -> PathBuf {
        self.data.join("plugins")
    }

    /// A `hotline-chat` command pointed at this broker (and its media endpoint), with
    /// profile folder `profile`.
    pub fn chat(&self, profile: &Path) -> Command {
        let mut cmd = Command::new(bin("hotline-chat"));
        cmd.arg("--profile")
            .arg(profile)
            .arg("--server")
            .arg(self.addr.to_string())
            .arg("--ca")
            .arg(self.data.join("tls/cert.pem"));
        if let Some(media) = self.media {
            cmd.arg("--media").arg(format!("https://{media}"));
        }
        cmd
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `hotline serve --data DATA` on free ports with `args`, expecting it to refuse to
/// start. Returns its output once it has exited; fails if it starts serving instead (or
/// has not exited within 60 s).
pub fn serve_refused(data: &Path, args: &[&std::ffi::OsStr]) -> Result<std::process::Output> {
    let mut child = Command::new(bin("hotline"))
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--media", "127.0.0.1:0"])
        .args(args)
        .env("HOTLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting hotline")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!("hotline serve did not refuse to start: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    if String::from_utf8_lossy(&out.stdout).contains("hotline listening on") {
        bail!("hotline serve started and then exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}

/// A copy of a component with a custom section appended: same behaviour, new hash, so the
/// broker sees a new version.
pub fn with_marker(component: &[u8], marker: &str) -> Vec<u8> {
    let name = b"hotline-test-marker";
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u64);
    payload.extend_from_slice(name);
    payload.extend_from_slice(marker.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// First 12 hex digits of the SHA-256 of `bytes`: the version name the broker gives a file.
pub fn version_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))[..12].to_string()
}

/// Writes `bytes` as `dir/name` atomically (write a temporary file, then rename).
pub fn install(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The broker's answer to the send with `client_id`: the stored id, or the refusal. Other
/// frames on the way are skipped.
pub async fn answer_to(client: &mut Client, client_id: u64) -> Result<u64, (hotline_protocol::ErrorCode, String)> {
    use hotline_protocol::ServerFrame;
    loop {
        match client.next_frame_within(Duration::from_secs(20)).await.unwrap() {
            ServerFrame::Sent { client_id: c, id } if c == client_id => return Ok(id),
            ServerFrame::SendFailed { client_id: c, error, reason } if c == client_id => return Err((error, reason)),
            _ => {}
        }
    }
}

/// Takes the next `n` frames, which must all be messages, acknowledging each. Returns their
/// ids in arrival order.
pub async fn take_messages(client: &mut Client, n: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        match client.next_frame_within(Duration::from_secs(20)).await.map(hotline_client::ReceivedMessage::from_frame) {
            Ok(Ok(message)) => {
                client.ack(message.id).await.expect("ack");
                ids.push(message.id);
            }
            Ok(Err(other)) => panic!("expected a message, got {other:?}"),
            Err(e) => panic!("after {} of {n} messages: {e}", ids.len()),
        }
    }
    ids
}

/// The workspace's root folder (where `plugins/`, `scripts/` and `wit/` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `PATH` with `<target>/tools/bin` first: where `scripts/setup plugins` puts wit-bindgen,
/// wasm-tools and componentize-py.
pub fn tools_path() -> std::ffi::OsString {
    let target = bin("hotline").parent().and_then(Path::parent).expect("target folder").to_path_buf();
    let mut dirs = vec![target.join("tools/bin")];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).expect("PATH")
}

/// How long a plugin load may take: a 12-18 MB Python or JS component compiles for tens of
/// seconds (longer in a debug broker on a busy machine).
pub const BIG_PLUGIN_LOAD: Duration = Duration::from_secs(600);

/// Runs a plugin's `build.sh` with `args` and extra `envs` (and the plugin toolchains on
/// `PATH`) and returns what it built at `out`. A missing tool fails the test with the
/// script's message: never a skip.
pub fn build_plugin_script(script: &Path, args: &[&std::ffi::OsStr], envs: &[(&str, &std::ffi::OsStr)], out: &Path) -> Result<Vec<u8>> {
    let started = Instant::now();
    let output = Command::new(script)
        .args(args)
        // Cargo's settings for this test run are not the plugin build's.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("PATH", tools_path())
        .envs(envs.iter().copied())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}); the plugin toolchains come from `scripts/setup plugins`:\n{}{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let bytes = std::fs::read(out).with_context(|| format!("{} did not write {}", script.display(), out.display()))?;
    eprintln!("built {} ({} bytes) in {:.1?}", out.display(), bytes.len(), started.elapsed());
    Ok(bytes)
}

impl Broker {
    /// Writes `bytes` as `<slot>.wasm` into the plugin folder and waits (up to `limit`:
    /// a big Python or JS component compiles for tens of seconds) until that version is
    /// current. Fails at once if the broker refuses it.
    pub fn load_plugin(&self, slot: &str, bytes: &[u8], limit: Duration) -> Result<String> {
        let version = version_of(bytes);
        install(&self.plugin_dir(), &format!("{slot}.wasm"), bytes)?;
        self.wait_for_version(slot, &version, limit)?;
        Ok(version)
    }

    /// Waits (up to `limit`) until `version` of `slot` is current; fails at once if the
    /// broker refuses it.
    pub fn wait_for_version(&self, slot: &str, version: &str, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let deadline = started + limit;
        loop {
            let report = self.plugins()?;
            let listed = report["versions"].as_array().into_iter().flatten().find(|v| v["slot"] == slot && v["version"] == version);
            if let Some(v) = listed {
                if v["state"] == "current" || v["state"] == "probation" {
                    eprintln!("{slot} {version} current after {:.1?} (compile_us {})", started.elapsed(), v["compile_us"]);
                    return Ok(());
                }
            }
            let refused = report["history"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["slot"] == slot && e["version"] == version && e["event"] == "refused");
            if let Some(e) = refused {
                bail!("the broker refused {slot} {version}: {}", e["detail"]);
            }
            if Instant::now() > deadline {
                bail!("{slot} {version} not current within {limit:?}: {report}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Registers `phone` with `hotline-chat` into profile folder `profile`, reading the
    /// code (`digits` long) from the SMS outbox.
    pub fn register_chat(&self, profile: &Path, phone: &str, digits: usize) -> Result<()> {
        let asked = self.chat(profile).args(["register", phone]).stdin(Stdio::null()).output()?;
        if !asked.status.success() {
            bail!("asking a code for {phone}: {}", String::from_utf8_lossy(&asked.stderr));
        }
        let code = self.sms_code_of(phone, digits)?;
        let verified = self.chat(profile).args(["register", phone, "--code", &code]).output()?;
        if !verified.status.success() {
            bail!("verifying {phone}: {}", String::from_utf8_lossy(&verified.stderr));
        }
        Ok(())
    }
}

/// The stdout of a command (e.g. `hotline-chat`) that must succeed; panics with its output
/// otherwise.
pub fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "expected success: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The stderr of a command that must fail (a refusal the user sees).
pub fn refused(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected a refusal, got: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).expect("utf-8 output")
}

/// The JSON lines `hotline-chat listen` printed (one event each).
pub fn events(out: std::process::Output) -> Vec<serde_json::Value> {
    ok(out).lines().map(|l| serde_json::from_str(l).expect("a JSON event line")).collect()
}
