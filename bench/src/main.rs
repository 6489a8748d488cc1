//! `hotline-bench`: load workloads against the real broker binary over QUIC.
//!
//! - `online` (the default, also run when no workload is named): message throughput and
//!   `Sent` latency.
//! - `connections`: login bursts, held connections and mass closes: logins/s, login latency,
//!   broker memory per connection and after close, UDP drops.
//!
//! Figures: `cargo build --release -p hotline -p hotline-bench --bins &&
//! target/release/hotline-bench [WORKLOAD]` (see docs/perf.md; the benchmark starts the
//! `hotline` binary that sits beside it). CI keeps each workload working with `--quick`.

mod connections;
mod online;
mod sys;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hotline-bench",
    about = "Load workloads against the real broker",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    workload: Option<Workload>,
    /// With no workload named, `online` runs with these flags.
    #[command(flatten)]
    online: online::Args,
}

#[derive(Subcommand)]
enum Workload {
    /// Message throughput and Sent latency (the default workload).
    Online(online::Args),
    /// Login bursts, held connections and mass closes: logins/s, login latency, broker
    /// memory per connection and after close, UDP drops.
    Connections(connections::Args),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.workload {
        None => online::run(cli.online).await,
        Some(Workload::Online(args)) => online::run(args).await,
        Some(Workload::Connections(args)) => connections::run(args).await,
    }
}
