//! The core's read ports over fjall: accounts and queue reads, as the committer left them.

use hotline_core::{Account, Accounts, Queues, StorageFailure, StoredItem};

use super::Store;

impl Accounts for Store {
    fn account(&self, phone: &str) -> Result<Option<Account>, StorageFailure> {
        Store::account(self, phone).map_err(StorageFailure::new)
    }
}

impl Queues for Store {
    fn durable_id(&self) -> u64 {
        Store::durable_id(self)
    }

    fn queue_after(&self, user: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, StoredItem)>, StorageFailure> {
        self.queue_range(user, after, upto, limit).map_err(StorageFailure::new)
    }

    fn item(&self, user: &str, id: u64) -> Result<Option<StoredItem>, StorageFailure> {
        Store::item(self, user, id).map_err(StorageFailure::new)
    }
}
