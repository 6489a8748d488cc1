//! `hotline-registrar`: Hotline's default registrar plugin — 5-digit SMS codes valid for 10
//! minutes, 5 attempts per code, at most 5 code requests per number per rolling hour, and an
//! optional list of allowed number prefixes.
//!
//! Config (`init`): empty, or `allowed_prefixes = "+1555,+44"` (see [`config`]). The parsed
//! list is kept in the key-value store, so every instance and every later call sees it.
//!
//! Counters: `codes_sent`, `sms_failed`, `verified`, `wrong_code`, `rate_limited`.

pub mod config;
pub mod record;

use hotline_plugin::{Host, Level, Plugin, Refusal, RefusalKind, Registrar};

use record::{PendingCode, Record};

/// How long a code is valid, in seconds (what `request_code` answers).
pub const CODE_TTL_SECS: u32 = 600;
/// Wrong tries allowed per code.
pub const ATTEMPTS: u8 = 5;
/// Code requests allowed per number within [`REQUEST_WINDOW_MS`].
pub const MAX_REQUESTS: usize = 5;
/// The rolling window for [`MAX_REQUESTS`]: one hour.
pub const REQUEST_WINDOW_MS: u64 = 60 * 60 * 1000;

const ALLOWED_PREFIXES_KEY: &[u8] = b"config/allowed_prefixes";

/// The default registrar.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultRegistrar;

hotline_plugin::export_registrar!(DefaultRegistrar);

impl Plugin for DefaultRegistrar {
    fn init(&self, host: &dyn Host, config: &str) -> Result<(), String> {
        init(host, config)
    }
}

impl Registrar for DefaultRegistrar {
    fn request_code(&self, host: &dyn Host, phone: &str) -> Result<u32, Refusal> {
        request_code(host, phone)
    }

    fn verify_code(&self, host: &dyn Host, phone: &str, code: &str) -> Result<(), Refusal> {
        verify_code(host, phone, code)
    }
}

/// Takes the config and stores the allowed prefixes (or clears them).
pub fn init(host: &dyn Host, text: &str) -> Result<(), String> {
    let config = config::parse(text)?;
    for key in &config.unknown_keys {
        host.log(
            Level::Warn,
            &format!("registrar config: unknown key {key:?} ignored"),
        );
    }
    if config.allowed_prefixes.is_empty() {
        host.kv_delete(ALLOWED_PREFIXES_KEY);
    } else {
        host.kv_set(
            ALLOWED_PREFIXES_KEY,
            config.allowed_prefixes.join(",").as_bytes(),
        );
    }
    Ok(())
}

/// The SMS text for `code`.
pub fn sms_text(code: u32) -> String {
    format!("Your Hotline code is {code:05}. It expires in 10 minutes.")
}

fn record_key(phone: &str) -> Vec<u8> {
    format!("number/{phone}").into_bytes()
}

fn load(host: &dyn Host, phone: &str) -> Record {
    let Some(bytes) = host.kv_get(&record_key(phone)) else {
        return Record::default();
    };
    Record::decode(&bytes).unwrap_or_else(|| {
        host.log(
            Level::Warn,
            &format!("registrar: unreadable record for {phone} discarded"),
        );
        Record::default()
    })
}

fn save(host: &dyn Host, phone: &str, record: &Record) {
    if record.is_empty() {
        host.kv_delete(&record_key(phone));
    } else {
        host.kv_set(&record_key(phone), &record.encode());
    }
}

fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

fn is_allowed(host: &dyn Host, phone: &str) -> bool {
    match host.kv_get(ALLOWED_PREFIXES_KEY) {
        None => true,
        Some(list) => String::from_utf8_lossy(&list)
            .split(',')
            .any(|prefix| phone.starts_with(prefix)),
    }
}

/// Sends a new code to `phone` by SMS and answers its validity in seconds.
pub fn request_code(host: &dyn Host, phone: &str) -> Result<u32, Refusal> {
    if !is_e164(phone) {
        return Err(Refusal::new(
            RefusalKind::Rejected,
            format!("{phone:?} is not a phone number in E.164 form (+ and 7-15 digits)"),
        ));
    }
    if !is_allowed(host, phone) {
        return Err(Refusal::new(
            RefusalKind::Rejected,
            "this number is not allowed",
        ));
    }
    let now = host.now_ms();
    let mut record = load(host, phone);
    record
        .requests
        .retain(|&t| now.saturating_sub(t) < REQUEST_WINDOW_MS);
    if record.requests.len() >= MAX_REQUESTS {
        let oldest = record.requests.iter().copied().min().unwrap_or(now);
        let wait_ms = (oldest + REQUEST_WINDOW_MS).saturating_sub(now);
        let minutes = wait_ms.div_ceil(60_000).max(1);
        host.counter_add("rate_limited", 1);
        return Err(Refusal::new(
            RefusalKind::RateLimited,
            format!(
                "too many code requests for this number (at most {MAX_REQUESTS} an hour); \
                 try again in {minutes} minute{}",
                if minutes == 1 { "" } else { "s" }
            ),
        ));
    }

    let code = 10_000 + (host.random_u64() % 90_000) as u32;
    if let Err(e) = host.sms_send(phone, &sms_text(code)) {
        // Not counted as a request, and any earlier code stays valid.
        host.log(
            Level::Warn,
            &format!("registrar: SMS to {phone} failed: {e}"),
        );
        host.counter_add("sms_failed", 1);
        return Err(Refusal::new(
            RefusalKind::Unavailable,
            "the code could not be sent by SMS; try again later",
        ));
    }
    record.requests.push(now);
    record.code = Some(PendingCode {
        code,
        expires_at_ms: now + u64::from(CODE_TTL_SECS) * 1000,
        attempts_left: ATTEMPTS,
    });
    save(host, phone, &record);
    host.counter_add("codes_sent", 1);
    Ok(CODE_TTL_SECS)
}

/// Checks the code sent back for `phone`; a right one is used up.
pub fn verify_code(host: &dyn Host, phone: &str, code: &str) -> Result<(), Refusal> {
    let now = host.now_ms();
    let mut record = load(host, phone);
    let before = record.requests.len();
    record
        .requests
        .retain(|&t| now.saturating_sub(t) < REQUEST_WINDOW_MS);
    let Some(mut pending) = record.code else {
        if record.requests.len() != before {
            save(host, phone, &record); // drops the record once its history is stale
        }
        return Err(Refusal::new(
            RefusalKind::CodeExpired,
            "no code was requested for this number, or it was used",
        ));
    };
    if now >= pending.expires_at_ms {
        record.code = None;
        save(host, phone, &record);
        return Err(Refusal::new(
            RefusalKind::CodeExpired,
            "the code expired; ask for a new one",
        ));
    }
    if pending.attempts_left == 0 {
        return Err(Refusal::new(
            RefusalKind::CodeExpired,
            "too many wrong attempts; ask for a new code",
        ));
    }
    if same(
        code.trim().as_bytes(),
        format!("{:05}", pending.code).as_bytes(),
    ) {
        record.code = None;
        save(host, phone, &record);
        host.counter_add("verified", 1);
        return Ok(());
    }
    pending.attempts_left -= 1;
    record.code = Some(pending);
    save(host, phone, &record);
    host.counter_add("wrong_code", 1);
    Err(Refusal::new(
        RefusalKind::WrongCode,
        format!("wrong code; {} attempts left", pending.attempts_left),
    ))
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    const PHONE: &str = "+15550000001";

    /// Requests a code and returns it, read back from the SMS.
    fn code_for(host: &TestHost, phone: &str) -> String {
        assert_eq!(DefaultRegistrar.request_code(host, phone), Ok(600));
        let sms = host.sms_sent().pop().unwrap();
        assert_eq!(sms.to, phone);
        sms.text
            .strip_prefix("Your Hotline code is ")
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_string()
    }

    fn kind(r: Result<impl std::fmt::Debug, Refusal>) -> RefusalKind {
        r.unwrap_err().kind
    }

    #[test]
    fn request_sends_the_exact_sms_and_the_code_verifies_once() {
        let h = TestHost::new();
        h.queue_random([42]);
        assert_eq!(DefaultRegistrar.request_code(&h, PHONE), Ok(600));
        let sms = h.sms_sent();
        assert_eq!(sms.len(), 1);
        assert_eq!(sms[0].to, PHONE);
        assert_eq!(
            sms[0].text,
            "Your Hotline code is 10042. It expires in 10 minutes."
        );
        assert_eq!(DefaultRegistrar.verify_code(&h, PHONE, "10042"), Ok(()));
        let again = DefaultRegistrar
            .verify_code(&h, PHONE, "10042")
            .unwrap_err();
        assert_eq!(again.kind, RefusalKind::CodeExpired);
        assert_eq!(
            again.reason,
            "no code was requested for this number, or it was used"
        );
        assert_eq!(h.counter("codes_sent"), 1);
        assert_eq!(h.counter("verified"), 1);
    }

    #[test]
    fn codes_are_five_digits() {
        let h = TestHost::with_seed(99);
        h.queue_random([0, 89_999, u64::MAX]);
        for _ in 0..20 {
            let code = code_for(&h, PHONE);
            assert_eq!(code.len(), 5, "{code}");
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
            h.advance_ms(REQUEST_WINDOW_MS); // stay under the rate limit
        }
        assert_eq!(
            sms_text(7),
            "Your Hotline code is 00007. It expires in 10 minutes."
        );
    }

    #[test]
    fn wrong_codes_count_down_then_the_code_is_dead() {
        let h = TestHost::new();
        let code = code_for(&h, PHONE);
        let wrong = if code == "99999" { "99998" } else { "99999" };
        for left in (0..ATTEMPTS).rev() {
            let r = DefaultRegistrar.verify_code(&h, PHONE, wrong).unwrap_err();
            assert_eq!(r.kind, RefusalKind::WrongCode);
            assert_eq!(r.reason, format!("wrong code; {left} attempts left"));
        }
        // Even the right code no longer works.
        let r = DefaultRegistrar.verify_code(&h, PHONE, &code).unwrap_err();
        assert_eq!(r.kind, RefusalKind::CodeExpired);
        assert!(r.reason.contains("too many wrong attempts"), "{}", r.reason);
        // A new code starts over.
        let code = code_for(&h, PHONE);
        assert_eq!(DefaultRegistrar.verify_code(&h, PHONE, &code), Ok(()));
    }

    #[test]
    fn right_code_after_a_wrong_one_and_with_whitespace_works() {
        let h = TestHost::new();
        let code = code_for(&h, PHONE);
        assert_eq!(
            kind(DefaultRegistrar.verify_code(&h, PHONE, "1234")),
            RefusalKind::WrongCode
        );
        assert_eq!(
            DefaultRegistrar.verify_code(&h, PHONE, &format!(" {code}\n")),
            Ok(())
        );
    }

    #[test]
    fn codes_expire_after_ten_minutes() {
        let h = TestHost::new();
        let code = code_for(&h, PHONE);
        h.advance_ms(10 * 60 * 1000 - 1);
        let code2 = code_for(&h, PHONE); // replaces the first code
        assert_ne!(
            DefaultRegistrar
                .verify_code(&h, PHONE, &code)
                .err()
                .map(|r| r.kind),
            Some(RefusalKind::CodeExpired),
            "the first code is replaced, not expired"
        );
        h.advance_ms(10 * 60 * 1000);
        let r = DefaultRegistrar.verify_code(&h, PHONE, &code2).unwrap_err();
        assert_eq!(r.kind, RefusalKind::CodeExpired);
        assert_eq!(r.reason, "the code expired; ask for a new one");
        assert_eq!(
            kind(DefaultRegistrar.verify_code(&h, PHONE, &code2)),
            RefusalKind::CodeExpired
        );
    }

    #[test]
    fn at_most_five_requests_per_rolling_hour() {
        let h = TestHost::new();
        for _ in 0..MAX_REQUESTS {
            code_for(&h, PHONE);
            h.advance_ms(60_000);
        }
        let r = DefaultRegistrar.request_code(&h, PHONE).unwrap_err();
        assert_eq!(r.kind, RefusalKind::RateLimited);
        assert!(r.reason.contains("too many code requests"), "{}", r.reason);
        assert!(r.reason.contains("try again in 55 minutes"), "{}", r.reason);
        assert_eq!(h.sms_sent().len(), MAX_REQUESTS);
        // Another number is not affected.
        code_for(&h, "+15550000002");
        // One hour after the first request, one slot frees up.
        h.advance_ms(REQUEST_WINDOW_MS - 5 * 60_000);
        code_for(&h, PHONE);
        assert_eq!(
            kind(DefaultRegistrar.request_code(&h, PHONE)),
            RefusalKind::RateLimited
        );
        assert_eq!(h.counter("rate_limited"), 2);
    }

    #[test]
    fn sms_failure_is_unavailable_and_not_counted() {
        let h = TestHost::new();
        code_for(&h, PHONE);
        h.fail_sms(Some("gateway timeout"));
        for _ in 0..10 {
            let r = DefaultRegistrar.request_code(&h, PHONE).unwrap_err();
            assert_eq!(r.kind, RefusalKind::Unavailable);
            assert!(!r.reason.contains("gateway"), "provider detail leaked");
        }
        assert!(h
            .logs()
            .iter()
            .any(|l| l.message.contains("gateway timeout")));
        h.fail_sms(None);
        // The failures used none of the hourly budget: four more requests still work.
        for _ in 1..MAX_REQUESTS {
            code_for(&h, PHONE);
        }
        assert_eq!(
            kind(DefaultRegistrar.request_code(&h, PHONE)),
            RefusalKind::RateLimited
        );
        assert_eq!(h.counter("sms_failed"), 10);
    }

    #[test]
    fn sms_failure_keeps_the_previous_code() {
        let h = TestHost::new();
        let code = code_for(&h, PHONE);
        h.fail_sms(Some("down"));
        assert!(DefaultRegistrar.request_code(&h, PHONE).is_err());
        assert_eq!(DefaultRegistrar.verify_code(&h, PHONE, &code), Ok(()));
    }

    #[test]
    fn invalid_numbers_are_rejected() {
        let h = TestHost::new();
        for bad in ["", "5550000001", "+0555000000", "+1 555 000 0001", "+123"] {
            assert_eq!(
                kind(DefaultRegistrar.request_code(&h, bad)),
                RefusalKind::Rejected,
                "{bad}"
            );
        }
        assert!(h.sms_sent().is_empty());
    }

    #[test]
    fn allowed_prefixes_restrict_numbers_and_can_be_lifted() {
        let h = TestHost::new();
        DefaultRegistrar
            .init(&h, "allowed_prefixes = \"+1555,+44\"")
            .unwrap();
        code_for(&h, "+15550000001");
        code_for(&h, "+447700900123");
        let r = DefaultRegistrar
            .request_code(&h, "+33612345678")
            .unwrap_err();
        assert_eq!(
            r,
            Refusal::new(RefusalKind::Rejected, "this number is not allowed")
        );
        // A new version with an empty config allows everyone again.
        DefaultRegistrar.init(&h, "").unwrap();
        code_for(&h, "+33612345678");
    }

    #[test]
    fn bad_config_is_refused_unknown_keys_are_logged() {
        let h = TestHost::new();
        assert!(DefaultRegistrar
            .init(&h, "allowed_prefixes = \"1555\"")
            .is_err());
        assert!(DefaultRegistrar.init(&h, "nonsense").is_err());
        DefaultRegistrar.init(&h, "code_length = 6").unwrap();
        assert!(h
            .logs()
            .iter()
            .any(|l| l.level == Level::Warn && l.message.contains("code_length")));
    }

    #[test]
    fn no_code_requested_is_code_expired_and_storage_is_tidy() {
        let h = TestHost::new();
        let r = DefaultRegistrar
            .verify_code(&h, PHONE, "12345")
            .unwrap_err();
        assert_eq!(r.kind, RefusalKind::CodeExpired);
        assert!(h.kv_snapshot().is_empty());
        // A used code leaves only the request history, which goes once it is an hour old.
        let code = code_for(&h, PHONE);
        DefaultRegistrar.verify_code(&h, PHONE, &code).unwrap();
        assert_eq!(h.kv_snapshot().len(), 1);
        h.advance_ms(REQUEST_WINDOW_MS);
        assert!(DefaultRegistrar.verify_code(&h, PHONE, &code).is_err());
        assert!(h.kv_snapshot().is_empty());
    }

    #[test]
    fn unreadable_records_are_discarded_with_a_warning() {
        let h = TestHost::new();
        h.kv_set(&record_key(PHONE), b"\xff garbage");
        assert_eq!(
            kind(DefaultRegistrar.verify_code(&h, PHONE, "12345")),
            RefusalKind::CodeExpired
        );
        assert!(h.logs().iter().any(|l| l.message.contains("unreadable")));
        code_for(&h, PHONE);
    }
}
