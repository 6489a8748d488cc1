//! The Hotline delivery core: the rules that keep the broker's promise (a message answered
//! `Sent` is delivered, once per id, in order, and wiped when taken) as a state machine that
//! does no I/O, after quinn-proto.
//!
//! A driver owns the sockets, the clock and the storage. Per connection it makes a
//! [`Session`], feeds it [`Input`]s with [`Session::handle`], executes the [`Output`]s that
//! [`Session::poll_output`] yields, and wakes it at [`Session::poll_timeout`]. Storage jobs
//! ([`Job`]) are data; the committer runs them with [`commit_group`] over a [`Journal`].
//! What the core reads comes through [`Ports`]; time is always an argument.
//!
//! Read in this order: `session/` (the state machine), `window.rs` (what is pushed),
//! `jobs.rs` (what is written), `commit.rs` (when it is durable), `ports.rs` (what is read).

pub mod close;
pub mod commit;
pub mod credentials;
pub mod jobs;
pub mod memory;
pub mod policy;
pub mod ports;
pub mod records;
pub mod session;
pub mod sim;
pub mod text;
pub mod txn;
pub mod window;

pub use close::Close;
pub use commit::{commit_group, Durability, GroupReport, Journal, Staged};
pub use jobs::{Job, JobOutcome};
pub use ports::{Accounts, KeyMaker, Ports, Queues, StorageFailure};
pub use records::{Account, DeliveredRecord, IdempotencyRecord, PushToken, StoredItem};
pub use session::{Input, Output, Session, SessionConfig, Ticket};
pub use txn::Txn;
pub use window::DeliveryWindow;

/// Unix time in milliseconds: the only clock the core knows, always passed in.
pub type Millis = u64;
