//! Queue monitoring: samples every kind of queue the broker has (each recipient's stored
//! queue, each connection's mailbox, the plugin call queues, the commit queue) on a timer,
//! keeps the figures operators read (total, maximum, non-empty queues, the top N), and runs
//! the alert rules on them, sending each raise and clear to the log, the metrics and the
//! webhook.
//!
//! Architecture Invariant: the monitor sees queues only as `(name, items)` figures handed
//! to it by [`Sources`]; it knows nothing of storage, QUIC or plugins.

pub mod alerts;
mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

pub use alerts::{Alert, AlertEvent, Alerts, Change, Rule};
pub use webhook::Webhook;

/// Queues kept in a sample's top list (the API's `top` can ask for fewer).
pub const TOP: usize = 50;

/// The kinds of queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// A recipient's stored queue: messages and receipts waiting for the number's device.
    Stored,
    /// A connection's outbound mailbox: frames waiting to be written to the client.
    Mailbox,
    /// A plugin slot's call queue: questions waiting for, or on, the plugin threads.
    Plugin,
    /// The commit queue: jobs waiting for the storage committer.
    Commit,
}

impl QueueKind {
    pub const ALL: [QueueKind; 4] = [QueueKind::Stored, QueueKind::Mailbox, QueueKind::Plugin, QueueKind::Commit];

    /// The name in metrics labels, the API and the config (`alerts.<name>_items`).
    pub fn name(self) -> &'static str {
        match self {
            QueueKind::Stored => "stored",
            QueueKind::Mailbox => "mailbox",
            QueueKind::Plugin => "plugin",
            QueueKind::Commit => "commit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One queue and its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueLen {
    pub name: String,
    pub items: u64,
}

/// One kind's figures at one sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figures {
    pub kind: QueueKind,
    /// Items in all queues of the kind.
    pub total: u64,
    /// Items in the largest queue.
    pub max: u64,
    /// Queues holding at least one item.
    pub non_empty: u64,
    /// The largest non-empty queues, largest first (ties by name), at most the `top` asked.
    pub top: Vec<QueueLen>,
}

impl Figures {
    /// Figures from every queue's length; empty queues may be included or not.
    pub fn from_lengths(kind: QueueKind, lengths: impl IntoIterator<Item = (String, u64)>, top: usize) -> Figures {
        let mut figures = Figures { kind, total: 0, max: 0, non_empty: 0, top: Vec::new() };
        // A bounded min-heap would avoid keeping every name; the lists here are the
        // non-empty queues only, which is small enough to sort the head of.
        let mut all = Vec::new();
        for (name, items) in lengths {
            if items == 0 {
                continue;
            }
            figures.total += items;
            figures.max = figures.max.max(items);
            figures.non_empty += 1;
            all.push(QueueLen { name, items });
        }
        let by_size = |a: &QueueLen, b: &QueueLen| b.items.cmp(&a.items).then_with(|| a.name.cmp(&b.name));
        if all.len() > top && top > 0 {
            all.select_nth_unstable_by(top - 1, by_size);
            all.truncate(top);
        }
        all.sort_unstable_by(by_size);
        all.truncate(top);
        figures.top = all;
        figures
    }
}

/// Where the figures of each kind come from: one function per kind, called once per
/// sample with the number of top queues wanted.
pub struct Sources {
    pub stored: Box<dyn Fn(usize) -> Figures + Send + Sync>,
    pub mailbox: Box<dyn Fn(usize) -> Figures + Send + Sync>,
    pub plugin: Box<dyn Fn(usize) -> Figures + Send + Sync>,
    pub commit: Box<dyn Fn(usize) -> Figures + Send + Sync>,
}

impl Sources {
    fn sample(&self) -> Vec<Figures> {
        vec![(self.stored)(TOP), (self.mailbox)(TOP), (self.plugin)(TOP), (self.commit)(TOP)]
    }
}

/// The last sample and the alert state, as the admin endpoint reads them.
pub struct Monitor {
    sources: Sources,
    state: Mutex<MonitorState>,
    webhook: Option<Webhook>,
}

struct MonitorState {
    sampled_at_ms: u64,
    figures: Arc<Vec<Figures>>,
    alerts: Alerts,
}

/// What `GET /api/alerts` answers.
#[derive(Debug, Clone, Serialize)]
pub struct AlertsReport {
    pub active: Vec<Alert>,
    pub history: Vec<AlertEvent>,
}

impl Monitor {
    /// A monitor with these rules (in [`QueueKind::ALL`] order) and, if given, a webhook
    /// that receives every event. Its figures are empty until the first [`Monitor::sample`].
    pub fn new(sources: Sources, rules: [Rule; 4], webhook: Option<Webhook>) -> Arc<Monitor> {
        let figures = Arc::new(QueueKind::ALL.iter().map(|k| Figures::from_lengths(*k, [], 0)).collect());
        let monitor = Monitor { sources, state: Mutex::new(MonitorState { sampled_at_ms: 0, figures, alerts: Alerts::new(rules) }), webhook };
        Arc::new(monitor)
    }

    /// Samples every kind now and runs the alert rules; logs and posts what changed.
    pub fn sample(&self, now_ms: u64) -> Vec<AlertEvent> {
        let figures = self.sources.sample();
        let events = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let events = state.alerts.observe(now_ms, &figures);
            state.figures = Arc::new(figures);
            state.sampled_at_ms = now_ms;
            events
        };
        for event in &events {
            match event.event {
                Change::Raised => tracing::warn!(
                    kind = event.kind.name(), queue = %event.queue, items = event.items, threshold = event.threshold,
                    "queue alert raised: the {} queue {} holds {} items (threshold {})", event.kind.name(), event.queue, event.items, event.threshold
                ),
                Change::Cleared => tracing::info!(
                    kind = event.kind.name(), queue = %event.queue, items = event.items, threshold = event.threshold,
                    "queue alert cleared: every {} queue is under {} items again", event.kind.name(), event.threshold
                ),
            }
            if let Some(webhook) = &self.webhook {
                webhook.post(event);
            }
        }
        events
    }

    /// Samples every `period` until the runtime stops.
    pub fn spawn(self: &Arc<Self>, period: Duration, clock: fn() -> u64) -> tokio::task::JoinHandle<()> {
        let monitor = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                monitor.sample(clock());
            }
        })
    }

    /// The last sample: when it was taken and each kind's figures (in [`QueueKind::ALL`] order).
    pub fn figures(&self) -> (u64, Arc<Vec<Figures>>) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.sampled_at_ms, state.figures.clone())
    }

    /// Active alerts and the recent raises and clears.
    pub fn alerts(&self) -> AlertsReport {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        AlertsReport { active: state.alerts.active(), history: state.alerts.history() }
    }

    /// Per kind: whether its alert fires, and how many it raised since start.
    pub fn alert_counts(&self) -> Vec<(QueueKind, bool, u64)> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        QueueKind::ALL.iter().map(|k| (*k, state.alerts.firing(*k), state.alerts.raised(*k))).collect()
    }

    /// The rule of each kind.
    pub fn rules(&self) -> Vec<(QueueKind, Rule)> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        QueueKind::ALL.iter().map(|k| (*k, state.alerts.rule(*k))).collect()
    }

    /// Webhook deliveries: (posted, failed attempts, given up, dropped because its queue was full).
    pub fn webhook_stats(&self) -> Option<webhook::Stats> {
        self.webhook.as_ref().map(|w| w.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_non_empty_queues_and_keep_the_largest_first() {
        let lengths = [("+3", 5), ("+1", 9), ("+2", 0), ("+4", 9), ("+5", 1)].map(|(n, l)| (n.to_string(), l));
        let f = Figures::from_lengths(QueueKind::Stored, lengths, 2);
        assert_eq!((f.total, f.max, f.non_empty), (24, 9, 4));
        assert_eq!(f.top, vec![QueueLen { name: "+1".into(), items: 9 }, QueueLen { name: "+4".into(), items: 9 }]);
        let none = Figures::from_lengths(QueueKind::Commit, [("commit".to_string(), 0)], 5);
        assert_eq!((none.total, none.max, none.non_empty, none.top.len()), (0, 0, 0, 0));
    }

    #[test]
    fn a_sample_updates_the_figures_and_raises_the_alert_the_rules_say() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let waiting = Arc::new(AtomicU64::new(0));
        let w = waiting.clone();
        let empty = |kind: QueueKind| -> Box<dyn Fn(usize) -> Figures + Send + Sync> { Box::new(move |top| Figures::from_lengths(kind, [], top)) };
        let sources = Sources {
            stored: Box::new(move |top| Figures::from_lengths(QueueKind::Stored, [("+15551230002".to_string(), w.load(Ordering::Relaxed))], top)),
            mailbox: empty(QueueKind::Mailbox),
            plugin: empty(QueueKind::Plugin),
            commit: empty(QueueKind::Commit),
        };
        let off = Rule { items: 0, for_ms: 0 };
        let monitor = Monitor::new(sources, [Rule { items: 3, for_ms: 1_000 }, off, off, off], None);
        waiting.store(4, Ordering::Relaxed);
        assert!(monitor.sample(10).is_empty());
        assert_eq!(monitor.figures().1[0].max, 4);
        let raised = monitor.sample(1_010);
        assert_eq!(raised[0].queue, "+15551230002");
        assert_eq!(monitor.alerts().active.len(), 1);
        assert_eq!(monitor.alert_counts()[0], (QueueKind::Stored, true, 1));
        waiting.store(0, Ordering::Relaxed);
        assert_eq!(monitor.sample(2_000)[0].event, Change::Cleared);
        assert!(monitor.alerts().active.is_empty());
    }
}
