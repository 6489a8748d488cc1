//! Canary rollouts: a new version serving a share of a slot's traffic beside the current
//! one, chosen per user by a stable hash of their number; the latency histogram every
//! version keeps; the comparison of canary and current the operator reads; and the
//! plugin-folder file name that says a file is a canary (`<slot>.canary-<percent>.wasm`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::version::{FailureKind, Version};
use crate::policy::Slot;

/// The bucket (0-99) of a number: the first 8 bytes of the SHA-256 of its UTF-8 text
/// (as given, an E.164 number such as `+15551234567`), big-endian, modulo 100. The same
/// in every process and after every restart, so a user stays on one version.
pub fn bucket(number: &str) -> u8 {
    let digest = Sha256::digest(number.as_bytes());
    let first = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (first % 100) as u8
}

/// Upper bounds of the latency buckets, in microseconds (a last bucket holds the rest).
const BOUNDS_US: [u64; 36] = [
    1, 2, 5, 10, 20, 50, 100, 150, 200, 300, 500, 700, 1_000, 1_500, 2_000, 3_000, 5_000, 7_000, 10_000, 15_000, 20_000,
    30_000, 50_000, 70_000, 100_000, 150_000, 200_000, 300_000, 500_000, 700_000, 1_000_000, 1_500_000, 2_000_000,
    5_000_000, 10_000_000, 60_000_000,
];

/// Bounds shown in `/metrics` (a 1-2-5 series of [`BOUNDS_US`]), in microseconds.
pub const METRIC_BOUNDS_US: [u64; 21] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    2_000_000, 5_000_000, 10_000_000, 60_000_000, u64::MAX,
];

/// A histogram of call durations (successful and failed calls alike).
#[derive(Debug)]
pub struct Latency {
    /// One count per bound of [`BOUNDS_US`], then one for longer calls.
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency { counts: (0..=BOUNDS_US.len()).map(|_| AtomicU64::new(0)).collect(), sum_us: AtomicU64::new(0) }
    }
}

/// A copy of a [`Latency`] at one moment; two can be subtracted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    counts: Vec<u64>,
    pub sum_us: u64,
}

impl Latency {
    pub fn record(&self, took: Duration) {
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

impl LatencySnapshot {
    /// What was recorded since `earlier`.
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        let counts = self.counts.iter().enumerate().map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0))).collect();
        LatencySnapshot { counts, sum_us: self.sum_us.saturating_sub(earlier.sum_us) }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound (microseconds) of the bucket holding quantile `q` (0..1); `None`
    /// without calls. Calls past the last bound count as the last bound.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BOUNDS_US[i.min(BOUNDS_US.len() - 1)]);
            }
        }
        None
    }

    /// Calls that took at most `bound_us` microseconds (`u64::MAX`: every call), for a
    /// Prometheus histogram bucket; `bound_us` is one of [`METRIC_BOUNDS_US`].
    pub fn at_most(&self, bound_us: u64) -> u64 {
        let buckets = BOUNDS_US.partition_point(|&b| b <= bound_us);
        let buckets = if bound_us == u64::MAX { self.counts.len() } else { buckets };
        self.counts[..buckets.min(self.counts.len())].iter().sum()
    }
}

/// A version's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    calls: u64,
    errors: u64,
    timeouts: u64,
    latency: LatencySnapshot,
}

impl Baseline {
    pub fn of(v: &Version) -> Baseline {
        Baseline {
            calls: v.calls.load(Ordering::Relaxed),
            errors: v.errors.load(Ordering::Relaxed),
            timeouts: v.errors_by_kind[FailureKind::Timeout as usize].load(Ordering::Relaxed),
            latency: v.latency.snapshot(),
        }
    }
}

/// A canary: a version serving the users whose [`bucket`] is below `percent`.
pub struct Canary {
    pub version: Arc<Version>,
    pub percent: u8,
    /// Unix milliseconds.
    pub started_ms: u64,
    /// The canary's and the current version's counters when the canary started (the
    /// comparison counts from then).
    pub baseline: Baseline,
    pub current_baseline: Baseline,
    /// The hash of the current version the baseline is of.
    pub current_hash: String,
}

impl Canary {
    /// Whether the user with `number` is served by the canary.
    pub fn serves(&self, number: &str) -> bool {
        bucket(number) < self.percent
    }
}

/// One side of a canary comparison: calls since the canary started.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub version: String,
    pub calls: u64,
    /// Failed calls (every kind, time-outs included).
    pub failures: u64,
    pub timeouts: u64,
    /// Failed calls per call (0 without calls).
    pub failure_rate: f64,
    /// Call latency percentiles in milliseconds (a bucket's upper bound), `None` without calls.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Side {
    fn of(v: &Version, since: &Baseline) -> Side {
        let now = Baseline::of(v);
        let calls = now.calls.saturating_sub(since.calls);
        let failures = now.errors.saturating_sub(since.errors);
        let latency = now.latency.since(&since.latency);
        let ms = |q| latency.quantile_us(q).map(|us| us as f64 / 1000.0);
        Side {
            version: v.short().to_string(),
            calls,
            failures,
            timeouts: now.timeouts.saturating_sub(since.timeouts),
            failure_rate: if calls == 0 { 0.0 } else { failures as f64 / calls as f64 },
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
        }
    }
}

/// A running canary as the operator sees it (`/api/plugins` `canaries`).
#[derive(Debug, Clone, Serialize)]
pub struct CanaryInfo {
    pub slot: Slot,
    pub version: String,
    pub percent: u8,
    pub started_at_ms: u64,
    /// The canary since it started.
    pub canary: Side,
    /// The current version over the same time (since the canary started, or since it
    /// became current if that was later).
    pub current: Side,
}

impl CanaryInfo {
    pub fn of(slot: Slot, canary: &Canary, current: &Version) -> CanaryInfo {
        let current_since = if current.hash == canary.current_hash { canary.current_baseline.clone() } else { Baseline::default() };
        CanaryInfo {
            slot,
            version: canary.version.short().to_string(),
            percent: canary.percent,
            started_at_ms: canary.started_ms,
            canary: Side::of(&canary.version, &canary.baseline),
            current: Side::of(current, &current_since),
        }
    }
}

/// The slot and percent of a canary file name, `<slot>.canary-<percent>.wasm` (percent
/// 1-99), e.g. `router.canary-10.wasm`.
pub fn parse_file_name(name: &str) -> Option<(Slot, u8)> {
    let stem = name.strip_suffix(".wasm")?;
    let (slot, percent) = stem.split_once(".canary-")?;
    let percent: u8 = percent.parse().ok().filter(|p| (1..=99).contains(p))?;
    if percent.to_string() != stem.split_once(".canary-")?.1 {
        return None;
    }
    Some((Slot::from_name(slot)?, percent))
}

/// The canary file name of `slot` at `percent`.
pub fn file_name(slot: Slot, percent: u8) -> String {
    format!("{slot}.canary-{percent}.wasm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Fixed values: a change here would move users between versions.
        assert_eq!(bucket("+15550000001"), bucket("+15550000001"));
        let digest = Sha256::digest(b"+15550000001");
        assert_eq!(bucket("+15550000001") as u64, u64::from_be_bytes(digest[..8].try_into().unwrap()) % 100);
        let below_10 = (0..10_000).filter(|i| bucket(&format!("+1555{i:07}")) < 10).count();
        assert!((800..1200).contains(&below_10), "{below_10} of 10000 numbers in buckets 0-9");
    }

    #[test]
    fn file_names_name_a_slot_and_a_percent() {
        assert_eq!(parse_file_name("router.canary-10.wasm"), Some((Slot::Router, 10)));
        assert_eq!(parse_file_name("receipts.canary-99.wasm"), Some((Slot::Receipts, 99)));
        assert_eq!(file_name(Slot::Registrar, 5), "registrar.canary-5.wasm");
        for bad in ["router.wasm", "router.canary-0.wasm", "router.canary-100.wasm", "router.canary-05.wasm", "x.canary-5.wasm", "router.canary-5.wasm.rolled-back-abc"] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn latency_quantiles_and_differences() {
        let l = Latency::default();
        let before = l.snapshot();
        for _ in 0..90 {
            l.record(Duration::from_micros(80));
        }
        for _ in 0..10 {
            l.record(Duration::from_millis(40));
        }
        let s = l.snapshot().since(&before);
        assert_eq!(s.count(), 100);
        assert_eq!(s.quantile_us(0.5), Some(100));
        assert_eq!(s.quantile_us(0.9), Some(100));
        assert_eq!(s.quantile_us(0.99), Some(50_000));
        assert_eq!(s.at_most(100), 90);
        assert_eq!(s.at_most(u64::MAX), 100);
        assert_eq!(LatencySnapshot::default().quantile_us(0.5), None);
    }
}
