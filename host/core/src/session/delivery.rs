//! Delivery: pushing queued items through the window, and `Ack` — the client accepted an
//! item, so it is deleted and, for a message, its delivery recorded and a delivered receipt
//! queued for the sender if policy says so ([`Job::Ack`], one atomic batch).

use hotline_protocol::{ReceiptStatus, ServerFrame};

use super::{Session, Stage, PUSH_CHUNK};
use crate::close::Close;
use crate::jobs::{AckedMessage, Job};
use crate::policy::ReceiptMeta;
use crate::ports::Ports;
use crate::records::StoredItem;
use crate::Millis;

impl Session {
    /// Reads the next chunk the window allows and pushes it. Answers whether anything
    /// happened (items pushed, or the session closed on a storage failure).
    pub(super) fn push(&mut self, ports: &Ports<'_>) -> bool {
        if self.draining.is_some() {
            return false;
        }
        let Stage::Online { phone, window } = &mut self.stage else { return false };
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
        self.outputs.extend(items.into_iter().map(|(id, item)| super::Output::Frame(frame_for(id, item))));
        pushed
    }

    /// The client accepted item `id`. Unknown ids (duplicate acks) are ignored. Nobody waits
    /// for the job: a lost ack only means the item is delivered again.
    pub(super) fn ack(&mut self, now: Millis, id: u64, ports: &Ports<'_>) {
        let Stage::Online { phone, window } = &mut self.stage else { return };
        window.acked(id);
        let user = phone.clone();
        let item = match ports.queues.item(&user, id) {
            Ok(Some(item)) => item,
            Ok(None) => return,
            Err(e) => {
                // A storage failure is logged once by the store's health.
                tracing::debug!(error = %e, "ack failed");
                return self.close(Close::storage_unavailable());
            }
        };
        let message = match item {
            StoredItem::Message { from, .. } => {
                let meta = ReceiptMeta { message_id: id, by: user.clone(), to: from.clone(), status: ReceiptStatus::Delivered };
                match ports.policy.receipt(meta) {
                    Ok(receipt) => Some(AckedMessage { sender: from, receipt }),
                    Err(e) => {
                        // Keep the message queued rather than lose its receipt; it is pushed
                        // again on the user's next login.
                        tracing::warn!(error = %e, "receipts policy failed; message stays queued");
                        return;
                    }
                }
            }
            StoredItem::Receipt { .. } => None,
        };
        self.submit(Job::Ack { user, id, message, at_ms: now });
    }
}

/// The frame that pushes item `id`.
fn frame_for(id: u64, item: StoredItem) -> ServerFrame {
    match item {
        StoredItem::Message { from, sent_at_ms, body } => ServerFrame::Message { id, from, sent_at_ms, body },
        StoredItem::Receipt { message_id, by, status, at_ms } => ServerFrame::Receipt { id, message_id, by, status, at_ms },
    }
}
