//! The media files on disk: `<data>/media/blobs/<sha256>`, one per distinct content, and
//! `<data>/media/tmp/`, where uploads are received. An upload becomes a file only whole:
//! written to a temporary file, fsynced, renamed into `blobs/` (and the folder fsynced); a
//! cut-off upload's temporary file is deleted, and leftovers of a crash are deleted at start.
//! The sweep deletes expired upload records, then every file no record refers to.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use rand::RngCore;

use crate::metrics::MediaMetrics;
use crate::store::{MediaRecord, Store, StoreError};

/// What can go wrong with the files or their records.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A file or folder operation failed.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// Storage refused the upload's record.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = path.to_path_buf();
    move |source| BlobError::Io { what, path, source }
}

/// The media folder. The lock makes "move a file into place and store its record" one step
/// for the sweep, which would otherwise delete a file whose record is about to be written.
pub struct Blobs {
    blobs: PathBuf,
    tmp: PathBuf,
    lock: Mutex<()>,
}

/// What a sweep did and found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Upload records deleted because they expired.
    pub expired: u64,
    /// Files deleted because no record refers to them any more.
    pub files_deleted: u64,
    /// Records left.
    pub objects: u64,
    /// Files left, and their bytes.
    pub files: u64,
    pub bytes: u64,
}

impl Blobs {
    /// Opens (making it if needed) the media folder `dir`, deleting what an earlier run
    /// left in `tmp/` (uploads cut off by a crash or a kill).
    pub fn open(dir: &Path) -> Result<Blobs, BlobError> {
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        for d in [dir, &blobs, &tmp] {
            crate::tls::create_private_dir(d).map_err(|e| BlobError::Io {
                what: "creating",
                path: d.to_path_buf(),
                source: std::io::Error::other(format!("{e:#}")),
            })?;
        }
        let mut left = 0;
        for entry in std::fs::read_dir(&tmp).map_err(io("reading", &tmp))? {
            let path = entry.map_err(io("reading", &tmp))?.path();
            std::fs::remove_file(&path).map_err(io("deleting", &path))?;
            left += 1;
        }
        if left > 0 {
            tracing::info!(files = left, dir = %tmp.display(), "deleted uploads an earlier run left unfinished");
        }
        Ok(Blobs { blobs, tmp, lock: Mutex::new(()) })
    }

    /// The file of content `sha256`.
    pub fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.blobs.join(hex::encode(sha256))
    }

    /// A new temporary file for an upload; deleted when dropped unless committed.
    pub async fn temp(&self) -> Result<TempUpload, BlobError> {
        let mut name = [0u8; 16];
        rand::rng().fill_bytes(&mut name);
        let path = self.tmp.join(format!("{}.part", hex::encode(name)));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await.map_err(io("creating", &path))?;
        Ok(TempUpload { path: Some(path), file: Some(file) })
    }

    /// Makes a received upload a file (or drops it when a file of that content is there
    /// already) and stores the record of upload `id`, as one step for the sweep. Blocking:
    /// call it off the async threads. Returns whether a new file was made.
    pub fn commit(&self, mut temp: TempUpload, store: &Store, id: &[u8; 16], record: &MediaRecord) -> Result<bool, BlobError> {
        let from = temp.path.take().expect("a temporary upload is committed once");
        let to = self.path(&record.sha256);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let new = if to.exists() {
            std::fs::remove_file(&from).map_err(io("deleting", &from))?;
            false
        } else {
            if let Err(e) = std::fs::rename(&from, &to) {
                let _ = std::fs::remove_file(&from);
                return Err(io("moving an upload to", &to)(e));
            }
            sync_dir(&self.blobs)?;
            true
        };
        if let Err(e) = store.media_put(id, record) {
            // The file stays only if another record refers to it: the next sweep decides.
            return Err(e.into());
        }
        Ok(new)
    }

    /// Deletes the records expired at `now_ms` and every file no record refers to, and sets
    /// the gauges of `metrics` to what is left. Blocking, a full scan: run it every
    /// `media.sweep_secs` off the async threads.
    pub fn sweep(&self, store: &Store, now_ms: u64, metrics: &MediaMetrics) -> Result<Swept, BlobError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (expired, live): (Vec<_>, Vec<_>) = store.media_all()?.into_iter().partition(|(_, r)| r.expires_at_ms <= now_ms);
        let ids: Vec<[u8; 16]> = expired.iter().map(|(id, _)| *id).collect();
        store.media_remove(&ids)?;
        let referenced: HashSet<String> = live.iter().map(|(_, r)| hex::encode(r.sha256)).collect();
        let mut swept = Swept { expired: ids.len() as u64, objects: live.len() as u64, ..Swept::default() };
        for entry in std::fs::read_dir(&self.blobs).map_err(io("reading", &self.blobs))? {
            let entry = entry.map_err(io("reading", &self.blobs))?;
            let name = entry.file_name();
            if referenced.contains(name.to_string_lossy().as_ref()) {
                swept.files += 1;
                swept.bytes += entry.metadata().map_err(io("reading", &entry.path()))?.len();
            } else {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io("deleting", &path))?;
                swept.files_deleted += 1;
            }
        }
        metrics.expired.fetch_add(swept.expired, Ordering::Relaxed);
        metrics.objects.store(swept.objects, Ordering::Relaxed);
        metrics.files.store(swept.files, Ordering::Relaxed);
        metrics.disk_bytes.store(swept.bytes, Ordering::Relaxed);
        Ok(swept)
    }
}

/// fsyncs a folder: a rename in it is durable only then.
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing", dir))
}

/// An upload being received into `<data>/media/tmp/`. Dropped before it is committed (the
/// body was cut off, too large, the connection died), its file is deleted.
pub struct TempUpload {
    path: Option<PathBuf>,
    file: Option<tokio::fs::File>,
}

impl TempUpload {
    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.file.as_mut().expect("open until finished").write_all(bytes).await
    }

    /// Flushes and fsyncs the content and closes the file (it stays until committed or
    /// dropped).
    pub async fn finish(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut file = self.file.take().expect("finished once");
        file.flush().await?;
        file.sync_all().await
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        self.file.take();
        if let Some(path) = self.path.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not delete an unfinished upload");
            }
        }
    }
}
