//! The frames of the protocol: what a client may say and what the broker answers or pushes.
//!
//! The order of variants and fields is the wire format (postcard encodes an enum variant
//! as its index). Append new variants at the end only; never reorder.

use serde::{Deserialize, Serialize};

/// A frame sent by a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// 0. First frame of every connection: the range of protocol versions the client speaks.
    Hello { min_version: u16, max_version: u16 },
    /// 1. Ask for a registration code to be sent by SMS to `phone` (E.164).
    RequestCode { phone: String },
    /// 2. Prove ownership of `phone` with the code; answered by [`ServerFrame::Registered`].
    Verify { phone: String, code: String },
    /// 3. Authenticate with the key from registration. Starts delivery of queued items.
    Login { phone: String, key: String },
    /// 4. Send `body` to `to`. `client_id` is chosen by the client and makes retries safe:
    ///    the same `(sender, client_id)` is stored once.
    Send { client_id: u64, to: String, body: Vec<u8> },
    /// 5. The client has accepted item `id` (a message or a receipt); the broker deletes it.
    Ack { id: u64 },
    /// 6. The user has read message `id`, which came from `from`.
    Read { id: u64, from: String },
    /// 7. Keep-alive / round-trip probe; answered by [`ServerFrame::Pong`].
    Ping { nonce: u64 },
    /// 8. A command for the plugin in `slot` (`router`, `registrar`, `receipts`, `notifier`), e.g.
    ///    `group-add` with args `["#team", "+15551230002"]`. Answered by
    ///    [`ServerFrame::CommandResult`] with the same `request_id`.
    Command { request_id: u64, slot: String, name: String, args: Vec<String> },
    /// 9. `Send` with the message's kind, which policy plugins see (protocol version 3).
    ///    Same rules, limits, idempotency and answers as `Send`, which means kind `Text`.
    SendTyped { client_id: u64, to: String, kind: MessageKind, body: Vec<u8> },
    /// 10. The device's push token, where the operator's push gateway can wake it while it
    ///     is not connected (protocol version 4; only after `Login`). At most
    ///     [`MAX_PUSH_TOKEN_LEN`] bytes without control characters ([`is_push_token`]); the
    ///     empty string removes the token. Answered by [`ServerFrame::PushTokenSet`] once
    ///     stored durably, or [`ServerFrame::Error`].
    SetPushToken { token: String },
}

/// A frame sent by the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// 0. Answer to `Hello`: the version both sides now speak.
    Welcome { version: u16 },
    /// 1. A code was sent by SMS; it expires in `expires_in_secs`.
    CodeSent { phone: String, expires_in_secs: u32 },
    /// 2. Registration succeeded. `key` authenticates every later `Login`; the broker keeps
    ///    only its hash, so it is shown exactly once.
    Registered { phone: String, key: String },
    /// 3. `Login` succeeded; queued items follow.
    LoggedIn { phone: String },
    /// 4. The message with `client_id` is durably stored under `id`.
    Sent { client_id: u64, id: u64 },
    /// 5. The message with `client_id` was not accepted.
    SendFailed { client_id: u64, error: ErrorCode, reason: String },
    /// 6. A message for this user. Acknowledge it with [`ClientFrame::Ack`].
    Message { id: u64, from: String, sent_at_ms: u64, body: Vec<u8> },
    /// 7. A receipt for a message this user sent. `id` is the receipt's own queue id (ack it);
    ///    `message_id` is the id that [`ServerFrame::Sent`] returned.
    Receipt { id: u64, message_id: u64, by: String, status: ReceiptStatus, at_ms: u64 },
    /// 8. A request (`RequestCode`, `Verify`, `Read`) failed; the connection stays open.
    Error { error: ErrorCode, reason: String },
    /// 9. Answer to `Ping`.
    Pong { nonce: u64 },
    /// 10. Answer to `Command`: `ok` with the plugin's output, or not with the error text.
    CommandResult { request_id: u64, ok: bool, output: String },
    /// 11. A message for this user with its kind (protocol version 3, where every message
    ///     is pushed this way; older sessions get [`ServerFrame::Message`]). Acknowledge it
    ///     with [`ClientFrame::Ack`].
    TypedMessage { id: u64, from: String, sent_at_ms: u64, kind: MessageKind, body: Vec<u8> },
    /// 12. Answer to [`ClientFrame::SetPushToken`]: the token (or its removal) is durably
    ///     stored (protocol version 4).
    PushTokenSet,
}

/// What a message carries, told to policy plugins without the broker reading the body
/// (protocol version 3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageKind {
    /// 0. Text, or anything the clients agree on.
    Text,
    /// 1. Media: the body is a media descriptor (docs/protocol.md) of an upload of this MIME type.
    Media { mime: String },
}

/// Longest MIME type a [`MessageKind::Media`] may name, in bytes.
pub const MAX_MIME_LEN: usize = 127;

impl MessageKind {
    /// Whether the broker accepts this kind: a `Media` MIME type must look like
    /// `type/subtype` ([`is_mime_type`]); otherwise `SendFailed{InvalidArgument}`.
    pub fn is_valid(&self) -> bool {
        match self {
            MessageKind::Text => true,
            MessageKind::Media { mime } => is_mime_type(mime),
        }
    }

    /// `text`, or `media:` and the MIME type (for logs and the CLI).
    pub fn label(&self) -> String {
        match self {
            MessageKind::Text => "text".into(),
            MessageKind::Media { mime } => format!("media:{mime}"),
        }
    }
}

/// Whether `mime` looks like a MIME type `type/subtype` (RFC 6838 §4.2): two names of 1 to
/// 127 characters, each starting with a letter or digit and going on with letters, digits
/// and `!#$&-^_.+`, joined by one `/`; at most [`MAX_MIME_LEN`] bytes in all. Parameters
/// (`; charset=…`) are not allowed.
pub fn is_mime_type(mime: &str) -> bool {
    fn name(part: &str) -> bool {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 127
            && bytes[0].is_ascii_alphanumeric()
            && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    }
    mime.len() <= MAX_MIME_LEN && mime.split_once('/').is_some_and(|(ty, sub)| name(ty) && name(sub))
}

/// Longest push token a [`ClientFrame::SetPushToken`] may carry, in bytes.
pub const MAX_PUSH_TOKEN_LEN: usize = 4096;

/// Whether `token` may be stored as a push token: at most [`MAX_PUSH_TOKEN_LEN`] bytes and
/// no control character (U+0000 to U+001F, U+007F to U+009F); any other UTF-8 is allowed
/// (APNs tokens are hex, FCM tokens base64url with `:`). The empty string is valid: it
/// removes the token.
pub fn is_push_token(token: &str) -> bool {
    token.len() <= MAX_PUSH_TOKEN_LEN && !token.chars().any(char::is_control)
}

/// What a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptStatus {
    /// 0. The recipient's device accepted the message.
    Delivered,
    /// 1. The recipient read the message.
    Read,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// 0. A field is malformed (e.g. a phone number not in E.164 form).
    InvalidArgument,
    /// 1. The recipient is not a registered number.
    UnknownRecipient,
    /// 2. Policy refused the message or the registration step; `reason` says why.
    Rejected,
    /// 3. The code is wrong.
    WrongCode,
    /// 4. The code expired, was used up, or none was requested.
    CodeExpired,
    /// 5. Too many requests or attempts; try again later.
    RateLimited,
    /// 6. The body exceeds the broker's limit.
    TooLarge,
    /// 7. A transient failure (storage, policy plugin); the same request may be retried.
    Retryable,
    /// 8. A recipient's stored queue is full (`limits.max_queue_items`): nothing was
    ///    stored; the same send may succeed once the recipient has taken items. Protocol
    ///    version 2 only: a version-1 session gets [`ErrorCode::RateLimited`] instead.
    QueueFull,
}

impl ClientFrame {
    /// The frame's name, as `docs/protocol.md` spells it (for logs and error texts).
    pub fn name(&self) -> &'static str {
        match self {
            ClientFrame::Hello { .. } => "Hello",
            ClientFrame::RequestCode { .. } => "RequestCode",
            ClientFrame::Verify { .. } => "Verify",
            ClientFrame::Login { .. } => "Login",
            ClientFrame::Send { .. } => "Send",
            ClientFrame::Ack { .. } => "Ack",
            ClientFrame::Read { .. } => "Read",
            ClientFrame::Ping { .. } => "Ping",
            ClientFrame::Command { .. } => "Command",
            ClientFrame::SendTyped { .. } => "SendTyped",
            ClientFrame::SetPushToken { .. } => "SetPushToken",
        }
    }

    /// The lowest protocol version in which this frame exists. A broker treats a frame
    /// of a later version than the session's as malformed, as a broker of that version would.
    pub fn since_version(&self) -> u16 {
        match self {
            ClientFrame::SendTyped { .. } => 3,
            ClientFrame::SetPushToken { .. } => 4,
            _ => 1,
        }
    }
}

impl ServerFrame {
    /// The frame's name, as `docs/protocol.md` spells it (for logs and error texts).
    pub fn name(&self) -> &'static str {
        match self {
            ServerFrame::Welcome { .. } => "Welcome",
            ServerFrame::CodeSent { .. } => "CodeSent",
            ServerFrame::Registered { .. } => "Registered",
            ServerFrame::LoggedIn { .. } => "LoggedIn",
            ServerFrame::Sent { .. } => "Sent",
            ServerFrame::SendFailed { .. } => "SendFailed",
            ServerFrame::Message { .. } => "Message",
            ServerFrame::Receipt { .. } => "Receipt",
            ServerFrame::Error { .. } => "Error",
            ServerFrame::Pong { .. } => "Pong",
            ServerFrame::CommandResult { .. } => "CommandResult",
            ServerFrame::TypedMessage { .. } => "TypedMessage",
            ServerFrame::PushTokenSet => "PushTokenSet",
        }
    }
}

impl ErrorCode {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Retryable | ErrorCode::RateLimited | ErrorCode::QueueFull)
    }

    /// The lowest protocol version in which this code exists (a peer sends it only in a
    /// session of that version or later).
    pub fn since_version(self) -> u16 {
        match self {
            ErrorCode::QueueFull => 2,
            _ => 1,
        }
    }
}

impl ReceiptStatus {
    /// The lowercase name used in logs and the CLI's JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Read => "read",
        }
    }
}
