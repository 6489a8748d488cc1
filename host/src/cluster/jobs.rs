//! The job executor: the core's storage jobs ([`hotline_core::Job`]) carried out over
//! JetStream, one session's jobs in submission order on its own [`Lane`] (so a sender's
//! messages are stored in the order sent; only a run of acks queued together runs
//! concurrently, each being about its own item).
//!
//! On one node `Job::apply` runs each job as one atomic fjall batch. JetStream has no
//! multi-subject transactions, so each job here is a sequence of idempotent steps, ordered
//! so that a crash between two of them is repaired by a retry (or harmless):
//!
//! - `Send`: idempotency record found → `Stored { id }` it names. Else publish one copy per
//!   recipient, the first alone (its id is the message's id, carried by every other copy),
//!   each with `Nats-Msg-Id: m:<from>:<client_id>:<recipient>`, so a retry within the
//!   duplicate window gets the first sequence back; await every ack; write the idempotency
//!   record; answer `Stored { id }` — only now may `Sent` go out. The queue limit
//!   (`limits.max_queue_items`) is not enforced in a cluster (docs/cluster.md).
//! - `Ack`: the item is looked up in the node's cache, else its stream (gone: a duplicate
//!   ack, done); for a
//!   message, the delivered receipt is published to the sender's subject if policy allowed
//!   it (`Nats-Msg-Id: r:<reader>:<id>:d`: one receipt even if the ack is done twice) and the
//!   delivered record written; then the item is deleted by sequence ("not found" is done).
//! - `CheckDelivered` / `Read`: the delivered record in `<prefix>_delivered`; a read
//!   receipt has `Nats-Msg-Id: r:<reader>:<id>:r`; the record is deleted after it.
//! - `Register`: the account written, the old device's push token deleted.
//! - `SetPushToken`: the account checked, the token written or deleted.
//!
//! Any NATS error fails the job ([`ClusterError`]); the session answers it as a failed
//! commit on one node (`Retryable`), never `Sent` without the publish acks. After a failed
//! send the lane fails every later send unpublished and the driver closes the session
//! (as a failed fsync poisons one node's store): otherwise a send after it could be stored
//! before the client's retry of it, out of order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use hotline_core::{Account, Job, JobOutcome, PushToken, StoredItem};
use hotline_protocol::ReceiptStatus;
use tokio::sync::{mpsc, oneshot};

use super::names::{self, Names};
use super::records::{decode, encode, Delivered, Envelope};
use super::{Cluster, ClusterError};

/// A job's answer, once carried out.
pub type Answer = oneshot::Receiver<Result<JobOutcome, ClusterError>>;

/// One session's queue of jobs, run in order by a task of its own (which ends when the
/// lane is dropped and its jobs are done).
pub struct Lane {
    tx: mpsc::UnboundedSender<Work>,
    /// Set when an `Ack` or `Read` failed for good (after [`RETRY_FOR`]): nobody waits for
    /// their answers, so the session's close says it instead of closing cleanly.
    failed: Arc<AtomicBool>,
}

/// What a lane's task takes: a job, or a flush (answered once every job before it ran).
enum Work {
    Job(Job, oneshot::Sender<Result<JobOutcome, ClusterError>>),
    Flush(oneshot::Sender<()>),
}

impl Lane {
    pub fn start(cluster: Arc<Cluster>) -> Lane {
        let (tx, mut rx) = mpsc::unbounded_channel::<Work>();
        let failed = Arc::new(AtomicBool::new(false));
        let lane_failed = failed.clone();
        tokio::spawn(async move {
            let failed = lane_failed;
            // Set by a failed send: every later send of the session fails without being
            // published, so none is stored ahead of the client's retry of the failed one
            // (the session is closed and the client sends them again, in order).
            let mut poisoned: Option<ClusterError> = None;
            // Work taken from the channel behind a run of acks, done next.
            let mut held: Option<Work> = None;
            loop {
                let work = match held.take() {
                    Some(work) => work,
                    None => match rx.recv().await {
                        Some(work) => work,
                        None => break,
                    },
                };
                match work {
                    Work::Job(Job::Send { .. }, reply) if poisoned.is_some() => {
                        let _ = reply.send(Err(poisoned.clone().expect("checked")));
                    }
                    Work::Job(job @ Job::Ack { .. }, reply) => {
                        // Acks are independent of each other (each its own item): the run
                        // of acks queued together is done concurrently, then what follows.
                        let mut acks = vec![(job, reply)];
                        while acks.len() < MAX_ACKS_AT_ONCE {
                            match rx.try_recv() {
                                Ok(Work::Job(job @ Job::Ack { .. }, reply)) => acks.push((job, reply)),
                                Ok(other) => {
                                    held = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        let (cluster, failed) = (&cluster, &failed);
                        futures_util::future::join_all(acks.into_iter().map(|(job, reply)| async move {
                            let result = cluster.run_retrying(job).await;
                            if result.is_err() {
                                failed.store(true, Ordering::Relaxed);
                            }
                            let _ = reply.send(result);
                        }))
                        .await;
                    }
                    Work::Job(job, reply) => {
                        let send = matches!(job, Job::Send { .. });
                        let unanswered = matches!(job, Job::Read { .. });
                        let result = cluster.run_retrying(job).await;
                        if let (true, Err(e)) = (send, &result) {
                            poisoned = Some(e.clone());
                        }
                        if unanswered && result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        let _ = reply.send(result);
                    }
                    Work::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Lane { tx, failed }
    }

    /// Queues `job` behind the lane's earlier ones.
    pub fn submit(&self, job: Job) -> Answer {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(Work::Job(_, reply))) = self.tx.send(Work::Job(job, reply)) {
            let _ = reply.send(Err(ClusterError::Stopped));
        }
        answer
    }

    /// Waits until every job queued so far ran (at most `limit`): a session's acks are
    /// applied before it leaves, as on one node, where its last acks are committed before
    /// the next login reads the queue.
    /// Whether they all succeeded: false when one failed for good or they were not done
    /// in time (the session then does not close cleanly: its acks may not be applied).
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, flushed) = oneshot::channel();
        let in_time = match self.tx.send(Work::Flush(done)) {
            Ok(()) => tokio::time::timeout(limit, flushed).await.is_ok(),
            Err(_) => false,
        };
        if !in_time {
            tracing::warn!(?limit, "a session's jobs were not done when it left");
        }
        in_time && !self.failed.load(Ordering::Relaxed)
    }
}

/// Most acks of one session carried out at once.
const MAX_ACKS_AT_ONCE: usize = 64;

/// How long a lane keeps trying an `Ack` or `Read` that failed (nobody waits for their
/// answer, and a client that closed cleanly after its acks must not get the items again).
const RETRY_FOR: Duration = Duration::from_secs(15);

impl Cluster {
    /// [`Cluster::run`]; an `Ack` or `Read` that fails (JetStream electing a leader, a NATS
    /// server gone) is tried again, with a growing pause, for [`RETRY_FOR`]: each of their
    /// steps is idempotent. Jobs with an answer fail at once: the client retries them.
    /// Past that, the job is handed to a task of its own that keeps trying (every 5 s)
    /// while the node runs, so an acknowledged item is deleted once JetStream is back
    /// (it may be pushed again meanwhile, under its id), and the lane goes on.
    async fn run_retrying(self: &Arc<Self>, job: Job) -> Result<JobOutcome, ClusterError> {
        if !matches!(job, Job::Ack { .. } | Job::Read { .. }) {
            return self.run(job).await;
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match self.run(job.clone()).await {
                Err(e) if started.elapsed() < RETRY_FOR => {
                    tracing::debug!(error = %e, "an ack or read failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "an ack or read still fails; trying again in the background");
                    let this = self.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            if this.run(job.clone()).await.is_ok() {
                                break;
                            }
                        }
                    });
                    return Err(e);
                }
                result => return result,
            }
        }
    }

    /// Carries out one job (see the module's doc for the mapping).
    pub async fn run(&self, job: Job) -> Result<JobOutcome, ClusterError> {
        match job {
            Job::Send { from, client_id, recipients, sent_at_ms, kind, body, max_queue_items: _ } => {
                let key = Names::idem_key(&from, client_id);
                if let Some(bytes) = self.kv_get(&self.buckets.idem, "idem", &key).await? {
                    return Ok(JobOutcome::Stored { id: decode_id(&bytes)? });
                }
                let item = StoredItem::message(from.clone(), sent_at_ms, kind, body);
                let Some((first, rest)) = recipients.split_first() else {
                    return Err(ClusterError::Corrupt { what: "send".into(), detail: "a send without recipients".into() });
                };
                let first_envelope = Envelope { item: item.clone(), message_id: None };
                let id = self.publish(first, &first_envelope, Names::send_msg_id(&from, client_id, first)).await?.await?;
                let copy = Envelope { item, message_id: Some(id) };
                let mut acks = Vec::with_capacity(rest.len());
                for recipient in rest {
                    acks.push(self.publish(recipient, &copy, Names::send_msg_id(&from, client_id, recipient)).await?);
                }
                for ack in acks {
                    ack.await?;
                }
                self.kv_put(&self.buckets.idem, "idem", &key, id.to_be_bytes().to_vec()).await?;
                Ok(JobOutcome::Stored { id })
            }
            Job::Ack { user, id, message, at_ms } => {
                let Some(cached) = self.mailboxes.fetch(&user, id).await? else { return Ok(JobOutcome::Done) };
                if let Some(acked) = message {
                    if acked.receipt {
                        let receipt = StoredItem::Receipt { message_id: cached.message_id, by: user.clone(), status: ReceiptStatus::Delivered, at_ms };
                        let envelope = Envelope { item: receipt, message_id: None };
                        self.publish(&acked.sender, &envelope, Names::receipt_msg_id(&user, id, 'd')).await?.await?;
                    }
                    let record = Delivered {
                        record: hotline_core::DeliveredRecord { from: acked.sender, at_ms, kind: acked.kind },
                        message_id: cached.message_id,
                    };
                    self.kv_put(&self.buckets.delivered, "delivered", &Names::delivered_key(&user, id), encode(&record)).await?;
                }
                self.delete_item(id).await?;
                self.mailboxes.remove(&user, id);
                Ok(JobOutcome::Done)
            }
            Job::CheckDelivered { reader, id } => {
                let record = self.kv_get(&self.buckets.delivered, "delivered", &Names::delivered_key(&reader, id)).await?;
                let record = record.map(|bytes| decode::<Delivered>(&bytes, "delivered record")).transpose()?;
                Ok(JobOutcome::Delivered(record.map(|d| d.record)))
            }
            Job::Read { reader, id, sender, receipt, at_ms } => {
                let key = Names::delivered_key(&reader, id);
                let Some(bytes) = self.kv_get(&self.buckets.delivered, "delivered", &key).await? else { return Ok(JobOutcome::Done) };
                let record = decode::<Delivered>(&bytes, "delivered record")?;
                if receipt {
                    let item = StoredItem::Receipt { message_id: record.message_id, by: reader.clone(), status: ReceiptStatus::Read, at_ms };
                    self.publish(&sender, &Envelope { item, message_id: None }, Names::receipt_msg_id(&reader, id, 'r')).await?.await?;
                }
                self.buckets.delivered.delete(&key).await.map_err(|e| kv_error(&self.names, "delivered", e))?;
                Ok(JobOutcome::Done)
            }
            Job::Register { phone, account } => {
                let key = names::token(&phone);
                self.kv_put(&self.buckets.accounts, "accounts", &key, encode(&account)).await?;
                self.buckets.push.delete(&key).await.map_err(|e| kv_error(&self.names, "push", e))?;
                Ok(JobOutcome::Done)
            }
            Job::SetPushToken { phone, token, key_hash, at_ms } => {
                let key = names::token(&phone);
                let account = self.account(&phone).await?;
                if account.is_none_or(|a| a.key_hash != key_hash) {
                    return Ok(JobOutcome::KeyRevoked);
                }
                if token.is_empty() {
                    self.buckets.push.delete(&key).await.map_err(|e| kv_error(&self.names, "push", e))?;
                } else {
                    let record = PushToken { token, key_hash, set_at_ms: at_ms };
                    self.kv_put(&self.buckets.push, "push", &key, encode(&record)).await?;
                }
                Ok(JobOutcome::Done)
            }
        }
    }

    /// `phone`'s account, from the accounts bucket.
    pub async fn account(&self, phone: &str) -> Result<Option<Account>, ClusterError> {
        let bytes = self.kv_get(&self.buckets.accounts, "accounts", &names::token(phone)).await?;
        bytes.map(|bytes| decode::<Account>(&bytes, "account")).transpose()
    }

    /// Publishes `envelope` to `recipient`'s subject with deduplication id `msg_id`;
    /// awaiting the result gives the copy's id once JetStream acknowledged it stored.
    async fn publish(&self, recipient: &str, envelope: &Envelope, msg_id: String) -> Result<PendingAck, ClusterError> {
        let subject = self.names.subject(recipient);
        let partition = self.names.partition(recipient);
        let publish = PublishMessage::build().message_id(msg_id).payload(encode(envelope).into());
        let metrics = self.metrics.clone();
        let fail = |subject: &str, e: &dyn std::fmt::Display| {
            metrics.publish_failures.fetch_add(1, Ordering::Relaxed);
            ClusterError::Publish { subject: subject.to_string(), detail: e.to_string() }
        };
        let ack = self.js.send_publish(subject.clone(), publish).await.map_err(|e| fail(&subject, &e))?;
        self.metrics.publishes.fetch_add(1, Ordering::Relaxed);
        Ok(PendingAck { ack, subject, partition, metrics: self.metrics.clone() })
    }

    /// Deletes the item with cluster id `id` from its partition; one already gone is done.
    async fn delete_item(&self, id: u64) -> Result<(), ClusterError> {
        let (partition, seq) = names::split_id(id);
        let name = self.names.stream(partition);
        let stream = super::mailboxes::open_stream(&self.js, &name).await?;
        match stream.delete_message(seq).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                jetstream::stream::DeleteMessageErrorKind::JetStream(js) if js.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND || js.to_string().contains("no message found") => Ok(()),
                _ => Err(ClusterError::Stream { stream: name, detail: e.to_string() }),
            },
        }
    }

    async fn kv_get(&self, bucket: &jetstream::kv::Store, what: &str, key: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        bucket.get(key).await.map(|v| v.map(|b| b.to_vec())).map_err(|e| kv_error(&self.names, what, e))
    }

    async fn kv_put(&self, bucket: &jetstream::kv::Store, what: &str, key: &str, value: Vec<u8>) -> Result<(), ClusterError> {
        bucket.put(key, value.into()).await.map(|_| ()).map_err(|e| kv_error(&self.names, what, e))
    }
}

/// A publish JetStream has not acknowledged yet.
struct PendingAck {
    ack: jetstream::context::PublishAckFuture,
    subject: String,
    partition: u16,
    metrics: Arc<super::ClusterMetrics>,
}

impl std::future::IntoFuture for PendingAck {
    type Output = Result<u64, ClusterError>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.ack.await {
                Ok(ack) => Ok(names::message_id(self.partition, ack.sequence)),
                Err(e) => {
                    self.metrics.publish_failures.fetch_add(1, Ordering::Relaxed);
                    Err(ClusterError::Publish { subject: self.subject, detail: e.to_string() })
                }
            }
        })
    }
}

fn decode_id(bytes: &[u8]) -> Result<u64, ClusterError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| ClusterError::Corrupt { what: "idempotency record".into(), detail: "not 8 bytes".into() })?;
    Ok(u64::from_be_bytes(bytes))
}

fn kv_error(names: &Names, what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Kv { bucket: names.bucket(what), detail: e.to_string() }
}
