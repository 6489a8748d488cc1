//! The `online` workload against Mosquitto (MQTT 3.1.1, crate `rumqttc`): a `mosquitto`
//! started on a free loopback port with persistence in a temporary folder; every client
//! has a persistent session (clean session off) subscribed at QoS 1 to its own topic
//! `u/<client>`; a message is a QoS 1 publish to the recipient's topic ("sent" = the
//! broker's PUBACK); the recipient's client library acks it (PUBACK) and the recipient
//! publishes a receipt at QoS 1 to the sender's topic.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::mpsc;

use super::Server;
use crate::load::{self, Header, Load, Outcome, Recorder, Stats};

/// Starts Mosquitto, connects and subscribes the clients (not measured), runs the load.
pub async fn run(load: &Load, quick: bool) -> Result<Outcome> {
    let bin = super::find("mosquitto")?;
    let version = super::first_line(&bin, "-h");
    let dir = tempfile::tempdir()?;
    let port = super::free_port()?;
    let config = dir.path().join("mosquitto.conf");
    // Mosquitto started as root switches to the user `mosquitto`, which could not write
    // the temporary folder: stay the user that started it.
    let user = if unsafe { libc::geteuid() } == 0 { "user root\n" } else { "" };
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
             # No cap on QoS 1 messages in flight or queued per client: the load bounds them.\n\
             max_inflight_messages 0\nmax_queued_messages 0\nset_tcp_nodelay true\n{user}log_dest stderr\nlog_type error\nlog_type warning\n",
            dir.path().display()
        ),
    )?;
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("-c").arg(&config);
    let server = Server::start(cmd, port, dir)?;
    eprintln!("{version}: connecting {} clients (port {port})...", load.clients);

    let mut clients = Vec::new();
    for me in 0..load.clients {
        clients.push(connect(me, port, load).await.with_context(|| format!("connecting MQTT client {me}: {}", server.log_text()))?);
    }
    super::run_clients(version.replace(" version", ""), &server, clients, load, quick, |me, (client, events), stats| {
        tokio::spawn(client_loop(me, client, events, load.clone(), stats))
    })
    .await
}

/// What a client's event loop task reports to it.
enum Ev {
    /// A publish was written with this packet id (in the order they were published).
    Out(u16),
    /// The broker acknowledged publish `pkid`.
    PubAck(u16),
    /// A publish arrived (the library has acked it).
    Publish(bytes::Bytes),
    /// The connection failed.
    Failed(String),
}

/// Connects client `me` with a persistent session and subscribes it to `u/<me>`; then
/// drives its event loop on a task of its own, forwarding what the workload needs.
async fn connect(me: usize, port: u16, load: &Load) -> Result<(AsyncClient, mpsc::UnboundedReceiver<Ev>)> {
    let mut options = MqttOptions::new(format!("bench-{me}"), "127.0.0.1", port);
    options.set_clean_session(false).set_keep_alive(Duration::from_secs(30));
    // The library's cap on unacknowledged publishes (messages and receipts) is also its
    // packet id range; a new publish whose id is still unacknowledged (a "collision": acks
    // of messages and receipts come back out of order) stops all publishing until it is.
    // 1,024 ids, far above the window, make that rare; each costs a slot of ~100 B.
    options.set_inflight(u16::try_from((16 * load.window).max(1024)).unwrap_or(u16::MAX));
    let (client, mut eventloop) = AsyncClient::new(options, 4 * load.window + 64);
    // No Nagle delay on either side (the NATS client sets it too; Hotline is UDP).
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    client.subscribe(format!("u/{me}"), QoS::AtLeastOnce).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("{e}"),
            Err(_) => bail!("no SUBACK within 20 s"),
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, tx));
    Ok((client, rx))
}

/// Polls the event loop (which reads and writes the socket and acks incoming publishes)
/// until the client is gone.
async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Ev>) {
    loop {
        let ev = match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ev::Out(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => Ev::PubAck(ack.pkid),
            Ok(Event::Incoming(Packet::Publish(p))) => Ev::Publish(p.payload),
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Ev::Failed(e.to_string()));
                return;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

/// One client: publishes its share on schedule with at most `window` not yet PUBACKed,
/// answers every message with a receipt, records the latencies, until the run is over.
async fn client_loop(me: usize, client: AsyncClient, mut events: mpsc::UnboundedReceiver<Ev>, load: Load, stats: Arc<Stats>) -> Result<Recorder> {
    let mut done = stats.done();
    let mut rec = Recorder::new(false);
    let schedule = load.schedule(me);
    let mut rng = rand::rngs::StdRng::seed_from_u64(me as u64);
    let mut sent_at = vec![0u64; load.messages];
    // Publishes not yet given a packet id, in order: Some(seq) a message, None a receipt.
    let mut unnumbered: VecDeque<Option<u32>> = VecDeque::new();
    let mut by_pkid: HashMap<u16, u32> = HashMap::new();
    let (mut next, mut in_flight) = (0usize, 0usize);
    let mut receipts: Vec<(u32, Header)> = Vec::new();
    loop {
        let now = stats.now();
        while next < load.messages && in_flight < load.window && schedule.due(next) <= now {
            let sent_ns = if schedule.is_paced() { schedule.due(next) } else { now };
            let header = Header { sent_ns, kind: load::MESSAGE, sender: me as u32, seq: next as u32 };
            let to = load::peer_of(me, load.clients, &mut rng);
            unnumbered.push_back(Some(next as u32));
            client.publish(format!("u/{to}"), QoS::AtLeastOnce, false, header.body(load.body)).await?;
            sent_at[next] = sent_ns;
            (next, in_flight) = (next + 1, in_flight + 1);
        }
        for (to, header) in receipts.drain(..) {
            unnumbered.push_back(None);
            client.publish(format!("u/{to}"), QoS::AtLeastOnce, false, header.body(load::HEADER)).await?;
        }
        if *done.borrow() {
            break;
        }
        let can_send = next < load.messages && in_flight < load.window;
        let wake = stats.instant(if can_send { schedule.due(next) } else { u64::MAX / 4 });
        let first = tokio::select! {
            ev = events.recv() => ev,
            _ = tokio::time::sleep_until(wake), if can_send && schedule.is_paced() => continue,
            _ = done.changed() => break,
        };
        let mut ev = first;
        while let Some(e) = ev {
            let now = stats.now();
            match e {
                Ev::Out(pkid) => {
                    if let Some(Some(seq)) = unnumbered.pop_front() {
                        by_pkid.insert(pkid, seq);
                    }
                }
                Ev::PubAck(pkid) => {
                    if let Some(seq) = by_pkid.remove(&pkid) {
                        in_flight -= 1;
                        rec.sent(sent_at[seq as usize], now);
                        Stats::add(&stats.answered);
                    }
                }
                Ev::Publish(payload) => {
                    let header = Header::parse(&payload)?;
                    if header.kind == load::MESSAGE {
                        rec.delivered(header.sent_ns, now);
                        Stats::add(&stats.delivered);
                        receipts.push((header.sender, Header { kind: load::RECEIPT, ..header }));
                    } else {
                        rec.receipt(header.sent_ns, now);
                        Stats::add(&stats.receipts);
                    }
                }
                Ev::Failed(e) if *done.borrow() => {
                    let _ = e;
                    break;
                }
                Ev::Failed(e) => bail!("MQTT client {me}: {e}"),
            }
            ev = events.try_recv().ok();
        }
    }
    Ok(rec)
}
