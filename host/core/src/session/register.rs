//! `RequestCode` and `Verify`: registration of a number by SMS code, and key issuance. The
//! registrar policy decides; a verified number gets a new key, its account is stored, and
//! the old device's session is closed.

use hotline_protocol::{close_code, is_e164, ErrorCode, ServerFrame};

use super::{Answer, Output, Session};
use crate::close::Close;
use crate::credentials::hash_key;
use crate::jobs::{Job, JobOutcome};
use crate::policy::Refusal;
use crate::ports::{Ports, StorageFailure};
use crate::records::Account;
use crate::text::{clamp, error, quote, MAX_REASON_BYTES};
use crate::Millis;

/// Asks the registrar to send a code by SMS.
pub(super) fn request_code(phone: &str, ports: &Ports<'_>) -> ServerFrame {
    if !is_e164(phone) {
        return not_a_number(phone);
    }
    match ports.policy.request_code(phone) {
        Ok(Ok(expires_in_secs)) => ServerFrame::CodeSent { phone: phone.to_string(), expires_in_secs },
        Ok(Err(Refusal { error: code, reason })) => error(code, clamp(reason, MAX_REASON_BYTES)),
        Err(e) => {
            tracing::warn!(error = %e, "registrar plugin failed");
            error(ErrorCode::Retryable, "registration is unavailable right now; try again")
        }
    }
}

fn not_a_number(phone: &str) -> ServerFrame {
    error(ErrorCode::InvalidArgument, format!("{} is not an E.164 number like +15551234567", quote(phone)))
}

impl Session {
    /// Checks the code with policy; on success stores a new key's account. No frame is read
    /// until it is stored (a `Login` right after must see it).
    pub(super) fn verify(&mut self, now: Millis, phone: String, code: &str, ports: &Ports<'_>) {
        if !is_e164(&phone) {
            return self.answers.ready(not_a_number(&phone));
        }
        match ports.policy.verify_code(&phone, code) {
            Ok(Ok(())) => {}
            Ok(Err(Refusal { error: code, reason })) => return self.answers.ready(error(code, clamp(reason, MAX_REASON_BYTES))),
            Err(e) => {
                tracing::warn!(error = %e, "registrar plugin failed");
                return self.answers.ready(error(ErrorCode::Retryable, "registration is unavailable right now; try again"));
            }
        }
        let key = ports.keys.new_key();
        let account = Account { key_hash: hash_key(&key), registered_at_ms: now };
        let ticket = self.submit(Job::Register { phone: phone.clone(), account });
        self.barrier = Some(ticket);
        self.answers.push(Answer::Registered { ticket, phone, key });
    }

    /// The account is stored (or not): revoke the old device and hand out the key.
    pub(super) fn account_stored(&mut self, phone: String, key: String, result: Result<JobOutcome, StorageFailure>) -> ServerFrame {
        if let Err(e) = result {
            tracing::error!(error = %e, "storing account failed");
            return error(ErrorCode::Retryable, "storage is unavailable; try again");
        }
        let close = Close::new(close_code::KEY_REVOKED, "this number was registered on another device");
        self.outputs.push_back(Output::Kick { phone: phone.clone(), close });
        tracing::info!(phone, "registered");
        ServerFrame::Registered { phone, key }
    }
}
