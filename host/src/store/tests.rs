//! Store and committer: group commit, id order, idempotent jobs, refusal after a failure.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::*;
use hotline_protocol::MessageKind;

fn open(dir: &Path) -> (Store, Committer, Arc<Mutex<Vec<String>>>) {
    let store = Store::open(dir).unwrap();
    let woken = Arc::new(Mutex::new(Vec::new()));
    let hook_woken = woken.clone();
    let hook: WakeHook = Arc::new(move |u: &str| hook_woken.lock().unwrap().push(u.to_string()));
    let committer = Committer::start(store.clone(), Durability::Fsync, hook).unwrap();
    (store, committer, woken)
}

fn message(n: u8) -> StoredItem {
    StoredItem::Message { from: "+15550000001".into(), sent_at_ms: 1, body: vec![n] }
}

#[tokio::test]
async fn concurrent_commits_share_fsyncs_and_get_ids_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, committer, woken) = open(dir.path());
    let mut pending = Vec::new();
    for n in 0..200u8 {
        let p = committer
            .submit(move |txn| {
                let id = txn.alloc_id()?;
                txn.enqueue("+15550000002", id, &message(n));
                Ok(id)
            })
            .await
            .unwrap();
        pending.push(p);
    }
    let mut ids = Vec::new();
    for p in pending {
        ids.push(p.wait().await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not in submission order");
    let stats = committer.stats();
    let (groups, jobs) = (stats.groups.load(Ordering::Relaxed), stats.jobs.load(Ordering::Relaxed));
    assert_eq!(jobs, 200);
    assert!(groups < jobs, "every commit had its own fsync ({groups} groups for {jobs} jobs)");
    // Durable items are visible in order; the recipient was woken.
    let items = store.queue_after("+15550000002", 0, 1000).unwrap();
    assert_eq!(items.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    assert_eq!(items[199].1, message(199));
    assert!(woken.lock().unwrap().iter().any(|u| u == "+15550000002"));
}

#[tokio::test]
async fn ids_keep_growing_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (_, committer, _) = open(dir.path());
        committer.commit(|txn| txn.alloc_id()).await.unwrap()
    };
    // The committer thread exits once its handles are gone; give it a moment to release fjall.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (store, committer, _) = open(dir.path());
    let second = committer.commit(|txn| txn.alloc_id()).await.unwrap();
    assert!(second > first, "{second} <= {first}");
    assert!(store.durable_id() >= first);
}

#[tokio::test]
async fn a_failed_job_writes_nothing_and_later_jobs_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, committer, _) = open(dir.path());
    let failed = committer
        .commit(|txn| -> Result<(), StoreError> {
            let id = txn.alloc_id()?;
            txn.enqueue("+15550000002", id, &message(1));
            Err(StoreError::Closed)
        })
        .await;
    assert!(failed.is_err());
    committer
        .commit(|txn| {
            let id = txn.alloc_id()?;
            txn.enqueue("+15550000002", id, &message(2));
            Ok(())
        })
        .await
        .unwrap();
    let items = store.queue_after("+15550000002", 0, 10).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].1, message(2));
}

#[tokio::test]
async fn items_not_yet_durable_are_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _committer, _) = open(dir.path());
    // Written behind the committer's back: present in fjall, but above the durable mark.
    let id = store.durable_id() + 10;
    store.queues.insert(keys::queue_key("+15550000002", id), records::encode(&message(1))).unwrap();
    assert!(store.queue_after("+15550000002", 0, 10).unwrap().is_empty());
    assert_eq!(store.item("+15550000002", id).unwrap(), Some(message(1)));
}

#[tokio::test]
async fn a_query_sees_every_job_submitted_before_it_without_waiting_for_its_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, committer, _) = open(dir.path());
    let record = DeliveredRecord { from: "+15550000001".into(), at_ms: 1, kind: MessageKind::Media { mime: "image/png".into() } };
    let stored = record.clone();
    let pending = committer.submit(move |txn| {
        txn.put_delivered("+15550000002", 7, &stored);
        Ok(())
    }).await.unwrap();
    let seen = committer.query(|store| store.delivered("+15550000002", 7)).await.unwrap();
    assert_eq!(seen, Some(record));
    pending.wait().await.unwrap();
    committer.commit(|txn| {
        txn.delete_delivered("+15550000002", 7);
        Ok(())
    }).await.unwrap();
    assert_eq!(committer.query(|store| store.delivered("+15550000002", 7)).await.unwrap(), None);
}

#[test]
fn storage_health_keeps_the_first_failure_and_counts_the_rest() {
    let health = Health::default();
    assert!(!health.is_poisoned());
    let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
    health.failed(&StoreError::from(fjall::Error::Io(io)));
    for _ in 0..1000 {
        health.failed(&StoreError::Poisoned);
    }
    let report = health.report();
    assert_eq!(report.failed_writes, 1001);
    let cause = report.poisoned_by.expect("poisoned");
    assert!(cause.contains("No space left on device"), "{cause}");
}

#[tokio::test]
async fn a_panicking_job_fails_alone_and_the_committer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, committer, _) = open(dir.path());
    let enqueue = |n: u8| {
        move |txn: &mut Txn<'_>| -> Result<u64, StoreError> {
            let id = txn.alloc_id()?;
            txn.enqueue("+15550000002", id, &message(n));
            Ok(id)
        }
    };
    // Three jobs in one group: the middle one stages a write, then panics.
    let before = committer.submit(enqueue(1)).await.unwrap();
    let panicking = committer
        .submit(|txn| -> Result<(), StoreError> {
            let id = txn.alloc_id()?;
            txn.enqueue("+15550000002", id, &message(2));
            panic!("a bug in a job");
        })
        .await
        .unwrap();
    let after = committer.submit(enqueue(3)).await.unwrap();
    assert!(matches!(panicking.wait().await, Err(StoreError::Panicked)));
    let ids = [before.wait().await.unwrap(), after.wait().await.unwrap()];
    // A core job too still commits afterwards, on the same thread.
    let later = committer.commit(enqueue(4)).await.unwrap();
    let items = store.queue_after("+15550000002", 0, 10).unwrap();
    assert_eq!(items.iter().map(|(_, item)| item.clone()).collect::<Vec<_>>(), [message(1), message(3), message(4)]);
    assert_eq!(items.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [ids[0], ids[1], later]);
    let health = store.health().report();
    assert_eq!((health.job_panics, health.committer_stopped.clone(), health.refusal()), (1, None, None));
}

#[tokio::test]
async fn a_panic_outside_a_job_stops_the_committer_and_every_later_job_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The wake hook runs on the committer thread after the fsync, outside any job.
    let hook: WakeHook = Arc::new(|user: &str| assert_ne!(user, "+15550000666", "a bug in the wake hook"));
    let committer = Committer::start(store.clone(), Durability::Fsync, hook).unwrap();
    let fatal = committer
        .commit(|txn| {
            let id = txn.alloc_id()?;
            txn.enqueue("+15550000666", id, &message(1));
            Ok(())
        })
        .await;
    assert!(matches!(fatal, Err(StoreError::Panicked)), "{fatal:?}");
    let at_once = std::time::Duration::from_secs(5);
    for _ in 0..3 {
        let later = tokio::time::timeout(at_once, committer.commit(|txn| txn.alloc_id())).await.expect("a job waited on a stopped committer");
        match later {
            Err(StoreError::CommitterStopped(cause)) => assert!(cause.contains("a bug in the wake hook"), "{cause}"),
            other => panic!("{other:?}"),
        }
    }
    let query = tokio::time::timeout(at_once, committer.query(|store| store.account("+15550000001"))).await.unwrap();
    assert!(matches!(query, Err(StoreError::CommitterStopped(_))), "{query:?}");
    let health = store.health().report();
    assert!(health.committer_stopped.as_deref().is_some_and(|c| c.contains("a bug in the wake hook")), "{health:?}");
    let refusal = health.refusal().expect("readiness fails");
    assert!(refusal.starts_with("the storage committer stopped: it panicked: "), "{refusal}");
}

/// `n`'s 1 KiB body that does not compress (xorshift), so disk figures are not lz4's.
fn noise(n: u32) -> Vec<u8> {
    let mut x = (u64::from(n) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..128)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

#[tokio::test]
async fn a_checkpoint_gives_the_disk_back_and_loses_nothing() {
    const USER: &str = "+15550000002";
    let item = |n: u32| StoredItem::Message { from: "+15550000001".into(), sent_at_ms: 1, body: noise(n) };
    let enqueue = move |n: u32| {
        move |txn: &mut Txn<'_>| -> Result<u64, StoreError> {
            let id = txn.alloc_id()?;
            txn.enqueue(USER, id, &item(n));
            Ok(id)
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, committer, _) = open(dir.path());
    let mut pending = Vec::new();
    for n in 0..4000 {
        pending.push(committer.submit(enqueue(n)).await.unwrap());
    }
    let mut ids = Vec::new();
    for p in pending {
        ids.push(p.wait().await.unwrap());
    }
    // The items in the journal only.
    let peak = store.disk_space().unwrap();
    // In tables, the journal sealed and deleted.
    store.checkpoint().unwrap();
    assert!(store.disk_space().unwrap() <= peak, "the checkpoint grew the store");
    // Three quarters taken: their tombstones go to a table of their own, then a compaction
    // drops both.
    let taken = ids[..3000].to_vec();
    committer
        .commit(move |txn| {
            for &id in &taken {
                txn.dequeue(USER, id)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    store.checkpoint().unwrap();
    let after = store.disk_space().unwrap();
    assert!(after * 3 < peak, "{after} of {peak} bytes left after taking three quarters");

    // A write after the checkpoints goes to the new journal; a reopen has everything left.
    let last = committer.commit(enqueue(9999)).await.unwrap();
    drop((store, committer));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (store, _committer, _) = open(dir.path());
    let items = store.queue_after(USER, 0, 10_000).unwrap();
    let mut want = ids[3000..].to_vec();
    want.push(last);
    assert_eq!(items.iter().map(|(id, _)| *id).collect::<Vec<_>>(), want);
    assert_eq!(items[0].1, item(3000));
    assert_eq!(items.last().unwrap().1, item(9999));
}

/// The index as a map, checked against a fresh scan of the store (and its totals).
fn index_equals_a_fresh_scan(store: &Store) -> std::collections::BTreeMap<String, u64> {
    let scan = store.queue_lengths().unwrap();
    let index: std::collections::BTreeMap<String, u64> = store.queues().top(usize::MAX).into_iter().collect();
    assert_eq!(index, scan, "the queue index differs from a scan");
    let (total, max, non_empty) = store.queues().totals();
    assert_eq!((total, max, non_empty), (scan.values().sum(), scan.values().copied().max().unwrap_or(0), scan.len() as u64));
    for (number, len) in &scan {
        assert_eq!(store.queues().len(number), *len);
    }
    index
}

fn send_job(from: &str, client_id: u64, to: &[&str], max_queue_items: u64) -> hotline_core::Job {
    hotline_core::Job::Send {
        from: from.into(),
        client_id,
        recipients: to.iter().map(|r| r.to_string()).collect(),
        sent_at_ms: 1_000 + client_id,
        kind: hotline_protocol::MessageKind::Text,
        body: vec![client_id as u8],
        max_queue_items,
    }
}

/// Scenario: the live queue index through everything that changes queues (sends to one and
/// to many, acks and duplicate acks, refused and failed jobs, expiry, a purge, an account
/// removal) equals a fresh scan at every step, and again after a restart rebuilds it.
#[tokio::test]
async fn queue_index_recovery_equals_a_fresh_scan_after_acks_expiry_purges_and_a_restart() {
    use hotline_core::jobs::AckedMessage;
    use hotline_core::{Job as CoreJob, JobOutcome};
    const ALICE: &str = "+15550000001";
    const BOB: &str = "+15550000002";
    const CAROL: &str = "+15550000003";
    let dir = tempfile::tempdir().unwrap();
    let (store, committer, _) = open(dir.path());
    for phone in [ALICE, BOB, CAROL] {
        let account = Account { key_hash: [0; 32], registered_at_ms: 42 };
        committer
            .commit(move |txn| {
                txn.put_account(phone, &account);
                Ok(())
            })
            .await
            .unwrap();
    }
    assert_eq!(index_equals_a_fresh_scan(&store).len(), 0);

    // Sends: 5 to Bob, 3 to Bob and Carol together, all in few groups.
    let mut pending = Vec::new();
    for client_id in 1..=5 {
        pending.push(committer.submit_job(send_job(ALICE, client_id, &[BOB], 100)).await.unwrap());
    }
    for client_id in 6..=8 {
        pending.push(committer.submit_job(send_job(ALICE, client_id, &[BOB, CAROL], 100)).await.unwrap());
    }
    let mut ids = Vec::new();
    for p in pending {
        match p.wait().await.unwrap() {
            JobOutcome::Stored { id } => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    let index = index_equals_a_fresh_scan(&store);
    assert_eq!((index[BOB], index[CAROL]), (8, 3));

    // A retry stores nothing new; a job that fails after staging changes nothing.
    committer.submit_job(send_job(ALICE, 1, &[BOB], 100)).await.unwrap().wait().await.unwrap();
    let failed = committer
        .commit(|txn| -> Result<(), StoreError> {
            let id = txn.alloc_id()?;
            txn.enqueue(BOB, id, &message(9));
            Err(StoreError::Closed)
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(index_equals_a_fresh_scan(&store)[BOB], 8);

    // The limit: Bob holds 8, so a limit of 8 refuses at once, staging nothing.
    let refused = committer.submit_job(send_job(ALICE, 9, &[CAROL, BOB], 8)).await.unwrap().wait().await.unwrap();
    assert_eq!(refused, JobOutcome::QueueFull { recipient: BOB.into(), items: 8 });
    assert_eq!(store.idempotency(ALICE, 9).unwrap(), None);
    assert_eq!(index_equals_a_fresh_scan(&store)[CAROL], 3);

    // Acks: Bob takes two (each queues a delivered receipt for Alice); a duplicate ack of
    // the first and an ack of an unknown id change nothing.
    let ack = |id: u64| CoreJob::Ack { user: BOB.into(), id, message: Some(AckedMessage { sender: ALICE.into(), receipt: true, kind: MessageKind::Text }), at_ms: 5_000 };
    for id in [ids[0], ids[1], ids[0], 999_999] {
        committer.submit_job(ack(id)).await.unwrap().wait().await.unwrap();
    }
    let index = index_equals_a_fresh_scan(&store);
    assert_eq!((index[BOB], index[ALICE]), (6, 2));

    // Expiry as `expiry.rs` runs it: a scan, then dequeues in a later job; an item acked in
    // between is dequeued again without counting twice.
    let expired = store.expired(1_004, 0).unwrap();
    assert_eq!(expired.items.len(), 1, "{:?}", expired.items);
    let (user, id) = expired.items[0].clone();
    committer.submit_job(ack(id)).await.unwrap().wait().await.unwrap();
    let items = expired.items.clone();
    committer
        .commit(move |txn| {
            for (user, id) in &items {
                txn.dequeue(user, *id)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let expired = store.expired(1_005, 0).unwrap();
    assert_eq!(expired.items.len(), 1, "{:?}", expired.items);
    let items = expired.items.clone();
    committer
        .commit(move |txn| {
            for (user, id) in &items {
                txn.dequeue(user, *id)?;
                // Twice in one job: counted once.
                txn.dequeue(user, *id)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let index = index_equals_a_fresh_scan(&store);
    assert_eq!(user, BOB);
    assert_eq!((index[BOB], index[ALICE]), (4, 3));
    let before_restart = index;

    // A restart rebuilds the same index from storage.
    drop((store, committer));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (store, committer, _) = open(dir.path());
    assert_eq!(index_equals_a_fresh_scan(&store), before_restart);

    // Purge Bob's queue, then remove Carol's account with hers.
    assert_eq!(committer.purge_queue(BOB).await.unwrap(), 4);
    assert_eq!(committer.purge_queue(BOB).await.unwrap(), 0);
    assert_eq!(committer.remove_account(CAROL).await.unwrap(), Some(3));
    assert_eq!(committer.remove_account(CAROL).await.unwrap(), None);
    assert_eq!(store.account(CAROL).unwrap(), None);
    let index = index_equals_a_fresh_scan(&store);
    assert_eq!(index.into_iter().collect::<Vec<_>>(), vec![(ALICE.to_string(), 3)]);
    drop((store, committer));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (store, _committer, _) = open(dir.path());
    assert_eq!(index_equals_a_fresh_scan(&store).into_iter().collect::<Vec<_>>(), vec![(ALICE.to_string(), 3)]);
}

#[tokio::test]
async fn a_purge_of_a_queue_longer_than_one_chunk_takes_it_all_and_accounts_list_in_pages() {
    const BOB: &str = "+15550000002";
    let dir = tempfile::tempdir().unwrap();
    let (store, committer, _) = open(dir.path());
    let n = operator::PURGE_CHUNK + 7;
    committer
        .commit(move |txn| {
            for _ in 0..n {
                let id = txn.alloc_id()?;
                txn.enqueue(BOB, id, &message(1));
            }
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(store.queues().len(BOB), n);
    assert_eq!(committer.purge_queue(BOB).await.unwrap(), n);
    assert_eq!(index_equals_a_fresh_scan(&store).len(), 0);

    for i in 0..5u64 {
        let account = Account { key_hash: [0; 32], registered_at_ms: 100 + i };
        committer
            .commit(move |txn| {
                txn.put_account(&format!("+155500000{i:02}"), &account);
                Ok(())
            })
            .await
            .unwrap();
    }
    let first = store.list_accounts(None, 2).unwrap();
    assert_eq!(first.accounts.iter().map(|a| (a.phone.as_str(), a.registered_at_ms)).collect::<Vec<_>>(), [("+15550000000", 100), ("+15550000001", 101)]);
    assert_eq!(first.next.as_deref(), Some("+15550000001"));
    let second = store.list_accounts(first.next.as_deref(), 2).unwrap();
    assert_eq!(second.accounts[0].phone, "+15550000002");
    let last = store.list_accounts(Some("+15550000003"), 2).unwrap();
    assert_eq!((last.accounts.len(), last.next), (1, None));
    assert!(store.list_accounts(Some("+15550000004"), 2).unwrap().accounts.is_empty());
}

#[test]
fn plugin_kv_compare_and_swap_increment_and_keys_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.kv_compare_and_swap("router", b"k", None, Some(b"1")).unwrap());
    assert!(!store.kv_compare_and_swap("router", b"k", None, Some(b"2")).unwrap());
    assert!(!store.kv_compare_and_swap("router", b"k", Some(b"2"), Some(b"3")).unwrap());
    assert_eq!(store.kv_get("router", b"k").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(store.kv_compare_and_swap("router", b"k", Some(b"1"), None).unwrap());
    assert_eq!(store.kv_get("router", b"k").unwrap(), None);

    assert_eq!(store.kv_increment("router", b"n", 5).unwrap(), 5);
    assert_eq!(store.kv_increment("router", b"n", -7).unwrap(), -2);
    assert_eq!(store.kv_get("router", b"n").unwrap().unwrap(), (-2i64).to_le_bytes());
    assert!(matches!(store.kv_increment("router", b"n", i64::MIN), Err(KvIncrementError::Overflow { .. })));
    store.kv_set("router", b"s", b"text").unwrap();
    assert!(matches!(store.kv_increment("router", b"s", 1), Err(KvIncrementError::NotACounter(4))));
    // Another slot's space is another counter.
    assert_eq!(store.kv_increment("receipts", b"n", 1).unwrap(), 1);

    for k in ["a", "b/1", "b/2", "b/3", "c"] {
        store.kv_set("router", k.as_bytes(), b"").unwrap();
    }
    let page = |after: &[u8]| store.kv_keys_after("router", b"b/", after, 2).unwrap();
    assert_eq!(page(b""), [b"b/1".to_vec(), b"b/2".to_vec()]);
    assert_eq!(page(b"b/2"), [b"b/3".to_vec()]);
    assert!(page(b"b/3").is_empty());
    assert!(store.kv_keys_after("router", b"b/", b"z", 2).unwrap().is_empty());
}

#[test]
fn plugin_kv_increments_from_many_threads_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..500 {
                    store.kv_increment("router", b"n", 1).unwrap();
                    // A compare-and-swap loop on another key, racing the same way.
                    loop {
                        let old = store.kv_get("router", b"m").unwrap();
                        let value = old.as_deref().map_or(0, |b| i64::from_le_bytes(b.try_into().unwrap()));
                        if store.kv_compare_and_swap("router", b"m", old.as_deref(), Some(&(value + 1).to_le_bytes())).unwrap() {
                            break;
                        }
                    }
                }
            });
        }
    });
    assert_eq!(store.kv_get("router", b"n").unwrap().unwrap(), 4000i64.to_le_bytes());
    assert_eq!(store.kv_get("router", b"m").unwrap().unwrap(), 4000i64.to_le_bytes());
}

#[test]
fn records_written_before_the_message_kind_still_decode() {
    // Bytes as the builds before protocol version 3 wrote them (postcard, no kind).
    let old_delivered = [&[12][..], b"+15550000001", &[0xE8, 0x07]].concat();
    let record = records::decode_delivered(&old_delivered).unwrap();
    assert_eq!(record, DeliveredRecord { from: "+15550000001".into(), at_ms: 1000, kind: MessageKind::Text });
    let old_message = [&[0, 12][..], b"+15550000001", &[1, 2, b'h', b'i']].concat();
    let item: StoredItem = records::decode(&old_message, "queues").unwrap();
    assert_eq!(item, StoredItem::Message { from: "+15550000001".into(), sent_at_ms: 1, body: b"hi".to_vec() });

    // A text message is still written with those bytes; a media one as the appended
    // variant, and the delivered record with the kind after the old fields (which older
    // builds, reading only those, ignore).
    let text = StoredItem::message("+15550000001".into(), 1, MessageKind::Text, b"hi".to_vec());
    assert_eq!(records::encode(&text), old_message);
    let png = MessageKind::Media { mime: "image/png".into() };
    let media = StoredItem::message("+15550000001".into(), 1, png.clone(), b"hi".to_vec());
    assert!(matches!(&media, StoredItem::TypedMessage { kind, .. } if *kind == png));
    assert_eq!(records::encode(&media)[0], 2);
    assert_eq!(records::decode::<StoredItem>(&records::encode(&media), "queues").unwrap(), media);
    let new_delivered = DeliveredRecord { from: "+15550000001".into(), at_ms: 1000, kind: png };
    let bytes = records::encode(&new_delivered);
    assert_eq!(bytes[..old_delivered.len()], old_delivered[..]);
    assert_eq!(records::decode_delivered(&bytes).unwrap(), new_delivered);
    let as_before: hotline_core::records::DeliveredRecordV1 = postcard::from_bytes(&bytes).unwrap();
    assert_eq!((as_before.from.as_str(), as_before.at_ms), ("+15550000001", 1000));
    // Bytes that are neither are still refused as corrupt.
    assert!(records::decode_delivered(&[12, b'+']).is_err());
}

/// Maintenance deletes a journal only once every keyspace flushed its writes: a keyspace it
/// does not flush (the push tokens and media records were left out once) keeps every
/// journal on disk after a drain and after a shutdown.
#[test]
fn maintenance_flushes_every_keyspace_the_database_has() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.keyspaces().len(), store.db.keyspace_count(), "keyspaces: {:?}", store.db.list_keyspace_names());
}
