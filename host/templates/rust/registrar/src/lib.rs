//! {{name}}: a Hotline registrar plugin. It decides who may register a phone number.
//!
//! Registration takes two calls: `request-code(phone)` sends a 6-digit code by SMS, and
//! `verify-code(phone, code)` checks what the person typed. The pending code lives in the
//! plugin's kv store under `code/<phone>` as `<code>:<expires_ms>:<attempts>`: the broker
//! runs several instances at once, so nothing may be kept in memory between calls (the
//! broker makes registrar calls one at a time, so the read-modify-write below is safe).
//! A code is valid for 10 minutes and allows 5 wrong tries.
//! Counters: `codes_sent`, `verified`. Command: `hello`.
//!
//! How Rust maps to the contract (wit/plugin.wit, world `{{slot}}`):
//! - `wit_bindgen::generate!` reads the WIT at compile time and writes the bindings.
//! - What the broker provides (the world's imports) are plain functions, e.g.
//!   `hotline::plugin::kv::get(key)`. WIT `list<u8>` is `&[u8]` / `Vec<u8>`, `option` is
//!   `Option`, `result` is `Result`, `u32`/`u64` are `u32`/`u64`.
//! - What the plugin provides (the exports) are traits named `Guest`, one per interface
//!   (`lifecycle`, `registration`), implemented below on `Plugin` and registered with
//!   `export!`.
//! - WIT records and enums become Rust structs and enums (`refusal` is `Refusal`,
//!   `rate-limited` is `RefusalKind::RateLimited`).
//! - A panic is a trap: the call fails (see README.md for what the broker does then).

wit_bindgen::generate!({ world: "{{slot}}", path: "wit" });

use exports::hotline::plugin::{lifecycle, registration};
use hotline::plugin::log::{self, Level};
use hotline::plugin::types::{Command, Refusal, RefusalKind};
use hotline::plugin::{clock, kv, metrics, random, sms};

/// How long a code is valid, in seconds.
const VALID_SECS: u32 = 600;
/// Wrong codes allowed before the code is dropped.
const MAX_ATTEMPTS: u32 = 5;

struct Plugin;

impl lifecycle::Guest for Plugin {
    /// Called on every new instance (the broker keeps several) before any other call, with
    /// the slot's config text from the broker's config file. This plugin needs none.
    fn init(_config: String) -> Result<(), String> {
        log::log(Level::Info, "{{name}} started");
        Ok(())
    }

    /// A client's command: `hotline-chat command {{slot}} NAME ARGS...`.
    fn handle_command(command: Command) -> Result<String, String> {
        match command.name.as_str() {
            "hello" => Ok("hello from {{name}} ({{lang}} {{slot}})".to_string()),
            other => Err(format!("unknown command \"{other}\"; {{name}} knows: hello")),
        }
    }
}

impl registration::Guest for Plugin {
    /// Sends a code to `phone` and answers how many seconds it is valid, or refuses.
    fn request_code(phone: String) -> Result<u32, Refusal> {
        if !is_e164(&phone) {
            return Err(refuse(RefusalKind::Rejected, format!("{phone} is not an E.164 number")));
        }
        let code = 100_000 + random::next_u64() % 900_000; // 6 digits
        let pending = Pending {
            code,
            expires_ms: clock::now_ms() + u64::from(VALID_SECS) * 1000,
            attempts: 0,
        };
        pending.store(&phone);
        let text = format!("Your {{name}} code is {code}. It expires in 10 minutes.");
        if let Err(e) = sms::send(&phone, &text) {
            kv::delete(&key(&phone));
            return Err(refuse(RefusalKind::Unavailable, format!("could not send the SMS: {e}")));
        }
        metrics::counter_add("codes_sent", 1);
        Ok(VALID_SECS)
    }

    /// Accepts the code sent back for `phone`, or refuses. On success the broker registers
    /// the number (and issues its key).
    fn verify_code(phone: String, code: String) -> Result<(), Refusal> {
        let expired = || {
            refuse(
                RefusalKind::CodeExpired,
                format!("no code was requested for {phone}, or it expired"),
            )
        };
        let Some(mut pending) = Pending::load(&phone) else {
            return Err(expired());
        };
        if clock::now_ms() >= pending.expires_ms {
            kv::delete(&key(&phone));
            return Err(expired());
        }
        if code == pending.code.to_string() {
            kv::delete(&key(&phone)); // a code works once
            metrics::counter_add("verified", 1);
            return Ok(());
        }
        pending.attempts += 1;
        if pending.attempts >= MAX_ATTEMPTS {
            kv::delete(&key(&phone));
            return Err(refuse(RefusalKind::RateLimited, "too many wrong codes; request a new one".into()));
        }
        pending.store(&phone);
        Err(refuse(RefusalKind::WrongCode, "wrong code".into()))
    }
}

/// A code waiting to be verified, as kept in kv.
struct Pending {
    code: u64,
    expires_ms: u64,
    attempts: u32,
}

impl Pending {
    /// The pending code for `phone`, if there is one (an unreadable entry counts as none).
    fn load(phone: &str) -> Option<Pending> {
        let bytes = kv::get(&key(phone))?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.split(':');
        let pending = Pending {
            code: parts.next()?.parse().ok()?,
            expires_ms: parts.next()?.parse().ok()?,
            attempts: parts.next()?.parse().ok()?,
        };
        Some(pending)
    }

    fn store(&self, phone: &str) {
        let value = format!("{}:{}:{}", self.code, self.expires_ms, self.attempts);
        kv::set(&key(phone), value.as_bytes());
    }
}

fn key(phone: &str) -> Vec<u8> {
    format!("code/{phone}").into_bytes()
}

fn refuse(kind: RefusalKind, reason: String) -> Refusal {
    Refusal { kind, reason }
}

/// `+`, then 7 to 15 digits, the first not 0.
fn is_e164(s: &str) -> bool {
    match s.strip_prefix('+') {
        Some(digits) => {
            (7..=15).contains(&digits.len())
                && !digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

export!(Plugin);
