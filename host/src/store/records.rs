//! Record types stored as values (defined in `hotline-core`), postcard-encoded here.

use serde::{de::DeserializeOwned, Serialize};

pub use hotline_core::records::{Account, DeliveredRecord, IdempotencyRecord, StoredItem};

use super::StoreError;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records serialize")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], keyspace: &'static str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt { keyspace, detail: e.to_string() })
}
