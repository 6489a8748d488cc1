//! Expiry, run by the broker at start and hourly: deletes queued items (and records of
//! delivered, unread messages) older than the configured time to live, and idempotency
//! records older than a day.

use std::time::Duration;

use crate::broker::{now_ms, Broker};
use crate::store::StoreError;

/// How long a client may retry a send and still be recognised as a retry.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Deletes what has expired; returns the number of queued items removed.
pub async fn expire(broker: &Broker) -> Result<usize, StoreError> {
    let now = now_ms();
    let item_cutoff = now.saturating_sub(broker.message_ttl.as_millis() as u64);
    let idem_cutoff = now.saturating_sub(IDEMPOTENCY_TTL.as_millis() as u64);
    let expired = broker.store.expired(item_cutoff, idem_cutoff)?;
    let (items, delivered, records) = (expired.items, expired.delivered, expired.records);
    let removed = items.len();
    for chunk in items.chunks(1000) {
        let chunk = chunk.to_vec();
        broker.committer.commit(move |txn| {
            for (user, id) in &chunk {
                txn.dequeue(user, *id);
            }
            Ok(())
        }).await?;
    }
    for chunk in delivered.chunks(1000) {
        let chunk = chunk.to_vec();
        broker.committer.commit(move |txn| {
            for (reader, id) in &chunk {
                txn.delete_delivered(reader, *id);
            }
            Ok(())
        }).await?;
    }
    for chunk in records.chunks(1000) {
        let chunk = chunk.to_vec();
        broker.committer.commit(move |txn| {
            for key in &chunk {
                txn.delete_idempotency(key);
            }
            Ok(())
        }).await?;
    }
    if removed > 0 {
        tracing::info!(removed, "expired undelivered items");
    }
    Ok(removed)
}
