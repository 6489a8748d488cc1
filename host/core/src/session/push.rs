//! `SetPushToken` (protocol version 4): the device's push token, stored for the number
//! under the session's key ([`Job::SetPushToken`]) and answered `PushTokenSet` once durable,
//! in request order like `Sent`. A bad token, or one sent before `Login`, gets `Error` and
//! the connection stays open.

use hotline_protocol::{is_push_token, ErrorCode, ServerFrame, MAX_PUSH_TOKEN_LEN};

use super::{Answer, Session, Stage};
use crate::jobs::{Job, JobOutcome};
use crate::ports::StorageFailure;
use crate::text::{error, quote};
use crate::Millis;

/// The answer to a `SetPushToken` before `Login`: there is no number to store it for.
pub(super) fn not_logged_in() -> ServerFrame {
    error(ErrorCode::Rejected, "SetPushToken is allowed only after Login; log in first")
}

impl Session {
    /// Checks the token and submits its job; the answer waits for it.
    pub(super) fn set_push_token(&mut self, now: Millis, token: String) {
        let Stage::Online { phone, key_hash, .. } = &self.stage else { return };
        if token.len() > MAX_PUSH_TOKEN_LEN {
            let reason = format!("the push token is {} bytes long; at most {MAX_PUSH_TOKEN_LEN} are allowed", token.len());
            return self.answers.ready(error(ErrorCode::InvalidArgument, reason));
        }
        if !is_push_token(&token) {
            let reason = format!("{} is not a push token: it contains a control character", quote(&token));
            return self.answers.ready(error(ErrorCode::InvalidArgument, reason));
        }
        let job = Job::SetPushToken { phone: phone.clone(), token, key_hash: *key_hash, at_ms: now };
        let ticket = self.submit(job);
        self.answers.push(Answer::PushTokenSet { ticket });
    }
}

/// The answer to a `SetPushToken` once its job finished.
pub(super) fn outcome(result: Result<JobOutcome, StorageFailure>) -> ServerFrame {
    match result {
        Ok(JobOutcome::Done) => ServerFrame::PushTokenSet,
        Ok(JobOutcome::KeyRevoked) => {
            error(ErrorCode::Rejected, "this device's key no longer holds the number (registered again on another device, or removed); the push token was not stored")
        }
        Err(e) => error(ErrorCode::Retryable, format!("{e}; retry")),
        Ok(other) => unreachable!("a push token job answered {other:?}"),
    }
}
