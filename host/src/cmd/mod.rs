//! One file per client request: what the broker does for it, independent of the transport.
//!
//! Each function takes the [`Broker`](crate::broker::Broker) and the request's fields and
//! returns the frame to answer with (or, for sends, a pending commit). Sessions call them.

pub mod ack;
pub mod command;
pub mod login;
pub mod read;
pub mod register;
pub mod send;

use hotline_protocol::{ErrorCode, ServerFrame};

/// A non-fatal `Error` frame.
pub fn error(error: ErrorCode, reason: impl Into<String>) -> ServerFrame {
    ServerFrame::Error { error, reason: reason.into() }
}
