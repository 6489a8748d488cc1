//! One slot's versions, after Erlang's current and old code: the current version takes new
//! calls; earlier versions are kept for rollback; a swap or rollback is one atomic pointer
//! store, and calls already running finish on the version they started on. A canary
//! (see `canary`) is a version beside the current one that serves a share of the users.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;

use super::canary::Canary;
use super::version::Version;

/// What happened to a slot. Serialized as `loaded`, `refused`, `rolled-back`, `rollback`,
/// `canary`, `promoted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapEventKind {
    /// A version became current (at start or from the folder).
    Loaded,
    /// A file was refused; the current version stayed.
    Refused,
    /// A version failing in probation was rolled back automatically.
    RolledBack,
    /// An operator rolled back (or ended a canary).
    Rollback,
    /// A canary started, or its share changed.
    Canary,
    /// A canary was made current.
    Promoted,
}

/// Something that happened to a slot, for the operator's swap history.
#[derive(Debug, Clone, Serialize)]
pub struct SwapEvent {
    pub at_ms: u64,
    pub slot: String,
    /// Short hash of the version concerned (or of the refused file).
    pub version: String,
    pub event: SwapEventKind,
    pub detail: String,
}

/// Most events kept per slot.
const MAX_EVENTS: usize = 200;
/// Most rolled-back versions kept for display.
const MAX_ROLLED_BACK: usize = 8;
/// Most refused file hashes remembered per slot.
const MAX_REFUSED: usize = 64;

/// The versions of one slot.
pub struct SlotState {
    current: ArcSwap<Version>,
    /// The canary beside the current version, if one runs.
    canary: ArcSwapOption<Canary>,
    /// When the current version became current (its probation starts then).
    since: Mutex<Instant>,
    /// Versions that were current before, newest last; rollback takes the newest.
    earlier: Mutex<VecDeque<Arc<Version>>>,
    /// Versions taken out by a rollback, newest last (display only).
    rolled_back: Mutex<VecDeque<Arc<Version>>>,
    events: Mutex<VecDeque<SwapEvent>>,
    /// Full hashes of files refused, newest last: such a file is not tried again.
    refused: Mutex<VecDeque<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SlotState {
    pub fn new(first: Arc<Version>) -> SlotState {
        SlotState {
            current: ArcSwap::new(first),
            canary: ArcSwapOption::empty(),
            since: Mutex::new(Instant::now()),
            earlier: Mutex::new(VecDeque::new()),
            rolled_back: Mutex::new(VecDeque::new()),
            events: Mutex::new(VecDeque::new()),
            refused: Mutex::new(VecDeque::new()),
        }
    }

    /// The version new calls go to.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// Makes `next` current; the old current is kept for rollback (at most `keep`). A
    /// version of the same hash listed as earlier or rolled back (a re-install) is dropped
    /// from those lists, so each version is listed once.
    pub fn swap_in(&self, next: Arc<Version>, keep: usize) {
        let mut earlier = lock(&self.earlier);
        earlier.retain(|v| v.hash != next.hash);
        lock(&self.rolled_back).retain(|v| v.hash != next.hash);
        let old = self.current.swap(next);
        *lock(&self.since) = Instant::now();
        old.retire();
        earlier.push_back(old);
        while earlier.len() > keep {
            earlier.pop_front();
        }
    }

    /// Puts the newest earlier version back, whatever is current (an operator's rollback).
    /// Returns the version taken out and the version now current.
    pub fn roll_back(&self) -> Result<(Arc<Version>, Arc<Version>), String> {
        let mut earlier = lock(&self.earlier);
        self.put_back_newest(&mut earlier)
    }

    /// Puts the newest earlier version back if `bad` is still current (an automatic
    /// rollback). Returns the version taken out and the version now current.
    pub fn roll_back_if_current(&self, bad: &Arc<Version>) -> Result<(Arc<Version>, Arc<Version>), String> {
        let mut earlier = lock(&self.earlier);
        if !Arc::ptr_eq(bad, &self.current()) {
            return Err("already replaced".into());
        }
        self.put_back_newest(&mut earlier)
    }

    fn put_back_newest(&self, earlier: &mut VecDeque<Arc<Version>>) -> Result<(Arc<Version>, Arc<Version>), String> {
        let current = self.current();
        let previous = earlier.pop_back().ok_or_else(|| "no earlier version to roll back to".to_string())?;
        previous.revive();
        self.current.store(previous.clone());
        *lock(&self.since) = Instant::now();
        current.retire();
        let mut rolled = lock(&self.rolled_back);
        rolled.retain(|v| v.hash != previous.hash && v.hash != current.hash);
        rolled.push_back(current.clone());
        while rolled.len() > MAX_ROLLED_BACK {
            rolled.pop_front();
        }
        Ok((current, previous))
    }

    /// The running canary, if any.
    pub fn canary(&self) -> Option<Arc<Canary>> {
        self.canary.load_full()
    }

    /// Starts (or replaces) the canary; returns the one it replaced.
    pub fn set_canary(&self, canary: Arc<Canary>) -> Option<Arc<Canary>> {
        self.canary.swap(Some(canary))
    }

    /// Ends the canary if it is still `which` (any canary if `None`); returns it. Its
    /// version is retired and listed as rolled back unless it is `promoted`.
    pub fn end_canary(&self, which: Option<&Arc<Canary>>, promoted: bool) -> Option<Arc<Canary>> {
        let ended = match which {
            Some(which) => {
                let expected = Some(which.clone());
                let old: Option<Arc<Canary>> = (*self.canary.compare_and_swap(&expected, None)).clone();
                old.filter(|c| Arc::ptr_eq(c, which))?
            }
            None => self.canary.swap(None)?,
        };
        if !promoted {
            ended.version.retire();
            let mut rolled = lock(&self.rolled_back);
            rolled.retain(|v| v.hash != ended.version.hash);
            rolled.push_back(ended.version.clone());
            while rolled.len() > MAX_ROLLED_BACK {
                rolled.pop_front();
            }
        }
        Some(ended)
    }

    /// How long the current version has been current.
    pub fn current_for(&self) -> std::time::Duration {
        lock(&self.since).elapsed()
    }

    /// Whether there is a version to roll back to.
    pub fn has_earlier(&self) -> bool {
        !lock(&self.earlier).is_empty()
    }

    pub fn record(&self, event: SwapEvent) {
        let mut events = lock(&self.events);
        events.push_back(event);
        while events.len() > MAX_EVENTS {
            events.pop_front();
        }
    }

    /// Remembers that the file with this (full) hash was refused.
    pub fn mark_refused(&self, hash: &str) {
        let mut refused = lock(&self.refused);
        if !refused.iter().any(|h| h == hash) {
            refused.push_back(hash.to_string());
            while refused.len() > MAX_REFUSED {
                refused.pop_front();
            }
        }
    }

    /// Whether the file with this (full) hash was refused before.
    pub fn was_refused(&self, hash: &str) -> bool {
        lock(&self.refused).iter().any(|h| h == hash)
    }

    pub fn events(&self) -> Vec<SwapEvent> {
        lock(&self.events).iter().cloned().collect()
    }

    /// Earlier versions (oldest first) and rolled-back ones.
    pub fn others(&self) -> (Vec<Arc<Version>>, Vec<Arc<Version>>) {
        (lock(&self.earlier).iter().cloned().collect(), lock(&self.rolled_back).iter().cloned().collect())
    }
}
