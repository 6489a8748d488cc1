//! `hotline:plugin/sms`: sending a text through the configured SMS provider (registrar only).
//! The text is only recorded in the call here: the host sends it once the call returned, on
//! its SMS threads (a gateway's retries take seconds, more than a plugin call may), and a
//! `request-code` is answered once it is sent (see [`crate::sms`]).

use crate::plugins::bindings::latest::sms::Host;
use crate::plugins::state::PluginState;
use crate::sms::Text;

impl Host for PluginState {
    fn send(&mut self, to: String, text: String) -> Result<(), String> {
        if !hotline_protocol::is_e164(&to) {
            return Err(format!("{to:?} is not an E.164 number"));
        }
        if self.text.is_some() {
            return Err("a call sends at most one text, and this call sent one already".into());
        }
        self.text = Some(Text { to, text });
        Ok(())
    }
}
