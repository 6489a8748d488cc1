//! Storage jobs: what a session asks the committer to do, as data, and the whole logic of
//! each over a [`Txn`]. The committer runs jobs one at a time in submission order, so their
//! read-check-write sequences (idempotency, "is this item still queued?") need no locks.

use hotline_protocol::{MessageKind, ReceiptStatus};

use crate::records::{Account, DeliveredRecord, IdempotencyRecord, PushToken, StoredItem};
use crate::txn::Txn;

/// One storage job. Every variant but [`Job::CheckDelivered`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Store a message in every recipient's queue under one new id, once per
    /// `(from, client_id)`: a retry answers the id stored the first time. Refused, storing
    /// nothing, when a recipient's queue already holds `max_queue_items` items or more
    /// ([`JobOutcome::QueueFull`]).
    Send { from: String, client_id: u64, recipients: Vec<String>, sent_at_ms: u64, kind: MessageKind, body: Vec<u8>, max_queue_items: u64 },
    /// `user` accepted item `id`: dequeue it and, for a message, record the delivery (what
    /// a later `Read` must name) and queue a delivered receipt if policy allowed it; all in
    /// one batch, and nothing if the item is gone already (a duplicate ack).
    Ack { user: String, id: u64, message: Option<AckedMessage>, at_ms: u64 },
    /// Whether `reader` has a delivered, unread message `id`: a read in commit order, so a
    /// session's `Ack` just before counts. Writes nothing.
    CheckDelivered { reader: String, id: u64 },
    /// `reader` read message `id` from `sender`: consume the delivered record and queue a
    /// read receipt if policy allowed it; nothing if the record is gone (a second `Read`).
    Read { reader: String, id: u64, sender: String, receipt: bool, at_ms: u64 },
    /// Store the account of a newly registered device (replacing the old device's), and
    /// remove the old device's push token in the same batch: it would wake the wrong phone.
    Register { phone: String, account: Account },
    /// Store `phone`'s push token (protocol version 4; an empty `token` removes it), set by
    /// a session logged in with the key whose hash is `key_hash`. Refused, storing nothing
    /// ([`JobOutcome::KeyRevoked`]), when that is no longer the account's key: a token of
    /// the old device must not replace the new device's.
    SetPushToken { phone: String, token: String, key_hash: [u8; 32], at_ms: u64 },
}

/// What an [`Job::Ack`] of a message needs besides the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedMessage {
    /// Who sent the message.
    pub sender: String,
    /// Whether policy lets the sender have a delivered receipt.
    pub receipt: bool,
    /// The message's kind, kept in the delivered record for the read receipt.
    pub kind: MessageKind,
}

/// What a finished job answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// A message is stored under this id (now, or by an earlier try of the same send).
    Stored { id: u64 },
    /// The answer of [`Job::CheckDelivered`].
    Delivered(Option<DeliveredRecord>),
    /// The job's writes are done (or were not needed).
    Done,
    /// A [`Job::Send`] refused: `recipient`'s queue holds `items` items, at or over the
    /// limit. Nothing was staged (no item, no idempotency record), so the same send may be
    /// tried again later.
    QueueFull { recipient: String, items: u64 },
    /// A [`Job::SetPushToken`] refused: the session's key is no longer the account's (the
    /// number was registered again, or removed). Nothing was staged.
    KeyRevoked,
}

impl JobOutcome {
    /// Whether the job refused and staged nothing although it is a writing job: the
    /// driver answers it at once, without a commit.
    pub fn refused(&self) -> bool {
        matches!(self, JobOutcome::QueueFull { .. } | JobOutcome::KeyRevoked)
    }
}

impl Job {
    /// Whether the job may write (the committer then waits for durability before answering).
    pub fn writes(&self) -> bool {
        !matches!(self, Job::CheckDelivered { .. })
    }

    /// Runs the job against `txn`. An error means nothing of it is written.
    pub fn apply<T: Txn>(self, txn: &mut T) -> Result<JobOutcome, T::Error> {
        match self {
            Job::Send { from, client_id, recipients, sent_at_ms, kind, body, max_queue_items } => {
                if let Some(record) = txn.idempotency(&from, client_id)? {
                    return Ok(JobOutcome::Stored { id: record.id });
                }
                // Checked here, in commit order, so sends racing for the last places of a
                // queue cannot pass the limit together. Receipts are not limited.
                for r in &recipients {
                    let items = txn.queue_len(r)?;
                    if items >= max_queue_items {
                        return Ok(JobOutcome::QueueFull { recipient: r.clone(), items });
                    }
                }
                let id = txn.alloc_id()?;
                txn.put_idempotency(&from, client_id, &IdempotencyRecord { id, at_ms: sent_at_ms });
                let item = StoredItem::message(from, sent_at_ms, kind, body);
                for r in &recipients {
                    txn.enqueue(r, id, &item);
                }
                Ok(JobOutcome::Stored { id })
            }
            Job::Ack { user, id, message, at_ms } => {
                if txn.item(&user, id)?.is_none() {
                    return Ok(JobOutcome::Done);
                }
                txn.dequeue(&user, id)?;
                if let Some(AckedMessage { sender, receipt, kind }) = message {
                    if receipt {
                        let rid = txn.alloc_id()?;
                        let item = StoredItem::Receipt { message_id: id, by: user.clone(), status: ReceiptStatus::Delivered, at_ms };
                        txn.enqueue(&sender, rid, &item);
                    }
                    txn.put_delivered(&user, id, &DeliveredRecord { from: sender, at_ms, kind });
                }
                Ok(JobOutcome::Done)
            }
            Job::CheckDelivered { reader, id } => Ok(JobOutcome::Delivered(txn.delivered(&reader, id)?)),
            Job::Read { reader, id, sender, receipt, at_ms } => {
                if txn.delivered(&reader, id)?.is_none() {
                    return Ok(JobOutcome::Done);
                }
                txn.delete_delivered(&reader, id);
                if receipt {
                    let rid = txn.alloc_id()?;
                    let item = StoredItem::Receipt { message_id: id, by: reader, status: ReceiptStatus::Read, at_ms };
                    txn.enqueue(&sender, rid, &item);
                }
                Ok(JobOutcome::Done)
            }
            Job::Register { phone, account } => {
                txn.put_account(&phone, &account);
                txn.put_push_token(&phone, None);
                Ok(JobOutcome::Done)
            }
            Job::SetPushToken { phone, token, key_hash, at_ms } => {
                if txn.account(&phone)?.is_none_or(|account| account.key_hash != key_hash) {
                    return Ok(JobOutcome::KeyRevoked);
                }
                let record = PushToken { token, key_hash, set_at_ms: at_ms };
                txn.put_push_token(&phone, Some(&record).filter(|r| !r.token.is_empty()));
                Ok(JobOutcome::Done)
            }
        }
    }
}
