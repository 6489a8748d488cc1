//! The broker's shared state: storage, the commit queue, policy and its threads, the SMS
//! provider and the online sessions, wired together; and [`Broker::ports`], the view the
//! delivery core (`hotline-core`) reads through. The QUIC server's sessions drive the core
//! with it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine;
use hotline_core::{KeyMaker, Ports};
use rand::RngCore;

use crate::config::{Config, LimitsConfig};
use crate::plugins::PluginHost;
use crate::policy::PolicyThreads;
use crate::sessions::Sessions;
use crate::sms::{OutboxFile, SmsSender};
use crate::store::{Committer, Store, WakeHook};

/// Everything a session's driver needs. Shared by all connections.
pub struct Broker {
    pub store: Store,
    pub committer: Committer,
    /// The decisions: the plugin host, asked on the plugin threads.
    pub policy: PolicyThreads,
    /// The same plugin host, for operators (list, rollback).
    pub plugins: Arc<PluginHost>,
    pub sessions: Arc<Sessions>,
    /// The limits as the broker started; `max_body_bytes` is read through
    /// [`Broker::max_body_bytes`], which a reload (SIGHUP) can change.
    pub limits: LimitsConfig,
    max_body_bytes: AtomicUsize,
    pub message_ttl: Duration,
    /// What connections hold in memory, in bytes (for `/metrics`).
    pub gauges: ConnectionGauges,
}

/// Bytes held by all connections together, each kind bounded per connection.
#[derive(Debug, Default)]
pub struct ConnectionGauges {
    /// Decoded frames waiting for their session.
    pub inbound_bytes: Arc<AtomicU64>,
    /// Encoded frames waiting in session mailboxes to be written.
    pub mailbox_bytes: Arc<AtomicU64>,
    /// Message bodies sent and not yet committed.
    pub pending_send_bytes: Arc<AtomicU64>,
}

impl Broker {
    /// Opens storage in the configured data folder and starts the committer.
    pub fn open(config: &Config) -> Result<Arc<Broker>> {
        let path = config.store_path();
        let store = Store::open(&path).with_context(|| format!("opening storage at {}", path.display()))?;
        let sessions = Arc::new(Sessions::default());
        let wake: WakeHook = {
            let sessions = sessions.clone();
            Arc::new(move |user: &str| sessions.wake(user))
        };
        let committer = Committer::start(store.clone(), config.storage.durability, wake)?;
        let sms: Arc<dyn SmsSender> = Arc::new(OutboxFile::new(config.sms_outbox_path()));
        let plugins = Arc::new(PluginHost::start(
            config.plugins.clone(),
            config.plugin_dir(),
            config.plugin_cache_dir(),
            store.clone(),
            sms.clone(),
        )?);
        let policy = PolicyThreads::start(config.plugins.threads, plugins.clone(), Arc::new(RegistrationLocks::default()))
            .context("starting the plugin threads")?;
        Ok(Arc::new(Broker {
            store,
            committer,
            policy,
            plugins,
            sessions,
            limits: config.limits.clone(),
            max_body_bytes: AtomicUsize::new(config.limits.max_body_bytes),
            message_ttl: config.message_ttl(),
            gauges: ConnectionGauges::default(),
        }))
    }

    /// The largest message body a session starting now accepts (`limits.max_body_bytes`,
    /// as last reloaded).
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes.load(Ordering::Relaxed)
    }

    /// Sets `limits.max_body_bytes` for sessions that start from now on.
    pub fn set_max_body_bytes(&self, bytes: usize) {
        self.max_body_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Waits until every write submitted so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<()> {
        self.store.health().log_summary();
        self.committer.commit(|_| Ok(())).await?;
        Ok(())
    }
}

impl Broker {
    /// What the delivery core reads during a step: the store's accounts and queues, and
    /// random keys. (Policy is asked through [`Broker::policy`].)
    pub fn ports(&self) -> Ports<'_> {
        Ports { accounts: &self.store, queues: &self.store, keys: &RandomKeys }
    }
}

/// Registration keys: 32 random bytes, base64url without padding.
struct RandomKeys;

impl KeyMaker for RandomKeys {
    fn new_key(&self) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// The numbers whose registrar call is running. A call for a number waits for the one
/// before it on the same number, never for another number's, and no lock is held during
/// the call itself: the set's mutex is held only to look a number up, add or remove it.
/// A number leaves the set when its call ends, so the set holds only numbers in a call.
#[derive(Debug, Default)]
pub struct RegistrationLocks {
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
}

impl RegistrationLocks {
    /// Waits until no registrar call for `phone` runs, then marks one as running until the
    /// returned guard is dropped. Called on the plugin threads, never on a tokio worker.
    pub fn hold(&self, phone: &str) -> Registering<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while busy.contains(phone) {
            busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        busy.insert(phone.to_string());
        Registering { locks: self, phone: phone.to_string() }
    }

    /// Numbers with a registrar call running.
    pub fn running(&self) -> usize {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A registrar call for `phone` is running.
pub struct Registering<'a> {
    locks: &'a RegistrationLocks,
    phone: String,
}

impl Drop for Registering<'_> {
    fn drop(&mut self) {
        self.locks.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.phone);
        self.locks.freed.notify_all();
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

