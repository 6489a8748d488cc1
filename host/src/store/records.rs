//! Record types stored as values (defined in `hotline-core`), postcard-encoded here.

use serde::{de::DeserializeOwned, Serialize};

pub use hotline_core::records::{Account, DeliveredRecord, DeliveredRecordV1, IdempotencyRecord, PushToken, StoredItem};

use super::StoreError;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records serialize")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], keyspace: &'static str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt { keyspace, detail: e.to_string() })
}

/// A delivered record, also one written before it had a kind (it then was a text message):
/// the kind is its last field, so such a record is this one cut before the kind.
pub fn decode_delivered(bytes: &[u8]) -> Result<DeliveredRecord, StoreError> {
    match postcard::from_bytes::<DeliveredRecord>(bytes) {
        Ok(record) => Ok(record),
        Err(postcard::Error::DeserializeUnexpectedEnd) => {
            decode::<DeliveredRecordV1>(bytes, "delivered").map(DeliveredRecord::from_versioned)
        }
        Err(e) => Err(StoreError::Corrupt { keyspace: "delivered", detail: e.to_string() }),
    }
}
