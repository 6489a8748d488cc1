//! The queue alert rules as a state machine that does no I/O and takes time as an argument:
//! fed one [`Figures`] per kind at each sample, it says which alerts were raised or cleared.
//! The monitor task ([`super::Monitor`]) runs it and sends its events to the log, the
//! metrics and the webhook.

use std::collections::VecDeque;

use serde::Serialize;

use super::{Figures, QueueKind};

/// Events kept for `GET /api/alerts` and the console, oldest dropped first.
const HISTORY: usize = 200;

/// When a kind raises an alert: its largest queue holds at least `items` for `for_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Threshold in items; `0` turns the kind's alert off.
    pub items: u64,
    /// How long the threshold must be exceeded, without a break, before the alert fires.
    pub for_ms: u64,
}

/// A firing alert: the kind, and its worst queue as of the last sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub kind: QueueKind,
    /// The worst queue's name: a number, a connection, a plugin slot, `commit`.
    pub queue: String,
    pub items: u64,
    pub threshold: u64,
    /// When the threshold was first exceeded (Unix ms), not when the alert fired.
    pub since_ms: u64,
}

/// Whether an alert began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The kind's worst queue stayed at or over the threshold for the rule's duration.
    Raised,
    /// Every queue of the kind fell back under the threshold.
    Cleared,
}

/// One raise or clear, as the log, the webhook and the history report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertEvent {
    pub at_ms: u64,
    pub event: Change,
    pub kind: QueueKind,
    /// At a raise, the worst queue; at a clear, the one the alert last named.
    pub queue: String,
    /// At a raise, its items; at a clear, the kind's largest queue now (under the threshold).
    pub items: u64,
    pub threshold: u64,
}

/// Where one kind stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Under the threshold.
    Quiet,
    /// At or over it since `since_ms`, not yet for long enough.
    Over { since_ms: u64 },
    Firing(Alert),
}

/// The rules of every kind and where each kind stands.
#[derive(Debug)]
pub struct Alerts {
    rules: [Rule; QueueKind::ALL.len()],
    states: [State; QueueKind::ALL.len()],
    history: VecDeque<AlertEvent>,
    /// Alerts raised per kind since start (a counter).
    raised: [u64; QueueKind::ALL.len()],
}

impl Alerts {
    /// Rules in the order of [`QueueKind::ALL`].
    pub fn new(rules: [Rule; QueueKind::ALL.len()]) -> Alerts {
        Alerts { rules, states: std::array::from_fn(|_| State::Quiet), history: VecDeque::new(), raised: [0; QueueKind::ALL.len()] }
    }

    /// Takes a sample of one or more kinds at `now_ms`; returns what changed.
    pub fn observe(&mut self, now_ms: u64, sample: &[Figures]) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for figures in sample {
            let i = figures.kind.index();
            let rule = self.rules[i];
            let over = rule.items > 0 && figures.max >= rule.items;
            let worst = figures.top.first().map(|q| (q.name.clone(), q.items));
            let state = &mut self.states[i];
            match (over, &mut *state) {
                (false, State::Quiet) => {}
                (false, State::Over { .. }) => *state = State::Quiet,
                (false, State::Firing(alert)) => {
                    let queue = std::mem::take(&mut alert.queue);
                    events.push(AlertEvent { at_ms: now_ms, event: Change::Cleared, kind: figures.kind, queue, items: figures.max, threshold: rule.items });
                    *state = State::Quiet;
                }
                (true, State::Firing(alert)) => {
                    if let Some((queue, items)) = worst {
                        (alert.queue, alert.items) = (queue, items);
                    }
                }
                (true, State::Quiet) | (true, State::Over { .. }) => {
                    let since_ms = match state {
                        State::Over { since_ms } => *since_ms,
                        _ => now_ms,
                    };
                    if now_ms.saturating_sub(since_ms) >= rule.for_ms {
                        let (queue, items) = worst.unwrap_or_else(|| (figures.kind.name().to_string(), figures.max));
                        let alert = Alert { kind: figures.kind, queue, items, threshold: rule.items, since_ms };
                        events.push(AlertEvent { at_ms: now_ms, event: Change::Raised, kind: alert.kind, queue: alert.queue.clone(), items, threshold: rule.items });
                        self.raised[i] += 1;
                        *state = State::Firing(alert);
                    } else {
                        *state = State::Over { since_ms };
                    }
                }
            }
        }
        for event in &events {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(event.clone());
        }
        events
    }

    /// The alerts firing now, in kind order.
    pub fn active(&self) -> Vec<Alert> {
        self.states.iter().filter_map(|s| if let State::Firing(a) = s { Some(a.clone()) } else { None }).collect()
    }

    /// Whether `kind`'s alert fires now.
    pub fn firing(&self, kind: QueueKind) -> bool {
        matches!(self.states[kind.index()], State::Firing(_))
    }

    /// Alerts raised for `kind` since start.
    pub fn raised(&self, kind: QueueKind) -> u64 {
        self.raised[kind.index()]
    }

    /// The last events, oldest first.
    pub fn history(&self) -> Vec<AlertEvent> {
        self.history.iter().cloned().collect()
    }

    /// The rule of `kind`.
    pub fn rule(&self, kind: QueueKind) -> Rule {
        self.rules[kind.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(lengths: &[(&str, u64)]) -> Figures {
        Figures::from_lengths(QueueKind::Stored, lengths.iter().map(|(n, l)| (n.to_string(), *l)), 3)
    }

    fn alerts(items: u64, for_ms: u64) -> Alerts {
        let off = Rule { items: 0, for_ms: 0 };
        Alerts::new([Rule { items, for_ms }, off, off, off])
    }

    #[test]
    fn an_alert_fires_only_after_the_threshold_held_for_the_duration_and_names_the_worst_queue() {
        let mut a = alerts(100, 5_000);
        assert!(a.observe(1_000, &[stored(&[("+1", 150), ("+2", 20)])]).is_empty(), "over, but not for long");
        assert!(a.observe(5_999, &[stored(&[("+1", 160)])]).is_empty());
        let events = a.observe(6_000, &[stored(&[("+1", 170), ("+2", 400)])]);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].event, events[0].queue.as_str(), events[0].items), (Change::Raised, "+2", 400));
        let active = a.active();
        assert_eq!((active[0].since_ms, active[0].threshold), (1_000, 100), "since the threshold was first exceeded");
        assert!(a.observe(7_000, &[stored(&[("+1", 500)])]).is_empty(), "no second raise while firing");
        assert_eq!(a.active()[0].queue, "+1", "the alert names the worst queue as of the last sample");
        assert_eq!(a.raised(QueueKind::Stored), 1);
    }

    #[test]
    fn a_dip_under_the_threshold_restarts_the_duration() {
        let mut a = alerts(100, 5_000);
        a.observe(0, &[stored(&[("+1", 150)])]);
        a.observe(4_000, &[stored(&[("+1", 99)])]);
        assert!(a.observe(6_000, &[stored(&[("+1", 150)])]).is_empty());
        assert!(a.observe(10_999, &[stored(&[("+1", 150)])]).is_empty());
        assert_eq!(a.observe(11_000, &[stored(&[("+1", 150)])])[0].event, Change::Raised);
    }

    #[test]
    fn an_alert_clears_when_every_queue_is_back_under_the_threshold() {
        let mut a = alerts(10, 0);
        assert_eq!(a.observe(0, &[stored(&[("+1", 10)])])[0].event, Change::Raised, "at the threshold, duration 0: at once");
        let events = a.observe(1_000, &[stored(&[("+1", 9), ("+2", 3)])]);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].event, events[0].queue.as_str(), events[0].items), (Change::Cleared, "+1", 9));
        assert!(a.active().is_empty() && !a.firing(QueueKind::Stored));
        assert_eq!(a.history().iter().map(|e| e.event).collect::<Vec<_>>(), [Change::Raised, Change::Cleared]);
    }

    #[test]
    fn a_rule_of_zero_items_never_fires() {
        let mut a = alerts(0, 0);
        assert!(a.observe(0, &[stored(&[("+1", u64::MAX)])]).is_empty());
        let kinds: Vec<Figures> = QueueKind::ALL.iter().map(|k| Figures::from_lengths(*k, [("q".to_string(), 1_000_000)], 3)).collect();
        assert_eq!(a.observe(1, &kinds).len(), 0, "the other kinds' rules are off too");
    }

    #[test]
    fn the_history_keeps_the_last_events() {
        let mut a = alerts(1, 0);
        for t in 0..300u64 {
            a.observe(t, &[stored(&[("+1", t % 2)])]);
        }
        let history = a.history();
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history.last().unwrap().at_ms, 299);
    }
}
