//! Delivery: pushing queued items through the window (messages as `TypedMessage` in
//! version-3 sessions, `Message` before), and `Ack` — the client accepted an
//! item, so it is deleted and, for a message, its delivery recorded and a delivered receipt
//! queued for the sender if policy says so ([`Job::Ack`], one atomic batch). Acks handed in
//! together are asked about in one question.

use hotline_protocol::{MessageKind, ReceiptStatus, ServerFrame};

use super::ask::{expect, Asked};
use super::{Session, Stage, PUSH_CHUNK};
use crate::close::Close;
use crate::jobs::{AckedMessage, Job};
use crate::policy::{PolicyError, Question, ReceiptMeta, Reply};
use crate::ports::Ports;
use crate::records::StoredItem;
use crate::Millis;

/// The protocol version from which messages are pushed as `TypedMessage`.
const TYPED_MESSAGE_SINCE: u16 = 3;

impl Session {
    /// Reads the next chunk the window allows and pushes it. Answers whether anything
    /// happened (items pushed, or the session closed on a storage failure).
    pub(super) fn push(&mut self, ports: &Ports<'_>) -> bool {
        if self.draining.is_some() {
            return false;
        }
        let version = self.version;
        let Stage::Online { phone, window, .. } = &mut self.stage else { return false };
        // The planted bug the simulator must catch (`--features mutation-push-before-durable`):
        // reading past the durable watermark, so items not yet durable are pushed.
        let durable = if cfg!(feature = "mutation-push-before-durable") { u64::MAX } else { ports.queues.durable_id() };
        let Some(read) = window.next_read(durable, PUSH_CHUNK) else { return false };
        let items = match ports.queues.queue_after(phone, read.after, read.upto, read.limit) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, "reading queue failed");
                self.close(Close::storage_unavailable());
                return true;
            }
        };
        window.pushed(read, items.iter().map(|(id, _)| *id));
        let pushed = !items.is_empty();
        self.outputs.extend(items.into_iter().map(|(id, item)| super::Output::Frame(frame_for(version, id, item))));
        pushed
    }

    /// The client accepted the items handed in since the last flush. Unknown ids
    /// (duplicate acks) are ignored. For the messages among them, policy is asked in one
    /// question whether their senders get delivered receipts; the jobs are submitted when
    /// it replies (at once if there is no message). Nobody waits for an ack's job: a lost
    /// ack only means the item is delivered again.
    pub(super) fn flush_acks(&mut self, now: Millis, ports: &Ports<'_>) {
        if self.unacked.is_empty() || self.asking.is_some() {
            return;
        }
        let ids = std::mem::take(&mut self.unacked);
        let Stage::Online { phone, window, .. } = &mut self.stage else { return };
        let user = phone.clone();
        let mut items = Vec::with_capacity(ids.len());
        let mut metas = Vec::new();
        for id in ids {
            window.acked(id);
            match ports.queues.item(&user, id) {
                Ok(Some(StoredItem::Message { from, .. })) => {
                    metas.push(ReceiptMeta { message_id: id, by: user.clone(), to: from.clone(), status: ReceiptStatus::Delivered, kind: MessageKind::Text });
                    items.push((id, Some((from, MessageKind::Text))));
                }
                Ok(Some(StoredItem::TypedMessage { from, kind, .. })) => {
                    metas.push(ReceiptMeta { message_id: id, by: user.clone(), to: from.clone(), status: ReceiptStatus::Delivered, kind: kind.clone() });
                    items.push((id, Some((from, kind))));
                }
                Ok(Some(StoredItem::Receipt { .. })) => items.push((id, None)),
                Ok(None) => {}
                Err(e) => {
                    // A storage failure is logged once by the store's health.
                    tracing::debug!(error = %e, "ack failed");
                    return self.close(Close::storage_unavailable());
                }
            }
        }
        if metas.is_empty() {
            return self.submit_acks(now, user, items, Vec::new());
        }
        self.ask(Question::Receipts(metas), Asked::Acks { user, items }, 0);
    }

    /// Policy said which senders get delivered receipts (or failed).
    pub(super) fn acks_answered(&mut self, now: Millis, user: String, items: Vec<(u64, Option<(String, MessageKind)>)>, reply: Result<Reply, PolicyError>) {
        let messages = items.iter().filter(|(_, sender)| sender.is_some()).count();
        let allowed = match expect(reply, |r| if let Reply::Receipts(allowed) = r { Ok(allowed) } else { Err(r) }) {
            Some(allowed) if allowed.len() == messages => allowed,
            _ => {
                // Keep the messages queued rather than lose their receipts; they are pushed
                // again on the user's next login. Acks of receipts go through.
                tracing::warn!(messages, "receipts policy failed; acknowledged messages stay queued");
                let receipts_only = items.into_iter().filter(|(_, sender)| sender.is_none()).collect();
                return self.submit_acks(now, user, receipts_only, Vec::new());
            }
        };
        self.submit_acks(now, user, items, allowed);
    }

    /// Submits one `Job::Ack` per item, in order; `allowed` holds policy's word for each
    /// message among them.
    fn submit_acks(&mut self, now: Millis, user: String, items: Vec<(u64, Option<(String, MessageKind)>)>, allowed: Vec<bool>) {
        let mut allowed = allowed.into_iter();
        for (id, sender) in items {
            let message = sender.map(|(sender, kind)| AckedMessage { sender, receipt: allowed.next().expect("one answer per message"), kind });
            self.submit(Job::Ack { user: user.clone(), id, message, at_ms: now });
        }
    }
}

/// The frame that pushes item `id` in a session of protocol `version`: from version 3 every
/// message as `TypedMessage`, before it as `Message` (the kind dropped).
fn frame_for(version: u16, id: u64, item: StoredItem) -> ServerFrame {
    let typed = version >= TYPED_MESSAGE_SINCE;
    match item {
        StoredItem::Message { from, sent_at_ms, body } if typed => {
            ServerFrame::TypedMessage { id, from, sent_at_ms, kind: MessageKind::Text, body }
        }
        StoredItem::Message { from, sent_at_ms, body } => ServerFrame::Message { id, from, sent_at_ms, body },
        StoredItem::TypedMessage { from, sent_at_ms, kind, body } if typed => ServerFrame::TypedMessage { id, from, sent_at_ms, kind, body },
        StoredItem::TypedMessage { from, sent_at_ms, body, .. } => ServerFrame::Message { id, from, sent_at_ms, body },
        StoredItem::Receipt { message_id, by, status, at_ms } => ServerFrame::Receipt { id, message_id, by, status, at_ms },
    }
}
