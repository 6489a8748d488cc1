//! The policy seam: every decision about where a message goes, how a number registers and
//! which receipts are sent is asked of a [`Policy`]. The core keeps mechanisms only.
//!
//! Policy sees metadata, never message bodies. Its state lives in its own key-value space
//! of the broker's storage ([`PluginKv`]), so it outlives restarts (and, later, swaps of
//! the WebAssembly components that will implement this trait).

mod native;

pub use native::NativePolicy;

use hotline_protocol::{ErrorCode, ReceiptStatus};

use crate::store::{Store, StoreError};

/// What policy is told about a message: metadata only, never the body.
#[derive(Debug, Clone)]
pub struct MessageMeta<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub size: usize,
    pub at_ms: u64,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Store the message for each of these numbers.
    Deliver(Vec<String>),
    /// Refuse the message; the sender sees the reason.
    Reject(String),
}

/// Answer to a request for a registration code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeDecision {
    /// Send `sms_text` (which contains the code) to the number.
    Send { sms_text: String, expires_in_secs: u32 },
    /// Send nothing; the client sees `error` and `reason`.
    Refuse { error: ErrorCode, reason: String },
}

/// Answer to a code the client sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyDecision {
    /// The code is right: the host issues a new key for the number.
    Accept,
    /// The code is wrong, expired or used up.
    Refuse { error: ErrorCode, reason: String },
}

/// A receipt the host is about to queue.
#[derive(Debug, Clone)]
pub struct ReceiptMeta<'a> {
    pub message_id: u64,
    /// Who received or read the message.
    pub by: &'a str,
    /// Who sent the message and would get the receipt.
    pub to: &'a str,
    pub status: ReceiptStatus,
}

/// A policy call that failed (not a decision): the host answers with a retryable error and
/// keeps the item queued.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy's own state could not be read or written.
    #[error("policy storage: {0}")]
    Storage(#[from] StoreError),
    /// The policy failed to decide (a crash or time-out in a plugin).
    #[error("policy failed: {0}")]
    Failed(String),
}

/// The decisions the broker delegates. Calls are synchronous and must be quick.
pub trait Policy: Send + Sync {
    /// The recipients of a message, or a rejection.
    fn route(&self, msg: &MessageMeta<'_>) -> Result<Route, PolicyError>;
    /// Whether to send a code to `phone`, and the SMS text with the code.
    fn request_code(&self, phone: &str, now_ms: u64) -> Result<CodeDecision, PolicyError>;
    /// Whether `code` proves ownership of `phone`.
    fn verify_code(&self, phone: &str, code: &str, now_ms: u64) -> Result<VerifyDecision, PolicyError>;
    /// Whether a receipt reaches the message's sender.
    fn receipt(&self, receipt: &ReceiptMeta<'_>) -> Result<bool, PolicyError>;
}

/// A policy's own key-value space in the broker's storage.
#[derive(Clone)]
pub struct PluginKv {
    store: Store,
    space: String,
}

impl PluginKv {
    /// The space named `space` (one per policy slot).
    pub fn new(store: Store, space: impl Into<String>) -> Self {
        PluginKv { store, space: space.into() }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.kv_get(&self.space, key)
    }

    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.store.kv_set(&self.space, key, value)
    }

    pub fn delete(&self, key: &[u8]) -> Result<(), StoreError> {
        self.store.kv_delete(&self.space, key)
    }
}
