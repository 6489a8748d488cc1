//! SMS providers: how registration codes reach phones.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

/// Failure to hand an SMS to the provider.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The development outbox file could not be written.
    #[error("cannot write SMS outbox {path}: {source}")]
    Outbox { path: PathBuf, source: std::io::Error },
}

/// Something that delivers a text to a phone number.
pub trait SmsSender: Send + Sync {
    fn send(&self, to: &str, text: &str) -> Result<(), SmsError>;
}

/// Development provider: appends `{"to": …, "text": …}` as one JSON line to a file, which
/// it creates with mode 0600 (the lines hold registration codes).
pub struct OutboxFile {
    path: PathBuf,
    lock: Mutex<()>,
}

impl OutboxFile {
    pub fn new(path: PathBuf) -> Self {
        OutboxFile { path, lock: Mutex::new(()) }
    }
}

#[derive(Serialize)]
struct OutboxLine<'a> {
    to: &'a str,
    text: &'a str,
}

impl SmsSender for OutboxFile {
    fn send(&self, to: &str, text: &str) -> Result<(), SmsError> {
        let mut line = serde_json::to_vec(&OutboxLine { to, text }).expect("serializes");
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let err = |source| SmsError::Outbox { path: self.path.clone(), source };
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path).map_err(err)?;
        file.write_all(&line).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_outbox_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sms-outbox.jsonl");
        OutboxFile::new(path.clone()).send("+15551230001", "Your code is 12345").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
