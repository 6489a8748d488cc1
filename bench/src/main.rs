//! `hotline-bench`: load workloads against the real broker binary over QUIC, one it starts
//! or one already running (`--addr`).
//!
//! - `online` (the default, also run when no workload is named): messages to online
//!   recipients with receipts: messages/s, send→sent/delivered/receipt latency, broker CPU
//!   per message and memory; `--peer mosquitto,nats` runs the same load against those.
//! - `offline`: fill offline recipients' queues, then connect them: drain rate and disk.
//! - `swap`: `online` at a fixed rate while the router plugin file is replaced.
//! - `connections`: login bursts, held connections and mass closes: logins/s, login latency,
//!   broker memory per connection and after close, UDP drops.
//!
//! Figures: `cargo build --release -p hotline -p hotline-bench --bins &&
//! target/release/hotline-bench [WORKLOAD]` (see docs/perf.md; the benchmark starts the
//! `hotline` binary that sits beside it). CI keeps each workload working with `--quick`.

mod connections;
mod figures;
mod load;
mod offline;
mod online;
mod peers;
mod swap;
mod sys;
mod target;

use anyhow::Result;

/// jemalloc, as the broker: the load generator makes and frees many small objects per login
/// (QUIC packets, TLS state), where glibc's malloc took about 10% of its CPU in a burst.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
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
    /// Messages between online clients, each answered by a delivered receipt: messages/s,
    /// latency, broker CPU and memory; `--peer` compares with Mosquitto and NATS (default).
    Online(online::Args),
    /// Fill offline recipients' queues, then connect them: drain rate, disk at peak and after.
    Offline(offline::Args),
    /// `online` at a fixed rate while the router plugin is replaced: lost and failed
    /// messages, latency around swaps, time until the new version serves.
    Swap(swap::Args),
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
        Some(Workload::Offline(args)) => offline::run(args).await,
        Some(Workload::Swap(args)) => swap::run(args).await,
        Some(Workload::Connections(args)) => connections::run(args).await,
    }
}
