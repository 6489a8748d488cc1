//! The registry of online sessions (the directory): one per logged-in number, with the
//! signals a session's driver listens to (wake up and deliver; close with a reason), as the
//! core's `Register`, `Unregister` and `Kick` outputs ask. Knows nothing of QUIC.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use hotline_core::Close;
use tokio::sync::{mpsc, Notify};

/// What a session listens to. Created by [`Sessions::register`].
pub struct SessionSignals {
    pub id: u64,
    /// Notified when the user's queue gained durable items.
    pub wake: Arc<Notify>,
    /// Receives at most one kick: the close the core chose.
    pub kick: mpsc::UnboundedReceiver<Close>,
}

struct Entry {
    id: u64,
    wake: Arc<Notify>,
    kick: mpsc::UnboundedSender<Close>,
}

/// Online sessions by phone number.
#[derive(Default)]
pub struct Sessions {
    map: DashMap<String, Entry>,
    next_id: AtomicU64,
}

impl Sessions {
    /// Registers a session for `phone`. An older session of the same number is kicked with
    /// `replaced`: a number is online on one connection at a time.
    pub fn register(&self, phone: &str, replaced: Close) -> SessionSignals {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let (kick_tx, kick) = mpsc::unbounded_channel();
        let old = self.map.insert(phone.to_string(), Entry { id, wake: wake.clone(), kick: kick_tx });
        if let Some(old) = old {
            let _ = old.kick.send(replaced);
        }
        SessionSignals { id, wake, kick }
    }

    /// Removes session `id` of `phone` (and not a newer one that replaced it).
    pub fn unregister(&self, phone: &str, id: u64) {
        self.map.remove_if(phone, |_, e| e.id == id);
    }

    /// Tells `phone`'s session, if online, that new items are queued; whether it was.
    pub fn wake(&self, phone: &str) -> bool {
        match self.map.get(phone) {
            Some(e) => {
                e.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes `phone`'s session, if online.
    pub fn kick(&self, phone: &str, kick: Close) {
        if let Some((_, e)) = self.map.remove(phone) {
            let _ = e.kick.send(kick);
        }
    }

    /// Closes session `id` of `phone`, if it is still the one online (a cluster's kick
    /// names the session it means; a newer one of the same number stays).
    pub fn kick_session(&self, phone: &str, id: u64, kick: Close) {
        if let Some((_, e)) = self.map.remove_if(phone, |_, e| e.id == id) {
            let _ = e.kick.send(kick);
        }
    }

    /// Whether `phone` has a session online.
    pub fn is_online(&self, phone: &str) -> bool {
        self.map.contains_key(phone)
    }

    /// Number of online sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
