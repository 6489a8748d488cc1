//! `Ack`: the client accepted an item. The broker deletes it and, for a message, queues a
//! delivered receipt for its sender if policy says so and records the delivery (what a
//! later `Read` must name), all in the same atomic batch.

use hotline_protocol::ReceiptStatus;

use crate::broker::{now_ms, Broker};
use crate::policy::ReceiptMeta;
use crate::store::{DeliveredRecord, StoreError, StoredItem};

/// Deletes item `id` from `user`'s queue. Unknown ids (duplicate acks) are ignored. Does not
/// wait for durability: a lost ack only means the item is delivered again.
pub async fn ack(broker: &Broker, user: &str, id: u64) -> Result<(), StoreError> {
    let Some(item) = broker.store.item(user, id)? else {
        return Ok(());
    };
    let (sender, receipt_to) = match &item {
        StoredItem::Message { from, .. } => {
            let meta = ReceiptMeta { message_id: id, by: user.to_string(), to: from.clone(), status: ReceiptStatus::Delivered };
            match broker.policy.receipt(meta) {
                Ok(true) => (Some(from.clone()), Some(from.clone())),
                Ok(false) => (Some(from.clone()), None),
                Err(e) => {
                    // Keep the message queued rather than lose its receipt; it is pushed again on
                    // the user's next login.
                    tracing::warn!(error = %e, "receipts policy failed; message stays queued");
                    return Ok(());
                }
            }
        }
        StoredItem::Receipt { .. } => (None, None),
    };
    let user = user.to_string();
    broker
        .committer
        .submit(move |txn| {
            if txn.store().item(&user, id)?.is_none() {
                return Ok(());
            }
            txn.dequeue(&user, id);
            let at_ms = now_ms();
            if let Some(from) = sender {
                txn.put_delivered(&user, id, &DeliveredRecord { from, at_ms });
            }
            if let Some(sender) = receipt_to {
                let rid = txn.alloc_id()?;
                let receipt = StoredItem::Receipt { message_id: id, by: user.clone(), status: ReceiptStatus::Delivered, at_ms };
                txn.enqueue(&sender, rid, &receipt);
            }
            Ok(())
        })
        .await?;
    Ok(())
}
