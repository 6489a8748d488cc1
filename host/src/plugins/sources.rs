//! The component files of the versions the broker keeps (current, earlier ones for
//! rollback, a canary), on disk by SHA-256 rather than in memory: a Python component is
//! about 18 MB, and a slot keeps up to `keep_versions` earlier ones. Files are
//! `<data>/plugin-cache/versions/<sha256>.wasm`, one per distinct content, written when a
//! version is loaded, read back only to put a version's file in the plugin folder (rollback,
//! promote, canary), and deleted when the last version holding that content is dropped.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The folder and how many loaded versions hold each file.
pub struct Sources {
    dir: PathBuf,
    held: Mutex<HashMap<String, usize>>,
}

/// A loaded version's hold on its component file; the file goes with the last hold.
pub struct KeptSource {
    sources: Arc<Sources>,
    hash: String,
}

impl Sources {
    /// Opens `dir`, deleting what an earlier run left: no version is loaded yet.
    pub fn open(dir: PathBuf) -> io::Result<Arc<Sources>> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            std::fs::remove_file(entry?.path())?;
        }
        Ok(Arc::new(Sources { dir, held: Mutex::new(HashMap::new()) }))
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    /// Keeps `bytes` (SHA-256 `hash`) on disk for as long as the returned hold lives.
    pub fn keep(self: &Arc<Self>, hash: &str, bytes: &[u8]) -> io::Result<KeptSource> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(hash.to_string()).or_insert(0);
        if *count == 0 {
            let (path, tmp) = (self.path(hash), self.dir.join(format!("{hash}.tmp")));
            if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
                held.remove(hash);
                return Err(e);
            }
        }
        *count += 1;
        Ok(KeptSource { sources: self.clone(), hash: hash.to_string() })
    }
}

impl KeptSource {
    /// Copies the component file to `to` (a temporary name the caller then renames).
    pub fn copy_to(&self, to: &Path) -> io::Result<()> {
        std::fs::copy(self.sources.path(&self.hash), to).map(|_| ())
    }
}

impl Drop for KeptSource {
    fn drop(&mut self) {
        let mut held = self.sources.held.lock().unwrap_or_else(|p| p.into_inner());
        let Some(count) = held.get_mut(&self.hash) else { return };
        *count -= 1;
        if *count == 0 {
            held.remove(&self.hash);
            let path = self.sources.path(&self.hash);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a dropped plugin version's file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_stays_while_a_version_holds_it_and_goes_with_the_last() {
        let dir = std::env::temp_dir().join(format!("hotline-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("left-by-an-earlier-run.wasm"), b"old").unwrap();
        let sources = Sources::open(dir.clone()).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "an earlier run's files are deleted at start");

        let first = sources.keep("abc", b"component").unwrap();
        let second = sources.keep("abc", b"component").unwrap();
        assert_eq!(std::fs::read(dir.join("abc.wasm")).unwrap(), b"component");
        drop(first);
        let out = dir.join("out.tmp");
        second.copy_to(&out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"component", "still there for the second holder");
        std::fs::remove_file(&out).unwrap();
        drop(second);
        assert!(!dir.join("abc.wasm").exists(), "gone with the last holder");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
