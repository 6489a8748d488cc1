//! The message workload that `online`, `swap` and the `--peer` runs share, whatever the
//! broker: its flags ([`Load`]), the message body (send instant, sender, sequence), the
//! send schedule (as fast as the window allows, or a fixed rate), the run's shared counters
//! ([`Stats`]), each client's latency histograms ([`Recorder`]), the loop that watches a run
//! to its end ([`supervise`]) and the figures of a run ([`Outcome`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::sync::watch;

use crate::figures::{histogram, Latency, Meter, Usage};

/// The workload: every client sends `messages` messages to random other clients with at
/// most `window` not yet accepted by the broker; every recipient acknowledges each message
/// and the sender gets a delivered receipt for it, which it acknowledges too.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Load {
    /// Connected clients (each its own connection).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Messages each client sends.
    #[arg(long, default_value_t = 1000)]
    pub messages: usize,
    /// Messages a client keeps in flight: sent, not yet accepted by the broker (Hotline's
    /// `Sent`, MQTT's PUBACK, JetStream's publish ack).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Message body size in bytes (at least 17: the send instant, sender and sequence).
    #[arg(long, default_value_t = 100)]
    pub body: usize,
    /// Messages per second across all clients, on a fixed schedule (each client 1/N of
    /// it). Latencies are then measured from the scheduled instant, so a send held back by
    /// a full window counts its wait. Default: as fast as the window allows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Once every send is answered, how long to wait for the deliveries and receipts still
    /// missing before counting them lost.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_secs: u64,
}

impl Load {
    pub fn total(&self) -> u64 {
        (self.clients * self.messages) as u64
    }

    pub fn check(&self) -> Result<()> {
        if self.clients < 2 || self.messages == 0 || self.window == 0 {
            bail!("--clients must be at least 2, --messages and --window at least 1");
        }
        if self.body < HEADER {
            bail!("--body must be at least {HEADER} bytes");
        }
        if self.rate.is_some_and(|r| r <= 0.0) {
            bail!("--rate must be positive");
        }
        Ok(())
    }

    /// "100 clients x 1,000 messages of 100 B, 64 in flight, as fast as possible".
    pub fn describe(&self) -> String {
        let pace = self.rate.map_or("as fast as possible".to_string(), |r| format!("{} messages/s", crate::figures::count(r)));
        format!(
            "{} clients x {} messages of {} B to random peers, {} in flight per client, {pace}",
            self.clients,
            crate::figures::count(self.messages as f64),
            self.body,
            self.window
        )
    }

    /// The send schedule of client `me`.
    pub fn schedule(&self, me: usize) -> Schedule {
        Schedule { interval: self.rate.map(|r| 1e9 * self.clients as f64 / r), phase: me as f64 / self.clients as f64 }
    }
}

/// A random recipient other than `me` among `n` clients.
pub fn peer_of(me: usize, n: usize, rng: &mut impl rand::Rng) -> usize {
    let p = rng.random_range(0..n - 1);
    if p >= me {
        p + 1
    } else {
        p
    }
}

/// Bytes of the body's header.
pub const HEADER: usize = 17;

/// What a message body carries before its padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// When it was sent (or scheduled): ns since the run's epoch ([`Stats::now`]). Every
    /// client lives in this process, so the recipient can measure send→delivered.
    pub sent_ns: u64,
    /// 0 a message, 1 a receipt (brokers without receipts of their own).
    pub kind: u8,
    /// Index of the sending client.
    pub sender: u32,
    /// The sender's sequence number of the message.
    pub seq: u32,
}

pub const MESSAGE: u8 = 0;
pub const RECEIPT: u8 = 1;

impl Header {
    /// The body: this header, then `size - HEADER` bytes of padding.
    pub fn body(&self, size: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(size.max(HEADER));
        body.extend_from_slice(&self.sent_ns.to_le_bytes());
        body.push(self.kind);
        body.extend_from_slice(&self.sender.to_le_bytes());
        body.extend_from_slice(&self.seq.to_le_bytes());
        body.resize(size.max(HEADER), b'x');
        body
    }

    pub fn parse(body: &[u8]) -> Result<Header> {
        if body.len() < HEADER {
            bail!("a body of {} bytes has no benchmark header", body.len());
        }
        let u32_at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap());
        Ok(Header {
            sent_ns: u64::from_le_bytes(body[0..8].try_into().unwrap()),
            kind: body[8],
            sender: u32_at(9),
            seq: u32_at(13),
        })
    }
}

/// When a client sends its k-th message.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// ns between two sends of this client (None: as fast as possible).
    interval: Option<f64>,
    /// Offset of this client's sends, in intervals (spreads the clients' sends).
    phase: f64,
}

impl Schedule {
    /// ns since the epoch at which message `k` is due (0: at once).
    pub fn due(&self, k: usize) -> u64 {
        self.interval.map_or(0, |i| ((k as f64 + self.phase) * i) as u64)
    }

    pub fn is_paced(&self) -> bool {
        self.interval.is_some()
    }
}

/// Counters of a run, shared by its clients, and the signal that ends it.
pub struct Stats {
    epoch: Instant,
    pub total: u64,
    /// Sends the broker answered (accepted or refused).
    pub answered: AtomicU64,
    /// Sends refused (`SendFailed`).
    pub failed: AtomicU64,
    /// Messages that reached their recipient.
    pub delivered: AtomicU64,
    /// Receipts that reached their sender.
    pub receipts: AtomicU64,
    done: watch::Sender<bool>,
}

impl Stats {
    pub fn new(total: u64) -> Arc<Stats> {
        Arc::new(Stats {
            epoch: Instant::now(),
            total,
            answered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            receipts: AtomicU64::new(0),
            done: watch::channel(false).0,
        })
    }

    /// The run's start: instants in message bodies count from it.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// ns since the epoch.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant `ns` after the epoch (for sleeping until a scheduled send).
    pub fn instant(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(ns))
    }

    /// Changes to true when the run is over; clients then stop.
    pub fn done(&self) -> watch::Receiver<bool> {
        self.done.subscribe()
    }

    /// Ends the run: every client stops.
    pub fn finish(&self) {
        let _ = self.done.send(true);
    }

    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One client's latencies (µs), and optionally every send→delivered sample.
pub struct Recorder {
    pub sent: Histogram<u64>,
    pub delivered: Histogram<u64>,
    pub receipt: Histogram<u64>,
    /// (sent ns since the epoch, send→delivered µs) of every delivered message, if kept.
    pub samples: Option<Vec<(u64, u32)>>,
}

impl Recorder {
    pub fn new(keep_samples: bool) -> Recorder {
        Recorder { sent: histogram(), delivered: histogram(), receipt: histogram(), samples: keep_samples.then(Vec::new) }
    }

    fn us(from_ns: u64, now_ns: u64) -> u64 {
        (now_ns.saturating_sub(from_ns) / 1000).max(1)
    }

    /// The broker accepted a message sent at `from_ns`.
    pub fn sent(&mut self, from_ns: u64, now_ns: u64) {
        self.sent.saturating_record(Self::us(from_ns, now_ns));
    }

    /// A message sent at `from_ns` reached its recipient.
    pub fn delivered(&mut self, from_ns: u64, now_ns: u64) {
        let us = Self::us(from_ns, now_ns);
        self.delivered.saturating_record(us);
        if let Some(samples) = &mut self.samples {
            samples.push((from_ns, us.min(u32::MAX as u64) as u32));
        }
    }

    /// The receipt of a message sent at `from_ns` reached its sender.
    pub fn receipt(&mut self, from_ns: u64, now_ns: u64) {
        self.receipt.saturating_record(Self::us(from_ns, now_ns));
    }

    pub fn merge(&mut self, other: Recorder) -> Result<()> {
        self.sent.add(&other.sent)?;
        self.delivered.add(&other.delivered)?;
        self.receipt.add(&other.receipt)?;
        if let (Some(mine), Some(theirs)) = (&mut self.samples, other.samples) {
            mine.extend(theirs);
        }
        Ok(())
    }
}

/// How a run ended, as [`supervise`] saw it.
pub struct Finish {
    /// From the epoch until the last delivery and receipt (or until the wait for them
    /// gave up).
    pub wall_secs: f64,
    /// CPU and memory over the same span.
    pub usage: Usage,
}

/// How long a run may go without any counter moving before it is declared stalled.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// Watches a run: moves the progress bar, samples memory, and ends the run (signals
/// `done`) once every send is answered and every accepted message and its receipt arrived,
/// or `drain_timeout` after the last answer if some never do. Fails if nothing moves for a
/// minute.
pub async fn supervise(stats: &Stats, meter: &mut Meter, bar: &ProgressBar, drain_timeout: Duration) -> Result<Finish> {
    let mut last_change = (Instant::now(), [0u64; 3]);
    let mut all_answered: Option<Instant> = None;
    let mut last_sample = Instant::now();
    let finish = loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let answered = stats.answered.load(Ordering::Relaxed);
        let ok = answered - stats.failed.load(Ordering::Relaxed);
        let delivered = stats.delivered.load(Ordering::Relaxed);
        let receipts = stats.receipts.load(Ordering::Relaxed);
        bar.set_position(delivered);
        if last_sample.elapsed() > Duration::from_millis(250) {
            meter.sample();
            last_sample = Instant::now();
        }
        let now = Instant::now();
        let complete = answered == stats.total && delivered >= ok && receipts >= ok;
        let gave_up = all_answered.is_some_and(|t| now - t > drain_timeout);
        if complete || gave_up {
            break Finish { wall_secs: stats.epoch.elapsed().as_secs_f64(), usage: meter.usage()? };
        }
        if answered == stats.total && all_answered.is_none() {
            all_answered = Some(now);
        }
        if [answered, delivered, receipts] != last_change.1 {
            last_change = (now, [answered, delivered, receipts]);
        } else if now - last_change.0 > STALL_LIMIT {
            stats.finish();
            bail!(
                "the run stalled: nothing moved for {STALL_LIMIT:?} ({answered} of {} sends answered, {delivered} delivered, {receipts} receipts)",
                stats.total
            );
        }
    };
    stats.finish();
    bar.finish_and_clear();
    Ok(finish)
}

/// The figures of one run against one broker.
#[derive(Serialize, Clone, Debug)]
pub struct Outcome {
    /// "hotline", "mosquitto 2.0.11", "nats-server 2.15.1".
    pub system: String,
    pub messages: u64,
    /// Sends the broker accepted.
    pub accepted: u64,
    /// Sends the broker refused (Hotline's `SendFailed`).
    pub failed: u64,
    pub delivered: u64,
    pub receipts: u64,
    /// Accepted messages that never reached their recipient (within `--drain-timeout-secs`).
    pub lost: u64,
    /// Receipts of accepted messages that never reached their sender.
    pub receipts_missing: u64,
    pub wall_secs: f64,
    /// Delivered messages per second of wall time (each with its receipt).
    pub messages_per_sec: f64,
    /// Messages and receipts per second.
    pub items_per_sec: f64,
    pub send_to_sent: Latency,
    pub send_to_delivered: Latency,
    pub send_to_receipt: Latency,
    pub usage: Usage,
    /// Broker CPU time per delivered message.
    pub broker_cpu_us_per_message: Option<f64>,
    /// The benchmark's CPU time per delivered message.
    pub bench_cpu_us_per_message: f64,
}

impl Outcome {
    pub fn new(system: String, stats: &Stats, finish: Finish, rec: &Recorder) -> Outcome {
        let answered = stats.answered.load(Ordering::Relaxed);
        let failed = stats.failed.load(Ordering::Relaxed);
        let accepted = answered - failed;
        let delivered = stats.delivered.load(Ordering::Relaxed);
        let receipts = stats.receipts.load(Ordering::Relaxed);
        let per_message = |secs: f64| secs * 1e6 / delivered.max(1) as f64;
        Outcome {
            system,
            messages: stats.total,
            accepted,
            failed,
            delivered,
            receipts,
            lost: accepted.saturating_sub(delivered),
            receipts_missing: accepted.saturating_sub(receipts),
            wall_secs: finish.wall_secs,
            messages_per_sec: delivered as f64 / finish.wall_secs,
            items_per_sec: (delivered + receipts) as f64 / finish.wall_secs,
            send_to_sent: Latency::of(&rec.sent),
            send_to_delivered: Latency::of(&rec.delivered),
            send_to_receipt: Latency::of(&rec.receipt),
            broker_cpu_us_per_message: finish.usage.broker_cpu_secs.map(per_message),
            bench_cpu_us_per_message: per_message(finish.usage.bench_cpu_secs),
            usage: finish.usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_carries_its_header_and_has_the_asked_size() {
        let header = Header { sent_ns: 123_456_789_012, kind: RECEIPT, sender: 77, seq: 4_000_000 };
        let body = header.body(100);
        assert_eq!(body.len(), 100);
        assert_eq!(Header::parse(&body).unwrap(), header);
        assert!(Header::parse(&body[..HEADER - 1]).is_err());
    }

    #[test]
    fn a_peer_is_never_the_sender_and_every_other_client_is_chosen() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut seen = [0; 5];
        for _ in 0..1000 {
            seen[peer_of(2, 5, &mut rng)] += 1;
        }
        assert_eq!(seen[2], 0);
        assert!(seen.iter().enumerate().all(|(i, &n)| i == 2 || n > 150), "{seen:?}");
    }

    #[test]
    fn a_fixed_rate_spreads_the_clients_sends() {
        let load = Load { clients: 4, messages: 10, window: 1, body: 100, rate: Some(400.0), drain_timeout_secs: 1 };
        // 400/s over 4 clients: each sends every 10 ms, client 1 a quarter interval after client 0.
        assert_eq!(load.schedule(0).due(3), 30_000_000);
        assert_eq!(load.schedule(1).due(0), 2_500_000);
        assert_eq!(Load { rate: None, ..load }.schedule(1).due(5), 0);
    }

    use rand::SeedableRng;
}
