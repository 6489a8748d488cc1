//! `Send` (and `SendTyped`, a `Send` with a kind): route a batch of messages with one
//! policy question, submit one storage job per routable message, and answer each in order:
//! `Sent` once durable, `SendFailed` otherwise. Retries with the same client id store once
//! ([`Job::Send`] checks).

use hotline_protocol::{close_code, is_e164, ErrorCode, MessageKind, ServerFrame, MAX_MIME_LEN};

use super::ask::{expect, Asked};
use super::{Answer, Session, Stage, Ticket};
use crate::close::Close;
use crate::jobs::{Job, JobOutcome};
use crate::policy::{MessageMeta, PolicyError, Question, Reply, Route};
use crate::ports::{Ports, StorageFailure};
use crate::text::{clamp, quote, MAX_REASON_BYTES};
use crate::Millis;

/// Longest address a client may put in `to` (a number or a name the router understands).
const MAX_ADDRESS_LEN: usize = 128;

/// One `Send` or `SendTyped` frame's fields (a `Send`'s kind is `Text`).
#[derive(Debug)]
pub(super) struct Outgoing {
    pub client_id: u64,
    pub to: String,
    pub kind: MessageKind,
    pub body: Vec<u8>,
}

impl Session {
    /// Asks policy where the sends handed in since the last route go (one question for all
    /// that pass the checks); they are submitted in order when it replies. Not while
    /// another question is out.
    pub(super) fn route(&mut self, now: Millis) {
        if self.unrouted.is_empty() || self.asking.is_some() {
            return;
        }
        let batch = std::mem::take(&mut self.unrouted);
        let Stage::Online { phone, .. } = &self.stage else { return };
        let from = phone.clone();
        let ticket = self.next_ticket();
        let mut routable = Vec::with_capacity(batch.len());
        let mut metas = Vec::with_capacity(batch.len());
        for msg in batch {
            if let Some((error, reason)) = self.refusal(&msg) {
                self.unsubmitted_bytes -= msg.body.len();
                self.answers.ready(ServerFrame::SendFailed { client_id: msg.client_id, error, reason });
                continue;
            }
            metas.push(MessageMeta { from: from.clone(), to: msg.to.clone(), size: msg.body.len() as u32, at_ms: now, kind: msg.kind.clone() });
            self.answers.push(Answer::Asked { ticket });
            routable.push(msg);
        }
        if !routable.is_empty() {
            self.ask_as(ticket, Question::Route(metas), Asked::Route { from, batch: routable });
        }
    }

    /// Policy routed the batch (or failed): submit each message in order, or answer its
    /// refusal in its place.
    pub(super) fn routed(
        &mut self,
        now: Millis,
        ticket: Ticket,
        from: String,
        batch: Vec<Outgoing>,
        reply: Result<Reply, PolicyError>,
        ports: &Ports<'_>,
    ) {
        let n = batch.len();
        let routes = match expect(reply, |r| if let Reply::Route(routes) = r { Ok(routes) } else { Err(r) }) {
            Some(routes) if routes.len() == n => routes.into_iter().map(Some).collect(),
            Some(routes) => {
                tracing::warn!(expected = n, got = routes.len(), "router answered the wrong number of routes");
                vec![None; n]
            }
            None => vec![None; n],
        };
        for (msg, route) in batch.into_iter().zip(routes) {
            self.unsubmitted_bytes -= msg.body.len();
            let answer = self.submit_send(now, &from, msg, route, ports);
            self.replace(ticket, answer);
        }
        if self.sends_refused && self.draining.as_ref().is_none_or(|c| c.code == close_code::NORMAL) {
            // Storage failed under a send before its job was queued: no later send of this
            // session may be stored ahead of the client's retry of it.
            self.drain(Close::storage_unavailable());
        }
    }

    /// Why a message is refused before routing, if it is.
    fn refusal(&self, msg: &Outgoing) -> Option<(ErrorCode, String)> {
        if msg.to.is_empty() || msg.to.len() > MAX_ADDRESS_LEN || msg.to.chars().any(char::is_control) {
            Some((ErrorCode::InvalidArgument, format!("{} is not an address (1 to {MAX_ADDRESS_LEN} bytes, no control characters)", quote(&msg.to))))
        } else if let (MessageKind::Media { mime }, false) = (&msg.kind, msg.kind.is_valid()) {
            Some((ErrorCode::InvalidArgument, format!("{} is not a MIME type (type/subtype, at most {MAX_MIME_LEN} bytes of letters, digits and !#$&-^_.+)", quote(mime))))
        } else if msg.body.len() > self.config.max_body_bytes {
            Some((ErrorCode::TooLarge, format!("body of {} bytes exceeds the limit of {}", msg.body.len(), self.config.max_body_bytes)))
        } else {
            None
        }
    }

    /// Submits one routed message; its answer (`Sent` to come, or the refusal).
    fn submit_send(&mut self, now: Millis, from: &str, msg: Outgoing, route: Option<Route>, ports: &Ports<'_>) -> Answer {
        let client_id = msg.client_id;
        let fail = |error, reason: String| Answer::Ready(ServerFrame::SendFailed { client_id, error, reason });
        if self.sends_refused {
            return fail(ErrorCode::Retryable, "storage is unavailable; log in again and retry with the same client id".into());
        }
        let recipients = match route {
            Some(Route::Deliver(recipients)) => recipients,
            Some(Route::Reject(reason)) => return fail(ErrorCode::Rejected, clamp(reason, MAX_REASON_BYTES)),
            None => return fail(ErrorCode::Retryable, "routing is unavailable right now; retry with the same client id".into()),
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
                Err(e) => {
                    self.sends_refused = true;
                    return fail(ErrorCode::Retryable, e.to_string());
                }
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
        let bytes = msg.body.len();
        let max_queue_items = self.config.max_queue_items;
        let job = Job::Send { from: from.to_string(), client_id, recipients: registered, sent_at_ms: now, kind: msg.kind, body: msg.body, max_queue_items };
        let ticket = self.submit(job);
        self.pending_send_bytes += bytes;
        Answer::Sent { ticket, client_id, bytes, to: msg.to }
    }
}

/// The answer to a send to `to` once its job finished, in protocol `version`.
pub(super) fn outcome(version: u16, client_id: u64, to: &str, result: Result<JobOutcome, StorageFailure>) -> ServerFrame {
    match result {
        Ok(JobOutcome::Stored { id }) => ServerFrame::Sent { client_id, id },
        Ok(JobOutcome::QueueFull { recipient, items }) => {
            // `QueueFull` exists from version 2; a version-1 client gets `RateLimited`, which
            // means the same to it: nothing stored, try again later.
            let error = if version >= ErrorCode::QueueFull.since_version() { ErrorCode::QueueFull } else { ErrorCode::RateLimited };
            let whose = if recipient == to { "the recipient's queue".to_string() } else { format!("the queue of {recipient}, a recipient of {},", quote(to)) };
            ServerFrame::SendFailed { client_id, error, reason: format!("{whose} is full ({items} items waiting); try again later") }
        }
        // Storage failures are logged once by the store's health, not once per message.
        Err(e) => ServerFrame::SendFailed { client_id, error: ErrorCode::Retryable, reason: format!("{e}; retry with the same client id") },
        Ok(other) => unreachable!("a send job answered {other:?}"),
    }
}
