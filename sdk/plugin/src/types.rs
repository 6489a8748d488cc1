//! Plain Rust versions of the contract's shared types (`hotline:plugin/types`), independent of
//! the generated bindings so plugin logic and its tests never touch bindgen code.

use std::fmt;

/// What a message carries, as its sender declared it (the broker never reads the body).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum MessageKind {
    /// Text, or anything the clients agree on (every message from an older client).
    #[default]
    Text,
    /// Media: the body describes an upload of this MIME type (`type/subtype`, e.g.
    /// `image/png`).
    Media(String),
}

impl MessageKind {
    /// The MIME type of a media message, `None` for text.
    pub fn mime(&self) -> Option<&str> {
        match self {
            MessageKind::Text => None,
            MessageKind::Media(mime) => Some(mime),
        }
    }
}

/// What a router is told about a message: metadata only, never the body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageMeta {
    /// Sender, an E.164 number.
    pub from: String,
    /// Address the sender used: an E.164 number, or anything else the router understands
    /// (the default router takes `#name` for a group).
    pub to: String,
    /// Body size in bytes.
    pub size: u32,
    /// When the broker received the message, Unix milliseconds.
    pub at_ms: u64,
    /// What the message carries (`Text` from a component built against contract 0.1.0's
    /// view, where the broker does not say).
    pub kind: MessageKind,
}

impl MessageMeta {
    /// Metadata for a text message from `from` to `to`, with size 0 and time 0 (handy in
    /// tests).
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        MessageMeta {
            from: from.into(),
            to: to.into(),
            size: 0,
            at_ms: 0,
            kind: MessageKind::Text,
        }
    }

    /// The same metadata with this kind (handy in tests).
    pub fn with_kind(self, kind: MessageKind) -> Self {
        MessageMeta { kind, ..self }
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Store the message for each of these E.164 numbers (unregistered ones are skipped).
    Deliver(Vec<String>),
    /// Refuse the message; the sender sees the reason.
    Reject(String),
}

/// Error kinds a registrar may answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// The request is refused by policy (e.g. number not allowed).
    Rejected,
    /// Too many requests or attempts.
    RateLimited,
    /// The code is wrong.
    WrongCode,
    /// The code expired, was used, or none was requested.
    CodeExpired,
    /// A transient failure (e.g. the SMS provider is down); the client may retry.
    Unavailable,
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusalKind::Rejected => "rejected",
            RefusalKind::RateLimited => "rate-limited",
            RefusalKind::WrongCode => "wrong-code",
            RefusalKind::CodeExpired => "code-expired",
            RefusalKind::Unavailable => "unavailable",
        })
    }
}

/// A registrar's refusal: kind and a reason shown to the person registering.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Self {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}

impl std::error::Error for Refusal {}

/// What a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptStatus {
    Delivered,
    Read,
}

/// A receipt the broker is about to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptMeta {
    /// The message's id.
    pub message_id: u64,
    /// Who received or read the message.
    pub by: String,
    /// Who sent the message, and would get the receipt.
    pub to: String,
    pub status: ReceiptStatus,
    /// The kind of the message the receipt is about.
    pub kind: MessageKind,
}

/// A command a client sent to this plugin (e.g. `group-add #team +15551230002`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command {
    /// The number that sent it.
    pub from: String,
    /// The command's name, e.g. `group-add`.
    pub name: String,
    pub args: Vec<String>,
}

impl Command {
    /// A command from `from` named `name` with `args` (handy in tests).
    pub fn new<A: Into<String>>(
        from: impl Into<String>,
        name: impl Into<String>,
        args: impl IntoIterator<Item = A>,
    ) -> Self {
        Command {
            from: from.into(),
            name: name.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// An item queued for a number with no connected session, as the notifier sees it:
/// metadata only, never the body nor the sender.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Queued {
    /// The number the item waits for, E.164.
    pub number: String,
    /// How many items wait for it now, this one included.
    pub waiting: u32,
    /// The kind of the queued message.
    pub kind: MessageKind,
    /// When the item was queued, Unix milliseconds.
    pub at_ms: u64,
}

impl Queued {
    /// A text message queued for `number`, the `waiting`-th, at time 0 (handy in tests).
    pub fn new(number: impl Into<String>, waiting: u32) -> Self {
        Queued {
            number: number.into(),
            waiting,
            kind: MessageKind::Text,
            at_ms: 0,
        }
    }
}

/// What a notifier decides about a queued item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Do nothing (e.g. the device was woken a moment ago).
    Skip,
    /// Wake the device with this payload, for the push service (never the body).
    Wake(String),
}

/// Log levels of the broker's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}
