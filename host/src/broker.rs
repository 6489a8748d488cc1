//! The broker's shared state: storage, the commit queue, policy and its threads, the SMS
//! provider, the online sessions, the connection registry and the queue monitor, wired
//! together; and [`Broker::ports`], the view the
//! delivery core (`hotline-core`) reads through. The QUIC server's sessions drive the core
//! with it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine;
use hotline_core::{KeyMaker, Ports};
use rand::RngCore;

use crate::backend::Backend;
use crate::cluster::Cluster;
use crate::config::{Config, LimitsConfig};
use crate::connections::Connections;
use crate::metrics::Metrics;
use crate::monitor::{Figures, Monitor, QueueKind, QueueLen, Sources, Webhook};
use crate::plugins::PluginHost;
use crate::policy::PolicyThreads;
use crate::sessions::Sessions;
use crate::sms::limits::CodeLimits;
use crate::sms::SmsGateway;
use crate::store::{Committer, Store, WakeHook};

/// Everything a session's driver needs. Shared by all connections.
pub struct Broker {
    pub store: Store,
    pub committer: Committer,
    /// Where the session drivers' jobs and directory changes go: the committer on one
    /// node, NATS JetStream in a cluster.
    pub backend: Backend,
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
    /// Traffic counters and latency histograms (for `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Every open QUIC connection (for the admin API: list, kick).
    pub connections: Arc<Connections>,
    /// Every queue's figures and the alerts on them ([`Broker::start_monitor`] samples).
    pub monitor: Arc<Monitor>,
    /// How often the monitor samples (`alerts.sample_ms`).
    pub sample_every: Duration,
    /// The host's limits on code requests (`sms.limits`), checked by the session driver.
    pub code_limits: CodeLimits,
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
    /// Opens storage in the configured data folder and starts the committer; with
    /// `[cluster]`, joins the cluster (called on the multi-threaded runtime then).
    pub fn open(config: &Config) -> Result<Arc<Broker>> {
        let path = config.store_path();
        let store = Store::open(&path).with_context(|| format!("opening storage at {}", path.display()))?;
        let sessions = Arc::new(Sessions::default());
        let metrics: Arc<Metrics> = Arc::default();
        // Push wake-ups: a number with no session is handed to the push worker (never
        // waiting: a full queue drops it), only when `[push.webhook]` is configured.
        let push = crate::push::trigger(&config.push, metrics.push.clone());
        let wake: WakeHook = {
            let sessions = sessions.clone();
            let trigger = push.as_ref().map(|(trigger, _)| trigger.clone());
            Arc::new(move |user: &str| {
                // One look-up per woken user: the session if online, else the push worker.
                if !sessions.wake(user) {
                    if let Some(trigger) = &trigger {
                        trigger.offer(user);
                    }
                }
            })
        };
        let committer = Committer::start(store.clone(), config.storage.durability, wake)?;
        let backend = match config.cluster.enabled() {
            false => Backend::Local(committer.clone()),
            true => {
                let handle = tokio::runtime::Handle::try_current().context("cluster mode needs the tokio runtime")?;
                let cluster = tokio::task::block_in_place(|| handle.block_on(Cluster::start(&config.cluster, config.message_ttl(), sessions.clone())))
                    .context("joining the cluster")?;
                Backend::Cluster(cluster)
            }
        };
        let provider = crate::sms::provider(&config.sms, config.sms_outbox_path()).context("starting the SMS provider")?;
        let sms = SmsGateway::start(provider, metrics.sms.clone()).context("starting the SMS threads")?;
        // Plugin state: the node's fjall store, or the cluster's `<prefix>_plugins` bucket.
        let kv: Arc<dyn crate::plugins::PluginKv> = match &backend {
            Backend::Local(_) => Arc::new(store.clone()),
            Backend::Cluster(cluster) => {
                let handle = tokio::runtime::Handle::current();
                let bucket = crate::plugins::cluster_kv::NatsPluginKv::open(cluster.jetstream(), &config.cluster.prefix, config.cluster.replicas, handle)
                    .context("opening the plugins' bucket")?;
                Arc::new(bucket)
            }
        };
        let plugins = Arc::new(PluginHost::start(config.plugins.clone(), config.plugin_dir(), config.plugin_cache_dir(), kv, sms.clone())?);
        if let Some((_, pending)) = push {
            let webhook = config.push.webhook.as_ref().expect("push is on only with a webhook");
            let webhook = crate::outbound::Webhook::new("push", webhook).context("starting the push gateway webhook")?;
            let post: crate::push::Post = Box::new(move |request_id, body| webhook.post_json(request_id, body).map(|_| ()).map_err(|e| e.to_string()));
            let worker = crate::push::Worker {
                store: store.clone(),
                plugins: plugins.clone(),
                sessions: sessions.clone(),
                metrics: metrics.push.clone(),
                batch_every: Duration::from_millis(config.push.batch_ms),
            };
            crate::push::start(pending, worker, post).context("starting the push threads")?;
        }
        let policy = PolicyThreads::start(config.plugins.threads, plugins.clone(), Arc::new(RegistrationLocks::default()), sms)
            .context("starting the plugin threads")?;
        let webhook = match &config.alerts.webhook {
            Some(url) => Some(Webhook::start(url.clone(), Duration::from_secs(1)).context("starting the alert webhook thread")?),
            None => None,
        };
        Ok(Arc::new_cyclic(|broker| Broker {
            store,
            committer,
            backend,
            policy,
            plugins,
            sessions,
            limits: config.limits.clone(),
            max_body_bytes: AtomicUsize::new(config.limits.max_body_bytes),
            message_ttl: config.message_ttl(),
            gauges: ConnectionGauges::default(),
            metrics,
            connections: Arc::default(),
            monitor: Monitor::new(queue_sources(broker.clone()), config.alerts.rules(), webhook),
            sample_every: Duration::from_millis(config.alerts.sample_ms),
            code_limits: {
                let (per_address, per_prefix) = config.sms.limits();
                CodeLimits::new(per_address, per_prefix, config.sms.limits.prefix_digits)
            },
        }))
    }

    /// Samples every queue now, then every `alerts.sample_ms`, until the runtime stops.
    pub fn start_monitor(&self) -> tokio::task::JoinHandle<()> {
        self.monitor.sample(now_ms());
        self.monitor.spawn(self.sample_every, now_ms)
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
    /// What the delivery core reads during a step: the store's accounts and queues (in a
    /// cluster: the accounts bucket and the node's mailbox cache), and random keys. (Policy is asked through [`Broker::policy`].)
    pub fn ports(&self) -> Ports<'_> {
        match &self.backend {
            Backend::Local(_) => Ports { accounts: &self.store, queues: &self.store, keys: &RandomKeys },
            Backend::Cluster(cluster) => Ports { accounts: &**cluster, queues: &*cluster.mailboxes, keys: &RandomKeys },
        }
    }
}

/// Where the monitor reads each kind of queue. Holds the broker weakly: the broker owns the
/// monitor.
fn queue_sources(broker: Weak<Broker>) -> Sources {
    fn read(broker: &Weak<Broker>, kind: QueueKind, top: usize, f: impl FnOnce(&Broker, usize) -> Figures) -> Figures {
        match broker.upgrade() {
            Some(broker) => f(&broker, top),
            None => Figures::from_lengths(kind, [], top),
        }
    }
    let (b1, b2, b3, b4) = (broker.clone(), broker.clone(), broker.clone(), broker);
    Sources {
        stored: Box::new(move |top| {
            read(&b1, QueueKind::Stored, top, |b, top| {
                let (total, max, non_empty) = b.store.queues().totals();
                let top = b.store.queues().top(top).into_iter().map(|(name, items)| QueueLen { name, items }).collect();
                Figures { kind: QueueKind::Stored, total, max, non_empty, top }
            })
        }),
        mailbox: Box::new(move |top| read(&b2, QueueKind::Mailbox, top, |b, top| Figures::from_lengths(QueueKind::Mailbox, b.connections.mailboxes(), top))),
        plugin: Box::new(move |top| {
            read(&b3, QueueKind::Plugin, top, |b, top| {
                let lengths = b.policy.pending_by_slot().map(|(slot, n)| (slot.name().to_string(), n as u64));
                Figures::from_lengths(QueueKind::Plugin, lengths, top)
            })
        }),
        commit: Box::new(move |top| {
            read(&b4, QueueKind::Commit, top, |b, top| Figures::from_lengths(QueueKind::Commit, [("commit".to_string(), b.committer.queue_len() as u64)], top))
        }),
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

