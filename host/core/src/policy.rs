//! The policy seam: every decision about where a message goes, how a number registers and
//! which receipts are sent is asked of a [`Policy`]. The core keeps mechanisms only.
//!
//! The broker's implementation is the plugin host in `hotline`, which asks WebAssembly
//! components. Policy sees metadata, never message bodies.

use hotline_protocol::{ErrorCode, MessageKind, ReceiptStatus};

/// The plugin slots, one plugin each. The core asks the first three (a [`Question`]); the
/// host alone calls the `Notifier` (push wake-ups for numbers with no connection), which
/// is listed here so that every slot shares one name space and one set of tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Router,
    Registrar,
    Receipts,
    Notifier,
}

impl Slot {
    pub const ALL: [Slot; 4] = [Slot::Router, Slot::Registrar, Slot::Receipts, Slot::Notifier];

    /// The slot's name: also its plugin file's stem and its key-value space.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Router => "router",
            Slot::Registrar => "registrar",
            Slot::Receipts => "receipts",
            Slot::Notifier => "notifier",
        }
    }

    /// The slot with this name.
    pub fn from_name(name: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What policy is told about a message: metadata only, never the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub from: String,
    pub to: String,
    pub size: u32,
    pub at_ms: u64,
    /// What the message carries, as its sender declared it (`Text` for a plain `Send`).
    pub kind: MessageKind,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Store the message for each of these numbers.
    Deliver(Vec<String>),
    /// Refuse the message; the sender sees the reason.
    Reject(String),
}

/// A registrar's "no", with the error the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: ErrorCode,
    pub reason: String,
}

/// A receipt the host is about to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptMeta {
    pub message_id: u64,
    /// Who received or read the message.
    pub by: String,
    /// Who sent the message and would get the receipt.
    pub to: String,
    pub status: ReceiptStatus,
    /// The kind of the message the receipt is about.
    pub kind: MessageKind,
}

/// A policy call that failed (not a decision): the host answers with a retryable error and
/// keeps the item queued. The core treats every kind alike; the kinds are for operators
/// (the plugin host counts each in `hotline_plugin_errors_total{kind}`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// The plugin ran past its time limit per call.
    #[error("{slot} plugin failed: {detail}")]
    Timeout { slot: Slot, detail: String },
    /// The plugin trapped (a panic, `unreachable`, a stack overflow, a failed host call).
    #[error("{slot} plugin failed: {detail}")]
    Trap { slot: Slot, detail: String },
    /// No instance of the plugin could be made (instantiation or its `init` failed).
    #[error("{slot} plugin failed: {detail}")]
    Instantiation { slot: Slot, detail: String },
    /// The plugin failed after the host refused it more memory (its memory cap).
    #[error("{slot} plugin failed: {detail}")]
    Memory { slot: Slot, detail: String },
    /// Any other failure of a policy that is not a plugin (tests, the simulator).
    #[error("{slot} plugin failed: {detail}")]
    Failed { slot: Slot, detail: String },
}

impl PolicyError {
    /// The slot whose call failed.
    pub fn slot(&self) -> Slot {
        match self {
            PolicyError::Timeout { slot, .. }
            | PolicyError::Trap { slot, .. }
            | PolicyError::Instantiation { slot, .. }
            | PolicyError::Memory { slot, .. }
            | PolicyError::Failed { slot, .. } => *slot,
        }
    }
}

/// What a session asks policy: the core never calls policy itself. It emits
/// [`Output::Ask`](crate::Output::Ask) with one of these and goes on with what does not
/// depend on the answer; the driver asks (the broker on its plugin threads, off the async
/// workers) and feeds the [`Reply`] back as [`Input::Answered`](crate::Input::Answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// Where each message goes ([`Policy::route`]).
    Route(Vec<MessageMeta>),
    /// Send `phone` a code by SMS ([`Policy::request_code`]).
    RequestCode { phone: String },
    /// Does `code` prove ownership of `phone` ([`Policy::verify_code`]).
    VerifyCode { phone: String, code: String },
    /// Whether each receipt reaches its message's sender ([`Policy::receipt`], per receipt).
    Receipts(Vec<ReceiptMeta>),
    /// A client's command for the plugin in `slot` ([`Policy::command`]).
    Command { slot: Slot, from: String, name: String, args: Vec<String> },
}

/// Policy's answer to a [`Question`], variant for variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Route(Vec<Route>),
    RequestCode(Result<u32, Refusal>),
    VerifyCode(Result<(), Refusal>),
    Receipts(Vec<bool>),
    Command(Result<String, String>),
}

impl Question {
    /// The slot whose plugin answers.
    pub fn slot(&self) -> Slot {
        match self {
            Question::Route(_) => Slot::Router,
            Question::RequestCode { .. } | Question::VerifyCode { .. } => Slot::Registrar,
            Question::Receipts(_) => Slot::Receipts,
            Question::Command { slot, .. } => *slot,
        }
    }
}

/// The decisions the broker delegates. Calls are synchronous and quick (microseconds); a
/// misbehaving plugin is cut off by its time limit. Drivers call [`Policy::ask`] off their
/// async workers.
pub trait Policy: Send + Sync {
    /// Answers `question` with the matching method.
    fn ask(&self, question: Question) -> Result<Reply, PolicyError> {
        Ok(match question {
            Question::Route(messages) => Reply::Route(self.route(messages)?),
            Question::RequestCode { phone } => Reply::RequestCode(self.request_code(&phone)?),
            Question::VerifyCode { phone, code } => Reply::VerifyCode(self.verify_code(&phone, &code)?),
            Question::Receipts(receipts) => {
                Reply::Receipts(receipts.into_iter().map(|r| self.receipt(r)).collect::<Result<_, _>>()?)
            }
            Question::Command { slot, from, name, args } => Reply::Command(self.command(slot, &from, &name, args)?),
        })
    }

    /// The recipients of each message, or a rejection; one answer per message, in order.
    fn route(&self, messages: Vec<MessageMeta>) -> Result<Vec<Route>, PolicyError>;
    /// Asks the registrar to send a code to `phone` by SMS; answers its validity in seconds.
    fn request_code(&self, phone: &str) -> Result<Result<u32, Refusal>, PolicyError>;
    /// Whether `code` proves ownership of `phone`.
    fn verify_code(&self, phone: &str, code: &str) -> Result<Result<(), Refusal>, PolicyError>;
    /// Whether a receipt reaches the message's sender.
    fn receipt(&self, receipt: ReceiptMeta) -> Result<bool, PolicyError>;
    /// A client's command for the plugin in `slot`: its output or error text.
    fn command(&self, slot: Slot, from: &str, name: &str, args: Vec<String>) -> Result<Result<String, String>, PolicyError>;
}
