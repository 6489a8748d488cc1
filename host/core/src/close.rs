//! How a session ends: a `close_code` and a reason for the peer, and the close that each
//! protocol error earns.

use hotline_protocol::{close_code, ClientFrame, FrameError};

/// How and why a session ends (or why another session of the same number is closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// A `hotline_protocol::close_code`.
    pub code: u32,
    /// Said to the peer in the QUIC close.
    pub reason: String,
}

impl Close {
    pub fn new(code: u32, reason: impl Into<String>) -> Close {
        Close { code, reason: reason.into() }
    }

    /// Bytes that are not a frame.
    pub fn from_frame_error(e: &FrameError) -> Close {
        let code = match e {
            FrameError::TooLarge(_) => close_code::FRAME_TOO_LARGE,
            FrameError::Malformed(_) => close_code::MALFORMED_FRAME,
        };
        Close { code, reason: e.to_string() }
    }

    /// The client finished its stream inside a frame, `bytes` of it having arrived.
    pub fn truncated(bytes: usize) -> Close {
        Close::new(close_code::MALFORMED_FRAME, format!("the stream ended inside a frame ({bytes} bytes of it arrived)"))
    }

    /// A frame that is not allowed in the session's state (`when`: "before Hello", …).
    pub fn unexpected(frame: &ClientFrame, when: &str) -> Close {
        Close::new(close_code::UNEXPECTED_FRAME, format!("{} is not allowed {when}", frame.name()))
    }

    /// Storage failed while the session needed it to go on.
    pub fn storage_unavailable() -> Close {
        Close::new(close_code::INTERNAL, "storage unavailable")
    }
}

