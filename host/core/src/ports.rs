//! Ports: what the core reads from the world, as traits its drivers implement (fjall in
//! `hotline`, memory in [`memory`](crate::memory)). Writes never go through a port: they are
//! [`Job`](crate::Job)s the driver hands to its committer.

use std::sync::Arc;

use crate::records::{Account, StoredItem};

/// Storage failed (an I/O error, a poisoned store, a corrupt record, a stopped committer).
/// The driver's own error is kept as the source; its text is shown unchanged.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct StorageFailure(Arc<dyn std::error::Error + Send + Sync>);

impl StorageFailure {
    /// Wraps a driver's storage error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> StorageFailure {
        StorageFailure(Arc::new(error))
    }
}

/// Registered numbers.
pub trait Accounts: Sync {
    /// The account registered for `phone`, if any.
    fn account(&self, phone: &str) -> Result<Option<Account>, StorageFailure>;
}

/// Users' queues, as the committer has left them.
pub trait Queues: Sync {
    /// The highest item id whose commit is durable: nothing above it may be pushed.
    fn durable_id(&self) -> u64;
    /// Up to `limit` items of `user` with ids in `after+1..=upto`, in id order.
    fn queue_after(&self, user: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, StoredItem)>, StorageFailure>;
    /// One queued item of `user`, if still queued.
    fn item(&self, user: &str, id: u64) -> Result<Option<StoredItem>, StorageFailure>;
}

/// Makes registration keys: the only randomness the core needs.
pub trait KeyMaker: Sync {
    /// A new secret key (the driver's: 32 random bytes, base64url).
    fn new_key(&self) -> String;
}

/// Everything a session reads during one step. Cheap: references only. Policy is not a
/// port: it is asked through [`Output::Ask`](crate::Output::Ask), because its calls may
/// take long (a plugin runs until its time limit) and the core never waits.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub accounts: &'a dyn Accounts,
    pub queues: &'a dyn Queues,
    pub keys: &'a dyn KeyMaker,
}
