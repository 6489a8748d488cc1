//! The media endpoint's metadata (`media` keyspace): one record per upload id, naming the
//! content-addressed file it refers to. The files themselves live outside the database
//! (`crate::media::blobs`).

use fjall::PersistMode;
use serde::{Deserialize, Serialize};

use super::{records, Store, StoreError};

/// An upload: what `GET /media/<id>` serves until `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// SHA-256 of the content: the name of its file.
    pub sha256: [u8; 32],
    /// Bytes.
    pub size: u64,
    /// The MIME type the uploader gave.
    pub mime: String,
    /// The number that uploaded it.
    pub uploader: String,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

impl Store {
    /// Stores the record of upload `id`, durably (fsynced) before it returns: a client
    /// answered `201` can count on the id across a crash.
    pub fn media_put(&self, id: &[u8; 16], record: &MediaRecord) -> Result<(), StoreError> {
        if self.health.report().poisoned_by.is_some() {
            return Err(StoreError::Poisoned);
        }
        let value = records::encode(record);
        let bytes = (id.len() + value.len()) as u64;
        self.media.insert(id.as_slice(), value)?;
        self.db.persist(PersistMode::SyncData)?;
        self.activity.wrote(bytes, 1, &[0; 3]);
        Ok(())
    }

    /// The record of upload `id`, expired or not.
    pub fn media_get(&self, id: &[u8; 16]) -> Result<Option<MediaRecord>, StoreError> {
        match self.media.get(id.as_slice())? {
            Some(v) => records::decode(&v, "media").map(Some),
            None => Ok(None),
        }
    }

    /// Every upload record: a full scan, for the sweep and the start-up count.
    pub fn media_all(&self) -> Result<Vec<([u8; 16], MediaRecord)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.media.iter() {
            let (k, v) = guard.into_inner()?;
            let Ok(id) = <[u8; 16]>::try_from(&*k) else {
                return Err(StoreError::Corrupt { keyspace: "media", detail: format!("a key of {} bytes", k.len()) });
            };
            out.push((id, records::decode(&v, "media")?));
        }
        Ok(out)
    }

    /// Deletes the records of `ids` (written at once; durable with the next fsync).
    pub fn media_remove(&self, ids: &[[u8; 16]]) -> Result<(), StoreError> {
        for id in ids {
            self.media.remove(id.as_slice())?;
        }
        if !ids.is_empty() {
            self.activity.wrote(ids.len() as u64 * 16, ids.len() as u64, &[0; 3]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_records_round_trip_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = MediaRecord {
            sha256: [7; 32],
            size: 5,
            mime: "image/png".into(),
            uploader: "+15550001".into(),
            created_at_ms: 1,
            expires_at_ms: 2,
        };
        store.media_put(&[1; 16], &record).unwrap();
        assert_eq!(store.media_get(&[1; 16]).unwrap(), Some(record.clone()));
        assert_eq!(store.media_get(&[2; 16]).unwrap(), None);
        assert_eq!(store.media_all().unwrap(), vec![([1; 16], record)]);
        store.media_remove(&[[1; 16]]).unwrap();
        assert!(store.media_all().unwrap().is_empty());
    }
}
