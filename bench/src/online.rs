//! `hotline-bench online` (the default workload): N clients send M messages each to random
//! peers through a Hotline broker over QUIC, each acknowledged by its recipient and
//! answered by a delivered receipt (the [`Load`] workload). Measures messages/s,
//! send→sent/delivered/receipt latency, broker CPU per message and memory; with `--peer`
//! the same workload runs against Mosquitto and NATS JetStream in the same invocation and
//! one table compares them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::FutureExt;
use hotline_client::Client;
use hotline_protocol::{encode, ClientFrame, ServerFrame};
use rand::SeedableRng;
use serde::Serialize;

use crate::figures::{self, count, mib, ms, print_table, Meter};
use crate::load::{self, Header, Load, Outcome, Recorder, Stats};
use crate::peers::{self, Peer};
use crate::target::{BrokerArgs, Target};

/// Flags of the `online` workload (also accepted with no workload named).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub load: Load,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Also run the same workload against another broker, started here on loopback:
    /// `mosquitto` (MQTT QoS 1, persistent sessions) or `nats` (JetStream). Repeat the flag
    /// or give a list (`--peer mosquitto,nats`); each runs after Hotline, one at a time.
    #[arg(long = "peer", value_enum, value_delimiter = ',')]
    pub peers: Vec<Peer>,
    /// A small run that checks the workload works (CI): 4 clients x 50 messages.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The `--json` output.
#[derive(Serialize)]
struct Report<'a> {
    load: &'a Load,
    profile: &'static str,
    /// Hotline first, then each peer.
    runs: Vec<Outcome>,
}

/// Runs the workload against Hotline and every `--peer`, prints one table, and fails if a
/// message was lost or refused.
pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        (args.load.clients, args.load.messages) = (4, 50);
    }
    args.load.check()?;
    println!("hotline-bench online: {} ({} build)", args.load.describe(), figures::profile());
    let mut runs = Vec::new();
    {
        let target = Target::new(&args.broker)?;
        let run = run_hotline(&target, &args.load, args.quick, false).await?;
        runs.push(run.outcome);
    }
    for peer in &args.peers {
        runs.push(peers::run(*peer, &args.load, args.quick).await?);
    }
    print_outcomes(&runs);
    figures::write_json(args.json.as_deref(), &Report { load: &args.load, profile: figures::profile(), runs: runs.clone() })?;
    for run in &runs {
        if run.lost + run.failed + run.receipts_missing > 0 {
            anyhow::bail!(
                "{}: {} messages lost, {} refused, {} receipts missing",
                run.system,
                run.lost,
                run.failed,
                run.receipts_missing
            );
        }
    }
    Ok(())
}

/// A finished Hotline run: its figures, and what `swap` needs to split them by time.
pub struct Run {
    pub outcome: Outcome,
    /// (sent ns since the run's epoch, send→delivered µs) per delivered message, if asked for.
    pub samples: Option<Vec<(u64, u32)>>,
}

/// Registers and logs in the clients (not measured), then runs the workload against
/// `target`.
pub async fn run_hotline(target: &Target, load: &Load, quick: bool, keep_samples: bool) -> Result<Run> {
    run_hotline_with(target, load, quick, keep_samples, 0, |_| {}).await
}

/// [`run_hotline`] with the clients' numbers from `group` (see [`Target::phones`]),
/// calling `started` with the run's epoch as the measured part begins.
pub async fn run_hotline_with(
    target: &Target,
    load: &Load,
    quick: bool,
    keep_samples: bool,
    group: u32,
    started: impl FnOnce(std::time::Instant),
) -> Result<Run> {
    let phones = target.phones(group, load.clients);
    eprintln!("hotline: registering and logging in {} clients...", load.clients);
    let keys = target.register(&phones, 16).await?;
    let mut clients = Vec::new();
    for (phone, key) in phones.iter().zip(&keys) {
        clients.push(target.login(phone, key).await?);
    }
    let phones = Arc::new(phones);
    let stats = Stats::new(load.total());
    started(stats.epoch());
    let mut meter = Meter::start(target.process())?;
    let bar = figures::progress(load.total(), quick, "hotline");
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(me, client)| tokio::spawn(client_loop(me, client, phones.clone(), load.clone(), stats.clone(), keep_samples)))
        .collect();
    let finish = load::supervise(&stats, &mut meter, &bar, Duration::from_secs(load.drain_timeout_secs)).await;
    let mut rec = Recorder::new(keep_samples);
    for task in tasks {
        rec.merge(task.await??)?;
    }
    let outcome = Outcome::new("hotline".into(), &stats, finish?, &rec);
    Ok(Run { outcome, samples: rec.samples })
}

/// One client: sends its share on schedule with at most `window` unanswered, acknowledges
/// every message and receipt, and records the latencies, until the run is over. Frames
/// that arrive together are handled together and the acks and sends they lead to go out
/// in one write.
async fn client_loop(me: usize, client: Client, phones: Arc<Vec<String>>, load: Load, stats: Arc<Stats>, keep_samples: bool) -> Result<Recorder> {
    let (mut tx, mut rx) = client.split();
    let mut done = stats.done();
    let mut rec = Recorder::new(keep_samples);
    let schedule = load.schedule(me);
    let mut rng = rand::rngs::StdRng::seed_from_u64(me as u64);
    let mut state = ClientState { sent_at: vec![0; load.messages], by_id: Default::default(), early: Default::default(), in_flight: 0, out: Vec::new() };
    let mut next = 0;
    loop {
        let now = stats.now();
        while next < load.messages && state.in_flight < load.window && schedule.due(next) <= now {
            let sent_ns = if schedule.is_paced() { schedule.due(next) } else { now };
            let header = Header { sent_ns, kind: load::MESSAGE, sender: me as u32, seq: next as u32 };
            let to = phones[load::peer_of(me, phones.len(), &mut rng)].clone();
            state.out.extend(encode(&ClientFrame::Send { client_id: next as u64, to, body: header.body(load.body) }));
            state.sent_at[next] = sent_ns;
            (next, state.in_flight) = (next + 1, state.in_flight + 1);
        }
        if !state.out.is_empty() {
            tx.write_raw(&state.out).await.context("writing to the broker")?;
            state.out.clear();
        }
        if *done.borrow() {
            break;
        }
        let can_send = next < load.messages && state.in_flight < load.window;
        let wake = stats.instant(if can_send { schedule.due(next) } else { u64::MAX / 4 });
        tokio::select! {
            frame = rx.next_frame() => {
                state.handle(frame?, &stats, &mut rec)?;
                // Whatever else has arrived already.
                while let Some(frame) = rx.next_frame().now_or_never() {
                    state.handle(frame?, &stats, &mut rec)?;
                }
            }
            _ = tokio::time::sleep_until(wake), if can_send && schedule.is_paced() => {}
            _ = done.changed() => break,
        }
    }
    if let Ok(client) = Client::reunite(tx, rx) {
        client.close().await;
    }
    Ok(rec)
}

/// What a client keeps while it runs.
struct ClientState {
    /// Send instant (ns since the epoch) per sequence number (= client id).
    sent_at: Vec<u64>,
    /// Send instant per broker message id (from `Sent`), until its receipt arrives.
    by_id: std::collections::HashMap<u64, u64>,
    /// Receipts that arrived before their `Sent` (arrival instant per message id).
    early: std::collections::HashMap<u64, u64>,
    in_flight: usize,
    /// Frames to write (sends and acks).
    out: Vec<u8>,
}

impl ClientState {
    fn handle(&mut self, frame: ServerFrame, stats: &Stats, rec: &mut Recorder) -> Result<()> {
        let now = stats.now();
        match frame {
            ServerFrame::Sent { client_id, id } => {
                self.in_flight -= 1;
                Stats::add(&stats.answered);
                let sent_ns = self.sent_at[client_id as usize];
                rec.sent(sent_ns, now);
                match self.early.remove(&id) {
                    Some(at) => {
                        rec.receipt(sent_ns, at);
                        Stats::add(&stats.receipts);
                    }
                    None => {
                        self.by_id.insert(id, sent_ns);
                    }
                }
            }
            ServerFrame::SendFailed { reason, .. } => {
                self.in_flight -= 1;
                Stats::add(&stats.answered);
                Stats::add(&stats.failed);
                if stats.failed.load(std::sync::atomic::Ordering::Relaxed) == 1 {
                    eprintln!("hotline: first refused send: {reason}");
                }
            }
            ServerFrame::Message { id, body, .. } | ServerFrame::TypedMessage { id, body, .. } => {
                self.out.extend(encode(&ClientFrame::Ack { id }));
                rec.delivered(Header::parse(&body)?.sent_ns, now);
                Stats::add(&stats.delivered);
            }
            ServerFrame::Receipt { id, message_id, .. } => {
                self.out.extend(encode(&ClientFrame::Ack { id }));
                match self.by_id.remove(&message_id) {
                    Some(sent_ns) => {
                        rec.receipt(sent_ns, now);
                        Stats::add(&stats.receipts);
                    }
                    None => {
                        self.early.insert(message_id, now);
                    }
                }
            }
            other => anyhow::bail!("unexpected frame {other:?}"),
        }
        Ok(())
    }
}

/// Prints the runs side by side: one column per system, and for each peer the ratio
/// Hotline / peer of throughput and p99s.
pub fn print_outcomes(runs: &[Outcome]) {
    let mut columns: Vec<String> = runs.iter().map(|r| r.system.clone()).collect();
    let hotline = runs.first();
    let peers = &runs[1.min(runs.len())..];
    columns.extend(peers.iter().map(|p| format!("hotline/{}", p.system.split_whitespace().next().unwrap_or(""))));
    let ratio = |f: fn(&Outcome) -> f64| -> Vec<String> {
        peers
            .iter()
            .map(|p| match hotline.map(|h| f(h) / f(p)) {
                Some(r) if r.is_finite() => format!("{r:.2}x"),
                _ => "-".into(),
            })
            .collect()
    };
    let no_ratio = || vec![String::new(); peers.len()];
    type Cell = fn(&Outcome) -> String;
    type Figure = fn(&Outcome) -> f64;
    let rows: Vec<(&str, Cell, Option<Figure>)> = vec![
        ("messages/s (with receipts)", |r| count(r.messages_per_sec), Some(|r| r.messages_per_sec)),
        ("items/s (messages + receipts)", |r| count(r.items_per_sec), None),
        ("delivered / sent", |r| format!("{} / {}", r.delivered, r.messages), None),
        ("lost / refused / no receipt", |r| format!("{} / {} / {}", r.lost, r.failed, r.receipts_missing), None),
        ("send→sent p50/p99/p99.9 ms", |r| r.send_to_sent.cell(), None),
        ("send→delivered p50/p99/p99.9", |r| r.send_to_delivered.cell(), None),
        ("send→receipt p50/p99/p99.9", |r| r.send_to_receipt.cell(), None),
        ("send→delivered p99 ms", |r| ms(r.send_to_delivered.p99_ms), Some(|r| r.send_to_delivered.p99_ms)),
        ("broker CPU µs/message", |r| r.broker_cpu_us_per_message.map_or("-".into(), |v| format!("{v:.1}")), Some(|r| r.broker_cpu_us_per_message.unwrap_or(f64::NAN))),
        ("bench CPU µs/message", |r| format!("{:.1}", r.bench_cpu_us_per_message), None),
        ("CPU s broker (of wall)", |r| figures::Usage::cpu_cell(r.usage.broker_cpu_secs, r.wall_secs), None),
        ("CPU s bench (of wall)", |r| figures::Usage::cpu_cell(Some(r.usage.bench_cpu_secs), r.wall_secs), None),
        ("broker RSS end / peak MiB", |r| match (r.usage.broker_rss_bytes, r.usage.broker_rss_peak_bytes) {
            (Some(end), Some(peak)) => format!("{} / {}", mib(end), mib(peak)),
            _ => "-".into(),
        }, None),
        ("bench RSS peak MiB", |r| mib(r.usage.bench_rss_peak_bytes), None),
    ];
    let table: Vec<(String, Vec<String>)> = rows
        .into_iter()
        .map(|(label, cell, r)| {
            let mut cells: Vec<String> = runs.iter().map(cell).collect();
            cells.extend(r.map_or_else(no_ratio, ratio));
            (label.to_string(), cells)
        })
        .collect();
    print_table(&columns, &table);
}
