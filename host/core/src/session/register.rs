//! `RequestCode` and `Verify`: registration of a number by SMS code, and key issuance. The
//! registrar policy decides; a verified number gets a new key, its account is stored, and
//! the old device's session is closed.

use hotline_protocol::{close_code, is_e164, ErrorCode, ServerFrame};

use super::ask::{expect, Asked};
use super::{Answer, Output, Session};
use crate::close::Close;
use crate::credentials::hash_key;
use crate::jobs::{Job, JobOutcome};
use crate::policy::{PolicyError, Question, Refusal, Reply};
use crate::ports::{Ports, StorageFailure};
use crate::records::Account;
use crate::text::{clamp, error, quote, MAX_REASON_BYTES};
use crate::Millis;

fn not_a_number(phone: &str) -> ServerFrame {
    error(ErrorCode::InvalidArgument, format!("{} is not an E.164 number like +15551234567", quote(phone)))
}

fn unavailable() -> ServerFrame {
    error(ErrorCode::Retryable, "registration is unavailable right now; try again")
}

fn refused(Refusal { error: code, reason }: Refusal) -> ServerFrame {
    error(code, clamp(reason, MAX_REASON_BYTES))
}

/// The answer to `RequestCode` once the registrar replied.
pub(super) fn code_requested(phone: String, reply: Result<Reply, PolicyError>) -> ServerFrame {
    match expect(reply, |r| if let Reply::RequestCode(answer) = r { Ok(answer) } else { Err(r) }) {
        Some(Ok(expires_in_secs)) => ServerFrame::CodeSent { phone, expires_in_secs },
        Some(Err(refusal)) => refused(refusal),
        None => unavailable(),
    }
}

impl Session {
    /// Asks the registrar to send a code by SMS.
    pub(super) fn request_code(&mut self, phone: String) {
        if !is_e164(&phone) {
            return self.answers.ready(not_a_number(&phone));
        }
        self.ask(Question::RequestCode { phone: phone.clone() }, Asked::RequestCode { phone }, 1);
    }

    /// Asks the registrar whether `code` proves ownership of `phone`.
    pub(super) fn verify(&mut self, phone: String, code: String) {
        if !is_e164(&phone) {
            return self.answers.ready(not_a_number(&phone));
        }
        self.ask(Question::VerifyCode { phone: phone.clone(), code }, Asked::Verify { phone }, 1);
    }

    /// The registrar replied: on success store a new key's account. No frame is read until
    /// it is stored (a `Login` right after must see it). The answer owed.
    pub(super) fn verified(&mut self, now: Millis, phone: String, reply: Result<Reply, PolicyError>, ports: &Ports<'_>) -> Answer {
        match expect(reply, |r| if let Reply::VerifyCode(answer) = r { Ok(answer) } else { Err(r) }) {
            Some(Ok(())) => {}
            Some(Err(refusal)) => return Answer::Ready(refused(refusal)),
            None => return Answer::Ready(unavailable()),
        }
        let key = ports.keys.new_key();
        let account = Account { key_hash: hash_key(&key), registered_at_ms: now };
        let ticket = self.submit(Job::Register { phone: phone.clone(), account });
        self.barrier = Some(ticket);
        Answer::Registered { ticket, phone, key }
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
