//! `hotline:plugin/kv`: the plugin's own key-value space in the broker's storage, named
//! after its slot, so state outlives swaps and restarts.

use crate::plugins::bindings::registrar::hotline::plugin::kv::Host;
use crate::plugins::state::PluginState;

impl Host for PluginState {
    fn get(&mut self, key: Vec<u8>) -> Option<Vec<u8>> {
        self.store.kv_get(self.slot.name(), &key).unwrap_or_else(|e| {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv read failed");
            None
        })
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if let Err(e) = self.store.kv_set(self.slot.name(), &key, &value) {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv write failed");
        }
    }

    fn delete(&mut self, key: Vec<u8>) {
        if let Err(e) = self.store.kv_delete(self.slot.name(), &key) {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv delete failed");
        }
    }

    fn keys(&mut self, prefix: Vec<u8>, limit: u32) -> Vec<Vec<u8>> {
        self.store.kv_keys(self.slot.name(), &prefix, limit as usize).unwrap_or_else(|e| {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv scan failed");
            Vec::new()
        })
    }
}
