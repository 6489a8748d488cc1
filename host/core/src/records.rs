//! The records Hotline stores, with their own types (not the wire's): the store encodes
//! them; the core reads and writes them through [`Txn`](crate::Txn) and the ports.

use hotline_protocol::ReceiptStatus;
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
}

impl StoredItem {
    /// When the item entered the queue, for expiry.
    pub fn queued_at_ms(&self) -> u64 {
        match self {
            StoredItem::Message { sent_at_ms, .. } => *sent_at_ms,
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
}

/// Remembers that `(sender, client_id)` was stored as message `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub id: u64,
    pub at_ms: u64,
}
