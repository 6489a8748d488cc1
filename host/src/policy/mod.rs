//! The policy seam: every decision about where a message goes, how a number registers and
//! which receipts are sent is asked of a [`Policy`]. The seam lives in `hotline-core` (the
//! core asks it questions); this module names it for the host, whose implementation is
//! [`crate::plugins::PluginHost`], which asks WebAssembly components. Policy sees metadata,
//! never message bodies.
//!
//! [`PolicyThreads`] answers the sessions' questions on a few threads of its own, so a
//! plugin call never blocks a tokio worker: a session hands its question over a channel
//! and awaits the reply, serving its connection meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

pub use hotline_core::policy::*;

use crate::broker::RegistrationLocks;

/// How many slots there are (the notifier is asked only its clients' commands here; the
/// push worker calls it directly).
const SLOTS: usize = Slot::ALL.len();

/// A question and where its reply goes.
type Asked = (Question, oneshot::Sender<Result<Reply, PolicyError>>);

/// The plugin threads: a fixed number of OS threads (`plugins.threads`) that take the
/// sessions' questions from one queue and ask policy. The queue needs no bound of its own:
/// a session has at most one question out, so it holds at most one per connection.
pub struct PolicyThreads {
    queue: crossbeam_channel::Sender<Asked>,
    /// Questions handed in and not yet answered (waiting or being answered), per slot in
    /// [`Slot::ALL`] order: the plugin call queues the monitor watches.
    pending: Arc<[AtomicUsize; SLOTS]>,
}

impl PolicyThreads {
    /// Starts `threads` threads (at least one) answering with `policy`; registrar questions
    /// wait per number in `locks`. The threads end once this is dropped and the queue is
    /// empty.
    pub fn start(threads: usize, policy: Arc<dyn Policy>, locks: Arc<RegistrationLocks>) -> std::io::Result<PolicyThreads> {
        let threads = threads.max(1);
        let (queue, questions) = crossbeam_channel::unbounded::<Asked>();
        let pending: Arc<[AtomicUsize; SLOTS]> = Arc::default();
        for n in 0..threads {
            let (questions, policy, locks, pending) = (questions.clone(), policy.clone(), locks.clone(), pending.clone());
            std::thread::Builder::new().name(format!("hotline-plugin-{n}")).spawn(move || {
                for (question, reply_to) in questions {
                    let slot = question.slot();
                    // A panic in the host's plugin code fails this question, not the thread.
                    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(&*policy, &locks, question)))
                        .unwrap_or_else(|_| {
                            tracing::error!(%slot, "a plugin call panicked in the host (a bug)");
                            Err(PolicyError::Failed { slot, detail: "the plugin host panicked".into() })
                        });
                    pending[slot as usize].fetch_sub(1, Ordering::Relaxed);
                    // The session may have gone meanwhile; its reply is not needed then.
                    let _ = reply_to.send(reply);
                }
            })?;
        }
        Ok(PolicyThreads { queue, pending })
    }

    /// Hands `question` to the threads; the receiver yields the reply.
    pub fn ask(&self, question: Question) -> oneshot::Receiver<Result<Reply, PolicyError>> {
        let (reply_to, reply) = oneshot::channel();
        let slot = question.slot();
        self.pending[slot as usize].fetch_add(1, Ordering::Relaxed);
        if let Err(crossbeam_channel::SendError((question, reply_to))) = self.queue.send((question, reply_to)) {
            // Only while shutting down: no thread is left to ask.
            self.pending[slot as usize].fetch_sub(1, Ordering::Relaxed);
            let detail = "the plugin threads have stopped".to_string();
            let _ = reply_to.send(Err(PolicyError::Failed { slot: question.slot(), detail }));
        }
        reply
    }

    /// Questions handed in and not yet answered.
    pub fn pending(&self) -> usize {
        self.pending.iter().map(|p| p.load(Ordering::Relaxed)).sum()
    }

    /// Questions handed in and not yet answered, per slot.
    pub fn pending_by_slot(&self) -> [(Slot, usize); SLOTS] {
        Slot::ALL.map(|slot| (slot, self.pending[slot as usize].load(Ordering::Relaxed)))
    }
}

/// Asks `policy`, with registrar questions one at a time per number, so that attempt and
/// request limits are counted exactly even when many connections register the same number
/// at once, while different numbers register in parallel.
fn answer(policy: &dyn Policy, locks: &RegistrationLocks, question: Question) -> Result<Reply, PolicyError> {
    let _one_per_number = match &question {
        Question::RequestCode { phone } | Question::VerifyCode { phone, .. } => Some(locks.hold(phone)),
        _ => None,
    };
    policy.ask(question)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{mpsc, Mutex};
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
    fn a_slow_registration_delays_only_its_own_number_and_no_other_question() {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let registrar = SlowRegistrar {
            entered: Mutex::new(Some(entered_tx)),
            release: Mutex::new(Some(release_rx)),
            ..Default::default()
        };
        let registrar = Arc::new(registrar);
        let locks = Arc::new(RegistrationLocks::default());
        let threads = PolicyThreads::start(3, registrar.clone(), locks.clone()).unwrap();
        let limit = Duration::from_secs(10);
        let code = |phone: &str| Question::RequestCode { phone: phone.into() };
        let slow = threads.ask(code(SLOW));
        entered.recv_timeout(limit).expect("the slow call started");
        // The same number again waits behind it; another number does not.
        let again = threads.ask(code(SLOW));
        let mut other = threads.ask(code(OTHER));
        let deadline = std::time::Instant::now() + limit;
        let other = loop {
            match other.try_recv() {
                Ok(reply) => break reply.unwrap(),
                Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => panic!("another number's registration waited for a slow one"),
            }
        };
        assert_eq!(other, Reply::RequestCode(Ok(600)));
        assert_eq!(threads.pending(), 2, "the slow call and the one behind it");
        release.send(()).unwrap();
        assert_eq!(slow.blocking_recv().unwrap().unwrap(), Reply::RequestCode(Ok(600)));
        assert_eq!(again.blocking_recv().unwrap().unwrap(), Reply::RequestCode(Ok(600)));
        let running = registrar.running.lock().unwrap();
        assert_eq!(running[SLOW], (0, 1), "two calls for one number ran at once");
        assert_eq!(locks.running(), 0, "a number stayed in the set after its call");
        assert_eq!(threads.pending(), 0);
    }

}
