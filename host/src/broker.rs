//! The broker's shared state: storage, the commit queue, policy, the SMS provider and the
//! online sessions, wired together; and [`BrokerPorts`], the view the delivery core
//! (`hotline-core`) reads through. The QUIC server's sessions drive the core with it.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
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
    /// Serialises registrar policy calls per number, so that attempt and request limits are
    /// counted exactly even when many connections register the same number at once.
    pub registration: RegistrationLocks,
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
            registration: RegistrationLocks::default(),
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
    /// (registrar calls one at a time per number), and random keys.
    pub fn ports(&self) -> BrokerPorts<'_> {
        BrokerPorts { broker: self, policy: OneRegistrationPerNumber { policy: &*self.policy, locks: &self.registration } }
    }
}

/// The core's ports over a [`Broker`]; [`BrokerPorts::get`] hands them to a session.
pub struct BrokerPorts<'a> {
    broker: &'a Broker,
    policy: OneRegistrationPerNumber<'a>,
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
    /// returned guard is dropped. The wait happens outside a tokio worker's async context.
    fn hold(&self, phone: &str) -> Registering<'_> {
        crate::plugins::blocking(|| {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            while busy.contains(phone) {
                busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
            }
            busy.insert(phone.to_string());
        });
        Registering { locks: self, phone: phone.to_string() }
    }

    /// Numbers with a registrar call running.
    pub fn running(&self) -> usize {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A registrar call for `phone` is running.
struct Registering<'a> {
    locks: &'a RegistrationLocks,
    phone: String,
}

impl Drop for Registering<'_> {
    fn drop(&mut self) {
        self.locks.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.phone);
        self.locks.freed.notify_all();
    }
}

/// The broker's policy with registrar calls serialised per number, so that attempt and
/// request limits are counted exactly even when many connections register the same number
/// at once, while different numbers register in parallel.
struct OneRegistrationPerNumber<'a> {
    policy: &'a dyn Policy,
    locks: &'a RegistrationLocks,
}

impl Policy for OneRegistrationPerNumber<'_> {
    fn route(&self, messages: Vec<MessageMeta>) -> Result<Vec<Route>, PolicyError> {
        self.policy.route(messages)
    }

    fn request_code(&self, phone: &str) -> Result<Result<u32, Refusal>, PolicyError> {
        let _one_per_number = self.locks.hold(phone);
        self.policy.request_code(phone)
    }

    fn verify_code(&self, phone: &str, code: &str) -> Result<Result<(), Refusal>, PolicyError> {
        let _one_per_number = self.locks.hold(phone);
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A registrar that records how many calls run at once per number; the first call for
    /// `SLOW` stays in the plugin until the test releases it.
    #[derive(Default)]
    struct SlowRegistrar {
        running: Mutex<HashMap<String, (u32, u32)>>,
        entered: Mutex<Option<mpsc::Sender<()>>>,
        release: Mutex<Option<mpsc::Receiver<()>>>,
    }

    const SLOW: &str = "+15550000001";
    const OTHER: &str = "+15550000002";

    impl Policy for SlowRegistrar {
        fn route(&self, _: Vec<MessageMeta>) -> Result<Vec<Route>, PolicyError> {
            unreachable!()
        }

        fn request_code(&self, phone: &str) -> Result<Result<u32, Refusal>, PolicyError> {
            {
                let mut running = self.running.lock().unwrap();
                let (now, most) = running.entry(phone.to_string()).or_default();
                *now += 1;
                *most = (*most).max(*now);
            }
            if phone == SLOW {
                if let Some(entered) = self.entered.lock().unwrap().take() {
                    entered.send(()).unwrap();
                    let release = self.release.lock().unwrap().take().unwrap();
                    release.recv().unwrap();
                }
            }
            self.running.lock().unwrap().get_mut(phone).unwrap().0 -= 1;
            Ok(Ok(600))
        }

        fn verify_code(&self, _: &str, _: &str) -> Result<Result<(), Refusal>, PolicyError> {
            unreachable!()
        }

        fn receipt(&self, _: ReceiptMeta) -> Result<bool, PolicyError> {
            unreachable!()
        }

        fn command(&self, _: Slot, _: &str, _: &str, _: Vec<String>) -> Result<Result<String, String>, PolicyError> {
            unreachable!()
        }
    }

    #[test]
    fn a_slow_registration_delays_only_its_own_number() {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let registrar = SlowRegistrar {
            entered: Mutex::new(Some(entered_tx)),
            release: Mutex::new(Some(release_rx)),
            ..Default::default()
        };
        let locks = RegistrationLocks::default();
        let policy = &OneRegistrationPerNumber { policy: &registrar, locks: &locks };
        let limit = Duration::from_secs(10);
        std::thread::scope(|s| {
            let slow = s.spawn(move || policy.request_code(SLOW).unwrap());
            entered.recv_timeout(limit).expect("the slow call started");
            // The same number again waits behind it; another number does not.
            let again = s.spawn(move || policy.request_code(SLOW).unwrap());
            let (done_tx, done) = mpsc::channel();
            s.spawn(move || done_tx.send(policy.request_code(OTHER).unwrap()).unwrap());
            let other = done.recv_timeout(limit).expect("another number's registration waited for a slow one");
            assert_eq!(other, Ok(600));
            release.send(()).unwrap();
            assert_eq!(slow.join().unwrap(), Ok(600));
            assert_eq!(again.join().unwrap(), Ok(600));
        });
        let running = registrar.running.lock().unwrap();
        assert_eq!(running[SLOW], (0, 1), "two calls for one number ran at once");
        assert_eq!(locks.running(), 0, "a number stayed in the set after its call");
    }
}
