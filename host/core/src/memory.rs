//! In-memory storage for tests and the simulator: a [`Journal`] whose writes are visible at
//! once and durable only after [`Journal::sync`], with the faults the simulator injects
//! ([`MemoryStore::crash`] loses what was not synced; [`MemoryStore::fail_fsync_at`] makes
//! the n-th sync fail and poisons the store, as fjall does), and the read ports over it.
//! Also [`DirectPolicy`], a policy that delivers to the named number and allows everything.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::{BTreeMap, BTreeSet};

use hotline_protocol::ErrorCode;

use crate::commit::{Journal, Staged};
use crate::policy::{MessageMeta, Policy, PolicyError, ReceiptMeta, Refusal, Route, Slot};
use crate::ports::{Accounts, KeyMaker, Queues, StorageFailure};
use crate::records::{Account, DeliveredRecord, IdempotencyRecord, PushToken, StoredItem};
use crate::txn::Txn;

/// A failure of the in-memory journal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The sync chosen by [`MemoryStore::fail_fsync_at`] failed.
    #[error("fsync {0} failed (injected)")]
    FsyncFailed(u64),
    /// A sync failed earlier; every write is refused until a restart ([`MemoryStore::crash`]).
    #[error("storage is poisoned after a failed write or fsync; restart the broker")]
    Poisoned,
}

/// Everything stored, as one value (so a sync is a copy and a crash a restore).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    pub accounts: BTreeMap<String, Account>,
    pub queues: BTreeMap<(String, u64), StoredItem>,
    pub idempotency: BTreeMap<(String, u64), IdempotencyRecord>,
    pub delivered: BTreeMap<(String, u64), DeliveredRecord>,
    /// Push tokens by number.
    pub push: BTreeMap<String, PushToken>,
    /// Highest item id allocated.
    pub last_id: u64,
}

/// The in-memory journal and its read ports.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// What later transactions and the ports see.
    visible: Tables,
    /// What survives a crash.
    durable: Tables,
    /// Highest id published as durable (see [`MemoryStore::publish_durable`]).
    durable_id: u64,
    /// Syncs attempted.
    syncs: u64,
    /// The sync (counted from 1) that fails.
    fail_at: Option<u64>,
    poisoned: bool,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes the `n`-th sync from now fail (and poison the store).
    pub fn fail_fsync_at(&mut self, n: u64) {
        self.fail_at = Some(self.syncs + n);
    }

    /// Takes back a failure armed by [`MemoryStore::fail_fsync_at`] that has not happened.
    pub fn cancel_fsync_failure(&mut self) {
        self.fail_at = None;
    }

    /// A crash and restart: what was not synced is lost, and the store accepts writes again.
    pub fn crash(&mut self) {
        self.visible = self.durable.clone();
        self.durable_id = self.durable.last_id;
        self.poisoned = false;
        self.fail_at = None;
    }

    /// Raises the durable watermark (the committer driver does it from the group report).
    pub fn publish_durable(&mut self, id: u64) {
        self.durable_id = self.durable_id.max(id);
    }

    /// What a reader sees now.
    pub fn visible(&self) -> &Tables {
        &self.visible
    }

    /// What would survive a crash now.
    pub fn durable(&self) -> &Tables {
        &self.durable
    }

    /// Stores an account directly (test setup).
    pub fn put_account(&mut self, phone: &str, account: Account) {
        self.visible.accounts.insert(phone.to_string(), account.clone());
        self.durable.accounts.insert(phone.to_string(), account);
    }
}

/// One staged write.
#[derive(Debug)]
enum Write {
    Enqueue(String, u64, StoredItem),
    Dequeue(String, u64),
    Account(String, Account),
    Idempotency(String, u64, IdempotencyRecord),
    PutDelivered(String, u64, DeliveredRecord),
    DeleteDelivered(String, u64),
    PushToken(String, Option<PushToken>),
}

/// A transaction of the [`MemoryStore`].
pub struct MemoryTxn<'a> {
    store: &'a mut MemoryStore,
    writes: Vec<Write>,
}

impl Txn for MemoryTxn<'_> {
    type Error = MemoryError;

    fn alloc_id(&mut self) -> Result<u64, MemoryError> {
        self.store.visible.last_id += 1;
        Ok(self.store.visible.last_id)
    }

    fn item(&self, user: &str, id: u64) -> Result<Option<StoredItem>, MemoryError> {
        Ok(self.store.visible.queues.get(&(user.to_string(), id)).cloned())
    }

    fn idempotency(&self, sender: &str, client_id: u64) -> Result<Option<IdempotencyRecord>, MemoryError> {
        Ok(self.store.visible.idempotency.get(&(sender.to_string(), client_id)).copied())
    }

    fn delivered(&self, reader: &str, id: u64) -> Result<Option<DeliveredRecord>, MemoryError> {
        Ok(self.store.visible.delivered.get(&(reader.to_string(), id)).cloned())
    }

    fn account(&self, phone: &str) -> Result<Option<Account>, MemoryError> {
        Ok(self.store.visible.accounts.get(phone).cloned())
    }

    fn queue_len(&self, user: &str) -> Result<u64, MemoryError> {
        let range = (user.to_string(), 0)..=(user.to_string(), u64::MAX);
        let mut len = self.store.visible.queues.range(range).count() as i64;
        for write in &self.writes {
            match write {
                Write::Enqueue(u, id, _) if u == user && !self.store.visible.queues.contains_key(&(u.clone(), *id)) => len += 1,
                Write::Dequeue(u, id) if u == user && self.store.visible.queues.contains_key(&(u.clone(), *id)) => len -= 1,
                _ => {}
            }
        }
        Ok(len.max(0) as u64)
    }

    fn enqueue(&mut self, user: &str, id: u64, item: &StoredItem) {
        self.writes.push(Write::Enqueue(user.to_string(), id, item.clone()));
    }

    fn dequeue(&mut self, user: &str, id: u64) -> Result<(), MemoryError> {
        self.writes.push(Write::Dequeue(user.to_string(), id));
        Ok(())
    }

    fn put_account(&mut self, phone: &str, account: &Account) {
        self.writes.push(Write::Account(phone.to_string(), account.clone()));
    }

    fn put_idempotency(&mut self, sender: &str, client_id: u64, record: &IdempotencyRecord) {
        self.writes.push(Write::Idempotency(sender.to_string(), client_id, *record));
    }

    fn put_delivered(&mut self, reader: &str, id: u64, record: &DeliveredRecord) {
        self.writes.push(Write::PutDelivered(reader.to_string(), id, record.clone()));
    }

    fn delete_delivered(&mut self, reader: &str, id: u64) {
        self.writes.push(Write::DeleteDelivered(reader.to_string(), id));
    }

    fn put_push_token(&mut self, phone: &str, token: Option<&PushToken>) {
        self.writes.push(Write::PushToken(phone.to_string(), token.cloned()));
    }
}

impl Journal for MemoryStore {
    type Error = MemoryError;
    type Txn<'t> = MemoryTxn<'t>;

    fn transact<D>(&mut self, stage: impl FnOnce(&mut MemoryTxn<'_>) -> Staged<D>) -> (Staged<D>, Result<Vec<String>, MemoryError>) {
        let mut txn = MemoryTxn { store: self, writes: Vec::new() };
        let staged = stage(&mut txn);
        let writes = std::mem::take(&mut txn.writes);
        if let Staged::Nothing(_) = staged {
            return (staged, Ok(Vec::new()));
        }
        if self.poisoned {
            return (staged, Err(MemoryError::Poisoned));
        }
        let t = &mut self.visible;
        let mut woken = Vec::new();
        for write in writes {
            match write {
                Write::Enqueue(user, id, item) => {
                    t.queues.insert((user.clone(), id), item);
                    woken.push(user);
                }
                Write::Dequeue(user, id) => {
                    t.queues.remove(&(user, id));
                }
                Write::Account(phone, account) => {
                    t.accounts.insert(phone, account);
                }
                Write::Idempotency(sender, client_id, record) => {
                    t.idempotency.insert((sender, client_id), record);
                }
                Write::PutDelivered(reader, id, record) => {
                    t.delivered.insert((reader, id), record);
                }
                Write::DeleteDelivered(reader, id) => {
                    t.delivered.remove(&(reader, id));
                }
                Write::PushToken(phone, Some(token)) => {
                    t.push.insert(phone, token);
                }
                Write::PushToken(phone, None) => {
                    t.push.remove(&phone);
                }
            }
        }
        (staged, Ok(woken))
    }

    fn sync(&mut self) -> Result<(), MemoryError> {
        if self.poisoned {
            return Err(MemoryError::Poisoned);
        }
        self.syncs += 1;
        if self.fail_at == Some(self.syncs) {
            self.poisoned = true;
            return Err(MemoryError::FsyncFailed(self.syncs));
        }
        self.durable = self.visible.clone();
        Ok(())
    }

    fn allocated(&self) -> u64 {
        self.visible.last_id
    }
}

impl Accounts for MemoryStore {
    fn account(&self, phone: &str) -> Result<Option<Account>, StorageFailure> {
        Ok(self.visible.accounts.get(phone).cloned())
    }
}

impl Queues for MemoryStore {
    fn durable_id(&self) -> u64 {
        self.durable_id
    }

    fn queue_after(&self, user: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, StoredItem)>, StorageFailure> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let range = (user.to_string(), after + 1)..=(user.to_string(), upto);
        Ok(self.visible.queues.range(range).take(limit).map(|((_, id), item)| (*id, item.clone())).collect())
    }

    fn item(&self, user: &str, id: u64) -> Result<Option<StoredItem>, StorageFailure> {
        Ok(self.visible.queues.get(&(user.to_string(), id)).cloned())
    }
}

/// Keys `key-1`, `key-2`, …: predictable, for tests.
#[derive(Debug, Default)]
pub struct CountingKeys(AtomicU64);

impl KeyMaker for CountingKeys {
    fn new_key(&self) -> String {
        format!("key-{}", self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A policy that routes a message to the number in `to`, accepts the code `123456` for any
/// number, allows every receipt, and can be made to fail (as a plugin that traps).
#[derive(Debug, Default)]
pub struct DirectPolicy {
    /// Numbers whose messages the router rejects.
    pub blocked_senders: BTreeSet<String>,
    /// Every call fails while set.
    pub failing: AtomicBool,
    /// Receipts are refused while set.
    pub no_receipts: AtomicBool,
    /// Calls of [`Policy::route`] so far.
    pub route_calls: AtomicU64,
}

impl DirectPolicy {
    fn check(&self, slot: Slot) -> Result<(), PolicyError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(PolicyError::Failed { slot, detail: "failing (injected)".into() });
        }
        Ok(())
    }
}

impl Policy for DirectPolicy {
    fn route(&self, messages: Vec<MessageMeta>) -> Result<Vec<Route>, PolicyError> {
        self.route_calls.fetch_add(1, Ordering::Relaxed);
        self.check(Slot::Router)?;
        Ok(messages
            .into_iter()
            .map(|m| if self.blocked_senders.contains(&m.from) { Route::Reject("blocked".into()) } else { Route::Deliver(vec![m.to]) })
            .collect())
    }

    fn request_code(&self, _phone: &str) -> Result<Result<u32, Refusal>, PolicyError> {
        self.check(Slot::Registrar)?;
        Ok(Ok(600))
    }

    fn verify_code(&self, _phone: &str, code: &str) -> Result<Result<(), Refusal>, PolicyError> {
        self.check(Slot::Registrar)?;
        if code == "123456" {
            Ok(Ok(()))
        } else {
            Ok(Err(Refusal { error: ErrorCode::WrongCode, reason: "wrong code".into() }))
        }
    }

    fn receipt(&self, _receipt: ReceiptMeta) -> Result<bool, PolicyError> {
        self.check(Slot::Receipts)?;
        Ok(!self.no_receipts.load(Ordering::Relaxed))
    }

    fn command(&self, slot: Slot, _from: &str, name: &str, _args: Vec<String>) -> Result<Result<String, String>, PolicyError> {
        self.check(slot)?;
        Ok(Ok(name.to_string()))
    }
}
