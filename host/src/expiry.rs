//! Expiry, run by the broker at start and hourly: deletes queued items (and records of
//! delivered, unread messages) older than the configured time to live, and idempotency
//! records older than a day.

use std::time::Duration;

use crate::broker::{now_ms, Broker};
use crate::store::{StoreError, Txn};

/// How long a client may retry a send and still be recognised as a retry.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Deletes per commit job, at most.
const CHUNK: usize = 1000;

/// Deletes what has expired; returns the number of queued items removed.
pub async fn expire(broker: &Broker) -> Result<usize, StoreError> {
    let now = now_ms();
    let item_cutoff = now.saturating_sub(broker.message_ttl.as_millis() as u64);
    let idem_cutoff = now.saturating_sub(IDEMPOTENCY_TTL.as_millis() as u64);
    // A full scan of three keyspaces: blocking work, kept off the async workers.
    let store = broker.store.clone();
    let expired = tokio::task::spawn_blocking(move || store.expired(item_cutoff, idem_cutoff))
        .await
        .map_err(|_| StoreError::Closed)??;
    let removed = expired.items.len();
    // An item acked since the scan is gone: its dequeue changes nothing, also not the
    // queue index.
    delete_in_chunks(broker, expired.items, |txn, (user, id)| txn.dequeue(user, *id)).await?;
    broker.metrics.messages_expired.fetch_add(removed as u64, std::sync::atomic::Ordering::Relaxed);
    delete_in_chunks(broker, expired.delivered, |txn, (reader, id)| {
        txn.delete_delivered(reader, *id);
        Ok(())
    })
    .await?;
    delete_in_chunks(broker, expired.records, |txn, key| {
        txn.delete_idempotency(key);
        Ok(())
    })
    .await?;
    if removed > 0 {
        tracing::info!(removed, "expired undelivered items");
    }
    Ok(removed)
}

/// Stages `delete` for every entry, [`CHUNK`] entries per commit job.
async fn delete_in_chunks<T: Send + 'static>(
    broker: &Broker,
    entries: Vec<T>,
    delete: fn(&mut Txn<'_>, &T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let chunk: Vec<T> = entries.by_ref().take(CHUNK).collect();
        broker
            .committer
            .commit(move |txn| {
                for entry in &chunk {
                    delete(txn, entry)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(())
}
