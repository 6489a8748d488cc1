//! The policy seam: every decision about where a message goes, how a number registers and
//! which receipts are sent is asked of a [`Policy`]. The seam lives in `hotline-core` (the
//! core asks it questions); this module names it for the host, whose implementation is
//! [`crate::plugins::PluginHost`], which asks WebAssembly components. Policy sees metadata,
//! never message bodies.
//!
//! [`PolicyThreads`] answers the sessions' questions on a few threads of its own, so a
//! plugin call never blocks a tokio worker: a session hands its question over a channel
//! and awaits the reply, serving its connection meanwhile. A `RequestCode` whose registrar
//! call sent a text is answered once the SMS threads sent it ([`crate::sms::SmsGateway`]):
//! the plugin thread hands the reply's sender over with the text and takes the next
//! question.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

pub use hotline_core::policy::*;

use crate::broker::RegistrationLocks;
use crate::sms::{SmsGateway, Text};

/// How many slots there are (the notifier is asked only its clients' commands here; the
/// push worker calls it directly).
const SLOTS: usize = Slot::ALL.len();

/// A question and where its reply goes.
type Asked = (Question, oneshot::Sender<Result<Reply, PolicyError>>);

/// The policy as the plugin threads ask it: the core's [`Policy`], and for `RequestCode`
/// the text the registrar asked to send in its call, which the host sends before the reply
/// goes out.
pub trait HostPolicy: Policy {
    /// [`Policy::request_code`], and the text the call recorded (`sms.send`), not yet sent.
    fn request_code_texts(&self, phone: &str) -> Result<(Result<u32, Refusal>, Option<Text>), PolicyError> {
        Ok((self.request_code(phone)?, None))
    }
}

/// What a plugin thread does with an answer.
enum Answer {
    /// Reply now.
    Now(Result<Reply, PolicyError>),
    /// Send the text; reply once it is sent (or with the refusal it came to).
    AfterText(Text, Reply),
}

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
    /// wait per number in `locks`; texts go to `sms`. The threads end once this is dropped
    /// and the queue is empty.
    pub fn start(threads: usize, policy: Arc<dyn HostPolicy>, locks: Arc<RegistrationLocks>, sms: SmsGateway) -> std::io::Result<PolicyThreads> {
        let threads = threads.max(1);
        let (queue, questions) = crossbeam_channel::unbounded::<Asked>();
        let pending: Arc<[AtomicUsize; SLOTS]> = Arc::default();
        for n in 0..threads {
            let (questions, policy, locks, pending, sms) = (questions.clone(), policy.clone(), locks.clone(), pending.clone(), sms.clone());
            std::thread::Builder::new().name(format!("hotline-plugin-{n}")).spawn(move || {
                for (question, reply_to) in questions {
                    let slot = question.slot();
                    // A panic in the host's plugin code fails this question, not the thread.
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(&*policy, &locks, &sms, question)))
                        .unwrap_or_else(|_| {
                            tracing::error!(%slot, "a plugin call panicked in the host (a bug)");
                            Answer::Now(Err(PolicyError::Failed { slot, detail: "the plugin host panicked".into() }))
                        });
                    pending[slot as usize].fetch_sub(1, Ordering::Relaxed);
                    // The session may have gone meanwhile; its reply is not needed then.
                    match answer {
                        Answer::Now(reply) => {
                            let _ = reply_to.send(reply);
                        }
                        Answer::AfterText(text, reply) => sms.send(text, move |sent| {
                            let reply = match sent {
                                Ok(()) => reply,
                                Err(e) => Reply::RequestCode(Err(crate::sms::refusal(&e))),
                            };
                            let _ = reply_to.send(Ok(reply));
                        }),
                    }
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
/// at once, while different numbers register in parallel. A code whose text the registrar
/// sent is answered after the text (a text of a refused request is sent unwatched).
fn answer(policy: &dyn HostPolicy, locks: &RegistrationLocks, sms: &SmsGateway, question: Question) -> Answer {
    let _one_per_number = match &question {
        Question::RequestCode { phone } | Question::VerifyCode { phone, .. } => Some(locks.hold(phone)),
        _ => None,
    };
    match question {
        Question::RequestCode { phone } => match policy.request_code_texts(&phone) {
            Ok((Ok(ttl), Some(text))) => Answer::AfterText(text, Reply::RequestCode(Ok(ttl))),
            Ok((answer, text)) => {
                if let Some(text) = text {
                    sms.send(text, |_| {});
                }
                Answer::Now(Ok(Reply::RequestCode(answer)))
            }
            Err(e) => Answer::Now(Err(e)),
        },
        question => Answer::Now(policy.ask(question)),
    }
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

    impl HostPolicy for SlowRegistrar {}

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
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(crate::sms::OutboxFile::new(dir.path().join("sms-outbox.jsonl")));
        let sms = SmsGateway::start(outbox, Arc::default()).unwrap();
        let threads = PolicyThreads::start(3, registrar.clone(), locks.clone(), sms).unwrap();
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

    /// A registrar that sends every code by text (as the default one does with `sms.send`).
    struct Texting;

    impl HostPolicy for Texting {
        fn request_code_texts(&self, phone: &str) -> Result<(Result<u32, Refusal>, Option<Text>), PolicyError> {
            Ok((Ok(600), Some(Text { to: phone.into(), text: "Your code is 12345".into() })))
        }
    }

    impl Policy for Texting {
        fn route(&self, _: Vec<MessageMeta>) -> Result<Vec<Route>, PolicyError> {
            Ok(Vec::new())
        }

        fn request_code(&self, _: &str) -> Result<Result<u32, Refusal>, PolicyError> {
            unreachable!("asked through request_code_texts")
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

    /// A provider that holds each text until the test gives its result.
    struct Held(Mutex<mpsc::Receiver<Result<(), crate::sms::SmsError>>>);

    impl crate::sms::SmsSender for Held {
        fn send(&self, _: &str, _: &Text) -> Result<(), crate::sms::SmsError> {
            self.0.lock().unwrap().recv().unwrap()
        }
    }

    #[test]
    fn a_code_is_answered_once_its_text_is_sent_without_holding_the_plugin_thread() {
        use crate::outbound::OutboundError;
        use crate::sms::SmsError;
        use hotline_protocol::ErrorCode;

        let (result, held) = mpsc::channel();
        let sms = SmsGateway::start(Arc::new(Held(Mutex::new(held))), Arc::default()).unwrap();
        let threads = PolicyThreads::start(1, Arc::new(Texting), Arc::default(), sms).unwrap();
        let code = |phone: &str| threads.ask(Question::RequestCode { phone: phone.into() });
        let mut first = code(SLOW);
        // The only plugin thread answers the next question while the text is out.
        assert_eq!(threads.ask(Question::Route(Vec::new())).blocking_recv().unwrap().unwrap(), Reply::Route(Vec::new()));
        assert!(first.try_recv().is_err(), "answered before the text was sent");
        assert_eq!(threads.pending(), 0, "the text does not count as a plugin call");
        result.send(Ok(())).unwrap();
        assert_eq!(first.blocking_recv().unwrap().unwrap(), Reply::RequestCode(Ok(600)));

        let refused = code(OTHER);
        result.send(Err(SmsError::Rejected(OutboundError::Rejected { status: 400, body: "no".into() }))).unwrap();
        let Ok(Reply::RequestCode(Err(refusal))) = refused.blocking_recv().unwrap() else { panic!("not a refusal") };
        assert_eq!(refusal.error, ErrorCode::Rejected);
        assert!(refusal.reason.contains("could not be sent"), "{}", refusal.reason);

        let failed = code(OTHER);
        result.send(Err(SmsError::Failed(OutboundError::GaveUp { attempts: 4, last: "status 503".into() }))).unwrap();
        let Ok(Reply::RequestCode(Err(refusal))) = failed.blocking_recv().unwrap() else { panic!("not a refusal") };
        assert_eq!(refusal.error, ErrorCode::Retryable);
        assert!(refusal.reason.contains("could not be sent"), "{}", refusal.reason);
    }
}
