//! The records a cluster keeps in NATS: the mailbox envelope (postcard), the delivered
//! record (postcard), the directory entry and the kick (JSON, for operators reading them
//! with the `nats` CLI).

use hotline_core::{DeliveredRecord, StoredItem};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::ClusterError;

/// One copy of an item in a recipient's mailbox subject. The recipient is the subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The item as the recipient gets it.
    pub item: StoredItem,
    /// For a copy of a message to several recipients: the id `Sent` answered (the first
    /// copy's), which the sender's receipts name. `None`: this copy's own id.
    pub message_id: Option<u64>,
}

/// A message its recipient acknowledged and has not reported read (`<prefix>_delivered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// What the core's `Read` checks.
    pub record: DeliveredRecord,
    /// The sender's id of the message (what the read receipt names).
    pub message_id: u64,
}

/// A number's entry in the directory (`<prefix>_sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The node holding the number's session.
    pub node: String,
    /// Grows with every login of the number; the older session is the one to close.
    pub epoch: u64,
}

/// A request to close a number's session on the node it is sent to
/// (`<prefix>.node.<id>.kick`): closed only if that session's epoch is below `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kick {
    pub number: String,
    pub epoch: u64,
    pub code: u32,
    pub reason: String,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records serialize")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ClusterError> {
    postcard::from_bytes(bytes).map_err(|e| ClusterError::Corrupt { what: what.to_string(), detail: e.to_string() })
}

pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

pub fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ClusterError> {
    serde_json::from_slice(bytes).map_err(|e| ClusterError::Corrupt { what: what.to_string(), detail: e.to_string() })
}
