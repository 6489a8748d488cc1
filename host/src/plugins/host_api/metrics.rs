//! `hotline:plugin/metrics`: named counters, shown per slot in the broker's metrics.

use crate::plugins::bindings::latest::metrics::Host;
use crate::plugins::state::PluginState;

impl Host for PluginState {
    fn counter_add(&mut self, name: String, value: u64) {
        self.counters.add(&name, value);
    }
}
