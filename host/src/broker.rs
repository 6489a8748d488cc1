//! The broker's shared state: storage, the commit queue, policy, the SMS provider and the
//! online sessions, wired together; and [`BrokerPorts`], the view the delivery core
//! (`hotline-core`) reads through. The QUIC server's sessions drive the core with it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine;
use hotline_core::policy::{MessageMeta, PolicyError, ReceiptMeta, Refusal, Route, Slot};
use hotline_core::{KeyMaker, Ports};
use rand::RngCore;

use crate::config::{Config, LimitsConfig};
use crate::plugins::PluginHost;
use crate::policy::Policy;
use crate::sessions::Sessions;
use crate::sms::{OutboxFile, SmsSender};
use crate::store::{Committer, Store, WakeHook};

/// Everything a session's driver needs. Shared by all connections.
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

impl Broker {
    /// What the delivery core reads during a step: the store's accounts and queues, policy
    /// (registrar calls one at a time), and random keys.
    pub fn ports(&self) -> BrokerPorts<'_> {
        BrokerPorts { broker: self, policy: OneRegistrationAtATime { policy: &*self.policy, lock: &self.registration } }
    }
}

/// The core's ports over a [`Broker`]; [`BrokerPorts::get`] hands them to a session.
pub struct BrokerPorts<'a> {
    broker: &'a Broker,
    policy: OneRegistrationAtATime<'a>,
}

impl BrokerPorts<'_> {
    pub fn get(&self) -> Ports<'_> {
        Ports { accounts: &self.broker.store, queues: &self.broker.store, policy: &self.policy, keys: &RandomKeys }
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

/// The broker's policy with registrar calls serialised, so that attempt and request limits
/// are counted exactly even when many connections register the same number at once.
struct OneRegistrationAtATime<'a> {
    policy: &'a dyn Policy,
    lock: &'a std::sync::Mutex<()>,
}

impl Policy for OneRegistrationAtATime<'_> {
    fn route(&self, messages: Vec<MessageMeta>) -> Result<Vec<Route>, PolicyError> {
        self.policy.route(messages)
    }

    fn request_code(&self, phone: &str) -> Result<Result<u32, Refusal>, PolicyError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.policy.request_code(phone)
    }

    fn verify_code(&self, phone: &str, code: &str) -> Result<Result<(), Refusal>, PolicyError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.policy.verify_code(phone, code)
    }

    fn receipt(&self, receipt: ReceiptMeta) -> Result<bool, PolicyError> {
        self.policy.receipt(receipt)
    }

    fn command(&self, slot: Slot, from: &str, name: &str, args: Vec<String>) -> Result<Result<String, String>, PolicyError> {
        self.policy.command(slot, from, name, args)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
