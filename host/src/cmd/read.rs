//! `Read`: the user read a message; queue a read receipt for its sender if policy says so.
//!
//! A `Read{id, from}` must name a message that was delivered to the reader (acknowledged)
//! from `from` and not yet reported read: the `Ack` stored that fact (`store::DeliveredRecord`)
//! and the first `Read` consumes it. Anything else is refused, so no one can make anyone
//! receive a receipt for a message that was never delivered, or receive it twice.

use hotline_protocol::{is_e164, ErrorCode, ReceiptStatus, ServerFrame};

use super::{error, quote};
use crate::broker::{now_ms, Broker};
use crate::policy::ReceiptMeta;
use crate::store::StoredItem;

/// Queues a read receipt for message `id` to `sender`. Answers only on failure or refusal.
pub async fn read(broker: &Broker, user: &str, id: u64, sender: String) -> Option<ServerFrame> {
    if !is_e164(&sender) {
        return Some(error(ErrorCode::InvalidArgument, format!("{} is not an E.164 number", quote(&sender))));
    }
    // In commit order, so an `Ack` this session sent just before is seen.
    let reader = user.to_string();
    let record = match broker.committer.query(move |store| store.delivered(&reader, id)).await {
        Ok(record) => record,
        Err(e) => return Some(error(ErrorCode::Retryable, format!("{e}; retry"))),
    };
    if record.is_none_or(|r| r.from != sender) {
        return Some(error(
            ErrorCode::InvalidArgument,
            format!("no message {id} from {sender} was delivered to you and left unread; acknowledge a message before reporting it read, once"),
        ));
    }
    let meta = ReceiptMeta { message_id: id, by: user.to_string(), to: sender.clone(), status: ReceiptStatus::Read };
    let allowed = match broker.policy.receipt(meta) {
        Ok(allowed) => allowed,
        Err(e) => {
            tracing::warn!(error = %e, "receipts policy failed");
            return Some(error(ErrorCode::Retryable, "receipts are unavailable right now; retry"));
        }
    };
    let reader = user.to_string();
    let submitted = broker
        .committer
        .submit(move |txn| {
            // Checked again in the job: of two `Read`s racing, only the first makes a receipt.
            if txn.store().delivered(&reader, id)?.is_none() {
                return Ok(());
            }
            txn.delete_delivered(&reader, id);
            if allowed {
                let rid = txn.alloc_id()?;
                let receipt = StoredItem::Receipt { message_id: id, by: reader.clone(), status: ReceiptStatus::Read, at_ms: now_ms() };
                txn.enqueue(&sender, rid, &receipt);
            }
            Ok(())
        })
        .await;
    submitted.err().map(|e| error(ErrorCode::Retryable, format!("{e}; retry")))
}
