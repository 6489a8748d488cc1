//! `hotline:plugin/log`: plugin log lines go to the broker's log, tagged with slot and version.

use crate::plugins::bindings::latest::log::{Host, Level};
use crate::plugins::state::PluginState;

/// Longest log line a plugin may write; longer ones are cut.
const MAX_LINE: usize = 4096;

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let (slot, version) = (self.slot.name(), self.version.as_str());
        match level {
            Level::Debug => tracing::debug!(target: "hotline::plugin", slot, version, "{message}"),
            Level::Info => tracing::info!(target: "hotline::plugin", slot, version, "{message}"),
            Level::Warn => tracing::warn!(target: "hotline::plugin", slot, version, "{message}"),
            Level::Error => tracing::error!(target: "hotline::plugin", slot, version, "{message}"),
        }
    }
}
