//! The `hotline` binary: `serve` runs the broker; `plugins` operates its plugins (and
//! `plugins new` writes a plugin project); `inspect` reports on a stopped broker's storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hotline::broker::Broker;
use hotline::config::Config;
use hotline::server::Listener;
use hotline::store::Store;

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
    /// Make the previous version of SLOT (router, registrar, receipts) current again.
    Rollback { slot: String },
    /// Write a new plugin project NAME for SLOT in a language; its ./build.sh builds
    /// out/SLOT.wasm, ready to drop into a broker's plugin folder.
    New {
        /// The language of the project.
        #[arg(long, value_enum)]
        lang: hotline::scaffold::Lang,
        /// Project name: lowercase letters, digits and '-', e.g. my-router.
        name: String,
        /// The slot the plugin fills: router, registrar or receipts.
        #[arg(default_value = "router")]
        slot: String,
        /// Folder to create (default: ./NAME). Must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// Data folder (storage, TLS, SMS outbox). Overrides the config file.
        #[arg(long)]
        data: Option<PathBuf>,
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// UDP address for QUIC, e.g. 127.0.0.1:4433 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// TCP address of the admin HTTP endpoint (metrics, plugin API).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Operate the plugins of a running broker through its admin endpoint.
    Plugins {
        /// Admin endpoint of the broker.
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin: SocketAddr,
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Print queue lengths and disk use of a stopped broker's storage as JSON.
    Inspect {
        #[arg(long, default_value = "hotline-data")]
        data: PathBuf,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("hotline: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOTLINE_LOG").unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Plugins { command: PluginsCommand::New { lang, name, slot, dir }, .. } => new_plugin(lang, &name, &slot, dir),
        Command::Plugins { admin, command: PluginsCommand::List { json } } => plugins_list(admin, json),
        Command::Plugins { admin, command: PluginsCommand::Rollback { slot } } => plugins_rollback(admin, &slot),
        Command::Serve { data, config, listen, admin } => {
            let mut config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(data) = data {
                config.data = data;
            }
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(admin) = admin {
                config.admin.listen = admin;
            }
            tokio::runtime::Runtime::new()?.block_on(serve(config))
        }
        Command::Inspect { data } => inspect(data),
    }
}

async fn serve(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data).with_context(|| format!("creating data folder {}", config.data.display()))?;
    let (cert, key) = (config.cert_path(), config.key_path());
    // A configured certificate must exist; only the default location gets a development one.
    if config.tls.cert.is_some() {
        anyhow::ensure!(cert.exists(), "tls.cert {} does not exist", cert.display());
    } else if hotline::tls::ensure_dev_certificate(&cert, &key)? {
        tracing::info!(cert = %cert.display(), "made a development certificate");
    }
    let tls = hotline::tls::server_config(&cert, &key)?;
    let broker = Broker::open(&config)?;
    let listener = Listener::bind(config.listen, tls, &config.reset_key_path(), broker.clone())?;
    let addr = listener.local_addr()?;
    let _watcher = hotline::plugins::Watcher::start(broker.plugins.clone())?;
    let admin = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("binding the admin endpoint {}", config.admin.listen))?;
    let admin_addr = admin.local_addr()?;
    let admin_app = hotline::admin::router(broker.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(admin, admin_app).await {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    });
    // Tests and scripts wait for this line on stdout.
    println!("hotline listening on {addr} admin {admin_addr} (data {})", config.data.display());
    tracing::info!(%addr, %admin_addr, data = %config.data.display(), plugins = %broker.plugins.dir().display(), "serving");

    let expiry = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
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
        () = shutdown_signal() => tracing::info!("shutting down"),
    }
    expiry.abort();
    listener.close(hotline_protocol::close_code::NORMAL, "broker shutting down").await;
    broker.flush().await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The admin API's plugin endpoint, and the error for a broker that does not answer.
fn plugins_api(admin: SocketAddr) -> (String, String) {
    (format!("http://{admin}/api/plugins"), format!("cannot reach the broker's admin endpoint at {admin} (is it running? --admin ADDR)"))
}

fn plugins_list(admin: SocketAddr, json: bool) -> Result<()> {
    let (base, unreachable) = plugins_api(admin);
    let report: serde_json::Value = ureq::get(&base).call().context(unreachable)?.body_mut().read_json()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{:<10} {:<13} {:<12} {:<24} {:>10} {:>8}", "SLOT", "VERSION", "STATE", "LOADED AT (UTC)", "CALLS", "ERRORS");
    for v in report["versions"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:<13} {:<12} {:<24} {:>10} {:>8}",
            v["slot"].as_str().unwrap_or("?"),
            v["version"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?"),
            format_ms(v["loaded_at_ms"].as_u64().unwrap_or(0)),
            v["calls"],
            v["errors"]
        );
    }
    let history = report["history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        println!("\nHISTORY");
        for e in history.iter().rev().take(20).rev() {
            println!(
                "{}  {:<10} {:<13} {:<12} {}",
                format_ms(e["at_ms"].as_u64().unwrap_or(0)),
                e["slot"].as_str().unwrap_or("?"),
                e["version"].as_str().unwrap_or("?"),
                e["event"].as_str().unwrap_or("?"),
                e["detail"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn plugins_rollback(admin: SocketAddr, slot: &str) -> Result<()> {
    let (base, unreachable) = plugins_api(admin);
    let response = ureq::post(format!("{base}/{slot}/rollback"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_empty()
        .context(unreachable)?;
    let ok = response.status().is_success();
    let body: serde_json::Value = response.into_body().read_json()?;
    if !ok {
        anyhow::bail!("rollback of {slot} refused: {}", body["error"].as_str().unwrap_or("unknown error"));
    }
    println!("{slot} rolled back; current version {}", body["version"].as_str().unwrap_or("?"));
    Ok(())
}

fn new_plugin(lang: hotline::scaffold::Lang, name: &str, slot: &str, dir: Option<PathBuf>) -> Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let files = hotline::scaffold::create(lang, name, slot, &dir)?;
    println!("created {} ({lang} {slot} plugin, API {}):", dir.display(), hotline::scaffold::API_VERSION);
    for file in files {
        println!("  {}", file.display());
    }
    println!("next:");
    println!("  cd {} && ./build.sh", dir.display());
    println!("  cp out/{slot}.wasm DATA/plugins/.{slot}.tmp && mv DATA/plugins/.{slot}.tmp DATA/plugins/{slot}.wasm");
    println!("  hotline plugins list");
    Ok(())
}

/// Unix milliseconds as an RFC 3339 UTC time.
fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

fn inspect(data: PathBuf) -> Result<()> {
    let path = data.join("store");
    anyhow::ensure!(path.exists(), "no storage at {}", path.display());
    let store = Store::open(&path).with_context(|| format!("opening {} (is the broker still running?)", path.display()))?;
    let queues = store.queue_lengths()?;
    let total: u64 = queues.values().sum();
    let report = serde_json::json!({
        "queued_items": total,
        "queues": queues,
        "disk_bytes": store.disk_space()?,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
