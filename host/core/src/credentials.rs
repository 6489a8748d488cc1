//! The registration key as stored: only its hash. The key itself is made by the driver
//! ([`KeyMaker`](crate::KeyMaker)), returned once in `Registered`, and never stored.

use sha2::{Digest, Sha256};

/// The only form in which a key is stored. Keys are 256 random bits, so a fast hash is enough.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
