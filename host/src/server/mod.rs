//! The QUIC side: the listener accepts connections; each connection runs one session over
//! one bidirectional stream. Framing lives here, decisions in `cmd/`.

mod connection;
mod listener;
mod mailbox;
mod session;
mod udp;

pub use listener::{Listener, TransportStats};
pub use mailbox::Load as MailboxLoad;
pub use udp::{warn_on_drops, BufferSizes, UdpStats};
