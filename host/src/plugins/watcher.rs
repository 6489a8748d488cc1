//! Watches the plugin folder (notify) and loads a slot's file once it has stopped changing.
//! Each slot loads on a thread of its own, so a 10-40 s compile of a big Python or JS
//! router does not hold up a swap of the registrar or the receipts plugin.
//!
//! A file is named after its slot (`router.wasm`, `registrar.wasm`, `receipts.wasm`); other
//! files are ignored. Only events that change a file count: create, data written,
//! close-after-write, rename, remove. Opening or reading it (the loader's own read
//! included) and metadata changes do not, so a loaded file is read once, not again and again.
//!
//! Writers should write elsewhere and rename into place; a file written in pieces is loaded
//! once it has been quiet for [`QUIET`], and if a half-written file is tried it is refused
//! (it does not compile) and the complete one is loaded after. A refused file is set aside
//! (see [`PluginHost::load_file`]) only once it is complete: renamed into place, or closed
//! by its writer (inotify's close-after-write). While a writer has it open it stays, so the
//! writer's file is never taken from under it.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};

use super::PluginHost;
use crate::policy::Slot;

/// How long a file must go without change before it is loaded.
pub const QUIET: Duration = Duration::from_millis(150);

/// Keeps the folder watched; dropping it stops the watcher.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
}

/// What an event says about a slot's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Data was written (or a file created): a writer has it open.
    Writing,
    /// Its writer closed it: the file is complete.
    Closed,
    /// Renamed into place or away, removed, or the backend lost track (rescan): whatever is
    /// at the path now is complete.
    Replaced,
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
        EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => Some(Change::Replaced),
    }
}

impl Watcher {
    /// Starts watching `host`'s plugin folder, with one loading thread per slot.
    pub fn start(host: Arc<PluginHost>) -> anyhow::Result<Watcher> {
        let mut senders = Vec::new();
        for slot in Slot::ALL {
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
                return;
            }
            for path in &event.paths {
                if let Some(slot) = slot_of(path) {
                    let _ = senders[slot as usize].send(change);
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

/// One slot's loader: waits for its file to be quiet for [`QUIET`], then loads it. Ends
/// when the watcher is dropped.
fn run(host: Arc<PluginHost>, slot: Slot, rx: mpsc::Receiver<Change>) {
    let path = host.dir().join(format!("{slot}.wasm"));
    let mut dirty: Option<Instant> = None;
    // Whether a writer has the file open: data written, not yet closed after writing.
    let mut writing = false;
    loop {
        let wait = dirty.map(|t| (t + QUIET).saturating_duration_since(Instant::now()));
        match rx.recv_timeout(wait.unwrap_or(Duration::from_secs(3600))) {
            Ok(change) => {
                writing = change == Change::Writing;
                dirty = Some(Instant::now());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if dirty.is_some_and(|t| t.elapsed() >= QUIET) {
            dirty = None;
            if path.exists() {
                host.load_file(slot, &path, !writing);
            } else {
                tracing::warn!(%slot, file = %path.display(), "plugin file removed; the current version stays");
            }
        }
    }
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
        assert_eq!(change_of(&EventKind::Remove(RemoveKind::File)), Some(Change::Replaced));
    }
}
