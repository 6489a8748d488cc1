//! The node's mailbox cache: the queues of the users online on this node, holding only
//! items read back from JetStream (so everything in it is durable), fed three ways:
//!
//! - one ordered consumer per partition (`watch`), delivering every new item of the
//!   partition from the node's start; items of users online here are kept and their
//!   sessions woken, the rest dropped;
//! - the backlog load at login (`load`), after the user is marked interested (so nothing
//!   stored meanwhile is missed) and before the core hears `Registered`;
//! - the sweep (`sweep`), every `cluster.sweep_ms`, which reads each online user's
//!   subject after the highest sequence seen, for anything the consumer has not brought:
//!   only in partitions whose consumer has not yet delivered what the stream held at the
//!   previous sweep (a stalled or lagging consumer), so a healthy node pays one stream-info
//!   request per partition and sweep, not one read per online user.
//!
//! The cache is keyed by item id, so the three merge without duplicates. A user's reads
//! return nothing until the backlog load finished: otherwise the delivery window's cursor
//! could pass an item not loaded yet. The load notes where the stream ended when it began;
//! what the consumer brings meanwhile is kept aside and merged only if stored after that
//! (older items the load read itself, or they were acknowledged and deleted since: a
//! lagging consumer must not bring them back). After the load, an item at or below the
//! highest sequence seen is not taken again (it was cached before, or already
//! acknowledged).
//! Reads of the leader (`STREAM.MSG.GET`, not direct gets from a replica that may lag)
//! keep "everything up to the highest sequence seen" true.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use hotline_core::{Queues, StorageFailure, StoredItem};

use super::names::{self, Names};
use super::records::{decode, Envelope};
use super::{ClusterError, ClusterMetrics};
use crate::sessions::Sessions;

/// One cached item.
#[derive(Debug, Clone)]
pub struct Cached {
    pub item: StoredItem,
    /// The id receipts about it name: the sender's id of the message.
    pub message_id: u64,
}

/// An online user's queue on this node.
struct UserQueue {
    user: String,
    /// The local session the interest belongs to (a newer one takes it over).
    owner: u64,
    /// Whether the backlog load finished: reads return nothing before.
    loaded: bool,
    /// Highest stream sequence of this user's subject taken into the cache (after the
    /// load: at least the stream's end when the load began).
    seen: u64,
    items: BTreeMap<u64, Cached>,
    /// What the consumer brought during the load, by sequence: merged after it only if
    /// stored after the load began (an older one the load read, or it was deleted since:
    /// a lagging consumer must not bring back an item acknowledged meanwhile).
    pending: BTreeMap<u64, (u64, Cached)>,
}

/// The cache and what it needs to read partitions.
pub struct Mailboxes {
    names: Names,
    js: jetstream::Context,
    sessions: Arc<Sessions>,
    metrics: Arc<ClusterMetrics>,
    /// By subject token.
    users: Mutex<HashMap<String, UserQueue>>,
    /// Per partition: the next sequence its consumer will deliver.
    consumed: Vec<AtomicU64>,
    /// Per partition: the stream's last sequence at the previous sweep.
    swept_end: Vec<AtomicU64>,
}

impl Mailboxes {
    pub fn new(names: Names, js: jetstream::Context, sessions: Arc<Sessions>, metrics: Arc<ClusterMetrics>) -> Mailboxes {
        let per_partition = || (0..names.partitions()).map(|_| AtomicU64::new(0)).collect();
        Mailboxes { consumed: per_partition(), swept_end: per_partition(), names, js, sessions, metrics, users: Mutex::default() }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserQueue>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `user` online here, for local session `owner`; from now on the consumers keep
    /// their items. The queue starts empty and unloaded even if an older session of the
    /// number here left one: items in it may have been acknowledged on another node since.
    pub fn interest(&self, user: &str, owner: u64) {
        let queue = UserQueue { user: user.to_string(), owner, loaded: false, seen: 0, items: BTreeMap::new(), pending: BTreeMap::new() };
        self.users().insert(names::token(user), queue);
    }

    /// Forgets `user`'s queue, if local session `owner` still holds it.
    pub fn drop_interest(&self, user: &str, owner: u64) {
        let mut users = self.users();
        let token = names::token(user);
        if users.get(&token).is_some_and(|q| q.owner == owner) {
            users.remove(&token);
        }
    }

    /// Loads `user`'s backlog (every item stored under their subject) into the cache, then
    /// lets reads see it. Called after [`Mailboxes::interest`].
    pub async fn load(&self, user: &str) -> Result<(), ClusterError> {
        let token = names::token(user);
        let began = self.stream_end(self.names.partition(user)).await?;
        let found = self.read_after(user, 0).await?;
        let mut users = self.users();
        let Some(queue) = users.get_mut(&token) else { return Ok(()) };
        queue.seen = began;
        for (seq, id, cached) in found {
            queue.seen = queue.seen.max(seq);
            queue.items.insert(id, cached);
        }
        for (seq, (id, cached)) in std::mem::take(&mut queue.pending) {
            if seq > began {
                queue.seen = queue.seen.max(seq);
                queue.items.insert(id, cached);
            }
        }
        queue.loaded = true;
        Ok(())
    }

    /// Every item of `user`'s subject after sequence `after`, in order, read from the
    /// stream's leader: `(sequence, id, item)`.
    async fn read_after(&self, user: &str, after: u64) -> Result<Vec<(u64, u64, Cached)>, ClusterError> {
        let partition = self.names.partition(user);
        let name = self.names.stream(partition);
        let subject = self.names.subject(user);
        let stream = open_stream(&self.js, &name).await?;
        let mut found = Vec::new();
        let mut next = after + 1;
        loop {
            match stream.get_first_raw_message_by_subject(&subject, next).await {
                Ok(message) => {
                    next = message.sequence + 1;
                    let id = names::message_id(partition, message.sequence);
                    match decode::<Envelope>(&message.payload, "mailbox item") {
                        Ok(envelope) => found.push((message.sequence, id, cached(id, envelope))),
                        Err(e) => tracing::error!(error = %e, stream = %name, seq = message.sequence, "skipped an item that does not decode"),
                    }
                }
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return Ok(found),
                Err(e) => return Err(ClusterError::Stream { stream: name, detail: e.to_string() }),
            }
        }
    }

    /// An item the partition consumer delivered: kept (and the session woken) if its user
    /// is online here and it is new to the cache.
    fn delivered(&self, partition: u16, seq: u64, subject: &str, payload: &[u8]) {
        let Some(token) = subject.rsplit('.').next() else { return };
        let woken = {
            let mut users = self.users();
            let Some(queue) = users.get_mut(token) else { return };
            if queue.loaded && seq <= queue.seen {
                return;
            }
            let envelope = match decode::<Envelope>(payload, "mailbox item") {
                Ok(envelope) => envelope,
                Err(e) => {
                    tracing::error!(error = %e, subject, seq, "skipped an item that does not decode");
                    return;
                }
            };
            let id = names::message_id(partition, seq);
            if !queue.loaded {
                queue.pending.insert(seq, (id, cached(id, envelope)));
                return;
            }
            queue.seen = seq;
            queue.items.insert(id, cached(id, envelope));
            Some(queue.user.clone())
        };
        if let Some(user) = woken {
            self.sessions.wake(&user);
        }
    }

    /// Where partition `partition`'s consumer starts: after the last item stored now, so a
    /// login after the node's start finds every item either in its backlog load or through
    /// the consumer.
    pub async fn start_of(&self, partition: u16) -> Result<u64, ClusterError> {
        Ok(self.stream_end(partition).await? + 1)
    }

    /// The last sequence partition `partition`'s stream has given out.
    async fn stream_end(&self, partition: u16) -> Result<u64, ClusterError> {
        let name = self.names.stream(partition);
        let fail = |e: &dyn std::fmt::Display| ClusterError::Stream { stream: name.clone(), detail: e.to_string() };
        let stream = self.js.get_stream_no_info(&name).await.map_err(|e| fail(&e))?;
        let info = stream.get_info().await.map_err(|e| fail(&e))?;
        Ok(info.state.last_sequence)
    }

    /// Runs partition `partition`'s ordered consumer until the runtime stops, from sequence
    /// `start` (see [`Mailboxes::start_of`]), resuming after the last item seen whenever
    /// the consumer has to be made again.
    pub async fn watch(self: Arc<Self>, partition: u16, start: u64) {
        let name = self.names.stream(partition);
        let mut next = start;
        self.consumed[usize::from(partition)].store(start, Ordering::Relaxed);
        loop {
            if let Err(e) = self.consume(partition, &name, &mut next).await {
                tracing::warn!(stream = %name, error = %e, "partition consumer stopped; making it again");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn consume(&self, partition: u16, name: &str, next: &mut u64) -> Result<(), ClusterError> {
        let fail = |e: &dyn std::fmt::Display| ClusterError::Stream { stream: name.to_string(), detail: e.to_string() };
        let stream = self.js.get_stream_no_info(name).await.map_err(|e| fail(&e))?;
        let deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence: *next };
        let config = consumer::pull::OrderedConfig { deliver_policy, ..Default::default() };
        let consumer = stream.create_consumer(config).await.map_err(|e| fail(&e))?;
        let mut messages = consumer.messages().await.map_err(|e| fail(&e))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| fail(&e))?;
            let seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "a delivery without its sequence");
                    continue;
                }
            };
            *next = seq + 1;
            self.consumed[usize::from(partition)].store(seq + 1, Ordering::Relaxed);
            self.delivered(partition, seq, message.subject.as_str(), &message.payload);
        }
        Ok(())
    }

    /// One sweep: reads every loaded user's subject after the highest sequence seen, and
    /// wakes the users it found items for.
    pub async fn sweep(&self) {
        let online: Vec<(String, u64)> = self.users().values().filter(|q| q.loaded).map(|q| (q.user.clone(), q.seen)).collect();
        let mut lagging = vec![false; usize::from(self.names.partitions())];
        for (partition, lags) in lagging.iter_mut().enumerate() {
            if !online.iter().any(|(user, _)| usize::from(self.names.partition(user)) == partition) {
                continue;
            }
            let end = match self.stream_end(partition as u16).await {
                Ok(end) => end,
                Err(e) => {
                    tracing::warn!(error = %e, "sweep failed");
                    return;
                }
            };
            let before = self.swept_end[partition].swap(end, Ordering::Relaxed);
            // Everything stored before the previous sweep should have come by now.
            *lags = self.consumed[partition].load(Ordering::Relaxed) <= before;
        }
        for (user, seen) in online.into_iter().filter(|(user, _)| lagging[usize::from(self.names.partition(user))]) {
            let found = match self.read_after(&user, seen).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "sweep failed");
                    return;
                }
            };
            if found.is_empty() {
                continue;
            }
            let mut taken = 0;
            {
                let mut users = self.users();
                let Some(queue) = users.get_mut(&names::token(&user)) else { continue };
                for (seq, id, cached) in found {
                    if seq > queue.seen {
                        queue.seen = seq;
                        queue.items.insert(id, cached);
                        taken += 1;
                    }
                }
            }
            if taken > 0 {
                self.metrics.sweep_found.fetch_add(taken, Ordering::Relaxed);
                tracing::debug!(%user, taken, "the sweep found items the consumer had not brought");
                self.sessions.wake(&user);
            }
        }
    }

    /// Runs [`Mailboxes::sweep`] every `every` until the runtime stops.
    pub async fn sweep_every(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep().await;
        }
    }

    /// The cached copy of `user`'s item `id`.
    pub fn get(&self, user: &str, id: u64) -> Option<Cached> {
        let users = self.users();
        let queue = users.get(&names::token(user)).filter(|q| q.loaded)?;
        queue.items.get(&id).cloned()
    }

    /// `user`'s item `id`: the cached copy, else read from its stream (the session that
    /// acknowledged it may have ended before its job ran, taking the cache with it).
    pub async fn fetch(&self, user: &str, id: u64) -> Result<Option<Cached>, ClusterError> {
        if let Some(cached) = self.get(user, id) {
            return Ok(Some(cached));
        }
        let (partition, seq) = names::split_id(id);
        if partition >= self.names.partitions() || partition != self.names.partition(user) {
            return Ok(None);
        }
        let name = self.names.stream(partition);
        let stream = open_stream(&self.js, &name).await?;
        match stream.get_raw_message(seq).await {
            Ok(message) if message.subject.as_str() == self.names.subject(user) => {
                Ok(Some(cached(id, decode::<Envelope>(&message.payload, "mailbox item")?)))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(ClusterError::Stream { stream: name, detail: e.to_string() }),
        }
    }

    /// Drops `user`'s item `id` (acknowledged and deleted).
    pub fn remove(&self, user: &str, id: u64) {
        if let Some(queue) = self.users().get_mut(&names::token(user)) {
            queue.items.remove(&id);
        }
    }
}

/// The mailbox stream `name`, without asking for its info (no round trip to the server).
pub(super) async fn open_stream(js: &jetstream::Context, name: &str) -> Result<stream::Stream<()>, ClusterError> {
    js.get_stream_no_info(name).await.map_err(|e| ClusterError::Stream { stream: name.to_string(), detail: e.to_string() })
}

fn cached(id: u64, envelope: Envelope) -> Cached {
    Cached { item: envelope.item, message_id: envelope.message_id.unwrap_or(id) }
}

/// The core's view of the queues: only what the cache holds. Everything in it was read
/// back from JetStream, so the durable watermark is "everything".
impl Queues for Mailboxes {
    fn durable_id(&self) -> u64 {
        u64::MAX
    }

    fn queue_after(&self, user: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, StoredItem)>, StorageFailure> {
        let users = self.users();
        let Some(queue) = users.get(&names::token(user)).filter(|q| q.loaded) else { return Ok(Vec::new()) };
        let from = after.saturating_add(1);
        if from > upto {
            return Ok(Vec::new());
        }
        Ok(queue.items.range(from..=upto).take(limit).map(|(id, c)| (*id, c.item.clone())).collect())
    }

    fn item(&self, user: &str, id: u64) -> Result<Option<StoredItem>, StorageFailure> {
        Ok(self.get(user, id).map(|c| c.item))
    }
}
