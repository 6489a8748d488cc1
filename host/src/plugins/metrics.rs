//! Counters a plugin slot reports through `hotline:plugin/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Named counters of one slot, kept across versions.
#[derive(Debug, Default)]
pub struct PluginCounters {
    counters: Mutex<BTreeMap<String, u64>>,
}

/// Most distinct counter names one slot may create.
const MAX_NAMES: usize = 256;

impl PluginCounters {
    pub fn add(&self, name: &str, value: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = counters.get_mut(name) {
            *v = v.saturating_add(value);
        } else if counters.len() < MAX_NAMES && name.len() <= 64 {
            counters.insert(name.to_string(), value);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
