//! The broker's core: storage, the commit queue, policy, the SMS provider and the online
//! sessions, wired together. Commands in `cmd/` act on it; the QUIC server drives it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::config::{Config, LimitsConfig};
use crate::plugins::PluginHost;
use crate::policy::Policy;
use crate::sessions::Sessions;
use crate::sms::{OutboxFile, SmsSender};
use crate::store::{Committer, Store, WakeHook};

/// Everything a command needs. Shared by all connections.
pub struct Broker {
    pub store: Store,
    pub committer: Committer,
    /// The decisions: the plugin host, seen by the core only as a [`Policy`].
    pub policy: Arc<dyn Policy>,
    /// The same plugin host, for operators (list, rollback).
    pub plugins: Arc<PluginHost>,
    pub sessions: Arc<Sessions>,
    pub limits: LimitsConfig,
    pub message_ttl: Duration,
    /// Serialises registrar policy calls, so that attempt and request limits are counted
    /// exactly even when many connections register the same number at once.
    pub registration: std::sync::Mutex<()>,
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
        Ok(Arc::new(Broker {
            store,
            committer,
            policy: plugins.clone(),
            plugins,
            sessions,
            limits: config.limits.clone(),
            message_ttl: config.message_ttl(),
            registration: std::sync::Mutex::new(()),
            gauges: ConnectionGauges::default(),
        }))
    }

    /// Waits until every write submitted so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<()> {
        self.store.health().log_summary();
        self.committer.commit(|_| Ok(())).await?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
