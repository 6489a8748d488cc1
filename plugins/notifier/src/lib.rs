//! `hotline-notifier`: Hotline's default notifier plugin — decides whether to wake the
//! device of a number that has no connection when a message is queued for it. It wakes
//! when the message starts a new backlog (`waiting == 1`) or when the number's last
//! wake-up is at least `min_interval_secs` ago (config, default 60), so a burst of
//! messages to a sleeping phone costs one push, and a phone that ignores its pushes gets
//! at most one per interval. The payload is `{"waiting":N}`: no body, no sender.
//!
//! Config (the broker's `plugins.notifier_config`): `min_interval_secs = N`.
//! Key-value: `config/min_interval_secs` (8 bytes, little-endian), `last-wake/<number>`
//! (Unix ms, 8 bytes little-endian, written with compare-and-swap so two instances never
//! both wake the same number for one interval).
//!
//! Counters: `wakeups`, `skipped`.

use hotline_plugin::{Decision, Host, Level, Notifier, Plugin, Queued};

/// The default interval between two wake-ups of one number, in seconds.
pub const DEFAULT_MIN_INTERVAL_SECS: u64 = 60;

const INTERVAL_KEY: &[u8] = b"config/min_interval_secs";

/// The default notifier.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultNotifier;

hotline_plugin::export_notifier!(DefaultNotifier);

impl Plugin for DefaultNotifier {
    fn init(&self, host: &dyn Host, config: &str) -> Result<(), String> {
        init(host, config)
    }
}

impl Notifier for DefaultNotifier {
    fn notify(&self, host: &dyn Host, queued: Queued) -> Decision {
        notify(host, &queued)
    }
}

/// Reads `min_interval_secs = N` (blank lines and `#` comments allowed) and stores it;
/// an empty config means the default.
pub fn init(host: &dyn Host, text: &str) -> Result<(), String> {
    let mut interval = DEFAULT_MIN_INTERVAL_SECS;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("notifier config: expected `key = value`, got {line:?}"));
        };
        match key.trim() {
            "min_interval_secs" => {
                interval = value.trim().parse().map_err(|_| {
                    format!(
                        "notifier config: min_interval_secs must be a whole number of seconds, not {:?}",
                        value.trim()
                    )
                })?;
            }
            other => host.log(
                Level::Warn,
                &format!("notifier config: unknown key {other:?} ignored"),
            ),
        }
    }
    host.kv_set(INTERVAL_KEY, &interval.to_le_bytes());
    Ok(())
}

fn min_interval_ms(host: &dyn Host) -> u64 {
    let secs = host
        .kv_get(INTERVAL_KEY)
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(DEFAULT_MIN_INTERVAL_SECS, u64::from_le_bytes);
    secs.saturating_mul(1000)
}

fn last_wake_key(number: &str) -> Vec<u8> {
    format!("last-wake/{number}").into_bytes()
}

/// When `number` was last woken (Unix ms), if ever.
pub fn last_wake_ms(host: &dyn Host, number: &str) -> Option<u64> {
    let bytes = host.kv_get(&last_wake_key(number))?;
    <[u8; 8]>::try_from(bytes.as_slice())
        .ok()
        .map(u64::from_le_bytes)
}

/// The decision for one queued item.
pub fn notify(host: &dyn Host, queued: &Queued) -> Decision {
    let key = last_wake_key(&queued.number);
    let before = host.kv_get(&key);
    let last = before
        .as_deref()
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(u64::from_le_bytes);
    let now = host.now_ms();
    let due = match last {
        None => true,
        Some(last) => queued.waiting == 1 || now.saturating_sub(last) >= min_interval_ms(host),
    };
    // Only the instance whose swap lands wakes: another one may have woken it just now.
    if due && host.kv_compare_and_swap(&key, before.as_deref(), Some(&now.to_le_bytes())) {
        host.counter_add("wakeups", 1);
        Decision::Wake(format!("{{\"waiting\":{}}}", queued.waiting))
    } else {
        host.counter_add("skipped", 1);
        Decision::Skip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    const BOB: &str = "+15550000002";
    const CAT: &str = "+15550000003";

    fn ask(h: &TestHost, number: &str, waiting: u32) -> Decision {
        DefaultNotifier.notify(h, Queued::new(number, waiting))
    }

    #[test]
    fn a_new_backlog_wakes_with_the_count_only() {
        let h = TestHost::new();
        DefaultNotifier.init(&h, "").unwrap();
        assert_eq!(ask(&h, BOB, 1), Decision::Wake("{\"waiting\":1}".into()));
        assert_eq!(last_wake_ms(&h, BOB), Some(h.now_ms()));
        assert_eq!(h.counter("wakeups"), 1);
    }

    #[test]
    fn more_messages_within_the_interval_are_skipped_then_one_wakes_after_it() {
        let h = TestHost::new();
        DefaultNotifier.init(&h, "").unwrap();
        assert!(matches!(ask(&h, BOB, 1), Decision::Wake(_)));
        for waiting in 2..=11 {
            h.advance_ms(1_000);
            assert_eq!(ask(&h, BOB, waiting), Decision::Skip, "{waiting} waiting");
        }
        assert_eq!(h.counter("skipped"), 10);
        // Another number is not held back by this one.
        assert!(matches!(ask(&h, CAT, 3), Decision::Wake(_)));
        h.advance_ms(50_000);
        assert_eq!(ask(&h, BOB, 12), Decision::Wake("{\"waiting\":12}".into()));
        assert_eq!(ask(&h, BOB, 13), Decision::Skip);
    }

    #[test]
    fn a_drained_queue_that_fills_again_wakes_at_once() {
        let h = TestHost::new();
        DefaultNotifier.init(&h, "").unwrap();
        assert!(matches!(ask(&h, BOB, 1), Decision::Wake(_)));
        h.advance_ms(5_000);
        assert!(matches!(ask(&h, BOB, 1), Decision::Wake(_)), "waiting == 1 is a new backlog");
    }

    #[test]
    fn the_interval_is_configurable_and_bad_config_is_refused() {
        let h = TestHost::new();
        DefaultNotifier.init(&h, "# push\nmin_interval_secs = 5\nother = 1\n").unwrap();
        assert!(h.logs().iter().any(|l| l.message.contains("other")));
        assert!(matches!(ask(&h, BOB, 1), Decision::Wake(_)));
        h.advance_ms(4_999);
        assert_eq!(ask(&h, BOB, 2), Decision::Skip);
        h.advance_ms(1);
        assert!(matches!(ask(&h, BOB, 3), Decision::Wake(_)));
        let e = DefaultNotifier.init(&h, "min_interval_secs = soon").unwrap_err();
        assert!(e.contains("min_interval_secs"), "{e}");
        assert!(DefaultNotifier.init(&h, "nonsense").is_err());
    }
}
