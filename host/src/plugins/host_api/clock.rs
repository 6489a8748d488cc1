//! `hotline:plugin/clock`: wall-clock time.

use crate::plugins::bindings::latest::clock::Host;
use crate::plugins::state::PluginState;

impl Host for PluginState {
    fn now_ms(&mut self) -> u64 {
        crate::broker::now_ms()
    }
}
