//! Watches the plugin folder (notify) and loads a slot's file once it has stopped changing.
//! Each slot loads on a thread of its own, so a 10-40 s compile of a big Python or JS
//! router does not hold up a swap of the registrar or the receipts plugin.
//!
//! A file is named after its slot (`router.wasm`, `registrar.wasm`, `receipts.wasm`); other
//! files are ignored. Writers should write elsewhere and rename into place; a file written
//! in pieces is loaded once it has been quiet for [`QUIET`], and if a half-written file is
//! tried it is refused (it does not compile) and the complete one is loaded after.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

use super::PluginHost;
use crate::policy::Slot;

/// How long a file must go without change before it is loaded.
pub const QUIET: Duration = Duration::from_millis(150);

/// Keeps the folder watched; dropping it stops the watcher.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
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
            if let Ok(event) = event {
                for path in event.paths {
                    if let Some(slot) = slot_of(&path) {
                        let _ = senders[slot as usize].send(path);
                    }
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
fn run(host: Arc<PluginHost>, slot: Slot, rx: mpsc::Receiver<PathBuf>) {
    let mut dirty: Option<(PathBuf, Instant)> = None;
    loop {
        let wait = dirty.as_ref().map(|(_, t)| (*t + QUIET).saturating_duration_since(Instant::now()));
        match rx.recv_timeout(wait.unwrap_or(Duration::from_secs(3600))) {
            Ok(path) => dirty = Some((path, Instant::now())),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if dirty.as_ref().is_some_and(|(_, t)| t.elapsed() >= QUIET) {
            let (path, _) = dirty.take().expect("present");
            if path.exists() {
                host.load_file(slot, &path);
            } else {
                tracing::warn!(%slot, file = %path.display(), "plugin file removed; the current version stays");
            }
        }
    }
}
