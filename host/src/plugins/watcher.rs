//! Watches the plugin folder (notify) and loads a slot's file as soon as it is complete.
//! Each slot loads on a thread of its own, so a 10-40 s compile of a big Python or JS
//! router does not hold up a swap of the registrar or the receipts plugin.
//!
//! A file is named after its slot (`router.wasm`, `registrar.wasm`, `receipts.wasm`), or is
//! a slot's canary (`router.canary-10.wasm`: see [`PluginHost::sync_canary`], looked at once
//! the folder has been quiet for [`QUIET`], on a thread of its own per slot); other files
//! are ignored. Only events that change a file count: create, data written,
//! close-after-write, rename, remove. Opening or reading it (the loader's own read
//! included) and metadata changes do not, so a loaded file is read once, not again and again.
//!
//! When a file is complete the watcher loads it at once: renamed into place (or removed),
//! or closed by its writer (inotify's close-after-write). Only a file still being written
//! (created or written, not yet closed) waits until it has been quiet for [`QUIET`]; if a
//! half-written file is tried it is refused (it does not compile) and the complete one is
//! loaded once its writer closes it. A refused file is set aside (see
//! [`PluginHost::load_file`]) only once it is complete; while a writer has it open it
//! stays, so the writer's file is never taken from under it.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};

use super::PluginHost;
use crate::policy::Slot;

/// How long a file still being written (created or written, not closed after writing) must
/// go without change before it is loaded anyway (a writer that keeps it open).
pub const QUIET: Duration = Duration::from_millis(150);

/// Keeps the folder watched; dropping it stops the watcher.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
}

/// What an event says about a slot's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Data was written (or a file created): a writer has it open. Loaded once quiet for
    /// [`QUIET`], as an incomplete file.
    Writing,
    /// Changed in a way the backend does not detail (not reported on Linux): loaded once
    /// quiet for [`QUIET`], as a complete file.
    Changed,
    /// Its writer closed it: the file is complete. Loaded at once.
    Closed,
    /// Renamed into place or away, removed, or the backend lost track (rescan): whatever is
    /// at the path now is complete. Loaded at once.
    Replaced,
}

impl Change {
    /// Whether the file is complete after this change, so it can be loaded at once.
    fn complete(self) -> bool {
        matches!(self, Change::Closed | Change::Replaced)
    }
}

/// Sorts an event; `None` for events that do not change the file (open, read, close after
/// reading, metadata).
fn change_of(kind: &EventKind) -> Option<Change> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Change::Closed),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Metadata(_)) => None,
        EventKind::Modify(ModifyKind::Data(_)) | EventKind::Create(CreateKind::File | CreateKind::Any) => Some(Change::Writing),
        EventKind::Create(_) => None,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => Some(Change::Replaced),
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => Some(Change::Changed),
    }
}

impl Watcher {
    /// Starts watching `host`'s plugin folder, with one loading thread per slot.
    pub fn start(host: Arc<PluginHost>) -> anyhow::Result<Watcher> {
        let mut senders = Vec::new();
        let mut canary_senders = Vec::new();
        for slot in Slot::ALL {
            let (tx, rx) = mpsc::channel();
            canary_senders.push(tx);
            let canary_host = host.clone();
            std::thread::Builder::new().name(format!("hotline-plugin-canary-{slot}")).spawn(move || run_canary(canary_host, slot, rx))?;
            let (tx, rx) = mpsc::channel();
            senders.push(tx);
            let host = host.clone();
            std::thread::Builder::new().name(format!("hotline-plugin-watcher-{slot}")).spawn(move || run(host, slot, rx))?;
        }
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let Some(change) = change_of(&event.kind) else { return };
            if event.need_rescan() {
                // Events were lost (inotify queue overflow): look at every slot's file.
                for tx in &senders {
                    let _ = tx.send(Change::Replaced);
                }
                for tx in &canary_senders {
                    let _ = tx.send(());
                }
                return;
            }
            for path in &event.paths {
                if let Some(slot) = slot_of(path) {
                    let _ = senders[slot as usize].send(change);
                } else if let Some((slot, _)) = path.file_name().and_then(|n| super::canary::parse_file_name(n.to_str()?)) {
                    let _ = canary_senders[slot as usize].send(());
                }
            }
        })?;
        watcher.watch(host.dir(), RecursiveMode::NonRecursive)?;
        Ok(Watcher { _watcher: watcher })
    }
}

fn slot_of(path: &Path) -> Option<Slot> {
    if path.extension()? != "wasm" {
        return None;
    }
    Slot::from_name(path.file_stem()?.to_str()?)
}

/// One slot's loader: loads the file as soon as a change leaves it complete (renamed into
/// place, closed after writing), or once a file still being written has been quiet for
/// [`QUIET`]. Ends when the watcher is dropped.
fn run(host: Arc<PluginHost>, slot: Slot, rx: mpsc::Receiver<Change>) {
    let path = host.dir().join(format!("{slot}.wasm"));
    let mut pending = Pending::default();
    loop {
        let wait = pending.quiet_since.map(|t| (t + QUIET).saturating_duration_since(Instant::now()));
        match rx.recv_timeout(wait.unwrap_or(Duration::from_secs(3600))) {
            Ok(change) => {
                // Take the whole burst already queued (a rename reports the new name, then
                // both names): the file is loaded once, in the state the last event left.
                let now = Instant::now();
                pending.note(change, now);
                for change in rx.try_iter() {
                    pending.note(change, now);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if let Some(due) = pending.take_due(Instant::now()) {
            if path.exists() {
                host.load_file(slot, &path, due.complete);
            } else if !due.after_quiet {
                // Renamed away: often the first half of a replacement (the serving bytes
                // put back after a rollback). Look again once the folder is quiet.
                pending.note(Change::Changed, Instant::now());
            } else {
                tracing::warn!(%slot, file = %path.display(), "plugin file removed; the current version stays");
            }
        }
    }
}

/// One slot's canary loader: once the canary files have been quiet for [`QUIET`] after a
/// change, makes the canary what the folder says. Ends when the watcher is dropped.
fn run_canary(host: Arc<PluginHost>, slot: Slot, rx: mpsc::Receiver<()>) {
    while rx.recv().is_ok() {
        loop {
            match rx.recv_timeout(QUIET) {
                Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        host.sync_canary(slot);
    }
}

/// The changes to a slot's file not yet acted on.
#[derive(Debug, Default)]
struct Pending {
    /// A load is due: at once if set and `quiet_since` is `None`.
    due: bool,
    /// Set while the last change needs a quiet period: when it happened.
    quiet_since: Option<Instant>,
    /// Whether the file is complete as the last change left it (no writer has it open).
    complete: bool,
}

impl Pending {
    /// Notes `change`, seen at `now`.
    fn note(&mut self, change: Change, now: Instant) {
        self.due = true;
        self.complete = change != Change::Writing;
        self.quiet_since = if change.complete() { None } else { Some(now) };
    }

    /// If a load is due at `now`, clears it and says how.
    fn take_due(&mut self, now: Instant) -> Option<Due> {
        let due = self.due && self.quiet_since.is_none_or(|t| now.duration_since(t) >= QUIET);
        if !due {
            return None;
        }
        self.due = false;
        let after_quiet = self.quiet_since.take().is_some();
        Some(Due { complete: self.complete, after_quiet })
    }
}

/// A load that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    /// No writer has the file open: a refusal may set it aside.
    complete: bool,
    /// Due after a quiet period (not at once).
    after_quiet: bool,
}

#[cfg(test)]
mod tests {
    use notify::event::{DataChange, MetadataKind, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn only_events_that_change_the_file_count() {
        let ignored = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Create(CreateKind::Folder),
        ];
        for kind in ignored {
            assert_eq!(change_of(&kind), None, "{kind:?}");
        }
        assert_eq!(change_of(&EventKind::Create(CreateKind::File)), Some(Change::Writing));
        assert_eq!(change_of(&EventKind::Modify(ModifyKind::Data(DataChange::Any))), Some(Change::Writing));
        assert_eq!(change_of(&EventKind::Access(AccessKind::Close(AccessMode::Write))), Some(Change::Closed));
        assert_eq!(change_of(&EventKind::Modify(ModifyKind::Name(RenameMode::To))), Some(Change::Replaced));
        assert_eq!(change_of(&EventKind::Modify(ModifyKind::Name(RenameMode::Both))), Some(Change::Replaced));
        assert_eq!(change_of(&EventKind::Remove(RemoveKind::File)), Some(Change::Replaced));
        assert_eq!(change_of(&EventKind::Modify(ModifyKind::Any)), Some(Change::Changed));
    }

    #[test]
    fn a_complete_file_loads_at_once_and_one_being_written_after_a_quiet_period() {
        const AT_ONCE: Due = Due { complete: true, after_quiet: false };
        const WRITTEN: Due = Due { complete: false, after_quiet: true };
        let t0 = Instant::now();
        // Renamed into place, or closed by its writer: due at once, complete.
        for change in [Change::Replaced, Change::Closed] {
            let mut pending = Pending::default();
            pending.note(change, t0);
            assert_eq!(pending.take_due(t0), Some(AT_ONCE), "{change:?}");
            assert_eq!(pending.take_due(t0), None, "{change:?} loaded twice");
        }
        // Written and still open: only after the quiet period, and not complete.
        let mut pending = Pending::default();
        pending.note(Change::Writing, t0);
        assert_eq!(pending.take_due(t0 + QUIET / 2), None);
        assert_eq!(pending.take_due(t0 + QUIET), Some(WRITTEN));
        // A change the backend does not detail: after the quiet period, complete.
        let mut pending = Pending::default();
        pending.note(Change::Changed, t0);
        assert_eq!(pending.take_due(t0), None);
        assert_eq!(pending.take_due(t0 + QUIET), Some(Due { complete: true, after_quiet: true }));
        // Written, then closed: complete at once.
        let mut pending = Pending::default();
        pending.note(Change::Writing, t0);
        pending.note(Change::Closed, t0);
        assert_eq!(pending.take_due(t0), Some(AT_ONCE));
        // Closed, then written again (its writer opened it again): waits again.
        let mut pending = Pending::default();
        pending.note(Change::Closed, t0);
        pending.note(Change::Writing, t0);
        assert_eq!(pending.take_due(t0), None);
        assert_eq!(pending.take_due(t0 + QUIET), Some(WRITTEN));
    }
}
