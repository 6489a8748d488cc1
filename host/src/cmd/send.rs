//! `Send`: route a message with policy, store it in every recipient's queue in one atomic
//! batch, and answer `Sent` once it is durable. Retries with the same client id store once.

use hotline_protocol::{is_e164, ErrorCode, ServerFrame};

use crate::broker::{now_ms, Broker};
use crate::policy::{MessageMeta, Route};
use crate::store::{IdempotencyRecord, Pending, StoredItem};

/// Validates and routes the message and submits it to the committer. The returned
/// [`Pending`] yields the message id once durable. Refusals come back as a `SendFailed` frame.
pub async fn send(
    broker: &Broker,
    from: &str,
    client_id: u64,
    to: String,
    body: Vec<u8>,
) -> Result<Pending<u64>, ServerFrame> {
    let fail = |error, reason: String| ServerFrame::SendFailed { client_id, error, reason };
    if !is_e164(&to) {
        return Err(fail(ErrorCode::InvalidArgument, format!("{to:?} is not an E.164 number")));
    }
    if body.len() > broker.limits.max_body_bytes {
        return Err(fail(
            ErrorCode::TooLarge,
            format!("body of {} bytes exceeds the limit of {}", body.len(), broker.limits.max_body_bytes),
        ));
    }
    let at_ms = now_ms();
    let meta = MessageMeta { from, to: &to, size: body.len(), at_ms };
    let recipients = match broker.policy.route(&meta) {
        Ok(Route::Deliver(recipients)) => recipients,
        Ok(Route::Reject(reason)) => return Err(fail(ErrorCode::Rejected, reason)),
        Err(e) => {
            tracing::warn!(error = %e, "router policy failed");
            return Err(fail(ErrorCode::Retryable, "routing is unavailable right now; retry".into()));
        }
    };
    for r in &recipients {
        match broker.store.account(r) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(fail(ErrorCode::UnknownRecipient, format!("{r} is not registered"))),
            Err(e) => return Err(fail(ErrorCode::Retryable, e.to_string())),
        }
    }
    let from = from.to_string();
    let item = StoredItem::Message { from: from.clone(), sent_at_ms: at_ms, body };
    let job = move |txn: &mut crate::store::Txn<'_>| {
        if let Some(record) = txn.store().idempotency(&from, client_id)? {
            return Ok(record.id);
        }
        let id = txn.alloc_id()?;
        for r in &recipients {
            txn.enqueue(r, id, &item);
        }
        txn.put_idempotency(&from, client_id, &IdempotencyRecord { id, at_ms });
        Ok(id)
    };
    broker.committer.submit(job).await.map_err(|e| fail(ErrorCode::Retryable, e.to_string()))
}

/// The answer to a send once its commit finished.
pub fn outcome(client_id: u64, result: Result<u64, crate::store::StoreError>) -> ServerFrame {
    match result {
        Ok(id) => ServerFrame::Sent { client_id, id },
        Err(e) => {
            tracing::error!(error = %e, "storing a message failed");
            ServerFrame::SendFailed { client_id, error: ErrorCode::Retryable, reason: e.to_string() }
        }
    }
}
