//! Watches the plugin folder (notify) and loads a slot's file once it has stopped changing.
//!
//! A file is named after its slot (`router.wasm`, `registrar.wasm`, `receipts.wasm`); other
//! files are ignored. Writers should write elsewhere and rename into place; a file written
//! in pieces is loaded once it has been quiet for [`QUIET`], and if a half-written file is
//! tried it is refused (it does not compile) and the complete one is loaded after.

use std::collections::HashMap;
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
    /// Starts watching `host`'s plugin folder on a thread of its own.
    pub fn start(host: Arc<PluginHost>) -> anyhow::Result<Watcher> {
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
        })?;
        watcher.watch(host.dir(), RecursiveMode::NonRecursive)?;
        std::thread::Builder::new().name("hotline-plugin-watcher".into()).spawn(move || run(host, rx))?;
        Ok(Watcher { _watcher: watcher })
    }
}

fn slot_of(path: &Path) -> Option<Slot> {
    if path.extension()? != "wasm" {
        return None;
    }
    Slot::from_name(path.file_stem()?.to_str()?)
}

fn run(host: Arc<PluginHost>, rx: mpsc::Receiver<PathBuf>) {
    let mut dirty: HashMap<Slot, (PathBuf, Instant)> = HashMap::new();
    loop {
        let wait = dirty.values().map(|(_, t)| (*t + QUIET).saturating_duration_since(Instant::now())).min();
        match rx.recv_timeout(wait.unwrap_or(Duration::from_secs(3600))) {
            Ok(path) => {
                if let Some(slot) = slot_of(&path) {
                    dirty.insert(slot, (path, Instant::now()));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let ready: Vec<Slot> = dirty.iter().filter(|(_, (_, t))| t.elapsed() >= QUIET).map(|(s, _)| *s).collect();
        for slot in ready {
            let (path, _) = dirty.remove(&slot).expect("present");
            if path.exists() {
                host.load_file(slot, &path);
            } else {
                tracing::warn!(%slot, file = %path.display(), "plugin file removed; the current version stays");
            }
        }
    }
}
