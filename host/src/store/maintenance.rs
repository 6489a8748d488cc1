//! Gives disk back after a burst of writes: once writes pause, flushes the memtables to
//! tables, seals fjall's journal (write-ahead log) so the part the tables now hold is
//! deleted, and compacts a keyspace whose deletions outnumber what it still holds, which
//! drops the deleted items and their tombstones. Also run at shutdown, so a stopped broker
//! leaves a small journal and starts without replaying one.
//!
//! Why it is needed: fjall deletes a journal only once it is sealed, and seals it only past
//! 64 MB (see `vendor/README.md`); a deleted queue item stays on disk as the item plus a
//! tombstone until a compaction into the last level meets both. So after offline queues are
//! drained, the store would keep its peak size (its journal) for good.
//!
//! Durability is unchanged: commits still fsync their group's journal writes; a flush writes
//! tables before the journal that held their writes is deleted (fjall's own rule), and
//! rotating the journal fsyncs the sealed one before the next write goes to the new one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fjall::{Keyspace, PersistMode};

use super::{keys, Store, StoreError};

/// How often the thread looks at the write counters.
const TICK: Duration = Duration::from_secs(1);
/// Journal bytes written since it was last sealed before an idle moment is used to seal it.
/// Below this, flushing would only make small tables.
pub const JOURNAL_SLACK: u64 = 1 << 20;
/// Deletions in a keyspace since its last compaction before it may be compacted (and only if
/// they are about as many as the items it still holds, so a compaction rewrites no more than
/// it reclaims).
pub const MIN_DELETES: u64 = 1_000;
/// Longest wait for fjall to flush a memtable.
const FLUSH_WAIT: Duration = Duration::from_secs(60);

/// What the store wrote, for deciding when maintenance pays.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Batches and plugin kv writes since start; unchanged for a tick means writes paused.
    writes: AtomicU64,
    /// Approximate bytes written to the journal since it was last sealed.
    journal_bytes: AtomicU64,
    /// Deletions since the keyspace's last compaction, per [`Compacted`] keyspace.
    deleted: [AtomicU64; Compacted::ALL.len()],
}

/// The keyspaces whose entries are deleted in bulk, so maintenance may compact them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Compacted {
    Queues = 0,
    Delivered = 1,
    Idempotency = 2,
}

impl Compacted {
    const ALL: [Compacted; 3] = [Compacted::Queues, Compacted::Delivered, Compacted::Idempotency];
}

/// Bytes of one journal entry besides its key and value (header, checksum, sequence number).
const ENTRY_OVERHEAD: u64 = 24;

impl Activity {
    /// Counts a committed batch (or a plugin kv write) of `bytes` of keys and values and
    /// `entries` entries, with `deleted` deletions per [`Compacted`] keyspace.
    pub(crate) fn wrote(&self, bytes: u64, entries: u64, deleted: &[u64; Compacted::ALL.len()]) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.journal_bytes.fetch_add(bytes + entries * ENTRY_OVERHEAD, Ordering::Relaxed);
        for (counter, n) in self.deleted.iter().zip(deleted) {
            if *n > 0 {
                counter.fetch_add(*n, Ordering::Relaxed);
            }
        }
    }
}

/// What a [`Store::checkpoint`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Whether the journal was sealed (and what tables hold of it deleted).
    pub journal_sealed: bool,
    /// Keyspaces compacted.
    pub compacted: Vec<&'static str>,
    /// Bytes on disk before and after.
    pub disk_before: u64,
    pub disk_after: u64,
}

impl Store {
    fn compacted_keyspace(&self, which: Compacted) -> (&'static str, &Keyspace) {
        match which {
            Compacted::Queues => ("queues", &self.queues),
            Compacted::Delivered => ("delivered", &self.delivered),
            Compacted::Idempotency => ("idempotency", &self.idempotency),
        }
    }

    /// Every keyspace: a journal is deleted only once every keyspace it holds writes of has
    /// flushed them, so one left out here (a token deleted by a registration, say) would
    /// keep every journal after it on disk.
    pub(super) fn keyspaces(&self) -> [&Keyspace; 8] {
        [&self.accounts, &self.queues, &self.idempotency, &self.plugin_kv, &self.meta, &self.delivered, &self.media, &self.push]
    }

    /// Whether a checkpoint would do anything: journal written past [`JOURNAL_SLACK`], or a
    /// keyspace due for compaction.
    pub fn checkpoint_due(&self) -> bool {
        self.activity.journal_bytes.load(Ordering::Relaxed) >= JOURNAL_SLACK || Compacted::ALL.iter().any(|&k| self.compaction_due(k))
    }

    fn compaction_due(&self, which: Compacted) -> bool {
        let deleted = self.activity.deleted[which as usize].load(Ordering::Relaxed);
        let (_, keyspace) = self.compacted_keyspace(which);
        // Entries count each deleted item's tombstone, and its value unless a flush already
        // dropped it: at least `entries - 2 * deleted` are live, so `3 * deleted >= entries`
        // holds when the deletions are at least as many as the live items.
        deleted >= MIN_DELETES && deleted * 3 >= keyspace.approximate_len() as u64
    }

    /// Flushes every memtable to tables, seals the journal (deleting what the tables hold
    /// of it), then compacts the keyspaces due for it. Safe while commits go on (they land
    /// in the new journal); blocks for as long as the flushes and compactions take.
    pub fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let _one_at_a_time = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        // After a failed write or fsync, memtables may hold writes whose commit failed: they
        // are not made durable behind the committer's back.
        if self.health.is_poisoned() {
            return Err(StoreError::Poisoned);
        }
        // Writes from now on may or may not be in the journal sealed below: count them
        // toward the next checkpoint.
        let written = self.activity.journal_bytes.swap(0, Ordering::Relaxed);
        self.checkpoint_written(written).inspect_err(|_| {
            self.activity.journal_bytes.fetch_add(written, Ordering::Relaxed);
        })
    }

    fn checkpoint_written(&self, written: u64) -> Result<Checkpoint, StoreError> {
        let disk_before = self.disk_space()?;
        let mut done = Checkpoint { disk_before, ..Checkpoint::default() };
        if written == 0 && !Compacted::ALL.iter().any(|&k| self.compaction_due(k)) {
            done.disk_after = disk_before;
            return Ok(done);
        }
        // Tables first: a compaction sees only the tombstones already in tables (and a
        // flush drops the items deleted while still in the memtable, keeping their
        // tombstones).
        self.flush_memtables(&self.keyspaces())?;
        // Everything written before this point is in tables: the journal holding it is
        // sealed and deleted at once, with any sealed earlier. (Before compacting: fjall
        // keeps a sealed journal while a keyspace it holds writes of has no table, as a
        // compaction that drops every entry leaves it.)
        self.db.rotate_journal()?;
        done.journal_sealed = true;
        for which in Compacted::ALL.into_iter().filter(|&k| self.compaction_due(k)) {
            let deleted = self.activity.deleted[which as usize].load(Ordering::Relaxed);
            let (name, keyspace) = self.compacted_keyspace(which);
            let before = keyspace.approximate_len();
            keyspace.major_compact()?;
            tracing::debug!(keyspace = name, entries_before = before, entries_after = keyspace.approximate_len(), "compacted");
            self.activity.deleted[which as usize].fetch_sub(deleted, Ordering::Relaxed);
            done.compacted.push(name);
        }
        if !done.compacted.is_empty() {
            // fjall deletes the tables a compaction replaced once a later write has moved its
            // garbage-collection mark past the compaction, at the next memtable flush. Make
            // both happen now: one small write, flushed.
            let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            self.meta.insert(keys::LAST_COMPACTION, now_ms.to_be_bytes())?;
            self.flush_memtables(&[&self.meta])?;
        }
        done.disk_after = self.disk_space()?;
        Ok(done)
    }

    /// Seals the memtables of `keyspaces` and waits until fjall has written them as tables.
    fn flush_memtables(&self, keyspaces: &[&Keyspace]) -> Result<(), StoreError> {
        for keyspace in keyspaces {
            keyspace.rotate_memtable()?;
        }
        let deadline = Instant::now() + FLUSH_WAIT;
        while keyspaces.iter().any(|k| k.sealed_memtable_count() > 0) {
            // A failed flush poisons the database: say so instead of waiting on.
            self.db.persist(PersistMode::Buffer)?;
            if Instant::now() > deadline {
                return Err(StoreError::Fjall(std::sync::Arc::new(fjall::Error::Io(std::io::Error::other(format!(
                    "memtables not flushed within {FLUSH_WAIT:?}"
                ))))));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// Starts the thread that runs [`Store::checkpoint`] once writes pause (no write for a
/// [`TICK`]) and one is due. It ends as soon as `stop` is dropped (the committer's thread
/// holds it), so it never keeps the database open after the committer is gone.
pub(crate) fn start(store: Store, stop: mpsc::Receiver<()>) -> std::io::Result<()> {
    std::thread::Builder::new().name("hotline-store-maintenance".into()).spawn(move || {
        let mut last = store.activity.writes.load(Ordering::Relaxed);
        // The write count at a failed checkpoint: not tried again before the next write.
        let mut failed_at = None;
        loop {
            match stop.recv_timeout(TICK) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let writes = store.activity.writes.load(Ordering::Relaxed);
            let busy = writes != last;
            last = writes;
            if busy || failed_at == Some(writes) || !store.checkpoint_due() || store.health.is_poisoned() {
                continue;
            }
            let started = Instant::now();
            match store.checkpoint() {
                Ok(done) => tracing::info!(
                    journal_sealed = done.journal_sealed,
                    compacted = ?done.compacted,
                    disk_before = done.disk_before,
                    disk_after = done.disk_after,
                    ms = started.elapsed().as_millis() as u64,
                    "storage maintenance after writes paused"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "storage maintenance failed; it is tried again after the next writes");
                    failed_at = Some(writes);
                }
            }
        }
    })?;
    Ok(())
}

/// Bytes the files under `dir` occupy on disk (allocated blocks: fjall's journal is a
/// sparse file whose length says 64 MiB before it holds anything).
pub(crate) fn allocated_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Deleted meanwhile (fjall removes journals and tables as it goes).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            match allocated_bytes(&entry.path()) {
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        } else {
            total += allocated(&meta);
        }
    }
    Ok(total)
}

/// Bytes fjall's journal files in `dir` occupy on disk (0 if they cannot be read).
pub(crate) fn journal_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| allocated(&m))
        .sum()
}

#[cfg(unix)]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}
