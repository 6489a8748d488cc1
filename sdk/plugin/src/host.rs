//! The `Host` trait (the capabilities the broker gives a plugin) and `WasmHost`, its
//! implementation over the WIT imports of the world this crate was built for.

use crate::types::Level;

/// What the broker lets a plugin do: its own key-value store, logging, a clock, randomness,
/// counters, and (registrar only) sending an SMS.
///
/// Plugin logic takes `&dyn Host`, so the same code runs against [`WasmHost`] inside the
/// broker and against [`crate::testing::TestHost`] in native unit tests.
pub trait Host {
    /// The value stored under `key`, if any.
    ///
    /// Every key-value call keeps to [`crate::limits`] (keys, prefixes and `after` at most
    /// 1024 bytes, values at most 65536): the broker traps a call that breaks one (and
    /// `TestHost` panics).
    fn kv_get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Stores `value` under `key`. Visible at once; durable with the broker's next commit.
    fn kv_set(&self, key: &[u8], value: &[u8]);
    /// Removes `key` (no-op if absent).
    fn kv_delete(&self, key: &[u8]);
    /// Keys starting with `prefix`, in byte order, at most `limit` (and at most
    /// [`KV_MAX_KEYS_PER_CALL`](crate::limits::KV_MAX_KEYS_PER_CALL)).
    fn kv_keys(&self, prefix: &[u8], limit: u32) -> Vec<Vec<u8>>;
    /// Keys starting with `prefix` that sort after `after`, in byte order, at most `limit`
    /// (and at most [`KV_MAX_KEYS_PER_CALL`](crate::limits::KV_MAX_KEYS_PER_CALL)): pass
    /// the last key of one page to get the next.
    fn kv_keys_after(&self, prefix: &[u8], after: &[u8], limit: u32) -> Vec<Vec<u8>>;
    /// In one atomic step: if the value under `key` is `expected` (`None`: absent), makes
    /// it `new` (`None`: deletes the key) and answers true; otherwise changes nothing and
    /// answers false. Atomic against every other write of the key, from any instance.
    fn kv_compare_and_swap(&self, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>)
        -> bool;
    /// In one atomic step: adds `delta` to the counter under `key` (a signed 64-bit
    /// integer stored as 8 bytes, little-endian; absent is 0) and answers the new value.
    /// Errs, changing nothing, if the value is not 8 bytes long or the sum overflows.
    fn kv_increment(&self, key: &[u8], delta: i64) -> Result<i64, String>;
    /// Writes to the broker's log, tagged with the plugin's slot and version.
    fn log(&self, level: Level, message: &str);
    /// Wall-clock time, Unix milliseconds.
    fn now_ms(&self) -> u64;
    /// A random u64 from the host's secure generator.
    fn random_u64(&self) -> u64;
    /// Adds `value` to the counter `name` (exported as `hotline_plugin_counter_total{slot,name}`).
    fn counter_add(&self, name: &str, value: u64);
    /// Sends an SMS through the broker's provider. Only registrar plugins have this
    /// capability; elsewhere it returns an error.
    fn sms_send(&self, to: &str, text: &str) -> Result<(), String>;
}

/// The real host: calls the contract's imports. Only works inside a component running in the
/// broker; on a native target (or a wasm build with no slot feature) every call panics,
/// except `sms_send`, which errs outside the registrar slot. Use
/// [`crate::testing::TestHost`] in tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmHost;

#[cfg(all(
    target_arch = "wasm32",
    feature = "notifier",
    not(feature = "router"),
    not(feature = "registrar"),
    not(feature = "receipts")
))]
use crate::notifier_bindings as world;
#[cfg(all(
    target_arch = "wasm32",
    feature = "receipts",
    not(feature = "router"),
    not(feature = "registrar")
))]
use crate::receipts_bindings as world;
#[cfg(all(target_arch = "wasm32", feature = "registrar", not(feature = "router")))]
use crate::registrar_bindings as world;
/// The bindings of the one world this build targets.
#[cfg(all(target_arch = "wasm32", feature = "router"))]
use crate::router_bindings as world;

#[cfg(all(
    target_arch = "wasm32",
    any(
        feature = "router",
        feature = "registrar",
        feature = "receipts",
        feature = "notifier"
    )
))]
impl Host for WasmHost {
    fn kv_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        world::hotline::plugin::kv::get(key)
    }
    fn kv_set(&self, key: &[u8], value: &[u8]) {
        world::hotline::plugin::kv::set(key, value)
    }
    fn kv_delete(&self, key: &[u8]) {
        world::hotline::plugin::kv::delete(key)
    }
    fn kv_keys(&self, prefix: &[u8], limit: u32) -> Vec<Vec<u8>> {
        world::hotline::plugin::kv::keys(prefix, limit)
    }
    fn kv_keys_after(&self, prefix: &[u8], after: &[u8], limit: u32) -> Vec<Vec<u8>> {
        world::hotline::plugin::kv::keys_after(prefix, after, limit)
    }
    fn kv_compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> bool {
        world::hotline::plugin::kv::compare_and_swap(key, expected, new)
    }
    fn kv_increment(&self, key: &[u8], delta: i64) -> Result<i64, String> {
        world::hotline::plugin::kv::increment(key, delta)
    }
    fn log(&self, level: Level, message: &str) {
        use world::hotline::plugin::log::Level as L;
        let level = match level {
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        world::hotline::plugin::log::log(level, message)
    }
    fn now_ms(&self) -> u64 {
        world::hotline::plugin::clock::now_ms()
    }
    fn random_u64(&self) -> u64 {
        world::hotline::plugin::random::next_u64()
    }
    fn counter_add(&self, name: &str, value: u64) {
        world::hotline::plugin::metrics::counter_add(name, value)
    }
    #[cfg(feature = "registrar")]
    fn sms_send(&self, to: &str, text: &str) -> Result<(), String> {
        world::hotline::plugin::sms::send(to, text)
    }
    #[cfg(not(feature = "registrar"))]
    fn sms_send(&self, _to: &str, _text: &str) -> Result<(), String> {
        Err("sms is only available to registrar plugins".to_string())
    }
}

#[cfg(not(all(
    target_arch = "wasm32",
    any(
        feature = "router",
        feature = "registrar",
        feature = "receipts",
        feature = "notifier"
    )
)))]
impl Host for WasmHost {
    fn kv_get(&self, _key: &[u8]) -> Option<Vec<u8>> {
        outside()
    }
    fn kv_set(&self, _key: &[u8], _value: &[u8]) {
        outside()
    }
    fn kv_delete(&self, _key: &[u8]) {
        outside()
    }
    fn kv_keys(&self, _prefix: &[u8], _limit: u32) -> Vec<Vec<u8>> {
        outside()
    }
    fn kv_keys_after(&self, _prefix: &[u8], _after: &[u8], _limit: u32) -> Vec<Vec<u8>> {
        outside()
    }
    fn kv_compare_and_swap(
        &self,
        _key: &[u8],
        _expected: Option<&[u8]>,
        _new: Option<&[u8]>,
    ) -> bool {
        outside()
    }
    fn kv_increment(&self, _key: &[u8], _delta: i64) -> Result<i64, String> {
        outside()
    }
    fn log(&self, _level: Level, _message: &str) {
        outside()
    }
    fn now_ms(&self) -> u64 {
        outside()
    }
    fn random_u64(&self) -> u64 {
        outside()
    }
    fn counter_add(&self, _name: &str, _value: u64) {
        outside()
    }
    fn sms_send(&self, _to: &str, _text: &str) -> Result<(), String> {
        outside()
    }
}

#[cfg(not(all(
    target_arch = "wasm32",
    any(
        feature = "router",
        feature = "registrar",
        feature = "receipts",
        feature = "notifier"
    )
)))]
#[track_caller]
fn outside() -> ! {
    panic!(
        "hotline_plugin::WasmHost only works inside a component built for wasm32 with one slot \
         feature (router, registrar, receipts or notifier); use hotline_plugin::testing::TestHost in tests"
    )
}
