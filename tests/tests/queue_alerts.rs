//! Queue monitoring end to end: a recipient that stops reading while others send to it
//! makes its stored queue grow; the alert fires naming that number (API, metrics, webhook),
//! the broker's memory stays bounded; once it reads again the alert clears and every
//! message arrives. The queue gauges in `/metrics` match the admin API.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hotline_protocol::ServerFrame;
use hotline_tests::{eventually, Broker};
use serde_json::Value;

const READER: &str = "+15550970000";
const SENDERS: usize = 6;
/// Messages each sender sends to the reader, and their size: 281 MiB in all, several
/// times what storage keeps in memory (its memtables).
const EACH: usize = 800;
const BODY: usize = 60 * 1024;
const TOTAL: u64 = (SENDERS * EACH) as u64;
/// The stored-queue threshold: under what the reader gets, over the receipts each sender
/// gets back (one per message) once the reader reads.
const THRESHOLD: u64 = 3000;
const T: Duration = Duration::from_secs(60);
const MIB: f64 = 1024.0 * 1024.0;

/// A webhook receiver: answers every POST 200 and keeps the JSON bodies.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hotline-alerts", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(json) = serde_json::from_slice(&body) {
                    sink.lock().unwrap().push(json);
                }
            }
            let _ = write!(reader.get_mut(), "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, received)
}

fn api(broker: &Broker, path: &str) -> Value {
    let (status, body) = broker.admin_get(path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The `stored` kind of `GET /api/queues`.
fn stored(broker: &Broker) -> Value {
    let queues = api(broker, "/api/queues?top=5");
    queues["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "stored").cloned().expect("a stored kind")
}

fn alert_named(events: &[Value], event: &str) -> bool {
    events.iter().any(|e| e["event"] == event && e["kind"] == "stored" && e["queue"] == READER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_that_stops_reading_raises_an_alert_naming_it_which_clears_when_it_reads_again() {
    let (url, webhook) = webhook_receiver();
    let broker = Broker::start_with_config(&format!(
        "[storage]\ndurability = \"buffered\"\n\
         [alerts]\nsample_ms = 100\nwebhook = \"{url}\"\nstored_items = {THRESHOLD}\nstored_for_secs = 1\n"
    ))
    .unwrap();
    let reader_key = broker.register(READER).await.unwrap();
    let senders: Vec<String> = (1..=SENDERS).map(|i| format!("+1555097{i:04}")).collect();
    let keys = broker.register_many(&senders, 2).await.unwrap();

    // The reader logs in and stops reading.
    let mut reader = broker.login(READER, &reader_key).await.unwrap();
    let before = broker.rss_bytes().unwrap();

    let mut tasks = Vec::new();
    for (s, (phone, key)) in senders.iter().zip(&keys).enumerate() {
        let mut sender = broker.login(phone, key).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let mut body = vec![s as u8; BODY];
                body[..8].copy_from_slice(&(n as u64).to_be_bytes());
                sender.send_with_id(n as u64, READER, body).await.unwrap();
                if n >= 32 {
                    assert!(matches!(sender.next_frame_within(T).await.unwrap(), ServerFrame::Sent { .. }));
                }
            }
            for _ in 0..32 {
                assert!(matches!(sender.next_frame_within(T).await.unwrap(), ServerFrame::Sent { .. }));
            }
            sender.close().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let grown = broker.rss_bytes().unwrap() as f64 - before as f64;
    let sent = TOTAL as f64 * BODY as f64;
    eprintln!("{:.0} MiB stored for a reader that does not read; the broker grew {:.1} MiB", sent / MIB, grown / MIB);
    // Storage keeps recent writes in memtables (64 MiB each) until they are flushed; what
    // waits beyond that is on disk only.
    assert!(grown < sent / 2.0, "the broker grew by {:.1} MiB while {:.0} MiB were stored", grown / MIB, sent / MIB);

    // The alert fires and names the reader: in the API, the metrics and the webhook.
    let active = eventually(T, || {
        let alerts = api(&broker, "/api/alerts");
        let active = alerts["active"].as_array().unwrap().clone();
        (!active.is_empty()).then_some(active)
    })
    .unwrap();
    assert_eq!(active[0]["kind"], "stored");
    assert_eq!(active[0]["queue"], READER, "the alert names the number: {active:?}");
    assert_eq!(active[0]["threshold"], THRESHOLD);
    assert_eq!(broker.metric("hotline_queue_alert_active{kind=\"stored\"}").unwrap(), 1.0);
    assert!(broker.metric("hotline_queue_alerts_raised_total{kind=\"stored\"}").unwrap() >= 1.0);
    eventually(T, || alert_named(&webhook.lock().unwrap(), "raised").then_some(())).expect("the webhook receives the alert");

    // The queue gauges match the API once nothing moves (the reader holds every message).
    eventually(T, || (stored(&broker)["top"][0]["items"] == TOTAL).then_some(())).expect("every message is counted");
    let kind = stored(&broker);
    assert_eq!(kind["top"][0]["name"], READER);
    assert_eq!(kind["max"], TOTAL);
    assert_eq!(kind["total"], TOTAL, "nothing else waits: senders get receipts only once the reader reads");
    assert_eq!(kind["non_empty"], 1);
    assert_eq!(broker.metric("hotline_queue_items{kind=\"stored\"}").unwrap(), TOTAL as f64);
    assert_eq!(broker.metric("hotline_queue_max_items{kind=\"stored\"}").unwrap(), TOTAL as f64);
    assert_eq!(broker.metric("hotline_queues_non_empty{kind=\"stored\"}").unwrap(), 1.0);

    // The reader reads again: every message arrives, once, intact.
    let mut seen = HashSet::new();
    while (seen.len() as u64) < TOTAL {
        match reader.next_frame_within(T).await.unwrap() {
            ServerFrame::TypedMessage { id, body, .. } => {
                assert_eq!(body.len(), BODY);
                assert!(body[8..].iter().all(|b| *b == body[8]), "body of message {id} is intact");
                let n = u64::from_be_bytes(body[..8].try_into().unwrap());
                assert!(seen.insert((body[8], n)), "message {n} of sender {} arrived twice", body[8]);
                reader.ack(id).await.unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen.len() as u64, TOTAL);

    // The alert clears: the reader's queue is empty, each sender's receipts stay under it.
    eventually(T, || api(&broker, "/api/alerts")["active"].as_array().unwrap().is_empty().then_some(())).expect("the alert clears");
    assert_eq!(broker.metric("hotline_queue_alert_active{kind=\"stored\"}").unwrap(), 0.0);
    eventually(T, || alert_named(&webhook.lock().unwrap(), "cleared").then_some(())).expect("the webhook receives the clear");
    let history = api(&broker, "/api/alerts")["history"].as_array().unwrap().clone();
    assert!(alert_named(&history, "raised") && alert_named(&history, "cleared"), "{history:?}");
    reader.close().await;
}
