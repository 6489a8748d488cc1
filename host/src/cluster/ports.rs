//! The core's read ports in a cluster: accounts from the `<prefix>_accounts` bucket (the
//! port is synchronous: the read blocks this worker thread in place while the runtime's
//! other workers go on), queues from the node's mailbox cache
//! ([`super::mailboxes::Mailboxes`], which implements `Queues` itself).

use hotline_core::{Account, Accounts, StorageFailure};

use super::Cluster;

impl Accounts for Cluster {
    fn account(&self, phone: &str) -> Result<Option<Account>, StorageFailure> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| handle.block_on(Cluster::account(self, phone))).map_err(StorageFailure::new)
    }
}
