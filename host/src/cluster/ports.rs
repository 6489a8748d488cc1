//! The core's read ports in a cluster: accounts from the `<prefix>_accounts` bucket (the
//! port is synchronous: the read blocks this worker thread in place while the runtime's
//! other workers go on, retried through a leader election), queues from the node's mailbox cache
//! ([`super::mailboxes::Mailboxes`], which implements `Queues` itself).

use std::time::{Duration, Instant};

use hotline_core::{Account, Accounts, StorageFailure};

use super::Cluster;

/// How long an account read keeps trying through JetStream failures (a leader election
/// takes a few seconds) before the session hears of it: a send refused as `Retryable`
/// before any job was queued would let the sender's next send be stored ahead of its retry.
const READ_PATIENCE: Duration = Duration::from_secs(10);

impl Accounts for Cluster {
    fn account(&self, phone: &str) -> Result<Option<Account>, StorageFailure> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let started = Instant::now();
                let mut pause = Duration::from_millis(50);
                loop {
                    match Cluster::account(self, phone).await {
                        Err(e) if started.elapsed() < READ_PATIENCE => {
                            tracing::debug!(error = %e, "an account read failed; trying again");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(1));
                        }
                        result => return result,
                    }
                }
            })
        })
        .map_err(StorageFailure::new)
    }
}
