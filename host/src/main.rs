//! The `hotline` binary: `serve` runs the broker (SIGHUP reloads it); `status` and
//! `plugins` operate a running one through its admin endpoint (and `plugins new` writes a
//! plugin project); `check-config` checks a config file; `inspect` reports on a stopped
//! broker's storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hotline::broker::Broker;
use hotline::config::{Config, Overrides};
use hotline::server::{BufferSizes, Listener};
use hotline::store::{Store, StoreError};

/// jemalloc, which gives memory back once connections are gone (see [`hotline::memory`]).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its configuration from this symbol (its functions are prefixed `_rjem_`).
#[used]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8] = hotline::memory::MALLOC_CONF;

#[derive(Parser)]
#[command(name = "hotline", version, about = "The Hotline messaging broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Versions per slot: version, state, loaded at, calls, errors; then the swap history.
    List {
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make the previous version of SLOT (router, registrar, receipts, notifier) current again; while
    /// a canary runs in SLOT, end the canary instead (the current version stays).
    Rollback { slot: String },
    /// Start a canary: FILE serves PERCENT of the users of SLOT (chosen by a hash of their
    /// number, so a user stays on one version) beside the current version. Again with the
    /// same FILE changes the share. Compare with `plugins list`; then `plugins promote
    /// SLOT` or `plugins rollback SLOT`.
    Canary {
        slot: String,
        file: PathBuf,
        /// Share of the users, 1-99.
        #[arg(long)]
        percent: u8,
    },
    /// Make the canary of SLOT its current version (on probation, as after any swap).
    Promote { slot: String },
    /// Write a new plugin project NAME for SLOT in a language; its ./build.sh builds
    /// out/SLOT.wasm, ready to drop into a broker's plugin folder.
    New {
        /// The language of the project.
        #[arg(long, value_enum)]
        lang: hotline::scaffold::Lang,
        /// Project name: lowercase letters, digits and '-', e.g. my-router.
        name: String,
        /// The slot the plugin fills: router, registrar, receipts or notifier (rust only).
        #[arg(default_value = "router")]
        slot: String,
        /// Folder to create (default: ./NAME). Must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// One line per event for people; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line for log collectors.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// Data folder (storage, TLS, plugins, SMS outbox); wins over the config file
        /// [default: `data` from the config, else hotline-data]
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// TOML config file [default: none, every setting at its default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// UDP address for QUIC (port 0 picks a free port); wins over the config file
        /// [default: `listen` from the config, else 127.0.0.1:4433]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// TCP address of the admin HTTP endpoint (metrics, plugin API); wins over the config
        /// file [default: `admin.listen` from the config, else 127.0.0.1:9464]
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
        /// TCP address of the media HTTPS endpoint (uploads and downloads); wins over the
        /// config file [default: `media.listen` from the config, else 127.0.0.1:4443]
        #[arg(long, value_name = "ADDR")]
        media: Option<SocketAddr>,
        /// Run as a node of a cluster over these NATS JetStream servers (comma-separated
        /// nats:// URLs); wins over `cluster.nats` [default: one node on fjall, no NATS]
        #[arg(long, value_name = "URLS", value_delimiter = ',')]
        cluster: Option<Vec<String>>,
        /// This node's name in the cluster; wins over `cluster.node_id`
        #[arg(long, value_name = "NAME")]
        node_id: Option<String>,
        /// Log line format on stderr. The filter is the environment variable HOTLINE_LOG
        /// (default info,fjall=warn,lsm_tree=warn).
        #[arg(long, value_enum, value_name = "FORMAT", env = "HOTLINE_LOG_FORMAT", default_value = "text")]
        log_format: LogFormat,
    },
    /// Operate the plugins of a running broker through its admin endpoint.
    Plugins {
        /// Admin endpoint of the broker (before or after the subcommand).
        #[arg(long, default_value = "127.0.0.1:9464", global = true)]
        admin: SocketAddr,
        /// The broker's admin token, if it has one (`admin.token`).
        #[arg(long, env = "HOTLINE_ADMIN_TOKEN", hide_env_values = true, global = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Summary of a running broker: version, uptime, sessions, connections, queues,
    /// plugins, storage (from its admin endpoint's /api/status).
    Status {
        /// Admin endpoint of the broker.
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin: SocketAddr,
        /// The broker's admin token, if it has one (`admin.token`).
        #[arg(long, env = "HOTLINE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the API's JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Check a config file as `serve` would (values, the admin token rule, the TLS files)
    /// and print the effective settings as TOML. Exit status 0 when it is fine, 1 when it is
    /// refused (the error names the key); 2 for a command-line mistake.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Print queue lengths and disk use of a stopped broker's storage as JSON.
    Inspect {
        /// Data folder of the stopped broker.
        #[arg(long, value_name = "DIR", default_value = "hotline-data")]
        data: PathBuf,
    },
}

/// The log filter when `HOTLINE_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info,fjall=warn,lsm_tree=warn";

fn main() {
    if let Err(e) = run() {
        eprintln!("hotline: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    init_logging(match cli.command {
        Command::Serve { log_format, .. } => log_format,
        _ => LogFormat::Text,
    })?;
    match cli.command {
        Command::Plugins { command: PluginsCommand::New { lang, name, slot, dir }, .. } => new_plugin(lang, &name, &slot, dir),
        Command::Plugins { admin, token, command: PluginsCommand::List { json } } => plugins_list(&AdminClient::new(admin, token), json),
        Command::Plugins { admin, token, command: PluginsCommand::Rollback { slot } } => plugins_rollback(&AdminClient::new(admin, token), &slot),
        Command::Plugins { admin, token, command: PluginsCommand::Canary { slot, file, percent } } => {
            plugins_canary(&AdminClient::new(admin, token), &slot, &file, percent)
        }
        Command::Plugins { admin, token, command: PluginsCommand::Promote { slot } } => {
            let body = AdminClient::new(admin, token).call("POST", &format!("/api/plugins/{slot}/promote")).with_context(|| format!("promote of {slot} refused"))?;
            print_out(&format!("{slot} canary promoted; current version {}\n", body["version"].as_str().unwrap_or("?")))
        }
        Command::Status { admin, token, json } => status(&AdminClient::new(admin, token), json),
        Command::CheckConfig { file } => check_config(&file),
        Command::Serve { data, config: file, listen, admin, media, cluster, node_id, log_format: _ } => {
            let overrides = Overrides { data, listen, admin, admin_token: None, media, cluster, node_id }.with_env_token();
            let config = Config::resolve(file.as_deref(), &overrides)?;
            // Everything the broker creates (storage, outbox, keys, plugin cache) is for its
            // own user only. Set before any thread starts: the mask is process-wide.
            #[cfg(unix)]
            // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
            unsafe {
                libc::umask(0o077);
            }
            tokio::runtime::Runtime::new()?.block_on(serve(config, file, overrides))
        }
        Command::Inspect { data } => inspect(data),
    }
}

/// Logs to stderr, filtered by `HOTLINE_LOG` (an invalid filter is an error, not ignored).
fn init_logging(format: LogFormat) -> Result<()> {
    use std::io::IsTerminal;
    let filter = match std::env::var("HOTLINE_LOG") {
        // The parse error's text already includes its source: shown as text, said once.
        Ok(text) => tracing_subscriber::EnvFilter::try_new(&text)
            .map_err(|e| anyhow::anyhow!("invalid log filter HOTLINE_LOG={text:?}: {e}"))?,
        Err(std::env::VarError::NotPresent) => tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER),
        Err(e) => return Err(e).context("invalid log filter HOTLINE_LOG"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// Writes `text` to stdout. A reader that went away (`hotline plugins list | head`) is not
/// an error: the output is simply not wanted any more.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

async fn serve(config: Config, file: Option<PathBuf>, overrides: Overrides) -> Result<()> {
    hotline::tls::create_private_dir(&config.data).context("creating the data folder")?;
    warn_if_shared(&config.data);
    let (tls, certificate) = hotline::tls::server_config_for(&config)?;
    let broker = Broker::open(&config)?;
    // Expired items go before anyone can log in and be handed one.
    if let Err(e) = hotline::expiry::expire(&broker).await {
        tracing::error!(error = %e, "expiry failed");
    }
    let buffers = BufferSizes { receive: config.udp.receive_buffer_bytes, send: config.udp.send_buffer_bytes };
    let listener = Listener::bind(config.listen, buffers, config.udp.mtu_discovery, tls, &config.reset_key_path(), broker.clone())?;
    let addr = listener.local_addr()?;
    let _watcher = hotline::plugins::Watcher::start(broker.plugins.clone())?;
    let admin = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("binding the admin endpoint {}", config.admin.listen))?;
    let admin_addr = admin.local_addr()?;
    let media = match config.media.enabled {
        true => Some(hotline::media::MediaServer::bind(&config, broker.clone(), certificate.clone()).await?),
        false => None,
    };
    let media_addr = match &media {
        Some(media) => media.local_addr()?.to_string(),
        None => "off".to_string(),
    };
    let media = media.map(|media| tokio::spawn(media.run()));
    let live = hotline::live::Live::new(config.clone(), file, overrides, certificate, broker.clone());
    let admin_app = hotline::admin::router(broker.clone(), listener.transport_stats(), live.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(admin, admin_app).await {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    });
    let shutdown = shutdown_signal()?;
    let reloads = reload_on_hangup(live)?;
    // Tests and scripts wait for this line on stdout.
    print_out(&format!("hotline listening on {addr} admin {admin_addr} media {media_addr} (data {})\n", config.data.display()))?;
    tracing::info!(%addr, %admin_addr, %media_addr, data = %config.data.display(), plugins = %broker.plugins.dir().display(), "serving");

    let drops = tokio::spawn(hotline::server::warn_on_drops(listener.udp_stats()));
    let monitor = broker.start_monitor();
    let expiry = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let hour = Duration::from_secs(3600);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
            loop {
                tick.tick().await;
                if let Err(e) = hotline::expiry::expire(&broker).await {
                    tracing::error!(error = %e, "expiry failed");
                }
            }
        })
    };

    tokio::select! {
        () = listener.run() => {}
        () = shutdown => tracing::info!("shutting down"),
    }
    expiry.abort();
    if let Some(media) = media {
        media.abort();
    }
    monitor.abort();
    drops.abort();
    reloads.abort();
    listener.close(hotline_protocol::close_code::NORMAL, "broker shutting down").await;
    broker.flush().await?;
    // Memtables flushed and the journal sealed: a small journal left, nothing to replay at
    // the next start.
    let store = broker.store.clone();
    match tokio::task::spawn_blocking(move || store.checkpoint()).await {
        Ok(Ok(done)) => tracing::info!(disk_before = done.disk_before, disk_after = done.disk_after, compacted = ?done.compacted, "storage checkpointed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "storage checkpoint at shutdown failed; the next start replays the journal"),
        Err(e) => tracing::warn!(error = %e, "storage checkpoint at shutdown failed"),
    }
    Ok(())
}

/// The data folder holds keys, codes and native code the broker loads: say so if other
/// users can get into one that already existed.
fn warn_if_shared(data: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(data) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(data = %data.display(), mode = format!("{mode:o}"), "the data folder is open to other users; chmod 700 it");
            }
        }
    }
}

/// SIGINT or SIGTERM. The handlers are installed when this is called, not when it is
/// first awaited: a signal that comes right after the listening line still stops the
/// broker gracefully instead of killing it.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// SIGHUP: reads the config file and the certificate again and applies what can change
/// live (see [`hotline::live`]); one log line says what. Installed before the listening
/// line, like the shutdown handlers.
fn reload_on_hangup(live: std::sync::Arc<hotline::live::Live>) -> Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let reload = live.clone();
            match tokio::task::spawn_blocking(move || reload.reload()).await {
                Ok(Ok(done)) => tracing::info!(
                    applied = %done.applied.join(", "),
                    restart_needed = %if done.need_restart.is_empty() { "none".to_string() } else { done.need_restart.join(", ") },
                    "reloaded the config and the TLS certificate"
                ),
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "reload refused; the broker keeps its config and certificate"),
                Err(e) => tracing::error!(error = %e, "reload failed; the broker keeps its config and certificate"),
            }
        }
    }))
}

/// `hotline check-config FILE`: exit 0 with the effective settings, or 1 with the error.
fn check_config(file: &std::path::Path) -> Result<()> {
    use std::fmt::Write;
    let overrides = Overrides::default().with_env_token();
    let config = Config::resolve(Some(file), &overrides)?;
    let tls = hotline::tls::check(&config)?;
    hotline::sms::provider(&config.sms, config.sms_outbox_path()).context("sms.webhook")?;
    let mut out = format!("# {}: fine. Effective settings (defaults filled in):\n", file.display());
    let _ = writeln!(out, "# TLS: {tls}");
    out.push_str(&config.to_toml());
    print_out(&out)
}

/// A client of a running broker's admin endpoint.
struct AdminClient {
    admin: SocketAddr,
    token: Option<String>,
}

impl AdminClient {
    fn new(admin: SocketAddr, token: Option<String>) -> AdminClient {
        AdminClient { admin, token: token.filter(|t| !t.is_empty()) }
    }

    /// Sends `method path` and returns the JSON answer of a success; an error says why not
    /// (unreachable, the token, or the API's `error`).
    fn call(&self, method: &str, path: &str) -> Result<serde_json::Value> {
        self.call_with(method, path, None)
    }

    /// [`AdminClient::call`] with `body` (a POST's content) if given.
    fn call_with(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<serde_json::Value> {
        let url = format!("http://{}{path}", self.admin);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let unreachable = || format!("cannot reach the broker's admin endpoint at {} (is it running? --admin ADDR)", self.admin);
        let response = match method {
            "POST" => {
                let request = agent.post(&url);
                let request = if let Some(auth) = &auth { request.header("Authorization", auth) } else { request };
                match body {
                    Some(body) => request.header("Content-Type", "application/wasm").send(body),
                    None => request.send_empty(),
                }
            }
            _ => {
                let request = agent.get(&url);
                let request = if let Some(auth) = &auth { request.header("Authorization", auth) } else { request };
                request.call()
            }
        }
        .with_context(unreachable)?;
        let status = response.status();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if status == 401 {
            anyhow::bail!(
                "the admin endpoint at {} needs its token: --token TOKEN or HOTLINE_ADMIN_TOKEN ({})",
                self.admin,
                body["error"].as_str().unwrap_or("unauthorized")
            );
        }
        if !status.is_success() {
            anyhow::bail!("{}", body["error"].as_str().map_or_else(|| format!("HTTP {status}: {text}"), String::from));
        }
        Ok(body)
    }
}

fn plugins_list(client: &AdminClient, json: bool) -> Result<()> {
    let report = client.call("GET", "/api/plugins")?;
    if json {
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    }
    print_out(&plugins_table(&report))
}

/// The `plugins list` table: one row per version, then the last 20 history events.
fn plugins_table(report: &serde_json::Value) -> String {
    use std::fmt::Write;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    let mut out = String::new();
    let row = |out: &mut String, cells: [&str; 7]| {
        let [slot, version, state, contract, loaded, calls, errors] = cells;
        let _ = writeln!(out, "{slot:<10} {version:<13} {state:<12} {contract:<9} {loaded:<24} {calls:>10} {errors:>8}");
    };
    row(&mut out, ["SLOT", "VERSION", "STATE", "CONTRACT", "LOADED AT (UTC)", "CALLS", "ERRORS"]);
    for v in report["versions"].as_array().into_iter().flatten() {
        let loaded = format_ms(v["loaded_at_ms"].as_u64().unwrap_or(0));
        let (calls, errors) = (v["calls"].as_u64().unwrap_or(0).to_string(), v["errors"].as_u64().unwrap_or(0).to_string());
        let contract = text(&v["contract_version"]);
        row(&mut out, [&text(&v["slot"]), &text(&v["version"]), &text(&v["state"]), &contract, &loaded, &calls, &errors]);
    }
    let canaries = report["canaries"].as_array().cloned().unwrap_or_default();
    if !canaries.is_empty() {
        out.push_str("\nCANARIES (since the canary started)\n");
        let _ = writeln!(out, "{:<10} {:<9} {:<13} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}", "SLOT", "ROLE", "VERSION", "SHARE", "CALLS", "FAILURES", "TIMEOUTS", "P50 MS", "P90 MS", "P99 MS");
        for c in &canaries {
            for (role, side, share) in [("canary", &c["canary"], c["percent"].as_u64().unwrap_or(0)), ("current", &c["current"], 100 - c["percent"].as_u64().unwrap_or(0))] {
                let n = |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
                let ms = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |ms| format!("{ms}"));
                let _ = writeln!(
                    out,
                    "{:<10} {:<9} {:<13} {:>4}% {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    text(&c["slot"]), role, text(&side["version"]), share, n(&side["calls"]), n(&side["failures"]), n(&side["timeouts"]),
                    ms(&side["p50_ms"]), ms(&side["p90_ms"]), ms(&side["p99_ms"])
                );
            }
        }
    }
    let history = report["history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        out.push_str("\nHISTORY\n");
        for e in history.iter().rev().take(20).rev() {
            let _ = writeln!(
                out,
                "{}  {:<10} {:<13} {:<12} {}",
                format_ms(e["at_ms"].as_u64().unwrap_or(0)),
                text(&e["slot"]),
                text(&e["version"]),
                text(&e["event"]),
                e["detail"].as_str().unwrap_or("")
            );
        }
    }
    out
}

fn plugins_canary(client: &AdminClient, slot: &str, file: &std::path::Path, percent: u8) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let body = client
        .call_with("POST", &format!("/api/plugins/{slot}/canary?percent={percent}"), Some(&bytes))
        .with_context(|| format!("canary of {} in {slot} refused", file.display()))?;
    print_out(&format!(
        "{slot} canary {} serves {percent}% of the users; compare with `hotline plugins list`, then `hotline plugins promote {slot}` or `hotline plugins rollback {slot}`\n",
        body["version"].as_str().unwrap_or("?")
    ))
}

fn plugins_rollback(client: &AdminClient, slot: &str) -> Result<()> {
    let body = client.call("POST", &format!("/api/plugins/{slot}/rollback")).with_context(|| format!("rollback of {slot} refused"))?;
    print_out(&format!("{slot} rolled back; current version {}\n", body["version"].as_str().unwrap_or("?")))
}

fn status(client: &AdminClient, json: bool) -> Result<()> {
    let status = client.call("GET", "/api/status")?;
    if json {
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&status)?));
    }
    print_out(&status_text(&status))
}

/// The `hotline status` summary.
fn status_text(s: &serde_json::Value) -> String {
    use std::fmt::Write;
    let n = |v: &serde_json::Value| v.as_u64().map_or("?".to_string(), |n| n.to_string());
    let mut out = String::new();
    let uptime = humantime::format_duration(Duration::from_secs(s["uptime_secs"].as_u64().unwrap_or(0)));
    let _ = writeln!(out, "hotline {}, up {uptime}", s["version"].as_str().unwrap_or("?"));
    let _ = writeln!(out, "sessions     {}", n(&s["sessions"]));
    let _ = writeln!(out, "connections  {}", n(&s["connections"]));
    let _ = writeln!(out, "alerts       {} active", n(&s["alerts_active"]));
    let storage = &s["storage"];
    let disk = storage["disk_bytes"].as_u64().map_or("?".to_string(), |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64));
    let state = match storage["refusal"].as_str() {
        Some(why) => format!("REFUSING WRITES: {}", why.trim_end()),
        None => "ok".to_string(),
    };
    let _ = writeln!(out, "storage      {disk} on disk, {state}");
    let media = &s["media"];
    if media["enabled"].as_bool() == Some(true) {
        let disk = media["disk_bytes"].as_u64().map_or("?".to_string(), |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64));
        let _ = writeln!(
            out,
            "media        {} uploads in {} files, {disk} on disk; {} uploaded, {} downloaded since start",
            n(&media["objects"]),
            n(&media["files"]),
            n(&media["uploads"]),
            n(&media["downloads"])
        );
    }
    let _ = writeln!(out, "plugins");
    for p in s["plugins"].as_array().into_iter().flatten() {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
        let _ = writeln!(out, "  {:<10} {:<13} {}", text(&p["slot"]), text(&p["version"]), text(&p["state"]));
    }
    let _ = writeln!(out, "queues (kind: total items, largest, non-empty; top)");
    for k in s["queues"]["kinds"].as_array().into_iter().flatten() {
        let top: Vec<String> = k["top"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|q| format!("{} {}", q["name"].as_str().unwrap_or("?"), n(&q["items"])))
            .collect();
        let line = format!(
            "  {:<10} {:>8} {:>8} {:>6}  {}",
            k["kind"].as_str().unwrap_or("?"),
            n(&k["total"]),
            n(&k["max"]),
            n(&k["non_empty"]),
            top.join(", ")
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn new_plugin(lang: hotline::scaffold::Lang, name: &str, slot: &str, dir: Option<PathBuf>) -> Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    use std::fmt::Write;
    let files = hotline::scaffold::create(lang, name, slot, &dir)?;
    let mut out = String::new();
    let _ = writeln!(out, "created {} ({lang} {slot} plugin, contract {}):", dir.display(), hotline::scaffold::CONTRACT_VERSION);
    for file in files {
        let _ = writeln!(out, "  {}", file.display());
    }
    let _ = writeln!(out, "next:");
    let _ = writeln!(out, "  cd {} && ./build.sh", dir.display());
    let _ = writeln!(out, "  cp out/{slot}.wasm DATA/plugins/.{slot}.tmp && mv DATA/plugins/.{slot}.tmp DATA/plugins/{slot}.wasm");
    let _ = writeln!(out, "  hotline plugins list");
    print_out(&out)
}

/// Unix milliseconds as an RFC 3339 UTC time.
fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

fn inspect(data: PathBuf) -> Result<()> {
    let path = data.join("store");
    anyhow::ensure!(path.exists(), "no storage at {}", path.display());
    let store = match Store::open(&path) {
        Ok(store) => store,
        Err(StoreError::Locked) => anyhow::bail!(
            "a broker is running on {} (its storage is locked); stop it to inspect the storage, or ask the running \
             broker: its admin endpoint serves /metrics and /api/plugins (`hotline plugins list --admin ADDR`)",
            data.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let queues = store.queue_lengths()?;
    let total: u64 = queues.values().sum();
    let report = serde_json::json!({
        "queued_items": total,
        "queues": queues,
        "disk_bytes": store.disk_space()?,
    });
    print_out(&format!("{}\n", serde_json::to_string_pretty(&report)?))
}

