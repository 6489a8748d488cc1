//! Where plugins' key-value state lives: the [`PluginKv`] trait behind the `hotline:plugin/kv`
//! host interface (`host_api/kv.rs`), implemented by the node's own [`Store`] (one node:
//! fjall, per-key lock stripes) and, in a cluster, by a NATS JetStream bucket
//! ([`super::cluster_kv::NatsPluginKv`]). The host interface checks the limits
//! (`hotline_plugin::limits`) before it calls a backend; a backend keeps each slot's keys
//! apart and makes compare-and-swap and increment atomic against every other writer.

use crate::store::{KvIncrementError, Store, StoreError};

/// What a plugin key-value backend can fail with (the plugin sees the call's "nothing"
/// answer; the host logs the error).
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// The node's fjall store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The NATS bucket failed or did not answer in time (the write may or may not have
    /// happened).
    #[error("plugin kv bucket: {0}")]
    Bucket(String),
}

/// What [`PluginKv::increment`] can refuse, changing nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IncrementError {
    /// The value under the key is not a counter (8 bytes).
    #[error("the value is {0} bytes long, not a counter (8 bytes, little-endian)")]
    NotACounter(usize),
    /// The sum does not fit in a signed 64-bit integer.
    #[error("the counter would overflow ({value} + {delta})")]
    Overflow { value: i64, delta: i64 },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] KvError),
}

impl From<KvIncrementError> for IncrementError {
    fn from(e: KvIncrementError) -> Self {
        match e {
            KvIncrementError::NotACounter(len) => IncrementError::NotACounter(len),
            KvIncrementError::Overflow { value, delta } => IncrementError::Overflow { value, delta },
            KvIncrementError::Store(e) => IncrementError::Backend(e.into()),
        }
    }
}

/// The counter after adding `delta` to `current` (8 bytes little-endian, absent is 0), with
/// the same refusals on every backend.
pub fn add_to_counter(current: Option<&[u8]>, delta: i64) -> Result<i64, IncrementError> {
    let value = match current {
        None => 0,
        Some(bytes) => i64::from_le_bytes(bytes.try_into().map_err(|_| IncrementError::NotACounter(bytes.len()))?),
    };
    value.checked_add(delta).ok_or(IncrementError::Overflow { value, delta })
}

/// A plugin's key-value space per slot (`slot` is the slot's name: each slot sees only its
/// own keys). Keys are byte strings ordered bytewise. Called from plugin threads (OS
/// threads, never tokio workers during calls), so implementations may block.
pub trait PluginKv: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, slot: &str, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets `key` to `value`.
    fn set(&self, slot: &str, key: &[u8], value: &[u8]) -> Result<(), KvError>;
    /// Deletes `key` (absent: nothing to do).
    fn delete(&self, slot: &str, key: &[u8]) -> Result<(), KvError>;
    /// Keys starting with `prefix`, in order, at most `limit`.
    fn keys(&self, slot: &str, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, KvError>;
    /// Keys starting with `prefix` and sorting after `after`, in order, at most `limit`.
    fn keys_after(&self, slot: &str, prefix: &[u8], after: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, KvError>;
    /// If the value under `key` is `expected` (`None`: absent), makes it `new` (`None`:
    /// deleted) and answers true; otherwise false. Atomic against every other write of the key.
    fn compare_and_swap(&self, slot: &str, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, KvError>;
    /// Adds `delta` to the counter under `key` (see [`add_to_counter`]) and answers the new
    /// value. Atomic against every other write of the key.
    fn increment(&self, slot: &str, key: &[u8], delta: i64) -> Result<i64, IncrementError>;
}

/// One node: the plugin keyspace of the broker's fjall store.
impl PluginKv for Store {
    fn get(&self, slot: &str, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.kv_get(slot, key)?)
    }

    fn set(&self, slot: &str, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        Ok(self.kv_set(slot, key, value)?)
    }

    fn delete(&self, slot: &str, key: &[u8]) -> Result<(), KvError> {
        Ok(self.kv_delete(slot, key)?)
    }

    fn keys(&self, slot: &str, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, KvError> {
        Ok(self.kv_keys(slot, prefix, limit)?)
    }

    fn keys_after(&self, slot: &str, prefix: &[u8], after: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, KvError> {
        Ok(self.kv_keys_after(slot, prefix, after, limit)?)
    }

    fn compare_and_swap(&self, slot: &str, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, KvError> {
        Ok(self.kv_compare_and_swap(slot, key, expected, new)?)
    }

    fn increment(&self, slot: &str, key: &[u8], delta: i64) -> Result<i64, IncrementError> {
        Ok(self.kv_increment(slot, key, delta)?)
    }
}
