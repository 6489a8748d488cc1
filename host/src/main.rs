//! The `hotline` binary: `serve` runs the broker; `inspect` reports on a stopped broker's storage.

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
    },
    /// Print queue lengths and disk use of a stopped broker's storage as JSON.
    Inspect {
        #[arg(long, default_value = "hotline-data")]
        data: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOTLINE_LOG").unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { data, config, listen } => {
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
            tokio::runtime::Runtime::new()?.block_on(serve(config))
        }
        Command::Inspect { data } => inspect(data),
    }
}

async fn serve(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data).with_context(|| format!("creating data folder {}", config.data.display()))?;
    let (cert, key) = (config.cert_path(), config.key_path());
    if hotline::tls::ensure_dev_certificate(&cert, &key)? {
        tracing::info!(cert = %cert.display(), "made a development certificate");
    }
    let tls = hotline::tls::server_config(&cert, &key)?;
    let broker = Broker::open(&config)?;
    let listener = Listener::bind(config.listen, tls, broker.clone())?;
    let addr = listener.local_addr()?;
    // Tests and scripts wait for this line on stdout.
    println!("hotline listening on {addr} (data {})", config.data.display());
    tracing::info!(%addr, data = %config.data.display(), "serving");

    let expiry = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = hotline::cmd::expire::expire(&broker).await {
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
