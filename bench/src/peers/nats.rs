//! The `online` workload against NATS JetStream (crate `async-nats`): a `nats-server -js`
//! started on a free loopback port with its store in a temporary folder; one work-queue
//! stream `BENCH` over the subjects `u.*` (file storage); per client a connection and a
//! durable pull consumer filtered on `u.<client>` with explicit acks. A message is a
//! JetStream publish to the recipient's subject ("sent" = the stream's publish ack); the
//! recipient acks it and publishes a receipt (a JetStream publish) to the sender's subject.

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use async_nats::jetstream::{self, consumer, stream, Context};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::SeedableRng;

use super::Server;
use crate::load::{self, Header, Load, Outcome, Recorder, Stats};

/// Starts the server, makes the stream and the consumers and connects the clients (not
/// measured), runs the load.
pub async fn run(load: &Load, quick: bool) -> Result<Outcome> {
    let bin = super::find("nats-server")?;
    let version = super::first_line(&bin, "--version").replace(':', "");
    let dir = tempfile::tempdir()?;
    let port = super::free_port()?;
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]).arg(dir.path().join("jetstream"));
    let server = Server::start(cmd, port, dir)?;
    eprintln!("{version}: making the stream and {} consumers (port {port})...", load.clients);

    let url = format!("nats://127.0.0.1:{port}");
    let admin = jetstream::new(async_nats::connect(&url).await?);
    let stream = admin
        .create_stream(stream::Config {
            name: "BENCH".into(),
            subjects: vec!["u.*".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the stream: {e}"))?;
    let mut clients = Vec::new();
    for me in 0..load.clients {
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(format!("c{me}")),
                filter_subject: format!("u.{me}"),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating consumer {me}: {e}"))?;
        let js = jetstream::new(async_nats::connect(&url).await.context("connecting")?);
        let messages = consumer.messages().await.map_err(|e| anyhow::anyhow!("consuming as {me}: {e}"))?;
        clients.push((js, messages));
    }
    super::run_clients(version, &server, clients, load, quick, |me, (js, messages), stats| {
        tokio::spawn(client_loop(me, js, messages, load.clone(), stats))
    })
    .await
}

type AckFuture = std::pin::Pin<Box<dyn std::future::Future<Output = (Option<u32>, Result<(), String>)> + Send>>;

/// One client: publishes its share on schedule with at most `window` publish acks
/// outstanding, acks every message it consumes and answers it with a receipt, records the
/// latencies, until the run is over.
async fn client_loop(me: usize, js: Context, mut messages: consumer::pull::Stream, load: Load, stats: Arc<Stats>) -> Result<Recorder> {
    let mut done = stats.done();
    let mut rec = Recorder::new(false);
    let schedule = load.schedule(me);
    let mut rng = rand::rngs::StdRng::seed_from_u64(me as u64);
    let mut sent_at = vec![0u64; load.messages];
    // Publish acks awaited: Some(seq) of a message, None of a receipt.
    let mut acks: FuturesUnordered<AckFuture> = FuturesUnordered::new();
    let (mut next, mut in_flight) = (0usize, 0usize);
    let publish = |js: &Context, to: u32, body: Vec<u8>, tag: Option<u32>| {
        let js = js.clone();
        async move {
            let future = js.publish(format!("u.{to}"), body.into()).await.map_err(|e| anyhow::anyhow!("publishing: {e}"))?;
            let ack: AckFuture = Box::pin(async move { (tag, future.await.map(|_| ()).map_err(|e| e.to_string())) });
            anyhow::Ok(ack)
        }
    };
    loop {
        let now = stats.now();
        while next < load.messages && in_flight < load.window && schedule.due(next) <= now {
            let sent_ns = if schedule.is_paced() { schedule.due(next) } else { now };
            let header = Header { sent_ns, kind: load::MESSAGE, sender: me as u32, seq: next as u32 };
            let to = load::peer_of(me, load.clients, &mut rng) as u32;
            let ack = publish(&js, to, header.body(load.body), Some(next as u32)).await?;
            acks.push(ack);
            sent_at[next] = sent_ns;
            (next, in_flight) = (next + 1, in_flight + 1);
        }
        if *done.borrow() {
            break;
        }
        let can_send = next < load.messages && in_flight < load.window;
        let wake = stats.instant(if can_send { schedule.due(next) } else { u64::MAX / 4 });
        tokio::select! {
            Some((tag, result)) = acks.next(), if !acks.is_empty() => {
                if let Err(e) = result {
                    bail!("client {me}: publish not acknowledged: {e}");
                }
                if let Some(seq) = tag {
                    in_flight -= 1;
                    rec.sent(sent_at[seq as usize], stats.now());
                    Stats::add(&stats.answered);
                }
            }
            message = messages.next() => {
                let message = message.context("the consumer's stream ended")?.map_err(|e| anyhow::anyhow!("consuming: {e}"))?;
                let now = stats.now();
                let header = Header::parse(&message.payload)?;
                message.ack().await.map_err(|e| anyhow::anyhow!("acking: {e}"))?;
                if header.kind == load::MESSAGE {
                    rec.delivered(header.sent_ns, now);
                    Stats::add(&stats.delivered);
                    let receipt = Header { kind: load::RECEIPT, ..header };
                    let ack = publish(&js, header.sender, receipt.body(load::HEADER), None).await?;
                    acks.push(ack);
                } else {
                    rec.receipt(header.sent_ns, now);
                    Stats::add(&stats.receipts);
                }
            }
            _ = tokio::time::sleep_until(wake), if can_send && schedule.is_paced() => {}
            _ = done.changed() => break,
        }
    }
    Ok(rec)
}
