//! Group commit as a pure step: run a group of jobs one at a time, each in its own atomic
//! batch, then make them all durable with one sync. The committer thread (a driver) only
//! collects a group, calls [`commit_group`], and carries out its [`GroupReport`] in order:
//! raise the durable watermark, wake the users, complete the jobs.
//!
//! The rule this step keeps: a job's completion carries the result of the sync that covers
//! its writes, so nothing is answered as durable before it is, and a failed sync fails
//! every job of its group.

use std::collections::BTreeSet;

use crate::txn::Txn;

/// How hard a commit tries to be durable before `Sent` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync the journal once per group of commits: survives power loss.
    #[default]
    Fsync,
    /// hand writes to the OS only: survives a broker crash, not a power loss.
    Buffered,
}

/// What a job did to its transaction, with what completes it.
#[derive(Debug)]
pub enum Staged<D> {
    /// It staged writes: commit them, and complete `D` once they are durable (or failed).
    Writes(D),
    /// Nothing to write (a read, or the job failed): complete `D` at once, successfully.
    Nothing(D),
}

/// Where jobs are written: fjall in the broker, memory in tests and the simulator.
pub trait Journal {
    /// The journal's error; cloned to every job of a failed group.
    type Error: Clone;
    /// A transaction: reads see every batch written before it.
    type Txn<'t>: Txn<Error = Self::Error>
    where
        Self: 't;

    /// Runs `stage` on a fresh transaction; if it staged writes, writes them as one atomic
    /// batch (visible to later transactions, not yet durable) and answers the users whose
    /// queues grew.
    fn transact<D>(&mut self, stage: impl FnOnce(&mut Self::Txn<'_>) -> Staged<D>) -> (Staged<D>, Result<Vec<String>, Self::Error>);
    /// Makes every batch written so far durable (an fsync).
    fn sync(&mut self) -> Result<(), Self::Error>;
    /// The highest item id allocated so far (0 before the first).
    fn allocated(&self) -> u64;
}

/// What a group did, for the driver to carry out in this order: publish `durable_id`, wake
/// `woken`, then complete each job with its result.
#[derive(Debug)]
pub struct GroupReport<D, E> {
    /// Each job's completion, in submission order, with the result it gets: success, the
    /// failure of its own batch, or the failure of the group's sync.
    pub completions: Vec<(D, Result<(), E>)>,
    /// The new durable watermark, when the group wrote and its writes are durable.
    pub durable_id: Option<u64>,
    /// Users whose queues gained durable items (empty if the sync failed).
    pub woken: BTreeSet<String>,
    /// Every failed batch write and sync, for the store's health.
    pub failures: Vec<E>,
    /// Jobs whose batches were written.
    pub written: usize,
}

/// Runs one group of jobs through `journal`: each job in its own batch, in order; then one
/// sync for all of them (none in [`Durability::Buffered`], none if nothing was written).
pub fn commit_group<J, D, F>(journal: &mut J, durability: Durability, jobs: impl IntoIterator<Item = F>) -> GroupReport<D, J::Error>
where
    J: Journal,
    F: FnOnce(&mut J::Txn<'_>) -> Staged<D>,
{
    let mut completions = Vec::new();
    let mut failures = Vec::new();
    let mut written = Vec::new();
    let mut woken = BTreeSet::new();
    for job in jobs {
        match journal.transact(job) {
            (Staged::Nothing(done), _) => completions.push((done, Ok(()))),
            (Staged::Writes(done), Ok(users)) => {
                woken.extend(users);
                written.push(completions.len());
                completions.push((done, Ok(())));
            }
            (Staged::Writes(done), Err(e)) => {
                failures.push(e.clone());
                completions.push((done, Err(e)));
            }
        }
    }
    if written.is_empty() {
        // Nothing new to make durable, and no sync that could vouch for earlier writes: a
        // batch written before a failed sync is visible but not durable, and must stay
        // below the watermark.
        return GroupReport { completions, durable_id: None, woken, failures, written: 0 };
    }
    let synced = match durability {
        Durability::Fsync => journal.sync(),
        Durability::Buffered => Ok(()),
    };
    let durable_id = match synced {
        Ok(()) => Some(journal.allocated()),
        Err(e) => {
            // The planted bug the simulator must catch (`--features mutation-ack-before-fsync`):
            // jobs answered as if durable although the sync failed.
            let planted_bug = cfg!(feature = "mutation-ack-before-fsync");
            for &i in written.iter().filter(|_| !planted_bug) {
                completions[i].1 = Err(e.clone());
            }
            failures.push(e);
            woken.clear();
            None
        }
    };
    GroupReport { completions, durable_id, woken, failures, written: written.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryStore, MemoryTxn};
    use crate::records::StoredItem;

    fn enqueue(txn: &mut MemoryTxn<'_>) -> Staged<u64> {
        let id = txn.alloc_id().unwrap();
        txn.enqueue("+15550000002", id, &StoredItem::Message { from: "+15550000001".into(), sent_at_ms: 1, body: vec![] });
        Staged::Writes(id)
    }

    fn read_only(_: &mut MemoryTxn<'_>) -> Staged<u64> {
        Staged::Nothing(0)
    }

    #[test]
    fn a_failed_fsync_fails_every_job_of_its_group_and_raises_no_watermark() {
        let mut store = MemoryStore::new();
        store.fail_fsync_at(1);
        let report = commit_group(&mut store, Durability::Fsync, [enqueue as fn(&mut MemoryTxn<'_>) -> Staged<u64>, enqueue]);
        assert!(report.completions.iter().all(|(_, r)| r.is_err()));
        assert_eq!(report.durable_id, None);
        assert!(report.woken.is_empty());
        assert_eq!(report.failures.len(), 1);
    }

    #[test]
    fn a_group_without_writes_after_a_failed_fsync_publishes_nothing() {
        let mut store = MemoryStore::new();
        store.fail_fsync_at(1);
        commit_group(&mut store, Durability::Fsync, [enqueue as fn(&mut MemoryTxn<'_>) -> Staged<u64>]);
        // The item is written (visible) but not durable; a later read-only group must not
        // vouch for it.
        let report = commit_group(&mut store, Durability::Fsync, [read_only as fn(&mut MemoryTxn<'_>) -> Staged<u64>]);
        assert_eq!(report.durable_id, None);
    }

    #[test]
    fn one_sync_covers_a_whole_group_and_then_the_watermark_rises() {
        let mut store = MemoryStore::new();
        let report = commit_group(&mut store, Durability::Fsync, [enqueue as fn(&mut MemoryTxn<'_>) -> Staged<u64>, enqueue, read_only]);
        assert!(report.completions.iter().all(|(_, r)| r.is_ok()));
        assert_eq!(report.durable_id, Some(2));
        assert_eq!(report.written, 2);
        assert_eq!(store.durable().queues.len(), 2);
    }
}
