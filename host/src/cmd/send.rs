//! `Send`: route messages with the router plugin, store each in every recipient's queue in
//! one atomic batch, and answer `Sent` once durable. Retries with the same client id store
//! once. Sends that arrive together are routed in one plugin call.

use hotline_protocol::{is_e164, ErrorCode, ServerFrame};

use super::{clamp, quote, MAX_REASON_BYTES};
use crate::broker::{now_ms, Broker};
use crate::policy::{MessageMeta, Route};
use crate::store::{IdempotencyRecord, Pending, StoredItem};

/// Longest address a client may put in `to` (a number or a name the router understands).
const MAX_ADDRESS_LEN: usize = 128;

/// One `Send` frame's fields.
#[derive(Debug)]
pub struct Outgoing {
    pub client_id: u64,
    pub to: String,
    pub body: Vec<u8>,
}

/// What became of one send: submitted (answer when durable) or refused now.
pub enum Submitted {
    Pending { client_id: u64, pending: Pending<u64> },
    Refused(ServerFrame),
}

/// Validates, routes (one plugin call for the whole batch) and submits each message to the
/// committer, in order.
pub async fn send(broker: &Broker, from: &str, batch: Vec<Outgoing>) -> Vec<Submitted> {
    let fail = |client_id, error, reason: String| Submitted::Refused(ServerFrame::SendFailed { client_id, error, reason });
    let at_ms = now_ms();
    let mut out: Vec<Option<Submitted>> = Vec::with_capacity(batch.len());
    let mut routable = Vec::new();
    for (i, msg) in batch.iter().enumerate() {
        let refusal = if msg.to.is_empty() || msg.to.len() > MAX_ADDRESS_LEN || msg.to.chars().any(char::is_control) {
            Some((ErrorCode::InvalidArgument, format!("{} is not an address (1 to {MAX_ADDRESS_LEN} bytes, no control characters)", quote(&msg.to))))
        } else if msg.body.len() > broker.limits.max_body_bytes {
            Some((ErrorCode::TooLarge, format!("body of {} bytes exceeds the limit of {}", msg.body.len(), broker.limits.max_body_bytes)))
        } else {
            None
        };
        match refusal {
            Some((error, reason)) => out.push(Some(fail(msg.client_id, error, reason))),
            None => {
                out.push(None);
                routable.push((i, MessageMeta { from: from.to_string(), to: msg.to.clone(), size: msg.body.len() as u32, at_ms }));
            }
        }
    }
    let routes = if routable.is_empty() {
        Ok(Vec::new())
    } else {
        broker.policy.route(routable.iter().map(|(_, m)| m.clone()).collect())
    };
    // `None`: routing failed (plugin error); the sender may retry with the same client id.
    let routes: Vec<Option<Route>> = match routes {
        Ok(routes) if routes.len() == routable.len() => routes.into_iter().map(Some).collect(),
        Ok(routes) => {
            tracing::warn!(expected = routable.len(), got = routes.len(), "router answered the wrong number of routes");
            vec![None; routable.len()]
        }
        Err(e) => {
            tracing::warn!(error = %e, "router plugin failed");
            vec![None; routable.len()]
        }
    };
    let mut batch: Vec<Option<Outgoing>> = batch.into_iter().map(Some).collect();
    for ((i, _), route) in routable.into_iter().zip(routes) {
        let msg = batch[i].take().expect("each message routed once");
        out[i] = Some(submit(broker, from, msg, route, at_ms).await);
    }
    out.into_iter().map(|s| s.expect("every send answered")).collect()
}

async fn submit(broker: &Broker, from: &str, msg: Outgoing, route: Option<Route>, at_ms: u64) -> Submitted {
    let client_id = msg.client_id;
    let fail = |error, reason: String| Submitted::Refused(ServerFrame::SendFailed { client_id, error, reason });
    let recipients = match route {
        Some(Route::Deliver(recipients)) => recipients,
        Some(Route::Reject(reason)) => return fail(ErrorCode::Rejected, clamp(reason, MAX_REASON_BYTES)),
        None => return fail(ErrorCode::Retryable, "routing is unavailable right now; retry with the same client id".into()),
    };
    // Only registered numbers get a queue; a route naming nobody registered is refused.
    let mut registered = Vec::with_capacity(recipients.len());
    for r in recipients {
        match broker.store.account(&r) {
            Ok(Some(_)) if is_e164(&r) => {
                if !registered.contains(&r) {
                    registered.push(r);
                }
            }
            Ok(_) => tracing::debug!(recipient = %r, "skipping unregistered recipient"),
            Err(e) => return fail(ErrorCode::Retryable, e.to_string()),
        }
    }
    if registered.is_empty() {
        let reason = if is_e164(&msg.to) {
            format!("{} is not registered", msg.to)
        } else {
            format!("{} has no registered recipient besides you", msg.to)
        };
        return fail(ErrorCode::UnknownRecipient, reason);
    }
    let from = from.to_string();
    let item = StoredItem::Message { from: from.clone(), sent_at_ms: at_ms, body: msg.body };
    let job = move |txn: &mut crate::store::Txn<'_>| {
        if let Some(record) = txn.store().idempotency(&from, client_id)? {
            return Ok(record.id);
        }
        let id = txn.alloc_id()?;
        for r in &registered {
            txn.enqueue(r, id, &item);
        }
        txn.put_idempotency(&from, client_id, &IdempotencyRecord { id, at_ms });
        Ok(id)
    };
    match broker.committer.submit(job).await {
        Ok(pending) => Submitted::Pending { client_id, pending },
        Err(e) => fail(ErrorCode::Retryable, e.to_string()),
    }
}

/// The answer to a send once its commit finished.
pub fn outcome(client_id: u64, result: Result<u64, crate::store::StoreError>) -> ServerFrame {
    match result {
        Ok(id) => ServerFrame::Sent { client_id, id },
        // Storage failures are logged once by `store::Health`, not once per message.
        Err(e) => ServerFrame::SendFailed { client_id, error: ErrorCode::Retryable, reason: format!("{e}; retry with the same client id") },
    }
}
