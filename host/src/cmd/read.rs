//! `Read`: the user read a message; queue a read receipt for its sender if policy says so.

use hotline_protocol::{is_e164, ErrorCode, ReceiptStatus, ServerFrame};

use super::error;
use crate::broker::{now_ms, Broker};
use crate::policy::ReceiptMeta;
use crate::store::StoredItem;

/// Queues a read receipt for message `id` to `sender`. Answers only on failure.
pub async fn read(broker: &Broker, user: &str, id: u64, sender: String) -> Option<ServerFrame> {
    if !is_e164(&sender) {
        return Some(error(ErrorCode::InvalidArgument, format!("{sender:?} is not an E.164 number")));
    }
    match broker.store.account(&sender) {
        Ok(Some(_)) => {}
        Ok(None) => return Some(error(ErrorCode::UnknownRecipient, format!("{sender} is not registered"))),
        Err(e) => return Some(error(ErrorCode::Retryable, e.to_string())),
    }
    let meta = ReceiptMeta { message_id: id, by: user.to_string(), to: sender.clone(), status: ReceiptStatus::Read };
    match broker.policy.receipt(meta) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "receipts policy failed");
            return Some(error(ErrorCode::Retryable, "receipts are unavailable right now; retry"));
        }
    }
    let receipt = StoredItem::Receipt { message_id: id, by: user.to_string(), status: ReceiptStatus::Read, at_ms: now_ms() };
    let submitted = broker
        .committer
        .submit(move |txn| {
            let rid = txn.alloc_id()?;
            txn.enqueue(&sender, rid, &receipt);
            Ok(())
        })
        .await;
    submitted.err().map(|e| error(ErrorCode::Retryable, e.to_string()))
}
