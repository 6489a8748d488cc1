//! The alert webhook: posts each alert event as JSON to the configured URL from a thread of
//! its own, retrying with exponential back-off, so a slow or dead receiver never holds up
//! the broker (events beyond a bounded queue are dropped and counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::AlertEvent;

/// Events waiting to be posted; more are dropped (and counted) until the receiver catches up.
const QUEUE: usize = 256;
/// Attempts per event before it is given up.
const ATTEMPTS: u32 = 8;
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Time limit of one POST (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the webhook did since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events the receiver accepted (a 2xx answer).
    pub delivered: u64,
    /// Attempts that failed (no connection, a time-out, a status other than 2xx).
    pub failed_attempts: u64,
    /// Events given up after every attempt failed.
    pub given_up: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    given_up: AtomicU64,
    dropped: AtomicU64,
}

/// The sending side; the thread ends when this is dropped and its queue is empty.
pub struct Webhook {
    queue: SyncSender<AlertEvent>,
    counters: Arc<Counters>,
}

impl Webhook {
    /// Starts the posting thread for `url`; the first retry waits `backoff`, each next one
    /// twice as long (at most a minute).
    pub fn start(url: String, backoff: Duration) -> std::io::Result<Webhook> {
        let (queue, events) = sync_channel::<AlertEvent>(QUEUE);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(TIMEOUT)).build().into();
        std::thread::Builder::new().name("hotline-alert-webhook".into()).spawn(move || {
            for event in events {
                let mut wait = backoff;
                for attempt in 1..=ATTEMPTS {
                    match agent.post(&url).send_json(&event) {
                        Ok(_) => {
                            c.delivered.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            c.failed_attempts.fetch_add(1, Ordering::Relaxed);
                            if attempt == ATTEMPTS {
                                c.given_up.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%url, error = %e, "the alert webhook failed {ATTEMPTS} times; this event is given up");
                                break;
                            }
                            tracing::debug!(%url, error = %e, attempt, "the alert webhook failed; retrying in {wait:?}");
                            std::thread::sleep(wait);
                            wait = (wait * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        })?;
        Ok(Webhook { queue, counters })
    }

    /// Queues `event` for posting; never waits.
    pub fn post(&self, event: &AlertEvent) {
        match self.queue.try_send(event.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if self.counters.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("the alert webhook is behind; alert events are dropped (see hotline_alert_webhook_dropped_total)");
                }
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            given_up: c.given_up.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::monitor::{Change, QueueKind};

    /// Answers the first request 503 and the next 200; returns the bodies it received.
    fn receiver() -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for status in ["503 Service Unavailable", "200 OK"] {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                bodies.push(String::from_utf8(body).unwrap());
                write!(reader.get_mut(), "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
            }
            bodies
        });
        (url, handle)
    }

    #[test]
    fn an_event_refused_once_is_posted_again_after_a_back_off() {
        let (url, received) = receiver();
        let webhook = Webhook::start(url, Duration::from_millis(20)).unwrap();
        let event = AlertEvent { at_ms: 7, event: Change::Raised, kind: QueueKind::Stored, queue: "+15551230002".into(), items: 300, threshold: 200 };
        webhook.post(&event);
        let bodies = received.join().unwrap();
        assert_eq!(bodies[0], bodies[1], "the same event, posted again");
        let json: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
        assert_eq!(json, serde_json::json!({"at_ms": 7, "event": "raised", "kind": "stored", "queue": "+15551230002", "items": 300, "threshold": 200}));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while webhook.stats().delivered == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(webhook.stats(), Stats { delivered: 1, failed_attempts: 1, given_up: 0, dropped: 0 });
    }
}
