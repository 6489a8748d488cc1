//! `hotline:plugin/random`: numbers from the host's secure generator.

use crate::plugins::bindings::latest::random::Host;
use crate::plugins::state::PluginState;

impl Host for PluginState {
    fn next_u64(&mut self) -> u64 {
        rand::random()
    }
}
