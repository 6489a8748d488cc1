//! The records Hotline stores, with their own types (not the wire's): the store encodes
//! them; the core reads and writes them through [`Txn`](crate::Txn) and the ports.
//!
//! The store encodes them with postcard, which writes no field names or versions: enum
//! variants are only appended, and a field added to a struct goes at its end with a
//! decode that accepts the records written without it (`hotline`'s `store::records`).

use hotline_protocol::{MessageKind, ReceiptStatus};
use serde::{Deserialize, Serialize};

/// A registered number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// SHA-256 of the secret key; the key itself is never stored.
    pub key_hash: [u8; 32],
    /// When this device registered, in Unix milliseconds.
    pub registered_at_ms: u64,
}

/// An item waiting in a user's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredItem {
    /// A message for the queue's owner.
    Message { from: String, sent_at_ms: u64, body: Vec<u8> },
    /// A receipt for a message the queue's owner sent.
    Receipt { message_id: u64, by: String, status: ReceiptStatus, at_ms: u64 },
    /// A message for the queue's owner of a kind other than `Text` (protocol version 3).
    /// Text messages are stored as [`StoredItem::Message`], as before the kind existed.
    TypedMessage { from: String, sent_at_ms: u64, kind: MessageKind, body: Vec<u8> },
}

impl StoredItem {
    /// A message of `kind`, stored as the variant for it: a `Text` one as
    /// [`StoredItem::Message`] (so its bytes are those of the builds before the kind).
    pub fn message(from: String, sent_at_ms: u64, kind: MessageKind, body: Vec<u8>) -> StoredItem {
        match kind {
            MessageKind::Text => StoredItem::Message { from, sent_at_ms, body },
            kind => StoredItem::TypedMessage { from, sent_at_ms, kind, body },
        }
    }

    /// When the item entered the queue, for expiry.
    pub fn queued_at_ms(&self) -> u64 {
        match self {
            StoredItem::Message { sent_at_ms, .. } | StoredItem::TypedMessage { sent_at_ms, .. } => *sent_at_ms,
            StoredItem::Receipt { at_ms, .. } => *at_ms,
        }
    }
}

/// A message its recipient acknowledged and has not reported read: a `Read` must name it,
/// with this sender. Removed by the first `Read` or with the queue's expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredRecord {
    /// Who sent the message (the receipt goes to them).
    pub from: String,
    /// When the recipient acknowledged it, in Unix milliseconds.
    pub at_ms: u64,
    /// The message's kind, for the read receipt's policy question. Added last: a record
    /// written before it (without these bytes) decodes as `Text`
    /// ([`DeliveredRecord::from_versioned`]); builds before it ignore the extra bytes.
    pub kind: MessageKind,
}

/// A [`DeliveredRecord`] as builds before the kind wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredRecordV1 {
    pub from: String,
    pub at_ms: u64,
}

impl DeliveredRecord {
    /// Turns a record written before the kind into one: it was a text message.
    pub fn from_versioned(v1: DeliveredRecordV1) -> DeliveredRecord {
        DeliveredRecord { from: v1.from, at_ms: v1.at_ms, kind: MessageKind::Text }
    }
}

/// A device's push token (protocol version 4, `SetPushToken`): where the push gateway can
/// wake the number's device. Stored under the number; valid only while `key_hash` is the
/// account's current key hash (a re-registration, a new device, makes it stale).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushToken {
    /// The token as the device gave it (1 to 4096 bytes, no control characters).
    pub token: String,
    /// The key hash of the account when the token was set.
    pub key_hash: [u8; 32],
    /// When it was set, in Unix milliseconds.
    pub set_at_ms: u64,
}

/// Remembers that `(sender, client_id)` was stored as message `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub id: u64,
    pub at_ms: u64,
}
