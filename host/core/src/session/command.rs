//! `Command`: a client's command for a plugin (e.g. group management for the router).

use hotline_protocol::ServerFrame;

use crate::policy::Slot;
use crate::ports::Ports;
use crate::text::{clamp, quote, MAX_COMMAND_OUTPUT_BYTES, MAX_REASON_BYTES};

/// Passes the command to the plugin in `slot` and answers with its output (cut at
/// [`MAX_COMMAND_OUTPUT_BYTES`]; an error at [`MAX_REASON_BYTES`]).
pub(super) fn command(from: &str, request_id: u64, slot: &str, name: &str, args: Vec<String>, ports: &Ports<'_>) -> ServerFrame {
    let answer = |ok, output: String| ServerFrame::CommandResult { request_id, ok, output };
    let Some(slot) = Slot::from_name(slot) else {
        return answer(false, format!("no plugin slot {}; slots are router, registrar, receipts", quote(slot)));
    };
    match ports.policy.command(slot, from, name, args) {
        Ok(Ok(output)) => answer(true, clamp(output, MAX_COMMAND_OUTPUT_BYTES)),
        Ok(Err(error)) => answer(false, clamp(error, MAX_REASON_BYTES)),
        Err(e) => answer(false, format!("{e}; try again")),
    }
}
