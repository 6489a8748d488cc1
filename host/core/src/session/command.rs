//! `Command`: a client's command for a plugin (e.g. group management for the router).

use hotline_protocol::ServerFrame;

use super::ask::{expect, Asked};
use super::Session;
use crate::policy::{PolicyError, Question, Reply, Slot};
use crate::text::{clamp, quote, MAX_COMMAND_OUTPUT_BYTES, MAX_REASON_BYTES};

impl Session {
    /// Passes the command to the plugin in `slot`.
    pub(super) fn command(&mut self, from: String, request_id: u64, slot: String, name: String, args: Vec<String>) {
        let Some(slot) = Slot::from_name(&slot) else {
            let output = format!("no plugin slot {}; slots are router, registrar, receipts, notifier", quote(&slot));
            return self.answers.ready(ServerFrame::CommandResult { request_id, ok: false, output });
        };
        self.ask(Question::Command { slot, from, name, args }, Asked::Command { request_id }, 1);
    }
}

/// The answer once the plugin replied: its output (cut at [`MAX_COMMAND_OUTPUT_BYTES`]) or
/// its error (cut at [`MAX_REASON_BYTES`]).
pub(super) fn result(request_id: u64, reply: Result<Reply, PolicyError>) -> ServerFrame {
    let answer = |ok, output: String| ServerFrame::CommandResult { request_id, ok, output };
    match reply {
        Err(e) => answer(false, format!("{e}; try again")),
        reply => match expect(reply, |r| if let Reply::Command(result) = r { Ok(result) } else { Err(r) }) {
            Some(Ok(output)) => answer(true, clamp(output, MAX_COMMAND_OUTPUT_BYTES)),
            Some(Err(error)) => answer(false, clamp(error, MAX_REASON_BYTES)),
            None => answer(false, "the plugin answered another question; try again".into()),
        },
    }
}
