//! `hotline-bench online` (the default workload): N clients send M messages each to random
//! peers through the real broker binary over QUIC, acknowledging everything they receive (so
//! every message also makes a delivered receipt). Prints throughput and the latency of `Sent`
//! (durable storage).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use hotline_client::Client;
use hotline_protocol::ServerFrame;
use hotline_tests::Broker;
use rand::Rng;

/// Flags of the `online` workload (also accepted with no workload named).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Connected clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Messages each client sends.
    #[arg(long, default_value_t = 1000)]
    pub messages: usize,
    /// Sends a client keeps outstanding (not yet `Sent`).
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body: usize,
    /// Storage durability: fsync or buffered.
    #[arg(long, default_value = "fsync")]
    pub durability: String,
    /// A small run that only checks the benchmark works (CI).
    #[arg(long)]
    pub quick: bool,
}

#[derive(Default)]
struct Totals {
    messages: AtomicU64,
    receipts: AtomicU64,
}

/// Runs the workload and prints its figures.
pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.clients = 4;
        args.messages = 50;
    }
    let config = tempfile_config(&args.durability)?;
    let broker = Broker::start_with(&["--config", config.to_str().unwrap()])?;
    let phones: Vec<String> = (0..args.clients).map(|i| format!("+1555{:07}", 1_000_000 + i)).collect();
    let mut clients = Vec::new();
    for phone in &phones {
        let key = broker.register(phone).await?;
        clients.push(broker.login(phone, &key).await?);
    }
    let total = (args.clients * args.messages) as u64;
    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (phones, totals) = (phones.clone(), totals.clone());
            let (messages, window, body) = (args.messages, args.window, args.body);
            tokio::spawn(run_client(client, phones, messages, window, body, total, totals))
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3)?;
    for t in tasks {
        latency.add(t.await??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "hotline-bench: {} clients x {} messages ({} B bodies, window {}, durability {})",
        args.clients, args.messages, args.body, args.window, args.durability
    );
    println!("  delivered+acked: {total} messages and {total} receipts in {elapsed:.2} s");
    println!("  throughput:      {:.0} messages/s ({:.0} items/s with receipts)", total as f64 / elapsed, 2.0 * total as f64 / elapsed);
    println!(
        "  Sent latency:    p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0
    );
    drop(broker);
    Ok(())
}

/// Sends this client's share with a window of outstanding sends, acks everything received,
/// and returns once every message and receipt in the run arrived. Returns Sent latencies (µs).
async fn run_client(
    mut client: Client,
    phones: Vec<String>,
    messages: usize,
    window: usize,
    body: usize,
    total: u64,
    totals: Arc<Totals>,
) -> Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new(3)?;
    let mut started = std::collections::HashMap::new();
    let (mut sent, mut acked) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        while sent < messages && started.len() < window {
            let to = &phones[rand::rng().random_range(0..phones.len())];
            let client_id = sent as u64;
            client.send_with_id(client_id, to, vec![b'x'; body]).await?;
            started.insert(client_id, Instant::now());
            sent += 1;
        }
        let done = acked == messages
            && totals.messages.load(Ordering::Relaxed) == total
            && totals.receipts.load(Ordering::Relaxed) == total;
        if done {
            client.close().await;
            return Ok(latency);
        }
        if Instant::now() > deadline {
            bail!("benchmark did not finish in 10 minutes");
        }
        match client.next_frame_within(Duration::from_millis(100)).await {
            Ok(ServerFrame::Sent { client_id, .. }) => {
                let t = started.remove(&client_id).expect("known client id");
                latency.record(t.elapsed().as_micros() as u64)?;
                acked += 1;
            }
            Ok(ServerFrame::Message { id, .. }) => {
                client.ack(id).await?;
                totals.messages.fetch_add(1, Ordering::Relaxed);
            }
            Ok(ServerFrame::Receipt { id, .. }) => {
                client.ack(id).await?;
                totals.receipts.fetch_add(1, Ordering::Relaxed);
            }
            Ok(other) => bail!("unexpected frame {other:?}"),
            Err(hotline_client::ClientError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn tempfile_config(durability: &str) -> Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!("hotline-bench-{}.toml", std::process::id()));
    std::fs::write(&path, format!("[storage]\ndurability = \"{durability}\"\n"))?;
    Ok(path)
}
