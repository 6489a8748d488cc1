//! `TestHost`: an in-memory [`Host`] for native unit tests of plugin logic, with no wasm
//! runtime: a `BTreeMap` key-value store, a settable clock, deterministic randomness, and a
//! record of logs, counters and SMS.
//!
//! ```
//! use hotline_plugin::testing::TestHost;
//! use hotline_plugin::{Host, Level};
//!
//! let host = TestHost::new();
//! host.kv_set(b"a", b"1");
//! assert_eq!(host.kv_get(b"a"), Some(b"1".to_vec()));
//! host.advance_ms(1_000);
//! host.log(Level::Info, "hello");
//! assert_eq!(host.logs()[0].message, "hello");
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::host::Host;
use crate::limits::{KV_MAX_KEYS_PER_CALL, KV_MAX_KEY_BYTES, KV_MAX_VALUE_BYTES};
use crate::types::Level;

/// Panics as the broker traps: a key or value over the contract's limits.
#[track_caller]
fn check(what: &str, bytes: &[u8], max: usize) {
    assert!(
        bytes.len() <= max,
        "kv: a {what} of {} bytes is longer than the limit of {max} bytes",
        bytes.len()
    );
}

/// The clock's starting time in a new [`TestHost`]: 2024-01-01T00:00:00Z in Unix ms.
pub const DEFAULT_NOW_MS: u64 = 1_704_067_200_000;

/// One line the plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub level: Level,
    pub message: String,
}

/// One SMS the plugin sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSms {
    pub to: String,
    pub text: String,
}

#[derive(Debug)]
struct State {
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    now_ms: u64,
    rng: u64,
    queued_random: VecDeque<u64>,
    logs: Vec<LogEntry>,
    counters: BTreeMap<String, u64>,
    sms: Vec<SentSms>,
    sms_failure: Option<String>,
}

/// An in-memory host for tests. All methods take `&self` (state sits behind a mutex), so a
/// test can hold one `TestHost`, pass `&host` to the plugin, and inspect it afterwards.
#[derive(Debug)]
pub struct TestHost {
    state: Mutex<State>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// Empty store, clock at [`DEFAULT_NOW_MS`], random seed 0.
    pub fn new() -> Self {
        Self::with_seed(0)
    }

    /// Like [`TestHost::new`], with the random generator seeded with `seed`.
    pub fn with_seed(seed: u64) -> Self {
        TestHost {
            state: Mutex::new(State {
                kv: BTreeMap::new(),
                now_ms: DEFAULT_NOW_MS,
                rng: seed,
                queued_random: VecDeque::new(),
                logs: Vec::new(),
                counters: BTreeMap::new(),
                sms: Vec::new(),
                sms_failure: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test must not hide its cause behind a poisoned-lock panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the clock.
    pub fn set_now_ms(&self, now_ms: u64) {
        self.lock().now_ms = now_ms;
    }

    /// Moves the clock forward.
    pub fn advance_ms(&self, ms: u64) {
        let mut s = self.lock();
        s.now_ms = s.now_ms.saturating_add(ms);
    }

    /// Makes the next calls to `random_u64` return these values, in order, before the
    /// seeded generator takes over again.
    pub fn queue_random(&self, values: impl IntoIterator<Item = u64>) {
        self.lock().queued_random.extend(values);
    }

    /// Makes every following `sms_send` fail with `error` (`None`: succeed again).
    pub fn fail_sms(&self, error: Option<&str>) {
        self.lock().sms_failure = error.map(str::to_string);
    }

    /// Everything logged so far.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.lock().logs.clone()
    }

    /// The value of counter `name` (0 if never added to).
    pub fn counter(&self, name: &str) -> u64 {
        self.lock().counters.get(name).copied().unwrap_or(0)
    }

    /// All counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    /// Every SMS sent successfully so far.
    pub fn sms_sent(&self) -> Vec<SentSms> {
        self.lock().sms.clone()
    }

    /// A copy of the whole key-value store.
    pub fn kv_snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.lock().kv.clone()
    }
}

/// SplitMix64: tiny, fast and deterministic; good enough for tests, not for secrets.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Host for TestHost {
    fn kv_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        check("key", key, KV_MAX_KEY_BYTES);
        self.lock().kv.get(key).cloned()
    }

    fn kv_set(&self, key: &[u8], value: &[u8]) {
        check("key", key, KV_MAX_KEY_BYTES);
        check("value", value, KV_MAX_VALUE_BYTES);
        self.lock().kv.insert(key.to_vec(), value.to_vec());
    }

    fn kv_delete(&self, key: &[u8]) {
        check("key", key, KV_MAX_KEY_BYTES);
        self.lock().kv.remove(key);
    }

    fn kv_keys(&self, prefix: &[u8], limit: u32) -> Vec<Vec<u8>> {
        check("prefix", prefix, KV_MAX_KEY_BYTES);
        self.lock()
            .kv
            .range(prefix.to_vec()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .take(limit.min(KV_MAX_KEYS_PER_CALL) as usize)
            .cloned()
            .collect()
    }

    fn kv_keys_after(&self, prefix: &[u8], after: &[u8], limit: u32) -> Vec<Vec<u8>> {
        use std::ops::Bound;
        check("prefix", prefix, KV_MAX_KEY_BYTES);
        check("key", after, KV_MAX_KEY_BYTES);
        let from = if after < prefix {
            Bound::Included(prefix.to_vec())
        } else {
            Bound::Excluded(after.to_vec())
        };
        self.lock()
            .kv
            .range((from, Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .take(limit.min(KV_MAX_KEYS_PER_CALL) as usize)
            .cloned()
            .collect()
    }

    fn kv_compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> bool {
        check("key", key, KV_MAX_KEY_BYTES);
        if let Some(new) = new {
            check("value", new, KV_MAX_VALUE_BYTES);
        }
        let mut s = self.lock();
        if s.kv.get(key).map(Vec::as_slice) != expected {
            return false;
        }
        match new {
            Some(new) => s.kv.insert(key.to_vec(), new.to_vec()),
            None => s.kv.remove(key),
        };
        true
    }

    fn kv_increment(&self, key: &[u8], delta: i64) -> Result<i64, String> {
        check("key", key, KV_MAX_KEY_BYTES);
        let mut s = self.lock();
        let value = match s.kv.get(key) {
            None => 0,
            Some(bytes) => i64::from_le_bytes(bytes.as_slice().try_into().map_err(|_| {
                format!(
                    "the value is {} bytes long, not a counter (8 bytes, little-endian)",
                    bytes.len()
                )
            })?),
        };
        let sum = value
            .checked_add(delta)
            .ok_or_else(|| format!("the counter would overflow ({value} + {delta})"))?;
        s.kv.insert(key.to_vec(), sum.to_le_bytes().to_vec());
        Ok(sum)
    }

    fn log(&self, level: Level, message: &str) {
        self.lock().logs.push(LogEntry {
            level,
            message: message.to_string(),
        });
    }

    fn now_ms(&self) -> u64 {
        self.lock().now_ms
    }

    fn random_u64(&self) -> u64 {
        let mut s = self.lock();
        match s.queued_random.pop_front() {
            Some(v) => v,
            None => splitmix64(&mut s.rng),
        }
    }

    fn counter_add(&self, name: &str, value: u64) {
        let mut s = self.lock();
        let c = s.counters.entry(name.to_string()).or_insert(0);
        *c = c.saturating_add(value);
    }

    fn sms_send(&self, to: &str, text: &str) -> Result<(), String> {
        let mut s = self.lock();
        if let Some(e) = &s.sms_failure {
            return Err(e.clone());
        }
        s.sms.push(SentSms {
            to: to.to_string(),
            text: text.to_string(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_keys_respects_prefix_order_and_limit() {
        let h = TestHost::new();
        for k in ["b/2", "a/1", "b/1", "b/3", "c/1", "b"] {
            h.kv_set(k.as_bytes(), b"");
        }
        let keys: Vec<_> = h
            .kv_keys(b"b/", 10)
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(keys, ["b/1", "b/2", "b/3"]);
        assert_eq!(h.kv_keys(b"b/", 2).len(), 2);
        assert_eq!(h.kv_keys(b"", 100).len(), 6);
        assert!(h.kv_keys(b"z", 10).is_empty());
    }

    #[test]
    fn kv_keys_after_pages_through_a_prefix() {
        let h = TestHost::new();
        for k in ["a", "b/1", "b/2", "b/3", "c"] {
            h.kv_set(k.as_bytes(), b"");
        }
        assert_eq!(h.kv_keys_after(b"b/", b"", 2), [b"b/1".to_vec(), b"b/2".to_vec()]);
        assert_eq!(h.kv_keys_after(b"b/", b"b/2", 2), [b"b/3".to_vec()]);
        assert!(h.kv_keys_after(b"b/", b"b/3", 2).is_empty());
    }

    #[test]
    fn kv_compare_and_swap_and_increment() {
        let h = TestHost::new();
        assert!(h.kv_compare_and_swap(b"k", None, Some(b"1")));
        assert!(!h.kv_compare_and_swap(b"k", None, Some(b"2")));
        assert!(!h.kv_compare_and_swap(b"k", Some(b"2"), Some(b"3")));
        assert!(h.kv_compare_and_swap(b"k", Some(b"1"), None));
        assert_eq!(h.kv_get(b"k"), None);

        assert_eq!(h.kv_increment(b"n", 5), Ok(5));
        assert_eq!(h.kv_increment(b"n", -7), Ok(-2));
        assert_eq!(h.kv_get(b"n"), Some((-2i64).to_le_bytes().to_vec()));
        assert!(h.kv_increment(b"n", i64::MIN).unwrap_err().contains("overflow"));
        h.kv_set(b"s", b"text");
        assert!(h.kv_increment(b"s", 1).unwrap_err().contains("not a counter"));
        assert_eq!(h.kv_get(b"s"), Some(b"text".to_vec()));
    }

    #[test]
    #[should_panic(expected = "longer than the limit of 1024 bytes")]
    fn kv_refuses_long_keys_as_the_broker_does() {
        TestHost::new().kv_set(&[b'k'; 1025], b"");
    }

    #[test]
    fn kv_set_get_delete() {
        let h = TestHost::new();
        assert_eq!(h.kv_get(b"k"), None);
        h.kv_set(b"k", b"v1");
        h.kv_set(b"k", b"v2");
        assert_eq!(h.kv_get(b"k"), Some(b"v2".to_vec()));
        h.kv_delete(b"k");
        h.kv_delete(b"k");
        assert_eq!(h.kv_get(b"k"), None);
        assert!(h.kv_snapshot().is_empty());
    }

    #[test]
    fn random_is_deterministic_per_seed_and_queue_comes_first() {
        let a = TestHost::with_seed(7);
        let b = TestHost::with_seed(7);
        let c = TestHost::with_seed(8);
        let xs: Vec<u64> = (0..4).map(|_| a.random_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.random_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], c.random_u64());
        assert_ne!(xs[0], xs[1]);
        a.queue_random([1, 2]);
        assert_eq!(a.random_u64(), 1);
        assert_eq!(a.random_u64(), 2);
        // The queue does not disturb the seeded sequence.
        assert_eq!(a.random_u64(), b.random_u64());
    }

    #[test]
    fn clock_logs_counters_and_sms_are_recorded() {
        let h = TestHost::new();
        assert_eq!(h.now_ms(), DEFAULT_NOW_MS);
        h.advance_ms(5);
        assert_eq!(h.now_ms(), DEFAULT_NOW_MS + 5);
        h.set_now_ms(42);
        assert_eq!(h.now_ms(), 42);

        h.log(Level::Warn, "careful");
        assert_eq!(
            h.logs(),
            [LogEntry {
                level: Level::Warn,
                message: "careful".into()
            }]
        );

        h.counter_add("x", 2);
        h.counter_add("x", 3);
        assert_eq!(h.counter("x"), 5);
        assert_eq!(h.counter("y"), 0);

        h.sms_send("+15550001111", "hi").unwrap();
        h.fail_sms(Some("provider down"));
        assert_eq!(
            h.sms_send("+15550001111", "again"),
            Err("provider down".into())
        );
        h.fail_sms(None);
        h.sms_send("+15550002222", "ok").unwrap();
        let sent = h.sms_sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].to, "+15550002222");
    }
}
