//! The committer thread: the driver of the core's group-commit step
//! ([`hotline_core::commit_group`]) over fjall. It collects the jobs that arrived while the
//! previous fsync ran, hands them to the step, and carries out its report.
//!
//! A job is a closure run on the committer thread against a [`Txn`]: it may read the store,
//! allocate item ids and stage writes. Its writes are committed as one atomic fjall batch;
//! its caller is answered only after the fsync that covers them. Because jobs run one at a
//! time in order, item ids are allocated in commit order, and read-check-write sequences
//! (idempotency, "is this item still queued?") need no locks.
//!
//! Supervision: a job that panics while it runs (its closure, or the core's `Job::apply`)
//! fails alone: its batch is dropped unwritten, its submitter gets
//! [`StoreError::Panicked`], and the thread goes on with the next job. A panic anywhere
//! else on the thread (the journal's write or fsync, the wake hook) stops the committer,
//! since fjall's state is then unknown: [`Health`] records it (readiness fails,
//! `hotline_committer_running` is 0), and every job waiting or submitted later fails at
//! once with [`StoreError::CommitterStopped`] instead of waiting forever.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fjall::{OwnedWriteBatch as WriteBatch, PersistMode};
use hotline_core::{commit_group, Job as CoreJob, JobOutcome, Journal, Staged};
use tokio::sync::{mpsc, oneshot};

use super::queues::QueueDeltas;
use super::records::{encode, Account, DeliveredRecord, IdempotencyRecord, PushToken, StoredItem};
use super::{keys, maintenance, Compacted, Durability, Health, Store, StoreError};

/// Called with each user whose queue gained durable items, after the fsync.
pub type WakeHook = Arc<dyn Fn(&str) + Send + Sync>;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job as the thread sees it: stages its writes and says what completes it.
type Job = Box<dyn FnOnce(&mut Txn<'_>) -> Staged<Completion> + Send>;

/// Most jobs applied before one shared fsync.
const MAX_GROUP: usize = 1024;
/// Ids reserved on disk at a time; after a restart allocation resumes above the reservation.
const ID_BLOCK: u64 = 1 << 20;
/// Capacity of the commit queue; submitters wait when it is full.
const QUEUE_CAPACITY: usize = 4096;

/// Handle for submitting jobs to the committer thread. Cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
    stats: Arc<CommitStats>,
    /// Where the thread records that it stopped.
    health: Arc<Health>,
}

/// Counters of the committer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Groups committed, each with one fsync (in `fsync` durability).
    pub groups: AtomicU64,
    /// Jobs committed.
    pub jobs: AtomicU64,
}

/// A submitted job whose result arrives once its writes are durable.
pub struct Pending<T> {
    rx: oneshot::Receiver<Result<T, StoreError>>,
    health: Arc<Health>,
}

impl<T> Pending<T> {
    /// Waits for the job's result, available after the fsync that covers its writes.
    pub async fn wait(self) -> Result<T, StoreError> {
        self.await
    }
}

/// A `Pending` is also a future of its result, so a session can poll it in place (by
/// `&mut`) among other events.
impl<T> std::future::Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let health = self.health.clone();
        std::pin::Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or_else(|_| Err(gone(&health))))
    }
}

/// The error for a job the committer dropped unanswered: it stopped, or it shut down.
fn gone(health: &Health) -> StoreError {
    match health.committer_stop_cause() {
        Some(cause) => StoreError::CommitterStopped(cause),
        None => StoreError::Closed,
    }
}

/// The sending half of a job's answer. Dropped unanswered while its job panics, it answers
/// [`StoreError::Panicked`]; dropped otherwise (the committer stopped or shut down with the
/// job still queued), the waiting [`Pending`] learns why from the store's [`Health`].
struct Reply<T>(Option<oneshot::Sender<Result<T, StoreError>>>);

impl<T> Reply<T> {
    fn new() -> (Reply<T>, oneshot::Receiver<Result<T, StoreError>>) {
        let (tx, rx) = oneshot::channel();
        (Reply(Some(tx)), rx)
    }

    fn send(mut self, result: Result<T, StoreError>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(result);
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(Err(StoreError::Panicked));
            }
        }
    }
}

/// The view a job has while it runs: reads, id allocation and staged writes.
pub struct Txn<'a> {
    store: &'a Store,
    ids: &'a mut IdAllocator,
    batch: WriteBatch,
    woken: Vec<String>,
    /// Bytes of keys and values staged, for maintenance.
    bytes: u64,
    /// Deletions staged per [`Compacted`] keyspace, for maintenance.
    deleted: [u64; 3],
    /// Queue lengths this transaction changes, for the queue index once it commits.
    queue_deltas: QueueDeltas,
    /// Queue keys this transaction touched: whether each holds an item after it.
    queue_keys: HashMap<Vec<u8>, bool>,
}

impl Txn<'_> {
    fn staged(&mut self, key: usize, value: usize, deleted: Option<Compacted>) {
        self.bytes += (key + value) as u64;
        if let Some(which) = deleted {
            self.deleted[which as usize] += 1;
        }
    }
}

impl Txn<'_> {
    /// The store, for reads. Reads see every job committed before this one.
    pub fn store(&self) -> &Store {
        self.store
    }

    /// A new item id, greater than every id allocated before (also across restarts).
    pub fn alloc_id(&mut self) -> Result<u64, StoreError> {
        self.ids.alloc(self.store)
    }

    /// Stages `item` as item `id` of `user`'s queue; the user's session is woken once durable.
    /// `id` comes from [`Txn::alloc_id`], so it is new: the queue grows by one.
    pub fn enqueue(&mut self, user: &str, id: u64, item: &StoredItem) {
        let (key, value) = (keys::queue_key(user, id), encode(item));
        self.staged(key.len(), value.len(), None);
        if self.queue_keys.insert(key.clone(), true) != Some(true) {
            self.queue_deltas.add(user, 1);
        }
        self.batch.insert(&self.store.queues, key, value);
        self.woken.push(user.to_string());
    }

    /// Stages the removal of item `id` from `user`'s queue (the queue shrinks only if the
    /// item is there: a read of the key, unless this transaction staged it).
    pub fn dequeue(&mut self, user: &str, id: u64) -> Result<(), StoreError> {
        let key = keys::queue_key(user, id);
        let present = match self.queue_keys.get(&key) {
            Some(&present) => present,
            None => self.store.queues.contains_key(&key)?,
        };
        if present {
            self.queue_deltas.add(user, -1);
        }
        self.queue_keys.insert(key.clone(), false);
        self.staged(key.len(), 0, Some(Compacted::Queues));
        self.batch.remove(&self.store.queues, key);
        Ok(())
    }

    /// [`Txn::dequeue`] of an item this job just listed from the store (no second read).
    pub(super) fn dequeue_listed(&mut self, user: &str, id: u64) {
        let key = keys::queue_key(user, id);
        if self.queue_keys.insert(key.clone(), false) != Some(false) {
            self.queue_deltas.add(user, -1);
        }
        self.staged(key.len(), 0, Some(Compacted::Queues));
        self.batch.remove(&self.store.queues, key);
    }

    /// Items in `user`'s queue, with this transaction's staged changes.
    pub fn queue_len(&self, user: &str) -> u64 {
        (self.store.queue_index.len(user) as i64 + self.queue_deltas.of(user)).max(0) as u64
    }

    /// Stages the removal of the account record of `phone`.
    pub fn delete_account(&mut self, phone: &str) {
        self.staged(phone.len(), 0, None);
        self.batch.remove(&self.store.accounts, phone);
    }

    /// Stages the account record of `phone`.
    pub fn put_account(&mut self, phone: &str, account: &Account) {
        let value = encode(account);
        self.staged(phone.len(), value.len(), None);
        self.batch.insert(&self.store.accounts, phone, value);
    }

    /// Stages the idempotency record of `(sender, client_id)`.
    pub fn put_idempotency(&mut self, sender: &str, client_id: u64, record: &IdempotencyRecord) {
        let (key, value) = (keys::idempotency_key(sender, client_id), encode(record));
        self.staged(key.len(), value.len(), None);
        self.batch.insert(&self.store.idempotency, key, value);
    }

    /// Stages the removal of an idempotency record.
    pub fn delete_idempotency(&mut self, key: &[u8]) {
        self.staged(key.len(), 0, Some(Compacted::Idempotency));
        self.batch.remove(&self.store.idempotency, key.to_vec());
    }

    /// Stages the record that `reader` accepted message `id` (what a later `Read` must name).
    pub fn put_delivered(&mut self, reader: &str, id: u64, record: &DeliveredRecord) {
        let (key, value) = (keys::queue_key(reader, id), encode(record));
        self.staged(key.len(), value.len(), None);
        self.batch.insert(&self.store.delivered, key, value);
    }

    /// Stages the removal of the delivered record of message `id` for `reader`.
    pub fn delete_delivered(&mut self, reader: &str, id: u64) {
        let key = keys::queue_key(reader, id);
        self.staged(key.len(), 0, Some(Compacted::Delivered));
        self.batch.remove(&self.store.delivered, key);
    }

    /// Stages `phone`'s push token (`None`: its removal; see `push.rs`).
    pub fn put_push_token(&mut self, phone: &str, token: Option<&PushToken>) {
        match token {
            Some(token) => {
                let value = encode(token);
                self.staged(phone.len(), value.len(), None);
                self.batch.insert(&self.store.push, phone, value);
            }
            None => {
                self.staged(phone.len(), 0, None);
                self.batch.remove(&self.store.push, phone);
            }
        }
    }
}

impl Committer {
    /// Starts the committer thread. It stops when every handle is dropped.
    pub fn start(store: Store, durability: Durability, wake: WakeHook) -> Result<Self, StoreError> {
        let ids = IdAllocator::recover(&store)?;
        store.publish_durable(ids.next - 1);
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stats = Arc::new(CommitStats::default());
        let thread_stats = stats.clone();
        let health = store.health.clone();
        // The maintenance thread ends when the committer's thread does (it drops `stop`).
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        maintenance::start(store.clone(), stopped).map_err(|e| StoreError::Fjall(Arc::new(fjall::Error::Io(e))))?;
        std::thread::Builder::new()
            .name("hotline-committer".into())
            .spawn(move || {
                let _stop = stop;
                supervise(FjallJournal { store, ids }, durability, wake, rx, &thread_stats)
            })
            .map_err(|e| StoreError::Fjall(Arc::new(fjall::Error::Io(e))))?;
        Ok(Committer { tx, stats, health })
    }

    /// The error for a job the thread can no longer take.
    fn gone(&self) -> StoreError {
        gone(&self.health)
    }

    fn pending<T>(&self, rx: oneshot::Receiver<Result<T, StoreError>>) -> Pending<T> {
        Pending { rx, health: self.health.clone() }
    }

    /// Queues `job`; jobs run in the order they were submitted. Returns once the job is
    /// queued, so a caller can submit several in order and wait for them later.
    pub async fn submit<T, F>(&self, job: F) -> Result<Pending<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = Reply::new();
        let job: Job = Box::new(move |txn| {
            let result = job(txn);
            if result.is_err() {
                // Nothing to write: answered at once.
                tx.send(result);
                return Staged::Nothing(Box::new(|_| {}));
            }
            Staged::Writes(Box::new(move |durable| {
                tx.send(result.and_then(|v| durable.map(|()| v)));
            }))
        });
        self.tx.send(job).await.map_err(|_| self.gone())?;
        Ok(self.pending(rx))
    }

    /// Queues one of the core's storage jobs. A job that writes is answered once durable;
    /// one that only reads ([`CoreJob::CheckDelivered`]), fails, or refuses and stages
    /// nothing (a send to a full queue: [`JobOutcome::refused`]) as soon as it ran, in
    /// commit order.
    pub async fn submit_job(&self, job: CoreJob) -> Result<Pending<JobOutcome>, StoreError> {
        let writes = job.writes();
        let (tx, rx) = Reply::new();
        let job: Job = Box::new(move |txn| match job.apply(txn) {
            Ok(outcome) if writes && !outcome.refused() => {
                Staged::Writes(Box::new(move |durable: Result<(), StoreError>| tx.send(durable.map(|()| outcome))))
            }
            result => {
                tx.send(result);
                Staged::Nothing(Box::new(|_| {}))
            }
        });
        self.tx.send(job).await.map_err(|_| self.gone())?;
        Ok(self.pending(rx))
    }

    /// Runs a read on the committer thread, in submission order: it sees the writes of every
    /// job submitted before it (durable or not), and answers at once, without waiting for
    /// an fsync. For checks that must follow a session's earlier requests (a `Read` after its
    /// `Ack`).
    pub async fn query<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = Reply::new();
        let job: Job = Box::new(move |txn| {
            tx.send(read(txn.store));
            // Nothing to commit: no batch is written for it.
            Staged::Nothing(Box::new(|_| {}))
        });
        self.tx.send(job).await.map_err(|_| self.gone())?;
        self.pending(rx).await
    }

    /// Runs `job` and waits until its writes are durable.
    pub async fn commit<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(job).await?.wait().await
    }

    /// Counters since start.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Jobs waiting in the commit queue (a health gauge).
    pub fn queue_len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The thread's body: [`run`] until every handle is gone, or until a panic outside a job
/// stops it; then records why in [`Health`] and drops the jobs still queued, whose
/// submitters learn the cause from it.
fn supervise(mut journal: FjallJournal, durability: Durability, wake: WakeHook, mut rx: mpsc::Receiver<Job>, stats: &CommitStats) {
    let health = journal.store.health.clone();
    let stopped = catch_unwind(AssertUnwindSafe(|| run(&mut journal, durability, &wake, &mut rx, stats)));
    if let Err(panic) = stopped {
        // The jobs of the group that was running were answered `Panicked` as the panic
        // dropped them; record the stop before dropping the queue, so its jobs (and every
        // later submission) get `CommitterStopped`.
        health.committer_stopped(format!("it panicked: {}", panic_text(&*panic)));
        rx.close();
        drop(rx);
    }
}

/// The text of a panic's payload.
fn panic_text(panic: &(dyn Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => text.to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".into(),
    }
}

fn run(journal: &mut FjallJournal, durability: Durability, wake: &WakeHook, rx: &mut mpsc::Receiver<Job>, stats: &CommitStats) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let health = journal.store.health.clone();
        let health = &health;
        // A job that panics fails alone: its staged writes are dropped unwritten (the
        // journal writes nothing for `Staged::Nothing`), its `Reply` answered `Panicked`
        // as the panic dropped it.
        let guarded = group.drain(..).map(|job| {
            move |txn: &mut Txn<'_>| match catch_unwind(AssertUnwindSafe(|| job(txn))) {
                Ok(staged) => staged,
                Err(panic) => {
                    health.job_panicked(&panic_text(&*panic));
                    Staged::Nothing(Box::new(|_| {}) as Completion)
                }
            }
        });
        let report = commit_group(journal, durability, guarded);
        for failure in &report.failures {
            // Logged once by `Health`; senders get `Retryable`, readiness fails.
            journal.store.health().failed(failure);
        }
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats.jobs.fetch_add(report.written as u64, Ordering::Relaxed);
        if let Some(id) = report.durable_id {
            journal.store.publish_durable(id);
            for user in &report.woken {
                wake(user);
            }
        }
        for (completion, result) in report.completions {
            completion(result);
        }
    }
}

/// fjall as the core's [`Journal`]: a transaction is a write batch, a sync is an fsync of
/// fjall's journal.
struct FjallJournal {
    store: Store,
    ids: IdAllocator,
}

impl Journal for FjallJournal {
    type Error = StoreError;
    type Txn<'t> = Txn<'t>;

    fn transact<D>(&mut self, stage: impl FnOnce(&mut Txn<'_>) -> Staged<D>) -> (Staged<D>, Result<Vec<String>, StoreError>) {
        let mut txn = Txn {
            store: &self.store,
            ids: &mut self.ids,
            batch: self.store.db.batch(),
            woken: Vec::new(),
            bytes: 0,
            deleted: [0; 3],
            queue_deltas: QueueDeltas::default(),
            queue_keys: HashMap::new(),
        };
        let staged = stage(&mut txn);
        if let Staged::Nothing(_) = staged {
            return (staged, Ok(Vec::new()));
        }
        let Txn { batch, woken, bytes, deleted, queue_deltas, .. } = txn;
        let entries = batch.len() as u64;
        match batch.commit() {
            Ok(()) => {
                // Visible to the next job, so the index moves with it (see `queues.rs`).
                self.store.queue_index.apply(queue_deltas);
                self.store.activity.wrote(bytes, entries, &deleted);
                (staged, Ok(woken))
            }
            Err(e) => (staged, Err(StoreError::from(e))),
        }
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.store.db.persist(PersistMode::SyncData).map_err(StoreError::from)
    }

    fn allocated(&self) -> u64 {
        self.ids.next - 1
    }
}

/// The fjall transaction as the core's jobs see it.
impl hotline_core::Txn for Txn<'_> {
    type Error = StoreError;

    fn alloc_id(&mut self) -> Result<u64, StoreError> {
        Txn::alloc_id(self)
    }

    fn item(&self, user: &str, id: u64) -> Result<Option<StoredItem>, StoreError> {
        self.store.item(user, id)
    }

    fn idempotency(&self, sender: &str, client_id: u64) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.store.idempotency(sender, client_id)
    }

    fn delivered(&self, reader: &str, id: u64) -> Result<Option<DeliveredRecord>, StoreError> {
        self.store.delivered(reader, id)
    }

    fn account(&self, phone: &str) -> Result<Option<Account>, StoreError> {
        self.store.account(phone)
    }

    fn enqueue(&mut self, user: &str, id: u64, item: &StoredItem) {
        Txn::enqueue(self, user, id, item)
    }

    fn dequeue(&mut self, user: &str, id: u64) -> Result<(), StoreError> {
        Txn::dequeue(self, user, id)
    }

    fn queue_len(&self, user: &str) -> Result<u64, StoreError> {
        Ok(Txn::queue_len(self, user))
    }

    fn put_account(&mut self, phone: &str, account: &Account) {
        Txn::put_account(self, phone, account)
    }

    fn put_idempotency(&mut self, sender: &str, client_id: u64, record: &IdempotencyRecord) {
        Txn::put_idempotency(self, sender, client_id, record)
    }

    fn put_delivered(&mut self, reader: &str, id: u64, record: &DeliveredRecord) {
        Txn::put_delivered(self, reader, id, record)
    }

    fn delete_delivered(&mut self, reader: &str, id: u64) {
        Txn::delete_delivered(self, reader, id)
    }

    fn put_push_token(&mut self, phone: &str, token: Option<&PushToken>) {
        Txn::put_push_token(self, phone, token)
    }
}

/// Hands out item ids in increasing order, reserving blocks on disk (hi-lo) so ids never
/// repeat across restarts.
pub(super) struct IdAllocator {
    next: u64,
    reserved: u64,
}

impl IdAllocator {
    fn recover(store: &Store) -> Result<Self, StoreError> {
        let reserved = match store.meta.get(keys::ID_HIGH_WATER)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                keyspace: "meta",
                detail: "id high water is not 8 bytes".into(),
            })?),
            None => 1,
        };
        Ok(IdAllocator { next: reserved, reserved })
    }

    fn alloc(&mut self, store: &Store) -> Result<u64, StoreError> {
        if self.next >= self.reserved {
            // Committed before the job's own batch, so the journal holds it first.
            let reserved = self.reserved + ID_BLOCK;
            let mut batch = store.db.batch();
            batch.insert(&store.meta, keys::ID_HIGH_WATER, reserved.to_be_bytes());
            batch.commit()?;
            self.reserved = reserved;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}
