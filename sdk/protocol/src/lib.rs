//! The Hotline wire protocol: frame types, their codec and protocol versions. Pure: no I/O.
//!
//! A connection carries one bidirectional QUIC stream, opened by the client. Each frame on
//! it is a 4-byte big-endian length followed by that many bytes of a postcard-encoded
//! [`ClientFrame`] or [`ServerFrame`]. `docs/protocol.md` describes every byte.

mod codec;
mod frames;

pub use codec::{decode_body, encode, FrameDecoder, FrameError};
pub use frames::*;

/// ALPN protocol id negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"hotline/1";

/// The newest protocol version this crate speaks. Negotiated in [`ClientFrame::Hello`]:
/// the broker answers the highest version in the client's range that it speaks.
/// Version 2 adds [`ErrorCode::QueueFull`]; nothing else differs from version 1. Version 3
/// adds a message's [`MessageKind`]: [`ClientFrame::SendTyped`] and
/// [`ServerFrame::TypedMessage`], which replaces [`ServerFrame::Message`] in its sessions.
/// Version 4 adds the device's push token: [`ClientFrame::SetPushToken`], answered by
/// [`ServerFrame::PushTokenSet`].
pub const PROTOCOL_VERSION: u16 = 4;

/// The oldest protocol version this crate (and the broker) still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Hard maximum of a frame's payload (the bytes after the length prefix), in bytes.
/// A peer announcing a larger frame is closed with [`close_code::FRAME_TOO_LARGE`].
pub const MAX_FRAME_LEN: u32 = 256 * 1024;

/// Default maximum of a message body in bytes; the broker's configured limit may be lower.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// QUIC application error codes with which the broker closes a connection.
pub mod close_code {
    /// Normal close: the client said goodbye or the broker shuts down.
    pub const NORMAL: u32 = 0;
    /// A frame could not be decoded.
    pub const MALFORMED_FRAME: u32 = 1;
    /// A frame's length prefix exceeded [`crate::MAX_FRAME_LEN`].
    pub const FRAME_TOO_LARGE: u32 = 2;
    /// A frame arrived that is not allowed in the session's state (e.g. `Send` before `Login`).
    pub const UNEXPECTED_FRAME: u32 = 3;
    /// No common protocol version (the broker speaks [`crate::MIN_PROTOCOL_VERSION`] to
    /// [`crate::PROTOCOL_VERSION`]).
    pub const UNSUPPORTED_VERSION: u32 = 4;
    /// `Login` with an unknown number or a wrong key.
    pub const AUTH_FAILED: u32 = 5;
    /// The number was registered again on another device; this device's key is revoked.
    pub const KEY_REVOKED: u32 = 6;
    /// The same account logged in on a newer connection, which replaced this one.
    pub const SESSION_REPLACED: u32 = 7;
    /// The broker hit an internal error (e.g. storage failure) and cannot serve the session.
    pub const INTERNAL: u32 = 8;
    /// The client did not complete `Hello` in time or sent nothing at all.
    pub const TIMEOUT: u32 = 9;
}

/// Whether a phone number is in E.164 form: `+`, then 7 to 15 digits, the first not 0.
pub fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_real_numbers_and_refuses_others() {
        assert!(is_e164("+15551234567"));
        assert!(is_e164("+4930123456"));
        assert!(!is_e164("15551234567"));
        assert!(!is_e164("+0555123456"));
        assert!(!is_e164("+1555"));
        assert!(!is_e164("+1555123456789012"));
        assert!(!is_e164("+1555-123-4567"));
    }
}
