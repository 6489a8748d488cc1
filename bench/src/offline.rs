//! `hotline-bench offline`: N senders fill the queues of M recipients who are offline, then
//! the recipients log in and drain them (acknowledging each message, which sends a
//! delivered receipt back to its sender, online all along). Measures the fill rate, the
//! drain rate, the disk the broker's store takes at its peak, right after the drain and
//! once it settled (`--settle-secs`), and both processes' CPU time.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::FutureExt;
use hotline_client::Client;
use hotline_protocol::{encode, ClientFrame, ServerFrame};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::figures::{self, count, mib, Meter, Usage};
use crate::load::{Header, Stats, MESSAGE};
use crate::sys;
use crate::target::{BrokerArgs, Target};

/// Flags of the `offline` workload.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    /// Clients that send (online throughout; they ack the receipts).
    #[arg(long, default_value_t = 100)]
    pub senders: usize,
    /// Clients whose queues are filled while they are offline, then drained.
    #[arg(long, default_value_t = 100)]
    pub recipients: usize,
    /// Messages each sender sends, to random recipients.
    #[arg(long, default_value_t = 5000)]
    pub messages: usize,
    /// Sends a sender keeps in flight (not yet `Sent`).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Message body size in bytes (at least 17).
    #[arg(long, default_value_t = 100)]
    pub body: usize,
    /// After the drain, how long to watch the store's disk usage fall.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    #[command(flatten)]
    #[serde(skip)]
    pub broker: BrokerArgs,
    /// A small run that checks the workload works (CI): 4 senders, 4 recipients, 200
    /// messages each, 2 s settle.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub json: Option<PathBuf>,
}

/// The figures of a run (the `--json` output).
#[derive(Serialize)]
struct Report {
    args: Args,
    profile: &'static str,
    messages: u64,
    accepted: u64,
    refused: u64,
    fill_secs: f64,
    fill_messages_per_sec: f64,
    fill_usage: Usage,
    /// From the first recipient's login until every accepted message reached its recipient.
    drain_secs: f64,
    drain_messages_per_sec: f64,
    /// Until every receipt reached its sender, from the same start.
    receipts_secs: f64,
    delivered: u64,
    receipts: u64,
    drain_usage: Usage,
    /// The store folder's disk usage (None: no data folder known).
    disk_before_bytes: Option<u64>,
    disk_peak_bytes: Option<u64>,
    disk_after_drain_bytes: Option<u64>,
    disk_settled_bytes: Option<u64>,
    settle_secs: u64,
    /// Disk after settling as a share of the peak.
    disk_settled_of_peak: Option<f64>,
    /// Seconds after the drain until the disk was under 10% of its peak (None: not
    /// within the settle time).
    disk_under_10pct_after_secs: Option<f64>,
}

/// Runs the workload and prints its figures; fails if a message was refused or lost.
pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        (args.senders, args.recipients, args.messages, args.settle_secs) = (4, 4, 200, 2);
    }
    if args.senders == 0 || args.recipients == 0 || args.messages == 0 || args.window == 0 || args.body < crate::load::HEADER {
        bail!("--senders, --recipients, --messages and --window must be at least 1, --body at least 17");
    }
    let target = Target::new(&args.broker)?;
    let store = target.data.as_ref().map(|d| d.join("store"));
    let disk = || store.as_deref().map(sys::disk_bytes).transpose();
    let total = (args.senders * args.messages) as u64;
    println!(
        "hotline-bench offline: {} senders x {} messages of {} B to {} offline recipients, {} in flight ({} build)",
        args.senders,
        count(args.messages as f64),
        args.body,
        args.recipients,
        args.window,
        figures::profile()
    );

    eprintln!("registering {} numbers...", args.senders + args.recipients);
    let senders = target.phones(1, args.senders);
    let recipients = Arc::new(target.phones(2, args.recipients));
    let keys = target.register(&[senders.clone(), recipients.to_vec()].concat(), 16).await?;
    let (sender_keys, recipient_keys) = keys.split_at(args.senders);
    let mut sender_clients = Vec::new();
    for (phone, key) in senders.iter().zip(sender_keys) {
        sender_clients.push(target.login(phone, key).await?);
    }
    let disk_before = disk()?;

    // Fill.
    let stats = Stats::new(total);
    let mut meter = Meter::start(target.process())?;
    let bar = figures::progress(total, args.quick, "fill");
    let tasks: Vec<_> = sender_clients
        .into_iter()
        .enumerate()
        .map(|(me, client)| tokio::spawn(party(client, Some((me, recipients.clone(), args.clone())), stats.clone())))
        .collect();
    let mut disk_peak = disk_before;
    let fill_started = Instant::now();
    let answered = |s: &Stats| s.answered.load(Ordering::Relaxed);
    wait_until(&stats, &bar, &mut meter, &mut disk_peak, &disk, answered, |s| answered(s) == total).await?;
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let fill_usage = meter.usage()?;
    bar.finish_and_clear();
    let refused = stats.failed.load(Ordering::Relaxed);
    let accepted = total - refused;
    eprintln!("filled: {accepted} messages in {fill_secs:.1} s; draining...");

    // Drain: every recipient logs in at once.
    let mut meter = Meter::start(target.process())?;
    let bar = figures::progress(accepted, args.quick, "drain");
    let drain_started = Instant::now();
    let mut logins = Vec::new();
    for (phone, key) in recipients.iter().zip(recipient_keys) {
        let (options, phone, key) = (target.options(), phone.clone(), key.clone());
        logins.push(tokio::spawn(async move {
            let mut client = Client::connect(&options).await?;
            client.login(&phone, &key).await?;
            anyhow::Ok(client)
        }));
    }
    let mut drainers = Vec::new();
    for login in logins {
        let client = login.await??;
        drainers.push(tokio::spawn(party(client, None, stats.clone())));
    }
    let delivered = |s: &Stats| s.delivered.load(Ordering::Relaxed);
    wait_until(&stats, &bar, &mut meter, &mut disk_peak, &disk, delivered, |s| delivered(s) >= accepted).await?;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let receipts = |s: &Stats| s.receipts.load(Ordering::Relaxed);
    let hidden = indicatif::ProgressBar::hidden();
    wait_until(&stats, &hidden, &mut meter, &mut disk_peak, &disk, receipts, |s| receipts(s) >= accepted).await?;
    let receipts_secs = drain_started.elapsed().as_secs_f64();
    let drain_usage = meter.usage()?;
    stats.finish();
    for task in tasks.into_iter().chain(drainers) {
        task.await??;
    }

    // Settle: the store's disk usage after the drain.
    let disk_after_drain = disk()?;
    let drained_at = Instant::now();
    let mut under_10pct = None;
    let mut disk_settled = disk_after_drain;
    if let (Some(peak), Some(_)) = (disk_peak, disk_after_drain) {
        eprintln!("watching the store's disk usage for {} s...", args.settle_secs);
        loop {
            let now = disk()?.unwrap_or(0);
            disk_settled = Some(now);
            if under_10pct.is_none() && (now as f64) < 0.1 * peak as f64 {
                under_10pct = Some(drained_at.elapsed().as_secs_f64());
            }
            if drained_at.elapsed() >= Duration::from_secs(args.settle_secs) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let report = Report {
        profile: figures::profile(),
        messages: total,
        accepted,
        refused,
        fill_secs,
        fill_messages_per_sec: accepted as f64 / fill_secs,
        fill_usage,
        drain_secs,
        drain_messages_per_sec: accepted as f64 / drain_secs,
        receipts_secs,
        delivered: stats.delivered.load(Ordering::Relaxed),
        receipts: stats.receipts.load(Ordering::Relaxed),
        drain_usage,
        disk_before_bytes: disk_before,
        disk_peak_bytes: disk_peak,
        disk_after_drain_bytes: disk_after_drain,
        disk_settled_bytes: disk_settled,
        settle_secs: args.settle_secs,
        disk_settled_of_peak: disk_settled.zip(disk_peak).map(|(s, p)| s as f64 / p.max(1) as f64),
        disk_under_10pct_after_secs: under_10pct,
        args: args.clone(),
    };
    print_report(&report);
    figures::write_json(args.json.as_deref(), &report)?;
    if refused > 0 {
        bail!("{refused} sends refused");
    }
    Ok(())
}

/// Waits until `cond` holds, moving the bar and sampling memory and disk; fails if nothing
/// moves for a minute.
async fn wait_until(
    stats: &Stats,
    bar: &indicatif::ProgressBar,
    meter: &mut Meter,
    disk_peak: &mut Option<u64>,
    disk: &impl Fn() -> Result<Option<u64>>,
    position: impl Fn(&Stats) -> u64,
    cond: impl Fn(&Stats) -> bool,
) -> Result<()> {
    let mut last = (Instant::now(), [0u64; 3]);
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    loop {
        let now = [&stats.answered, &stats.delivered, &stats.receipts].map(|c| c.load(Ordering::Relaxed));
        bar.set_position(position(stats));
        if last_sample.elapsed() >= Duration::from_millis(250) {
            meter.sample();
            if let Some(d) = disk()? {
                *disk_peak = Some(disk_peak.unwrap_or(0).max(d));
            }
            last_sample = Instant::now();
        }
        if cond(stats) {
            if let Some(d) = disk()? {
                *disk_peak = Some(disk_peak.unwrap_or(0).max(d));
            }
            return Ok(());
        }
        if now != last.1 {
            last = (Instant::now(), now);
        } else if last.0.elapsed() > Duration::from_secs(60) {
            stats.finish();
            bail!("stalled: nothing moved for a minute (answered, delivered, receipts: {now:?})");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A logged-in client: sends `messages` to random recipients with a window (if given),
/// and acks every message and receipt it gets, until the run is over.
async fn party(client: Client, send: Option<(usize, Arc<Vec<String>>, Args)>, stats: Arc<Stats>) -> Result<()> {
    let (mut tx, mut rx) = client.split();
    let mut done = stats.done();
    let (me, recipients, args) = match send {
        Some((me, recipients, args)) => (me, recipients, Some(args)),
        None => (0, Arc::new(Vec::new()), None),
    };
    let (messages, window, body) = args.as_ref().map_or((0, 0, 0), |a| (a.messages, a.window, a.body));
    let mut rng = rand::rngs::StdRng::seed_from_u64(me as u64);
    let (mut next, mut in_flight) = (0usize, 0usize);
    let mut out = Vec::new();
    loop {
        while next < messages && in_flight < window {
            let header = Header { sent_ns: stats.now(), kind: MESSAGE, sender: me as u32, seq: next as u32 };
            let to = recipients[rng.random_range(0..recipients.len())].clone();
            out.extend(encode(&ClientFrame::Send { client_id: next as u64, to, body: header.body(body) }));
            (next, in_flight) = (next + 1, in_flight + 1);
        }
        if !out.is_empty() {
            tx.write_raw(&out).await.context("writing to the broker")?;
            out.clear();
        }
        if *done.borrow() {
            break;
        }
        tokio::select! {
            frame = rx.next_frame() => {
                let mut frame = Some(frame);
                while let Some(f) = frame {
                    match f? {
                        ServerFrame::Sent { .. } => {
                            in_flight -= 1;
                            Stats::add(&stats.answered);
                        }
                        ServerFrame::SendFailed { reason, .. } => {
                            in_flight -= 1;
                            Stats::add(&stats.answered);
                            Stats::add(&stats.failed);
                            eprintln!("refused: {reason}");
                        }
                        ServerFrame::Message { id, .. } | ServerFrame::TypedMessage { id, .. } => {
                            out.extend(encode(&ClientFrame::Ack { id }));
                            Stats::add(&stats.delivered);
                        }
                        ServerFrame::Receipt { id, .. } => {
                            out.extend(encode(&ClientFrame::Ack { id }));
                            Stats::add(&stats.receipts);
                        }
                        other => bail!("unexpected frame {other:?}"),
                    }
                    frame = rx.next_frame().now_or_never();
                }
            }
            _ = done.changed() => break,
        }
    }
    if let Ok(client) = Client::reunite(tx, rx) {
        client.close().await;
    }
    Ok(())
}

fn print_report(r: &Report) {
    let disk = |b: Option<u64>| b.map_or("-".into(), mib);
    let secs = |s: Option<f64>| s.map_or("no".into(), |s| format!("{s:.1} s"));
    let cpu = |u: &Usage| {
        format!(
            "bench {:.2} s, broker {} s of {:.2} s",
            u.bench_cpu_secs,
            u.broker_cpu_secs.map_or("-".into(), |c| format!("{c:.2}")),
            u.wall_secs
        )
    };
    let rows: Vec<(String, Vec<String>)> = vec![
        ("messages accepted / refused".into(), vec![format!("{} / {}", count(r.accepted as f64), r.refused)]),
        ("fill: messages/s".into(), vec![count(r.fill_messages_per_sec)]),
        ("fill: wall time (s)".into(), vec![format!("{:.2}", r.fill_secs)]),
        ("fill: CPU".into(), vec![cpu(&r.fill_usage)]),
        ("drain: messages/s".into(), vec![count(r.drain_messages_per_sec)]),
        ("drain: all delivered after (s)".into(), vec![format!("{:.2}", r.drain_secs)]),
        ("drain: all receipts back after (s)".into(), vec![format!("{:.2}", r.receipts_secs)]),
        ("drain: CPU (until receipts)".into(), vec![cpu(&r.drain_usage)]),
        ("broker RSS peak (MiB)".into(), vec![r.drain_usage.broker_rss_peak_bytes.map_or("-".into(), mib)]),
        ("store disk before fill (MiB)".into(), vec![disk(r.disk_before_bytes)]),
        ("store disk peak (MiB)".into(), vec![disk(r.disk_peak_bytes)]),
        ("store disk right after drain (MiB)".into(), vec![disk(r.disk_after_drain_bytes)]),
        (format!("store disk {} s after drain (MiB)", r.settle_secs), vec![disk(r.disk_settled_bytes)]),
        ("  of peak".into(), vec![r.disk_settled_of_peak.map_or("-".into(), |f| format!("{:.1}%", 100.0 * f))]),
        ("under 10% of peak after".into(), vec![secs(r.disk_under_10pct_after_secs)]),
    ];
    figures::print_table(&["".into()], &rows);
}
