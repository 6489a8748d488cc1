//! The push wake-ups' counters for `/metrics`: what became of each wake-up, the notifier's
//! decisions, and the numbers the trigger dropped. Every series exists from start.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::admin::Exposition;

/// What became of a wake-up the notifier decided (`hotline_push_wakeups_total{outcome}`):
/// `sent` (the gateway took its batch), `failed` (the gateway refused it or every attempt
/// failed), `no_token` (no valid push token stored for the number), `dropped` (the gateway
/// was so far behind that its batch queue was full).
pub const OUTCOMES: &[&str] = &["sent", "failed", "no_token", "dropped"];

/// The notifier's answers (`hotline_push_notifier_decisions_total{decision}`): `wake`,
/// `skip`, `failed` (the call failed: a trap, a time-out; no wake-up).
pub const DECISIONS: &[&str] = &["wake", "skip", "failed"];

/// The push counters. One per broker, in [`crate::metrics::Metrics::push`].
#[derive(Debug, Default)]
pub struct PushMetrics {
    outcomes: [AtomicU64; 4],
    decisions: [AtomicU64; 3],
    /// Numbers the trigger dropped because the worker's queue was full.
    pub dropped: AtomicU64,
}

impl PushMetrics {
    /// `n` wake-ups ended with `outcome` (one of [`OUTCOMES`]).
    pub fn outcome(&self, outcome: &str, n: u64) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.outcomes[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The notifier answered `decision` (one of [`DECISIONS`]).
    pub fn decision(&self, decision: &str) {
        if let Some(i) = DECISIONS.iter().position(|d| *d == decision) {
            self.decisions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wake-ups that ended with `outcome` so far.
    pub fn outcomes(&self, outcome: &str) -> u64 {
        OUTCOMES.iter().position(|o| *o == outcome).map_or(0, |i| self.outcomes[i].load(Ordering::Relaxed))
    }

    pub(crate) fn expose(&self, out: &mut Exposition) {
        let name = "hotline_push_wakeups_total";
        out.family(name, "counter", "Wake-ups the notifier decided, by what became of them (sent: the push gateway took the batch; failed: it refused it or every attempt failed; no_token: no valid push token stored; dropped: the gateway was too far behind).");
        for (outcome, n) in OUTCOMES.iter().zip(&self.outcomes) {
            out.sample(name, &[("outcome", outcome)], n.load(Ordering::Relaxed));
        }
        let name = "hotline_push_notifier_decisions_total";
        out.family(name, "counter", "Answers of the notifier plugin for numbers with no connection and a new message (failed: the call failed, no wake-up).");
        for (decision, n) in DECISIONS.iter().zip(&self.decisions) {
            out.sample(name, &[("decision", decision)], n.load(Ordering::Relaxed));
        }
        out.counter("hotline_push_dropped_total", "Numbers the commit path could not hand to the push worker because its queue (push.queue) was full: no wake-up for them.", self.dropped.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_exists_from_start_and_counts() {
        let m = PushMetrics::default();
        m.outcome("sent", 3);
        m.decision("skip");
        let mut out = Exposition::default();
        m.expose(&mut out);
        let text = out.text;
        for outcome in OUTCOMES {
            assert!(text.contains(&format!("hotline_push_wakeups_total{{outcome=\"{outcome}\"}}")), "{text}");
        }
        assert!(text.contains("hotline_push_wakeups_total{outcome=\"sent\"} 3"), "{text}");
        assert!(text.contains("hotline_push_notifier_decisions_total{decision=\"skip\"} 1"), "{text}");
        assert!(text.contains("hotline_push_dropped_total 0"), "{text}");
    }
}
