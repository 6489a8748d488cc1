//! The default policy, in native code until it moves into WebAssembly components:
//! direct routing, 5-digit SMS codes with expiry and limits, every receipt delivered.

use hotline_protocol::ErrorCode;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{CodeDecision, MessageMeta, PluginKv, Policy, PolicyError, ReceiptMeta, Route, VerifyDecision};

/// Digits in a registration code.
const CODE_DIGITS: usize = 5;
/// How long a code is valid.
const CODE_TTL_MS: u64 = 10 * 60 * 1000;
/// Wrong attempts allowed per code.
const MAX_ATTEMPTS: u8 = 5;
/// Code requests allowed per number within [`REQUEST_WINDOW_MS`].
const MAX_REQUESTS: usize = 5;
const REQUEST_WINDOW_MS: u64 = 60 * 60 * 1000;

/// The registrar's record of one number, kept in its key-value space.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CodeState {
    code: Option<String>,
    expires_at_ms: u64,
    attempts_left: u8,
    /// Times of recent code requests, for the rate limit.
    requests_ms: Vec<u64>,
}

/// Default routing, registration and receipt policy.
pub struct NativePolicy {
    registrar_kv: PluginKv,
}

impl NativePolicy {
    /// A policy keeping registrar state in `registrar_kv`.
    pub fn new(registrar_kv: PluginKv) -> Self {
        NativePolicy { registrar_kv }
    }

    fn load(&self, phone: &str) -> Result<CodeState, PolicyError> {
        Ok(match self.registrar_kv.get(phone.as_bytes())? {
            Some(bytes) => postcard::from_bytes(&bytes).unwrap_or_default(),
            None => CodeState::default(),
        })
    }

    fn save(&self, phone: &str, state: &CodeState) -> Result<(), PolicyError> {
        let bytes = postcard::to_allocvec(state).map_err(|e| PolicyError::Failed(e.to_string()))?;
        Ok(self.registrar_kv.set(phone.as_bytes(), &bytes)?)
    }
}

impl Policy for NativePolicy {
    fn route(&self, msg: &MessageMeta<'_>) -> Result<Route, PolicyError> {
        Ok(Route::Deliver(vec![msg.to.to_string()]))
    }

    fn request_code(&self, phone: &str, now_ms: u64) -> Result<CodeDecision, PolicyError> {
        let mut state = self.load(phone)?;
        state.requests_ms.retain(|t| now_ms.saturating_sub(*t) < REQUEST_WINDOW_MS);
        if state.requests_ms.len() >= MAX_REQUESTS {
            return Ok(CodeDecision::Refuse {
                error: ErrorCode::RateLimited,
                reason: format!("at most {MAX_REQUESTS} codes per hour for one number; try again later"),
            });
        }
        let mut rng = rand::rng();
        let code: String = (0..CODE_DIGITS).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
        state.requests_ms.push(now_ms);
        state.code = Some(code.clone());
        state.expires_at_ms = now_ms + CODE_TTL_MS;
        state.attempts_left = MAX_ATTEMPTS;
        self.save(phone, &state)?;
        Ok(CodeDecision::Send {
            sms_text: format!("Your Hotline code is {code}. It expires in 10 minutes."),
            expires_in_secs: (CODE_TTL_MS / 1000) as u32,
        })
    }

    fn verify_code(&self, phone: &str, code: &str, now_ms: u64) -> Result<VerifyDecision, PolicyError> {
        let mut state = self.load(phone)?;
        let refuse = |error, reason: &str| Ok(VerifyDecision::Refuse { error, reason: reason.to_string() });
        let Some(expected) = state.code.clone() else {
            return refuse(ErrorCode::CodeExpired, "no code was requested for this number, or it was used");
        };
        if now_ms >= state.expires_at_ms || state.attempts_left == 0 {
            state.code = None;
            self.save(phone, &state)?;
            return refuse(ErrorCode::CodeExpired, "the code expired or has no attempts left; request a new one");
        }
        if code != expected {
            state.attempts_left -= 1;
            self.save(phone, &state)?;
            return Ok(VerifyDecision::Refuse {
                error: ErrorCode::WrongCode,
                reason: format!("wrong code; {} attempts left", state.attempts_left),
            });
        }
        state.code = None;
        self.save(phone, &state)?;
        Ok(VerifyDecision::Accept)
    }

    fn receipt(&self, _receipt: &ReceiptMeta<'_>) -> Result<bool, PolicyError> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn policy() -> (tempfile::TempDir, NativePolicy) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, NativePolicy::new(PluginKv::new(store, "registrar")))
    }

    fn code_from(decision: CodeDecision) -> String {
        let CodeDecision::Send { sms_text, .. } = decision else { panic!("refused: {decision:?}") };
        sms_text.split_whitespace().find(|w| w.trim_end_matches('.').len() == 5 && w.chars().take(5).all(|c| c.is_ascii_digit()))
            .unwrap().trim_end_matches('.').to_string()
    }

    #[test]
    fn right_code_is_accepted_once() {
        let (_d, p) = policy();
        let code = code_from(p.request_code("+15550000001", 0).unwrap());
        assert_eq!(p.verify_code("+15550000001", &code, 1).unwrap(), VerifyDecision::Accept);
        assert!(matches!(p.verify_code("+15550000001", &code, 2).unwrap(), VerifyDecision::Refuse { error: ErrorCode::CodeExpired, .. }));
    }

    #[test]
    fn wrong_codes_use_up_attempts() {
        let (_d, p) = policy();
        let code = code_from(p.request_code("+15550000001", 0).unwrap());
        let wrong = if code == "00000" { "11111" } else { "00000" };
        for _ in 0..MAX_ATTEMPTS {
            assert!(matches!(p.verify_code("+15550000001", wrong, 1).unwrap(), VerifyDecision::Refuse { error: ErrorCode::WrongCode, .. }));
        }
        // Even the right code is refused once attempts are used up.
        assert!(matches!(p.verify_code("+15550000001", &code, 1).unwrap(), VerifyDecision::Refuse { error: ErrorCode::CodeExpired, .. }));
    }

    #[test]
    fn expired_code_is_refused() {
        let (_d, p) = policy();
        let code = code_from(p.request_code("+15550000001", 0).unwrap());
        assert!(matches!(p.verify_code("+15550000001", &code, CODE_TTL_MS).unwrap(), VerifyDecision::Refuse { error: ErrorCode::CodeExpired, .. }));
    }

    #[test]
    fn code_requests_are_rate_limited_per_hour() {
        let (_d, p) = policy();
        for i in 0..MAX_REQUESTS as u64 {
            code_from(p.request_code("+15550000001", i).unwrap());
        }
        assert!(matches!(p.request_code("+15550000001", 10).unwrap(), CodeDecision::Refuse { error: ErrorCode::RateLimited, .. }));
        // Another number is not affected, and the limit lifts after the window.
        code_from(p.request_code("+15550000002", 10).unwrap());
        code_from(p.request_code("+15550000001", REQUEST_WINDOW_MS + 1).unwrap());
    }
}
