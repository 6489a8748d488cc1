//! Devices' push tokens (`push` keyspace, protocol version 4's `SetPushToken`): number →
//! [`PushToken`] `{ token, key_hash, set_at_ms }`, written only through the committer
//! (the core's `Job::SetPushToken`; a re-registration's `Job::Register` and an account's
//! removal delete it in their own batch). Read by the push wake-up worker.
//!
//! A token is valid only while its `key_hash` is the account's current key hash: one set by
//! a device whose number was registered again since is stale and never returned. The
//! re-registration deletes it in the same batch, so a stale entry is not expected on disk;
//! should one be there anyway, [`Store::push_token`] returns `None` and leaves it for the
//! next write of the number (a read outside the committer must not race its writes).

use super::{records, Account, PushToken, Store, StoreError};

impl Store {
    /// The push token of `number`'s current device, if it set one: `None` when none is
    /// stored, when the number has no account, or when the stored token is stale (set under
    /// another key: the number was registered again on a new device).
    pub fn push_token(&self, number: &str) -> Result<Option<String>, StoreError> {
        let Some(record) = self.push_record(number)? else {
            return Ok(None);
        };
        Ok(self.account(number)?.filter(|a| valid(&record, a)).map(|_| record.token))
    }

    /// The stored push token record of `number`, stale or not.
    pub fn push_record(&self, number: &str) -> Result<Option<PushToken>, StoreError> {
        match self.push.get(number)? {
            Some(v) => records::decode(&v, "push").map(Some),
            None => Ok(None),
        }
    }
}

/// Whether `record` belongs to the device that holds `account` now.
pub(super) fn valid(record: &PushToken, account: &Account) -> bool {
    record.key_hash == account.key_hash
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hotline_core::{Job, JobOutcome};

    use super::super::{Account, Committer, Durability, Store, WakeHook};

    const ALICE: &str = "+15550000001";

    fn register(key: u8) -> Job {
        Job::Register { phone: ALICE.into(), account: Account { key_hash: [key; 32], registered_at_ms: 1 } }
    }

    fn set(token: &str, key: u8) -> Job {
        Job::SetPushToken { phone: ALICE.into(), token: token.into(), key_hash: [key; 32], at_ms: 5 }
    }

    async fn run(committer: &Committer, job: Job) -> JobOutcome {
        committer.submit_job(job).await.unwrap().wait().await.unwrap()
    }

    /// Scenario: a token is stored for the device that set it, survives a reopen, is
    /// cleared by an empty one, refused for a revoked key, dropped by a re-registration and
    /// by the account's removal.
    #[tokio::test]
    async fn push_tokens_follow_the_current_device() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let store = Store::open(dir.path()).unwrap();
            let hook: WakeHook = Arc::new(|_: &str| {});
            let committer = Committer::start(store.clone(), Durability::Fsync, hook).unwrap();
            (store, committer)
        };
        let (store, committer) = open();
        // No account: a token cannot be set.
        assert_eq!(run(&committer, set("tok-0", 1)).await, JobOutcome::KeyRevoked);
        assert_eq!(store.push_token(ALICE).unwrap(), None);
        run(&committer, register(1)).await;
        assert_eq!(run(&committer, set("tok-1", 1)).await, JobOutcome::Done);
        assert_eq!(store.push_token(ALICE).unwrap().as_deref(), Some("tok-1"));
        let record = store.push_record(ALICE).unwrap().unwrap();
        assert_eq!((record.key_hash, record.set_at_ms), ([1; 32], 5));
        assert!(store.list_accounts(None, 10).unwrap().accounts[0].push_token);

        drop((store, committer));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (store, committer) = open();
        assert_eq!(store.push_token(ALICE).unwrap().as_deref(), Some("tok-1"));
        // The empty token removes it.
        run(&committer, set("", 1)).await;
        assert_eq!(store.push_record(ALICE).unwrap(), None);
        run(&committer, set("tok-2", 1)).await;

        // A new device: the old token goes with the re-registration, and the old device's
        // key can no longer set one.
        run(&committer, register(2)).await;
        assert_eq!(store.push_record(ALICE).unwrap(), None);
        assert_eq!(run(&committer, set("tok-old", 1)).await, JobOutcome::KeyRevoked);
        assert_eq!(store.push_token(ALICE).unwrap(), None);
        run(&committer, set("tok-new", 2)).await;
        assert_eq!(store.push_token(ALICE).unwrap().as_deref(), Some("tok-new"));

        // A stale record (written under another key) is never returned.
        committer
            .commit(|txn| {
                txn.put_push_token(ALICE, Some(&super::PushToken { token: "stale".into(), key_hash: [9; 32], set_at_ms: 1 }));
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(store.push_token(ALICE).unwrap(), None);
        assert!(!store.list_accounts(None, 10).unwrap().accounts[0].push_token);

        // Removing the account removes its token.
        run(&committer, set("tok-new", 2)).await;
        assert_eq!(committer.remove_account(ALICE).await.unwrap(), Some(0));
        assert_eq!(store.push_record(ALICE).unwrap(), None);
    }
}
