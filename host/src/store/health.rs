//! Whether storage accepts writes: set by the committer when a journal write or fsync fails
//! or when its thread stops, read by readiness, metrics and the log. A failure is logged
//! once, when storage changes from healthy to failing; later failures are counted, not
//! logged one per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::StoreError;

/// The storage's health, shared by every handle of a [`Store`](super::Store).
#[derive(Debug, Default)]
pub struct Health {
    /// The failure that poisoned storage. fjall poisons itself on any failed journal write
    /// or fsync and refuses every later write (consistency cannot be guaranteed after
    /// that), so this is set once and only a restart clears it.
    poisoned_by: OnceLock<String>,
    /// Writes refused since then (each commit group, or job, that failed).
    failed_writes: AtomicU64,
    /// Why the committer thread stopped (a panic outside a job), if it did: nothing can be
    /// written until a restart.
    committer_stopped: OnceLock<String>,
    /// Jobs that panicked on the committer thread (each failed alone; the thread went on).
    job_panics: AtomicU64,
}

/// What an operator is told about storage (readiness, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The failure that made storage refuse writes, if it does.
    pub poisoned_by: Option<String>,
    /// Writes refused since start.
    pub failed_writes: u64,
    /// Why the committer thread stopped, if it did.
    pub committer_stopped: Option<String>,
    /// Jobs that panicked on the committer thread since start.
    pub job_panics: u64,
}

impl HealthReport {
    /// Why the broker cannot accept messages (for `/readyz` and `/healthz`), if it cannot:
    /// a stopped committer, storage that refuses writes, or both. Only a restart clears
    /// either.
    pub fn refusal(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if let Some(cause) = &self.committer_stopped {
            reasons.push(format!("the storage committer stopped: {cause}; restart the broker\n"));
        }
        if let Some(cause) = &self.poisoned_by {
            reasons.push(format!(
                "storage refuses writes since: {cause} ({} writes refused); fix the cause (e.g. free disk space) and restart the broker\n",
                self.failed_writes
            ));
        }
        (!reasons.is_empty()).then(|| reasons.concat())
    }
}

impl Health {
    /// Records a failed write. Only the first one is logged (the change of state); the
    /// rest are counted and reported by [`Health::report`] and at shutdown.
    pub fn failed(&self, error: &StoreError) {
        self.failed_writes.fetch_add(1, Ordering::Relaxed);
        let mut first = false;
        self.poisoned_by.get_or_init(|| {
            first = true;
            error.to_string()
        });
        if first {
            tracing::error!(
                "storage write failed: {error}; storage refuses every write until the broker is restarted \
                 (senders get Retryable; /readyz fails; further failures are counted in \
                 hotline_storage_failed_writes_total, not logged)"
            );
        }
    }

    /// Records that a job panicked on the committer thread (it failed; the thread goes on).
    pub fn job_panicked(&self, panic: &str) {
        let n = self.job_panics.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(job_panics = n, "a storage job panicked: {panic}; that job failed, nothing of it was written, the committer goes on");
    }

    /// Records that the committer thread stopped: every later write fails at once, and
    /// readiness fails, until a restart.
    pub fn committer_stopped(&self, cause: String) {
        tracing::error!(
            "the storage committer stopped: {cause}; every write fails until the broker is restarted \
             (senders get Retryable; /readyz and /healthz fail; hotline_committer_running is 0)"
        );
        let _ = self.committer_stopped.set(cause);
    }

    /// Why the committer thread stopped, if it did.
    pub fn committer_stop_cause(&self) -> Option<String> {
        self.committer_stopped.get().cloned()
    }

    /// Whether storage refuses writes until a restart.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned_by.get().is_some()
    }

    pub fn report(&self) -> HealthReport {
        HealthReport {
            poisoned_by: self.poisoned_by.get().cloned(),
            failed_writes: self.failed_writes.load(Ordering::Relaxed),
            committer_stopped: self.committer_stopped.get().cloned(),
            job_panics: self.job_panics.load(Ordering::Relaxed),
        }
    }

    /// Logs the count of refused writes, if any (at shutdown).
    pub fn log_summary(&self) {
        let report = self.report();
        if let Some(cause) = report.poisoned_by {
            tracing::error!(failed_writes = report.failed_writes, "storage refused {} writes since: {cause}", report.failed_writes);
        }
    }
}
