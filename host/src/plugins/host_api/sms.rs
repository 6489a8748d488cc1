//! `hotline:plugin/sms`: sending a text through the configured SMS provider (registrar only).

use crate::plugins::bindings::latest::sms::Host;
use crate::plugins::state::PluginState;

impl Host for PluginState {
    fn send(&mut self, to: String, text: String) -> Result<(), String> {
        if !hotline_protocol::is_e164(&to) {
            return Err(format!("{to:?} is not an E.164 number"));
        }
        self.sms.send(&to, &text).map_err(|e| {
            tracing::error!(error = %e, "SMS provider failed");
            "the SMS provider failed".to_string()
        })
    }
}
