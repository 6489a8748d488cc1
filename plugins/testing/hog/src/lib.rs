//! `hotline-test-hog`: a misbehaving router for the broker's hot-swap tests — `init`
//! succeeds, every `route` and `route_batch` call allocates memory without bound (1 MiB
//! chunks, written to and kept) until the allocation fails and the instance traps.
//! With the config `leak`, each call instead keeps one more chunk and routes the message
//! (a slow leak, as componentize-js instances have), for the instance-recycling test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use hotline_plugin::{Host, MessageMeta, Plugin, Route, Router};

/// Everything allocated so far; kept so nothing is ever freed.
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

const CHUNK: usize = 1 << 20;

/// Set by `init("leak")`.
static LEAK: AtomicBool = AtomicBool::new(false);

#[derive(Default)]
pub struct Hog;

impl Plugin for Hog {
    fn init(&self, _host: &dyn Host, config: &str) -> Result<(), String> {
        LEAK.store(config.trim() == "leak", Ordering::Relaxed);
        Ok(())
    }
}

impl Hog {
    /// Allocates `chunks` more chunks (unbounded when `None`).
    fn grab(chunks: Option<usize>) {
        let mut hoard = HOARD.lock().unwrap_or_else(|e| e.into_inner());
        let mut i = 0usize;
        while chunks.is_none_or(|n| i < n) {
            // Non-zero bytes, so every page is really touched.
            hoard.push(vec![0xA5; CHUNK]);
            i += 1;
        }
    }
}

impl Router for Hog {
    fn route(&self, _host: &dyn Host, message: MessageMeta) -> Route {
        if LEAK.load(Ordering::Relaxed) {
            Hog::grab(Some(1));
            return Route::Deliver(vec![message.to]);
        }
        Hog::grab(None);
        unreachable!("memory is never exhausted")
    }
}

hotline_plugin::export_router!(Hog);

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    #[test]
    fn init_succeeds() {
        assert_eq!(Hog.init(&TestHost::new(), ""), Ok(()));
    }

    #[test]
    fn grabbed_memory_is_kept() {
        let before = HOARD.lock().unwrap().len();
        Hog::grab(Some(3));
        assert_eq!(HOARD.lock().unwrap().len(), before + 3);
    }
}
