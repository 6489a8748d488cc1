//! Push wake-ups: waking the device of a number that has no connection when a message is
//! queued for it, through the notifier plugin and the configured push gateway webhook.
//!
//! Three parts, none on the message path:
//! - [`Trigger`]: called by the committer's wake hook after a commit made items durable for
//!   a number; for a number with no connected session it `try_send`s the number into a
//!   bounded queue (full: dropped and counted). It never blocks and does no I/O.
//! - the worker thread `hotline-push`: takes numbers, coalesces repeats, reads how many
//!   items wait and whether the newest is a message (a receipt alone wakes nobody), asks
//!   the notifier plugin, looks the push token up and gathers wake-ups into batches: one
//!   batch is closed `push.batch_ms` after its first wake-up, or at 100 wake-ups.
//! - the poster thread `hotline-push-post`: posts each batch to `[push.webhook]` (retries,
//!   signature and time-outs are the webhook client's, `crate::outbound`). Batches wait in
//!   a small bounded queue; when the gateway is so slow that it fills, further batches are
//!   dropped and counted, so a gateway that is down holds up nothing but its own posts.

mod metrics;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use hotline_protocol::MessageKind;
use serde::Serialize;

pub use metrics::{PushMetrics, DECISIONS, OUTCOMES};

use crate::config::PushConfig;
use crate::plugins::{Notify, PluginHost, Queued};
use crate::sessions::Sessions;
use crate::store::{Store, StoredItem};

/// Most wake-ups in one POST.
pub const MAX_PER_POST: usize = 100;
/// Batches waiting for the poster; beyond, batches are dropped (the gateway is too slow).
const POST_QUEUE: usize = 16;

/// The committer's side: hands numbers to the worker without ever waiting.
#[derive(Clone)]
pub struct Trigger {
    queue: Sender<String>,
    metrics: Arc<PushMetrics>,
}

impl Trigger {
    /// Items became durable for `number`, which has no connected session (the wake hook
    /// found none to wake): queue it for the worker, or drop and count it if the queue is
    /// full. Called on the committer thread.
    pub fn offer(&self, number: &str) {
        match self.queue.try_send(number.to_string()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The worker stopped (shutting down): nothing to wake with.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The worker's end of the trigger queue, until [`start`] takes it.
pub struct Pending(Receiver<String>);

/// The trigger and the queue it fills; `None` when push is off (no `[push.webhook]`).
pub fn trigger(config: &PushConfig, metrics: Arc<PushMetrics>) -> Option<(Trigger, Pending)> {
    config.webhook.as_ref()?;
    let (queue, pending) = crossbeam_channel::bounded(config.queue.max(1));
    Some((Trigger { queue, metrics }, Pending(pending)))
}

/// One wake-up as the gateway receives it: never the body, never the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wakeup {
    pub number: String,
    pub token: String,
    /// The notifier's payload, as it gave it.
    pub payload: String,
    /// Items waiting for the number when the notifier was asked.
    pub waiting: u32,
    /// When the wake-up was decided, Unix milliseconds.
    pub at_ms: u64,
}

/// The body of one POST.
#[derive(Debug, Serialize)]
struct Batch<'a> {
    request_id: &'a str,
    wakeups: &'a [Wakeup],
}

/// Posts one batch's JSON body under a request id; an error says why it failed (after
/// the webhook client's retries).
pub type Post = Box<dyn Fn(&str, &[u8]) -> Result<(), String> + Send>;

/// What the worker needs besides its queue.
pub struct Worker {
    pub store: Store,
    pub plugins: Arc<PluginHost>,
    pub sessions: Arc<Sessions>,
    pub metrics: Arc<PushMetrics>,
    pub batch_every: Duration,
}

/// Starts the worker and poster threads. They end once every [`Trigger`] is dropped.
pub fn start(pending: Pending, worker: Worker, post: Post) -> std::io::Result<()> {
    let (batches, to_post) = crossbeam_channel::bounded::<Vec<Wakeup>>(POST_QUEUE);
    let metrics = worker.metrics.clone();
    std::thread::Builder::new().name("hotline-push-post".into()).spawn(move || poster(to_post, post, &metrics))?;
    std::thread::Builder::new().name("hotline-push".into()).spawn(move || worker.run(pending.0, batches))?;
    Ok(())
}

impl Worker {
    fn run(self, numbers: Receiver<String>, batches: Sender<Vec<Wakeup>>) {
        let mut batch: Vec<Wakeup> = Vec::new();
        // When the open batch must go (set by its first wake-up).
        let mut due: Option<Instant> = None;
        loop {
            let first = match due {
                Some(due) => numbers.recv_timeout(due.saturating_duration_since(Instant::now())),
                None => numbers.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let stopped = match first {
                Ok(number) => {
                    // Coalesce: every number waiting now, each once.
                    let mut todo = BTreeSet::from([number]);
                    todo.extend(numbers.try_iter().take(4 * MAX_PER_POST));
                    for number in todo {
                        // A panic in the host while checking one number (a bug) loses that
                        // wake-up only, not the worker.
                        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.check(&number)));
                        let checked = checked.unwrap_or_else(|_| {
                            tracing::error!(%number, "push: checking a number panicked (a bug); no wake-up");
                            None
                        });
                        if let Some(wakeup) = checked {
                            batch.push(wakeup);
                            due.get_or_insert_with(|| Instant::now() + self.batch_every);
                            if batch.len() >= MAX_PER_POST {
                                self.send(&batches, &mut batch);
                                due = None;
                            }
                        }
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if due.is_some_and(|d| Instant::now() >= d) || (stopped && !batch.is_empty()) {
                self.send(&batches, &mut batch);
                due = None;
            }
            if stopped {
                return;
            }
        }
    }

    /// Hands the batch to the poster, or drops it (counted) if the poster is behind.
    fn send(&self, batches: &Sender<Vec<Wakeup>>, batch: &mut Vec<Wakeup>) {
        let batch = std::mem::take(batch);
        let n = batch.len() as u64;
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = batches.try_send(batch) {
            self.metrics.outcome("dropped", n);
            tracing::warn!(wakeups = n, "the push gateway is behind; dropped a batch of wake-ups");
        }
    }

    /// Whether to wake `number` now, and with what: `None` when it came online meanwhile,
    /// its newest item is not a message, no token is stored, or the notifier skips or fails.
    fn check(&self, number: &str) -> Option<Wakeup> {
        if self.sessions.is_online(number) {
            return None;
        }
        let kind = match self.store.newest_item(number) {
            Ok(Some((_, StoredItem::Message { .. }))) => MessageKind::Text,
            Ok(Some((_, StoredItem::TypedMessage { kind, .. }))) => kind,
            // A receipt alone (or an emptied queue) wakes nobody.
            Ok(Some((_, StoredItem::Receipt { .. }))) | Ok(None) => return None,
            Err(e) => {
                tracing::warn!(%number, error = %e, "push: cannot read the queue");
                return None;
            }
        };
        // The token first: the notifier is asked only about a device that can be woken, so
        // that a decision it records (the default's last wake-up) is about a real one.
        let token = match self.store.push_token(number) {
            Ok(Some(token)) => token,
            Ok(None) => {
                self.metrics.outcome("no_token", 1);
                return None;
            }
            Err(e) => {
                self.metrics.outcome("no_token", 1);
                tracing::warn!(%number, error = %e, "push: cannot read the push token");
                return None;
            }
        };
        let at_ms = crate::broker::now_ms();
        let waiting = self.store.queues().len(number).min(u32::MAX as u64) as u32;
        let queued = Queued { number: number.to_string(), waiting, kind, at_ms };
        let payload = match self.plugins.notify(queued) {
            Ok(Notify::Skip) => {
                self.metrics.decision("skip");
                return None;
            }
            Ok(Notify::Wake(payload)) => {
                self.metrics.decision("wake");
                payload
            }
            Err(e) => {
                self.metrics.decision("failed");
                tracing::warn!(%number, error = %e, "push: the notifier failed; no wake-up");
                return None;
            }
        };
        Some(Wakeup { number: number.to_string(), token, payload, waiting, at_ms })
    }
}

/// Posts batches one at a time until the worker stops.
fn poster(batches: Receiver<Vec<Wakeup>>, post: Post, metrics: &PushMetrics) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    for batch in batches {
        let request_id = format!("push-{}-{}", crate::broker::now_ms(), NEXT.fetch_add(1, Ordering::Relaxed));
        let body = match serde_json::to_vec(&Batch { request_id: &request_id, wakeups: &batch }) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "push: cannot encode a batch");
                continue;
            }
        };
        let n = batch.len() as u64;
        match post(&request_id, &body) {
            Ok(()) => metrics.outcome("sent", n),
            Err(e) => {
                metrics.outcome("failed", n);
                tracing::warn!(%request_id, wakeups = n, error = %e, "push: the gateway did not take a batch of wake-ups");
            }
        }
    }
}
