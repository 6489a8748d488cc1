//! `Login`: authenticates a connection as a registered number.

use hotline_protocol::is_e164;

use super::quote;
use super::register::hash_key;
use crate::broker::Broker;

/// Why a login was refused; the connection is closed with it.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// No such account, or the key is wrong or revoked.
    #[error("{0}")]
    Refused(String),
    /// Storage failed.
    #[error("storage is unavailable")]
    Storage(#[from] crate::store::StoreError),
}

/// Checks `key` against the stored hash for `phone`.
pub fn login(broker: &Broker, phone: &str, key: &str) -> Result<(), LoginError> {
    if !is_e164(phone) {
        return Err(LoginError::Refused(format!("{} is not an E.164 number", quote(phone))));
    }
    let Some(account) = broker.store.account(phone)? else {
        return Err(LoginError::Refused(format!("{phone} is not registered")));
    };
    if account.key_hash != hash_key(key) {
        return Err(LoginError::Refused("wrong or revoked key; register this device again".into()));
    }
    Ok(())
}
