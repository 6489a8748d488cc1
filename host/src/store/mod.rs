//! Durable state of the broker in one fjall database: accounts, per-recipient queues,
//! idempotency records, delivered-but-unread records, plugin key-value data and counters.
//!
//! Reads go straight to fjall. Writes that clients wait on go through the [`Committer`],
//! which applies them in order and shares one fsync among everything that arrived together.
//! The store implements the core's ports (`ports.rs`: accounts, queue reads) and its
//! journal (`committer.rs`: `Txn`, `Journal`); the keyspaces stay private to this module.
//! `maintenance.rs` gives disk back once writes pause (and at shutdown). `queues.rs` is the
//! live per-recipient queue index ([`Store::queues`]); `operator.rs` the operator's actions
//! (purge a queue, remove an account, list accounts); `media.rs` the media endpoint's
//! upload records.

mod committer;
mod health;
mod keys;
mod maintenance;
mod media;
mod operator;
mod ports;
mod queues;
mod records;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

pub use committer::{CommitStats, Committer, Pending, Txn, WakeHook};
pub use health::{Health, HealthReport};
pub use maintenance::{Checkpoint, JOURNAL_SLACK, MIN_DELETES};
use maintenance::{Activity, Compacted};
pub use media::MediaRecord;
pub use operator::{AccountEntry, AccountsPage};
pub use queues::QueueIndex;
pub use records::{Account, DeliveredRecord, IdempotencyRecord, StoredItem};

/// What can go wrong in storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// fjall reported an I/O or storage error (e.g. a full disk).
    #[error("storage error: {}", describe(.0))]
    Fjall(#[source] Arc<fjall::Error>),
    /// A previous fsync failed; the store refuses all further writes until restarted.
    #[error("storage is poisoned after a failed write or fsync; restart the broker")]
    Poisoned,
    /// A stored record could not be decoded (corruption or a format from a newer broker).
    #[error("corrupt record in {keyspace}: {detail}")]
    Corrupt { keyspace: &'static str, detail: String },
    /// The committer has stopped (the broker is shutting down).
    #[error("storage committer is closed")]
    Closed,
    /// The job panicked on the committer thread (a bug, logged there): it failed alone and
    /// the committer goes on. A retry under the same client id is safe.
    #[error("the storage job failed unexpectedly (it panicked on the committer thread; see the broker's log)")]
    Panicked,
    /// The committer thread stopped after a panic outside a job: nothing is written until
    /// the broker is restarted.
    #[error("the storage committer stopped ({0}); restart the broker")]
    CommitterStopped(String),
    /// Another process (a running broker) holds the database.
    #[error("the storage is locked by another process (is a broker running on it?)")]
    Locked,
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Poisoned => StoreError::Poisoned,
            fjall::Error::Locked => StoreError::Locked,
            other => StoreError::Fjall(Arc::new(other)),
        }
    }
}

/// fjall's error in words (its `Display` is its `Debug`).
fn describe(e: &fjall::Error) -> String {
    match e {
        fjall::Error::Io(io) => format!("I/O error: {io}"),
        fjall::Error::Storage(fjall::LsmError::Io(io)) => format!("I/O error: {io}"),
        other => format!("{other:?}"),
    }
}

pub use hotline_core::Durability;

/// What [`Store::expired`] found.
#[derive(Debug, Default)]
pub struct Expired {
    /// Queued items `(user, id)` past their time to live.
    pub items: Vec<(String, u64)>,
    /// Delivered records `(reader, id)` past the same time to live.
    pub delivered: Vec<(String, u64)>,
    /// Keys of idempotency records past theirs.
    pub records: Vec<Vec<u8>>,
}

/// Handles to the database and its keyspaces. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Database,
    accounts: Keyspace,
    queues: Keyspace,
    idempotency: Keyspace,
    plugin_kv: Keyspace,
    meta: Keyspace,
    /// Messages acknowledged by their recipient and not yet reported read: what a `Read`
    /// must name (`reader 0x00 id` → [`DeliveredRecord`]).
    delivered: Keyspace,
    /// Media uploads: `id (16 bytes)` → [`MediaRecord`].
    media: Keyspace,
    /// Highest item id whose commit is durable; sessions deliver only up to it.
    durable_id: Arc<AtomicU64>,
    /// Whether writes are accepted (set by the committer).
    health: Arc<Health>,
    /// The database's folder.
    dir: PathBuf,
    /// What was written, for maintenance.
    activity: Arc<Activity>,
    /// Held while a [`Store::checkpoint`] runs.
    maintenance: Arc<Mutex<()>>,
    /// Items per recipient, kept by the committer (`queues.rs`).
    queue_index: Arc<QueueIndex>,
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = Database::builder(dir).open()?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        // A journal left by an earlier run counts as written: the first pause seals it.
        let activity = Activity::default();
        activity.wrote(maintenance::journal_bytes(dir), 0, &[0; 3]);
        let queues = ks("queues")?;
        let queue_index = Arc::new(QueueIndex::scan(&queues)?);
        Ok(Store {
            accounts: ks("accounts")?,
            queues,
            idempotency: ks("idempotency")?,
            plugin_kv: ks("plugin_kv")?,
            meta: ks("meta")?,
            delivered: ks("delivered")?,
            media: ks("media")?,
            db,
            durable_id: Arc::new(AtomicU64::new(0)),
            health: Arc::new(Health::default()),
            dir: dir.to_path_buf(),
            activity: Arc::new(activity),
            maintenance: Arc::new(Mutex::new(())),
            queue_index,
        })
    }

    /// The live per-recipient queue index: items per number, totals and the longest queues,
    /// without reading storage. Built by a scan at [`Store::open`], then kept exact by the
    /// committer (it counts what a fresh scan of the open store would).
    pub fn queues(&self) -> &QueueIndex {
        &self.queue_index
    }

    /// Whether storage accepts writes, for readiness and metrics.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The account registered for `phone`, if any.
    pub fn account(&self, phone: &str) -> Result<Option<Account>, StoreError> {
        match self.accounts.get(phone)? {
            Some(v) => records::decode(&v, "accounts").map(Some),
            None => Ok(None),
        }
    }

    /// One queued item of `user`.
    pub fn item(&self, user: &str, id: u64) -> Result<Option<StoredItem>, StoreError> {
        match self.queues.get(keys::queue_key(user, id))? {
            Some(v) => records::decode(&v, "queues").map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` durable items of `user` with ids greater than `after`, in id order.
    pub fn queue_after(&self, user: &str, after: u64, limit: usize) -> Result<Vec<(u64, StoredItem)>, StoreError> {
        self.queue_range(user, after, self.durable_id(), limit)
    }

    /// Up to `limit` items of `user` with ids in `after+1..=upto`, in id order.
    pub fn queue_range(&self, user: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, StoredItem)>, StoreError> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let range = keys::queue_key(user, after + 1)..=keys::queue_key(user, upto);
        let mut out = Vec::new();
        for guard in self.queues.range(range).take(limit) {
            let (k, v) = guard.into_inner()?;
            out.push((keys::queue_key_id(&k), records::decode(&v, "queues")?));
        }
        Ok(out)
    }

    /// The record of message `id` acknowledged by `reader` and not yet reported read.
    pub fn delivered(&self, reader: &str, id: u64) -> Result<Option<DeliveredRecord>, StoreError> {
        match self.delivered.get(keys::queue_key(reader, id))? {
            Some(v) => records::decode_delivered(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Number of items queued per user, for the operator (`hotline inspect`): a full scan
    /// (a running broker reads [`Store::queues`] instead).
    pub fn queue_lengths(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let mut out = std::collections::BTreeMap::new();
        for guard in self.queues.iter() {
            let k = guard.key()?;
            *out.entry(keys::queue_key_user(&k).to_string()).or_insert(0) += 1;
        }
        Ok(out)
    }

    /// Queue items queued before `item_cutoff_ms` (and delivered records acknowledged
    /// before it), and keys of idempotency records older than `record_cutoff_ms`. A full
    /// scan: run rarely.
    pub fn expired(&self, item_cutoff_ms: u64, record_cutoff_ms: u64) -> Result<Expired, StoreError> {
        let mut items = Vec::new();
        for guard in self.queues.iter() {
            let (k, v) = guard.into_inner()?;
            let item: StoredItem = records::decode(&v, "queues")?;
            if item.queued_at_ms() < item_cutoff_ms {
                items.push((keys::queue_key_user(&k).to_string(), keys::queue_key_id(&k)));
            }
        }
        let mut delivered = Vec::new();
        for guard in self.delivered.iter() {
            let (k, v) = guard.into_inner()?;
            let record = records::decode_delivered(&v)?;
            if record.at_ms < item_cutoff_ms {
                delivered.push((keys::queue_key_user(&k).to_string(), keys::queue_key_id(&k)));
            }
        }
        let mut records = Vec::new();
        for guard in self.idempotency.iter() {
            let (k, v) = guard.into_inner()?;
            let record: IdempotencyRecord = records::decode(&v, "idempotency")?;
            if record.at_ms < record_cutoff_ms {
                records.push(k.to_vec());
            }
        }
        Ok(Expired { items, delivered, records })
    }

    /// Bytes the database occupies on disk: the blocks its files hold (fjall's own count
    /// takes a fresh journal, a sparse file, for 64 MiB).
    pub fn disk_space(&self) -> Result<u64, StoreError> {
        maintenance::allocated_bytes(&self.dir).map_err(|e| StoreError::Fjall(Arc::new(fjall::Error::Io(e))))
    }

    /// The idempotency record of `(sender, client_id)`, if the message was stored before.
    pub fn idempotency(&self, sender: &str, client_id: u64) -> Result<Option<IdempotencyRecord>, StoreError> {
        match self.idempotency.get(keys::idempotency_key(sender, client_id))? {
            Some(v) => records::decode(&v, "idempotency").map(Some),
            None => Ok(None),
        }
    }

    /// A value from a plugin's own key-value space.
    pub fn kv_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.plugin_kv.get(keys::kv_key(space, key))?.map(|v| v.to_vec()))
    }

    /// Sets a value in a plugin's key-value space. Written at once (not via the committer);
    /// made durable by the next group fsync.
    pub fn kv_set(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let key = keys::kv_key(space, key);
        let bytes = (key.len() + value.len()) as u64;
        self.plugin_kv.insert(key, value)?;
        self.activity.wrote(bytes, 1, &[0; 3]);
        Ok(())
    }

    /// Keys of a plugin's space starting with `prefix`, in order, at most `limit`.
    pub fn kv_keys(&self, space: &str, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let full = keys::kv_key(space, prefix);
        let skip = space.len() + 1;
        let mut out = Vec::new();
        for guard in self.plugin_kv.prefix(full).take(limit) {
            out.push(guard.key()?[skip..].to_vec());
        }
        Ok(out)
    }

    /// Deletes a key from a plugin's key-value space.
    pub fn kv_delete(&self, space: &str, key: &[u8]) -> Result<(), StoreError> {
        let key = keys::kv_key(space, key);
        let bytes = key.len() as u64;
        self.plugin_kv.remove(key)?;
        self.activity.wrote(bytes, 1, &[0; 3]);
        Ok(())
    }

    /// Highest durable item id.
    pub fn durable_id(&self) -> u64 {
        self.durable_id.load(Ordering::Acquire)
    }

    pub(crate) fn publish_durable(&self, id: u64) {
        self.durable_id.fetch_max(id, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
