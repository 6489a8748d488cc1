//! The host interfaces of contract 0.1.0, delegating to the newest ones: one place of logic
//! for every version. (0.1.0's kv is the newest's without `keys-after`, `compare-and-swap`
//! and `increment`; the limits apply to it too.)

use crate::plugins::bindings::{latest, v0_1_0};
use crate::plugins::state::PluginState;

impl v0_1_0::types::Host for PluginState {}

impl v0_1_0::kv::Host for PluginState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        latest::kv::Host::get(self, key)
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        latest::kv::Host::set(self, key, value)
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        latest::kv::Host::delete(self, key)
    }

    fn keys(&mut self, prefix: Vec<u8>, limit: u32) -> wasmtime::Result<Vec<Vec<u8>>> {
        latest::kv::Host::keys(self, prefix, limit)
    }
}

impl v0_1_0::log::Host for PluginState {
    fn log(&mut self, level: v0_1_0::log::Level, message: String) {
        latest::log::Host::log(self, level.into(), message)
    }
}

impl v0_1_0::clock::Host for PluginState {
    fn now_ms(&mut self) -> u64 {
        latest::clock::Host::now_ms(self)
    }
}

impl v0_1_0::random::Host for PluginState {
    fn next_u64(&mut self) -> u64 {
        latest::random::Host::next_u64(self)
    }
}

impl v0_1_0::metrics::Host for PluginState {
    fn counter_add(&mut self, name: String, value: u64) {
        latest::metrics::Host::counter_add(self, name, value)
    }
}

impl v0_1_0::sms::Host for PluginState {
    fn send(&mut self, to: String, text: String) -> Result<(), String> {
        latest::sms::Host::send(self, to, text)
    }
}
