//! The view a storage job has while it runs on the committer: reads that see every job
//! committed before it, id allocation, and writes staged into one atomic batch.

use crate::records::{Account, DeliveredRecord, IdempotencyRecord, PushToken, StoredItem};

/// One job's transaction. Implemented by the fjall journal and the in-memory one.
pub trait Txn {
    /// The journal's error (fjall's, or the simulator's).
    type Error;

    /// A new item id, greater than every id allocated before (also across restarts).
    fn alloc_id(&mut self) -> Result<u64, Self::Error>;
    /// Item `id` of `user`'s queue, if queued.
    fn item(&self, user: &str, id: u64) -> Result<Option<StoredItem>, Self::Error>;
    /// The idempotency record of `(sender, client_id)`.
    fn idempotency(&self, sender: &str, client_id: u64) -> Result<Option<IdempotencyRecord>, Self::Error>;
    /// The record that `reader` accepted message `id` and has not reported it read.
    fn delivered(&self, reader: &str, id: u64) -> Result<Option<DeliveredRecord>, Self::Error>;
    /// The account registered for `phone`, as every job committed before this one left it.
    fn account(&self, phone: &str) -> Result<Option<Account>, Self::Error>;
    /// Items in `user`'s queue (messages and receipts), counting every job committed
    /// before this one and this transaction's staged writes.
    fn queue_len(&self, user: &str) -> Result<u64, Self::Error>;

    /// Stages `item` as item `id` of `user`'s queue; the user is woken once durable.
    fn enqueue(&mut self, user: &str, id: u64, item: &StoredItem);
    /// Stages the removal of item `id` from `user`'s queue. May read (whether the item is
    /// there, for the driver's queue lengths), hence the error.
    fn dequeue(&mut self, user: &str, id: u64) -> Result<(), Self::Error>;
    /// Stages the account record of `phone`.
    fn put_account(&mut self, phone: &str, account: &Account);
    /// Stages the idempotency record of `(sender, client_id)`.
    fn put_idempotency(&mut self, sender: &str, client_id: u64, record: &IdempotencyRecord);
    /// Stages the record that `reader` accepted message `id`.
    fn put_delivered(&mut self, reader: &str, id: u64, record: &DeliveredRecord);
    /// Stages the removal of that record.
    fn delete_delivered(&mut self, reader: &str, id: u64);
    /// Stages `phone`'s push token (`None`: its removal).
    fn put_push_token(&mut self, phone: &str, token: Option<&PushToken>);
}
