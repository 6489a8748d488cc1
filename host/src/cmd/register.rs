//! `RequestCode` and `Verify`: registration of a number by SMS code, and key issuance.

use base64::Engine;
use hotline_protocol::{close_code, is_e164, ErrorCode, ServerFrame};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{clamp, error, quote, MAX_REASON_BYTES};
use crate::broker::{now_ms, Broker};
use crate::policy::Refusal;
use crate::sessions::Kick;
use crate::store::Account;

/// Asks the registrar plugin to send a code by SMS.
pub fn request_code(broker: &Broker, phone: &str) -> ServerFrame {
    if !is_e164(phone) {
        return error(ErrorCode::InvalidArgument, format!("{} is not an E.164 number like +15551234567", quote(phone)));
    }
    let decision = {
        let _one_at_a_time = broker.registration.lock().unwrap_or_else(|p| p.into_inner());
        broker.policy.request_code(phone)
    };
    match decision {
        Ok(Ok(expires_in_secs)) => ServerFrame::CodeSent { phone: phone.to_string(), expires_in_secs },
        Ok(Err(Refusal { error: code, reason })) => error(code, clamp(reason, MAX_REASON_BYTES)),
        Err(e) => {
            tracing::warn!(error = %e, "registrar plugin failed");
            error(ErrorCode::Retryable, "registration is unavailable right now; try again")
        }
    }
}

/// Checks the code with policy; on success issues a new key and revokes the old device's.
pub async fn verify(broker: &Broker, phone: &str, code: &str) -> ServerFrame {
    if !is_e164(phone) {
        return error(ErrorCode::InvalidArgument, format!("{} is not an E.164 number like +15551234567", quote(phone)));
    }
    let decision = {
        let _one_at_a_time = broker.registration.lock().unwrap_or_else(|p| p.into_inner());
        broker.policy.verify_code(phone, code)
    };
    match decision {
        Ok(Ok(())) => {}
        Ok(Err(Refusal { error: code, reason })) => return error(code, clamp(reason, MAX_REASON_BYTES)),
        Err(e) => {
            tracing::warn!(error = %e, "registrar plugin failed");
            return error(ErrorCode::Retryable, "registration is unavailable right now; try again");
        }
    }
    let key = new_key();
    let account = Account { key_hash: hash_key(&key), registered_at_ms: now_ms() };
    let owned = phone.to_string();
    if let Err(e) = broker.committer.commit(move |txn| Ok(txn.put_account(&owned, &account))).await {
        tracing::error!(error = %e, "storing account failed");
        return error(ErrorCode::Retryable, "storage is unavailable; try again");
    }
    broker.sessions.kick(
        phone,
        Kick { code: close_code::KEY_REVOKED, reason: "this number was registered on another device".into() },
    );
    tracing::info!(phone, "registered");
    ServerFrame::Registered { phone: phone.to_string(), key }
}

/// 32 random bytes, base64url without padding.
fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The only form in which a key is stored. Keys are 256 random bits, so a fast hash is enough.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
