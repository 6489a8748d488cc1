//! `hotline:plugin/kv`: the plugin's own key-value space, named after its slot, in the
//! node's backend ([`crate::plugins::PluginKv`]: the broker's storage, or the cluster's
//! bucket), so state outlives swaps and restarts. Enforces the limits the contract states (a
//! call over them traps: the call fails with the reason, nothing is written); the backend
//! makes compare-and-swap and increment atomic.

use crate::plugins::bindings::latest::kv::Host;
// The limits, stated once in the guest SDK (`hotline_plugin::limits`, which tests them
// against the WIT): keys (and prefixes, and `after`) at most 1 KiB (fjall itself panics on
// keys over 64 KiB, and the slot name is added to every key), values at most 64 KiB, at
// most 1024 keys per scan.
pub use hotline_plugin::limits::{KV_MAX_KEYS_PER_CALL as MAX_KEYS_PER_CALL, KV_MAX_KEY_BYTES as MAX_KEY_BYTES, KV_MAX_VALUE_BYTES as MAX_VALUE_BYTES};
use crate::plugins::state::PluginState;
use crate::plugins::kv_backend::IncrementError;

fn check_key(what: &str, key: &[u8]) -> wasmtime::Result<()> {
    if key.len() > MAX_KEY_BYTES {
        wasmtime::bail!("kv: a {what} of {} bytes is longer than the limit of {MAX_KEY_BYTES} bytes", key.len());
    }
    Ok(())
}

fn check_value(value: &[u8]) -> wasmtime::Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        wasmtime::bail!("kv: a value of {} bytes is longer than the limit of {MAX_VALUE_BYTES} bytes", value.len());
    }
    Ok(())
}

impl Host for PluginState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        check_key("key", &key)?;
        Ok(self.kv.get(self.slot.name(), &key).unwrap_or_else(|e| {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv read failed");
            None
        }))
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        check_key("key", &key)?;
        check_value(&value)?;
        if let Err(e) = self.kv.set(self.slot.name(), &key, &value) {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv write failed");
        }
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        check_key("key", &key)?;
        if let Err(e) = self.kv.delete(self.slot.name(), &key) {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv delete failed");
        }
        Ok(())
    }

    fn keys(&mut self, prefix: Vec<u8>, limit: u32) -> wasmtime::Result<Vec<Vec<u8>>> {
        check_key("prefix", &prefix)?;
        let limit = limit.min(MAX_KEYS_PER_CALL) as usize;
        Ok(self.kv.keys(self.slot.name(), &prefix, limit).unwrap_or_else(|e| {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv scan failed");
            Vec::new()
        }))
    }

    fn keys_after(&mut self, prefix: Vec<u8>, after: Vec<u8>, limit: u32) -> wasmtime::Result<Vec<Vec<u8>>> {
        check_key("prefix", &prefix)?;
        check_key("key", &after)?;
        let limit = limit.min(MAX_KEYS_PER_CALL) as usize;
        Ok(self.kv.keys_after(self.slot.name(), &prefix, &after, limit).unwrap_or_else(|e| {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv scan failed");
            Vec::new()
        }))
    }

    fn compare_and_swap(&mut self, key: Vec<u8>, expected: Option<Vec<u8>>, new: Option<Vec<u8>>) -> wasmtime::Result<bool> {
        check_key("key", &key)?;
        if let Some(new) = &new {
            check_value(new)?;
        }
        Ok(self.kv.compare_and_swap(self.slot.name(), &key, expected.as_deref(), new.as_deref()).unwrap_or_else(|e| {
            tracing::error!(slot = %self.slot, error = %e, "plugin kv compare-and-swap failed");
            false
        }))
    }

    fn increment(&mut self, key: Vec<u8>, delta: i64) -> wasmtime::Result<Result<i64, String>> {
        check_key("key", &key)?;
        Ok(self.kv.increment(self.slot.name(), &key, delta).map_err(|e| {
            if let IncrementError::Backend(e) = &e {
                tracing::error!(slot = %self.slot, error = %e, "plugin kv increment failed");
            }
            e.to_string()
        }))
    }
}
