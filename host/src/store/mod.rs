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
//! upload records; `push.rs` devices' push tokens.

mod committer;
mod health;
mod keys;
mod maintenance;
mod media;
mod operator;
mod ports;
mod push;
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
pub use records::{Account, DeliveredRecord, IdempotencyRecord, PushToken, StoredItem};

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
    /// Devices' push tokens: `number` → [`PushToken`] (`push.rs`).
    push: Keyspace,
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
    /// Plugin key-value writes hold the stripe of their key (by hash), so that a
    /// compare-and-swap or an increment (read, compare, write) is one critical section
    /// against every other write of that key, from any plugin instance.
    kv_stripes: Arc<[Mutex<()>; KV_STRIPES]>,
}

/// Lock stripes of plugin key-value writes (more than plugin threads, so unrelated keys
/// rarely wait for each other).
const KV_STRIPES: usize = 64;

/// What [`Store::kv_increment`] can refuse, changing nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvIncrementError {
    /// The value under the key is not a counter (8 bytes).
    #[error("the value is {0} bytes long, not a counter (8 bytes, little-endian)")]
    NotACounter(usize),
    /// The sum does not fit in a signed 64-bit integer.
    #[error("the counter would overflow ({value} + {delta})")]
    Overflow { value: i64, delta: i64 },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
            push: ks("push")?,
            db,
            durable_id: Arc::new(AtomicU64::new(0)),
            health: Arc::new(Health::default()),
            dir: dir.to_path_buf(),
            activity: Arc::new(activity),
            maintenance: Arc::new(Mutex::new(())),
            queue_index,
            kv_stripes: Arc::new(std::array::from_fn(|_| Mutex::new(()))),
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

    /// The newest durable item of `user`'s queue (the highest id), if any: one reverse
    /// step of a range read (the push worker's question "is the newest item a message?").
    pub fn newest_item(&self, user: &str) -> Result<Option<(u64, StoredItem)>, StoreError> {
        let range = keys::queue_key(user, 0)..=keys::queue_key(user, self.durable_id());
        match self.queues.range(range).next_back() {
            Some(guard) => {
                let (k, v) = guard.into_inner()?;
                Ok(Some((keys::queue_key_id(&k), records::decode(&v, "queues")?)))
            }
            None => Ok(None),
        }
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

    /// The write lock of a full plugin key-value key (its stripe).
    fn kv_lock(&self, full: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let stripe = BuildHasherDefault::<DefaultHasher>::default().hash_one(full) as usize % KV_STRIPES;
        self.kv_stripes[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes (`Some`) or deletes (`None`) a full key; the caller holds its stripe.
    fn kv_write_locked(&self, full: Vec<u8>, value: Option<&[u8]>) -> Result<(), StoreError> {
        let bytes = (full.len() + value.map_or(0, <[u8]>::len)) as u64;
        match value {
            Some(value) => self.plugin_kv.insert(full, value)?,
            None => self.plugin_kv.remove(full)?,
        }
        self.activity.wrote(bytes, 1, &[0; 3]);
        Ok(())
    }

    /// Sets a value in a plugin's key-value space. Written at once (not via the committer);
    /// made durable by the next group fsync.
    pub fn kv_set(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let full = keys::kv_key(space, key);
        let _stripe = self.kv_lock(&full);
        self.kv_write_locked(full, Some(value))
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

    /// Keys of a plugin's space starting with `prefix` and sorting after `after`, in order,
    /// at most `limit` (the next page after `after`).
    pub fn kv_keys_after(&self, space: &str, prefix: &[u8], after: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        use std::ops::Bound;
        let full_prefix = keys::kv_key(space, prefix);
        let start = keys::kv_key(space, after);
        let skip = space.len() + 1;
        let mut out = Vec::new();
        let from = if start < full_prefix { Bound::Included(full_prefix.clone()) } else { Bound::Excluded(start) };
        for guard in self.plugin_kv.range::<Vec<u8>, _>((from, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let key = guard.key()?;
            if !key.starts_with(&full_prefix) {
                break;
            }
            out.push(key[skip..].to_vec());
        }
        Ok(out)
    }

    /// Deletes a key from a plugin's key-value space.
    pub fn kv_delete(&self, space: &str, key: &[u8]) -> Result<(), StoreError> {
        let full = keys::kv_key(space, key);
        let _stripe = self.kv_lock(&full);
        self.kv_write_locked(full, None)
    }

    /// If the value under `key` is `expected` (`None`: absent), makes it `new` (`None`:
    /// deleted) and answers true; otherwise answers false. One critical section against
    /// every other write of the key.
    pub fn kv_compare_and_swap(&self, space: &str, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, StoreError> {
        let full = keys::kv_key(space, key);
        let _stripe = self.kv_lock(&full);
        let current = self.plugin_kv.get(&full)?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        self.kv_write_locked(full, new)?;
        Ok(true)
    }

    /// Adds `delta` to the counter under `key` (8 bytes, little-endian two's complement;
    /// absent is 0) and answers the new value. One critical section against every other
    /// write of the key.
    pub fn kv_increment(&self, space: &str, key: &[u8], delta: i64) -> Result<i64, KvIncrementError> {
        let full = keys::kv_key(space, key);
        let _stripe = self.kv_lock(&full);
        let value = match self.plugin_kv.get(&full).map_err(StoreError::from)? {
            None => 0,
            Some(bytes) => i64::from_le_bytes(bytes.as_ref().try_into().map_err(|_| KvIncrementError::NotACounter(bytes.len()))?),
        };
        let sum = value.checked_add(delta).ok_or(KvIncrementError::Overflow { value, delta })?;
        self.kv_write_locked(full, Some(&sum.to_le_bytes()))?;
        Ok(sum)
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
