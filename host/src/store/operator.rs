//! Operators' actions on stored data, for the admin API: purge one recipient's stored
//! queue, remove an account (its record, queue, delivered records and push token), and
//! list accounts a page at a time. Writes go through the committer like every other write, so the queue
//! index stays exact and sessions see them in commit order.

use std::ops::Bound;

use super::{keys, records, Account, Committer, Store, StoreError, Txn};

/// Items deleted per committer job while purging: a big queue goes in several batches, so
/// other sessions' jobs are not held up behind one huge write.
pub const PURGE_CHUNK: u64 = 10_000;

/// One account, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEntry {
    /// The number (E.164).
    pub phone: String,
    /// When its current device registered, Unix milliseconds.
    pub registered_at_ms: u64,
    /// Whether its current device has set a push token (a stale one does not count). The
    /// token itself is not shown to operators.
    pub push_token: bool,
}

/// A page of [`Store::list_accounts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsPage {
    /// Accounts in number order (byte order of the number).
    pub accounts: Vec<AccountEntry>,
    /// The `after` of the next page, when more accounts follow.
    pub next: Option<String>,
}

impl Store {
    /// Up to `limit` accounts whose numbers sort after `after` (from the first when `None`),
    /// in number order; `next` is set when more follow. Reads storage directly.
    pub fn list_accounts(&self, after: Option<&str>, limit: usize) -> Result<AccountsPage, StoreError> {
        let start = match after {
            Some(after) => Bound::Excluded(after.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut accounts = Vec::new();
        let mut more = false;
        for guard in self.accounts.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = guard.into_inner()?;
            if accounts.len() == limit {
                more = true;
                break;
            }
            let account: Account = records::decode(&v, "accounts")?;
            let phone = String::from_utf8_lossy(&k).into_owned();
            let push_token = self.push_record(&phone)?.is_some_and(|token| super::push::valid(&token, &account));
            accounts.push(AccountEntry { phone, registered_at_ms: account.registered_at_ms, push_token });
        }
        let next = if more { accounts.last().map(|a| a.phone.clone()) } else { None };
        Ok(AccountsPage { accounts, next })
    }
}

impl Committer {
    /// Deletes every item (messages and receipts) of `number`'s stored queue; returns how
    /// many. Runs as committer jobs of [`PURGE_CHUNK`] items until one comes back short, so
    /// items queued meanwhile may be taken too. Idempotency records stay: a sender's retry
    /// of a purged message is answered `Sent` with its old id and not stored again.
    pub async fn purge_queue(&self, number: &str) -> Result<u64, StoreError> {
        let mut purged = 0;
        loop {
            let user = number.to_string();
            let deleted = self.commit(move |txn| purge_chunk(txn, &user)).await?;
            purged += deleted;
            if deleted < PURGE_CHUNK {
                return Ok(purged);
            }
        }
    }

    /// Removes `number`'s account record, its stored queue, its delivered records and its
    /// push token, and returns how many queue items went; `None` (nothing done) if no
    /// account is registered under it. The record and the first [`PURGE_CHUNK`] items go in one batch. The
    /// number's online session is not closed here (the caller kicks it). A send routed to
    /// the number just before may still queue an item after the purge; it expires with
    /// `storage.message_ttl_secs` (or goes with a later purge).
    pub async fn remove_account(&self, number: &str) -> Result<Option<u64>, StoreError> {
        let user = number.to_string();
        let first = self
            .commit(move |txn| {
                if txn.store().account(&user)?.is_none() {
                    return Ok(None);
                }
                txn.delete_account(&user);
                txn.put_push_token(&user, None);
                let prefix = keys::queue_prefix(&user);
                let delivered: Vec<u64> = txn
                    .store()
                    .delivered
                    .prefix(&prefix)
                    .map(|guard| guard.key().map(|k| keys::queue_key_id(&k)))
                    .collect::<Result<_, _>>()?;
                for id in delivered {
                    txn.delete_delivered(&user, id);
                }
                purge_chunk(txn, &user).map(Some)
            })
            .await?;
        match first {
            None => Ok(None),
            Some(first) if first < PURGE_CHUNK => Ok(Some(first)),
            Some(first) => Ok(Some(first + self.purge_queue(number).await?)),
        }
    }
}

/// Stages the deletion of up to [`PURGE_CHUNK`] items of `user`'s queue; returns how many.
fn purge_chunk(txn: &mut Txn<'_>, user: &str) -> Result<u64, StoreError> {
    let prefix = keys::queue_prefix(user);
    let ids: Vec<u64> = txn
        .store()
        .queues
        .prefix(&prefix)
        .take(PURGE_CHUNK as usize)
        .map(|guard| guard.key().map(|k| keys::queue_key_id(&k)))
        .collect::<Result<_, _>>()?;
    for &id in &ids {
        txn.dequeue_listed(user, id);
    }
    Ok(ids.len() as u64)
}
