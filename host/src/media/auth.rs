//! The media endpoint's credentials: HTTP Basic with the registered number as the user and
//! its key (from `Registered`, the one `Login` takes) as the password, checked against the
//! stored account's key hash as `Login` checks it.

use axum::http::{header, HeaderMap};
use base64::Engine;
use hotline_core::credentials::hash_key;
use hotline_protocol::is_e164;

use hotline_core::{Accounts, StorageFailure};

/// Why a request is not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or not Basic.
    #[error("credentials required: HTTP Basic with the registered number as the user and its key as the password")]
    Missing,
    /// A Basic header that does not decode to `user:password` in UTF-8.
    #[error("malformed Basic credentials: expected base64 of NUMBER:KEY")]
    Malformed,
    /// Not an E.164 number, not registered, or the wrong (or a revoked) key.
    #[error("{0}")]
    Refused(String),
    /// The account could not be read.
    #[error("cannot check credentials: {0}")]
    Storage(#[from] StorageFailure),
}

/// The number the request's credentials belong to, checked against `accounts` (the
/// broker's port: fjall on one node, the accounts bucket in a cluster).
pub fn check(accounts: &dyn Accounts, headers: &HeaderMap) -> Result<String, AuthError> {
    let value = headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Missing);
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| AuthError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
    let (phone, key) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
    // As Login (hotline-core's session/login.rs) checks: E.164, registered, the key's hash.
    if !is_e164(phone) {
        return Err(AuthError::Refused(format!("{phone:?} is not an E.164 number")));
    }
    let Some(account) = accounts.account(phone)? else {
        return Err(AuthError::Refused(format!("{phone} is not registered")));
    };
    if account.key_hash != hash_key(key) {
        return Err(AuthError::Refused("wrong or revoked key; register this device again".into()));
    }
    Ok(phone.to_string())
}
