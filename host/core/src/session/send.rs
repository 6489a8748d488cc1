//! `Send`: route a batch of messages with one policy call, submit one storage job per
//! routable message, and answer each in order: `Sent` once durable, `SendFailed` otherwise.
//! Retries with the same client id store once ([`Job::Send`] checks).

use hotline_protocol::{is_e164, ErrorCode, ServerFrame};

use super::{Answer, Session, Stage};
use crate::jobs::{Job, JobOutcome};
use crate::policy::{MessageMeta, Route};
use crate::ports::{Ports, StorageFailure};
use crate::text::{clamp, quote, MAX_REASON_BYTES};
use crate::Millis;

/// Longest address a client may put in `to` (a number or a name the router understands).
const MAX_ADDRESS_LEN: usize = 128;

/// One `Send` frame's fields.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub client_id: u64,
    pub to: String,
    pub body: Vec<u8>,
}

impl Session {
    /// Routes the sends handed in since the last route (one policy call for all that pass
    /// the checks) and submits them in order.
    pub(super) fn route(&mut self, now: Millis, ports: &Ports<'_>) {
        if self.unrouted.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.unrouted);
        self.unrouted_bytes = 0;
        let Stage::Online { phone, .. } = &self.stage else { return };
        let from = phone.clone();
        let mut answers: Vec<Option<ServerFrame>> = Vec::with_capacity(batch.len());
        let mut routable = Vec::new();
        for (i, msg) in batch.iter().enumerate() {
            match self.refusal(msg) {
                Some((error, reason)) => answers.push(Some(ServerFrame::SendFailed { client_id: msg.client_id, error, reason })),
                None => {
                    answers.push(None);
                    routable.push((i, MessageMeta { from: from.clone(), to: msg.to.clone(), size: msg.body.len() as u32, at_ms: now }));
                }
            }
        }
        let routes = routes(&routable.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(), ports);
        let mut routes = routable.into_iter().map(|(i, _)| i).zip(routes).peekable();
        for (i, msg) in batch.into_iter().enumerate() {
            if let Some(frame) = answers[i].take() {
                self.answers.ready(frame);
                continue;
            }
            let (_, route) = routes.next().expect("one route per routable message");
            self.submit_send(now, &from, msg, route, ports);
        }
    }

    /// Why a message is refused before routing, if it is.
    fn refusal(&self, msg: &Outgoing) -> Option<(ErrorCode, String)> {
        if msg.to.is_empty() || msg.to.len() > MAX_ADDRESS_LEN || msg.to.chars().any(char::is_control) {
            Some((ErrorCode::InvalidArgument, format!("{} is not an address (1 to {MAX_ADDRESS_LEN} bytes, no control characters)", quote(&msg.to))))
        } else if msg.body.len() > self.config.max_body_bytes {
            Some((ErrorCode::TooLarge, format!("body of {} bytes exceeds the limit of {}", msg.body.len(), self.config.max_body_bytes)))
        } else {
            None
        }
    }

    /// Submits one routed message (or answers its refusal).
    fn submit_send(&mut self, now: Millis, from: &str, msg: Outgoing, route: Option<Route>, ports: &Ports<'_>) {
        let client_id = msg.client_id;
        let fail = |error, reason: String| Answer::Ready(ServerFrame::SendFailed { client_id, error, reason });
        let recipients = match route {
            Some(Route::Deliver(recipients)) => recipients,
            Some(Route::Reject(reason)) => return self.answers.push(fail(ErrorCode::Rejected, clamp(reason, MAX_REASON_BYTES))),
            None => {
                let reason = "routing is unavailable right now; retry with the same client id".into();
                return self.answers.push(fail(ErrorCode::Retryable, reason));
            }
        };
        // Only registered numbers get a queue; a route naming nobody registered is refused.
        let mut registered: Vec<String> = Vec::with_capacity(recipients.len());
        for r in recipients {
            match ports.accounts.account(&r) {
                Ok(Some(_)) if is_e164(&r) => {
                    if !registered.contains(&r) {
                        registered.push(r);
                    }
                }
                Ok(_) => tracing::debug!(recipient = %r, "skipping unregistered recipient"),
                Err(e) => return self.answers.push(fail(ErrorCode::Retryable, e.to_string())),
            }
        }
        if registered.is_empty() {
            let reason = if is_e164(&msg.to) {
                format!("{} is not registered", msg.to)
            } else {
                format!("{} has no registered recipient besides you", msg.to)
            };
            return self.answers.push(fail(ErrorCode::UnknownRecipient, reason));
        }
        let bytes = msg.body.len();
        let job = Job::Send { from: from.to_string(), client_id, recipients: registered, sent_at_ms: now, body: msg.body };
        let ticket = self.submit(job);
        self.pending_send_bytes += bytes;
        self.answers.push(Answer::Sent { ticket, client_id, bytes });
    }
}

/// Asks policy where each message goes, in one call. `None` for each message when the call
/// failed (the sender may retry with the same client id).
fn routes(messages: &[MessageMeta], ports: &Ports<'_>) -> Vec<Option<Route>> {
    if messages.is_empty() {
        return Vec::new();
    }
    match ports.policy.route(messages.to_vec()) {
        Ok(routes) if routes.len() == messages.len() => routes.into_iter().map(Some).collect(),
        Ok(routes) => {
            tracing::warn!(expected = messages.len(), got = routes.len(), "router answered the wrong number of routes");
            vec![None; messages.len()]
        }
        Err(e) => {
            tracing::warn!(error = %e, "router plugin failed");
            vec![None; messages.len()]
        }
    }
}

/// The answer to a send once its job finished.
pub(super) fn outcome(client_id: u64, result: Result<JobOutcome, StorageFailure>) -> ServerFrame {
    match result {
        Ok(JobOutcome::Stored { id }) => ServerFrame::Sent { client_id, id },
        // Storage failures are logged once by the store's health, not once per message.
        Err(e) => ServerFrame::SendFailed { client_id, error: ErrorCode::Retryable, reason: format!("{e}; retry with the same client id") },
        Ok(other) => unreachable!("a send job answered {other:?}"),
    }
}
