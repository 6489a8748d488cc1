//! SMS: how registration codes reach phones. The registrar plugin's `sms.send` only records
//! its text in the call ([`Text`]); once the call returned, the text goes to the
//! [`SmsGateway`]'s threads, which hand it to the configured provider — the development
//! outbox file or the webhook of an SMS gateway (with its retries) — and report the result,
//! so no plugin thread and no tokio worker waits for a provider. [`limits`] holds the
//! host's limits on code requests.

pub mod limits;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use serde::Serialize;

use hotline_protocol::ErrorCode;

use crate::config::{SmsConfig, SmsProvider};
use crate::policy::Refusal;
use crate::metrics::SmsMetrics;
use crate::outbound::{OutboundError, Webhook};

/// Texts waiting for a sender thread; more are refused at once ([`SmsError::Busy`]).
pub const QUEUE: usize = 256;
/// Threads handing texts to the provider (a webhook's retries hold one for seconds).
pub const SENDERS: usize = 4;

/// A text a plugin asked to send (`sms.send`), recorded in its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// E.164 number.
    pub to: String,
    pub text: String,
}

/// Failure to hand an SMS to the provider.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The development outbox file could not be written.
    #[error("cannot write SMS outbox {path}: {source}")]
    Outbox { path: PathBuf, source: std::io::Error },
    /// The gateway refused the text (a 4xx): sending it again would not help.
    #[error("the SMS gateway refused the text: {0}")]
    Rejected(OutboundError),
    /// The gateway did not take the text after every attempt (or the webhook cannot work).
    #[error("the SMS gateway failed: {0}")]
    Failed(OutboundError),
    /// Too many texts wait for the sender threads already.
    #[error("{QUEUE} texts wait to be sent already")]
    Busy,
    /// The sender threads have stopped (shutting down).
    #[error("the SMS sender threads have stopped")]
    Stopped,
}

impl SmsError {
    /// The `reason` label of `hotline_sms_failed_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            SmsError::Outbox { .. } => "outbox",
            SmsError::Rejected(_) => "rejected",
            SmsError::Failed(_) => "gave_up",
            SmsError::Busy | SmsError::Stopped => "queue_full",
        }
    }

    /// Whether the same text may go through later (everything but a gateway's refusal).
    pub fn retryable(&self) -> bool {
        !matches!(self, SmsError::Rejected(_))
    }
}

/// The client's answer to a code request whose text could not be sent: `Rejected` when the
/// gateway refused it (asking again would not help), `Retryable` otherwise.
pub fn refusal(error: &SmsError) -> Refusal {
    if error.retryable() {
        Refusal { error: ErrorCode::Retryable, reason: "the code could not be sent by SMS right now; try again later".into() }
    } else {
        Refusal { error: ErrorCode::Rejected, reason: "the code could not be sent: the SMS gateway refused to send a text to this number".into() }
    }
}

/// Something that delivers a text to a phone number; blocking.
pub trait SmsSender: Send + Sync {
    /// Sends `text`; `request_id` names it to the provider (the same on every retry).
    fn send(&self, request_id: &str, text: &Text) -> Result<(), SmsError>;
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
    fn send(&self, _request_id: &str, text: &Text) -> Result<(), SmsError> {
        let mut line = serde_json::to_vec(&OutboxLine { to: &text.to, text: &text.text }).expect("serializes");
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

/// The SMS gateway provider: POSTs `{"request_id", "to", "text"}` to `[sms.webhook]`.
pub struct WebhookSms {
    webhook: Webhook,
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    request_id: &'a str,
    to: &'a str,
    text: &'a str,
}

impl SmsSender for WebhookSms {
    fn send(&self, request_id: &str, text: &Text) -> Result<(), SmsError> {
        let body = serde_json::to_vec(&WebhookBody { request_id, to: &text.to, text: &text.text }).expect("serializes");
        match self.webhook.post_json(request_id, &body) {
            Ok(_) => Ok(()),
            Err(e @ OutboundError::Rejected { .. }) => Err(SmsError::Rejected(e)),
            Err(e) => Err(SmsError::Failed(e)),
        }
    }
}

/// The provider `config` names; `outbox` is the outbox file's path. Reads the webhook's
/// CA file now: an error is a config error.
pub fn provider(config: &SmsConfig, outbox: PathBuf) -> Result<Arc<dyn SmsSender>, OutboundError> {
    match (config.provider, &config.webhook) {
        (SmsProvider::Webhook, Some(webhook)) => Ok(Arc::new(WebhookSms { webhook: Webhook::new("sms", webhook)? })),
        (SmsProvider::Webhook, None) => Err(OutboundError::Config("sms.provider is \"webhook\" but [sms.webhook] is not set".into())),
        (SmsProvider::Outbox, _) => Ok(Arc::new(OutboxFile::new(outbox))),
    }
}

/// What to do with a text's result, on a sender thread.
type Done = Box<dyn FnOnce(Result<(), SmsError>) + Send>;

/// The sender threads and their bounded queue; cheap to clone. The threads end once every
/// clone is dropped and the queue is empty.
#[derive(Clone)]
pub struct SmsGateway {
    queue: crossbeam_channel::Sender<(Text, Done)>,
    metrics: Arc<SmsMetrics>,
}

impl SmsGateway {
    /// Starts [`SENDERS`] threads sending through `provider`, counting in `metrics`.
    pub fn start(provider: Arc<dyn SmsSender>, metrics: Arc<SmsMetrics>) -> std::io::Result<SmsGateway> {
        let (queue, texts) = crossbeam_channel::bounded::<(Text, Done)>(QUEUE);
        for n in 0..SENDERS {
            let (texts, provider, metrics) = (texts.clone(), provider.clone(), metrics.clone());
            std::thread::Builder::new().name(format!("hotline-sms-{n}")).spawn(move || {
                for (text, done) in texts {
                    let request_id = request_id();
                    let result = provider.send(&request_id, &text);
                    match &result {
                        Ok(()) => {
                            crate::metrics::inc(&metrics.sent);
                            tracing::info!(to = %text.to, request_id, "SMS sent");
                        }
                        Err(e) => {
                            metrics.failed(e.reason());
                            tracing::warn!(to = %text.to, request_id, error = %e, "SMS not sent");
                        }
                    }
                    done(result);
                }
            })?;
        }
        Ok(SmsGateway { queue, metrics })
    }

    /// Queues `text`; `done` gets the result on a sender thread, or at once here when the
    /// queue is full. Never waits.
    pub fn send(&self, text: Text, done: impl FnOnce(Result<(), SmsError>) + Send + 'static) {
        if let Err(e) = self.queue.try_send((text, Box::new(done))) {
            let (error, (text, done)) = match e {
                crossbeam_channel::TrySendError::Full(job) => (SmsError::Busy, job),
                crossbeam_channel::TrySendError::Disconnected(job) => (SmsError::Stopped, job),
            };
            self.metrics.failed(error.reason());
            tracing::warn!(to = %text.to, error = %error, "SMS not sent");
            done(Err(error));
        }
    }

    /// Texts waiting for a sender thread.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// A fresh id for one text: `sms-` and 16 random hex digits.
fn request_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("sms-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> Text {
        Text { to: "+15551230001".into(), text: "Your code is 12345".into() }
    }

    #[cfg(unix)]
    #[test]
    fn the_outbox_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sms-outbox.jsonl");
        OutboxFile::new(path.clone()).send("sms-1", &text()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"to\":\"+15551230001\",\"text\":\"Your code is 12345\"}\n");
    }

    /// A provider that says when it took a text and waits until the test lets it go.
    struct Stuck {
        entered: Mutex<std::sync::mpsc::Sender<()>>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl SmsSender for Stuck {
        fn send(&self, _: &str, _: &Text) -> Result<(), SmsError> {
            self.entered.lock().unwrap().send(()).unwrap();
            self.release.lock().unwrap().recv().map_err(|_| SmsError::Stopped)
        }
    }

    #[test]
    fn a_full_queue_fails_a_text_at_once_and_counts_it() {
        let limit = std::time::Duration::from_secs(10);
        let (entered, entries) = std::sync::mpsc::channel();
        let (release, stuck) = std::sync::mpsc::channel();
        let provider = Stuck { entered: Mutex::new(entered), release: Mutex::new(stuck) };
        let metrics = Arc::new(SmsMetrics::default());
        let gateway = SmsGateway::start(Arc::new(provider), metrics.clone()).unwrap();
        let (results, done) = std::sync::mpsc::channel();
        let send = |results: &std::sync::mpsc::Sender<_>| {
            let results = results.clone();
            gateway.send(text(), move |r| results.send(r.map_err(|e| e.reason())).unwrap());
        };
        // The first text takes a thread and holds the provider (the others wait for its
        // lock, each with a text): then the queue fills, and one more fails at once.
        send(&results);
        entries.recv_timeout(limit).unwrap();
        let deadline = std::time::Instant::now() + limit;
        for _ in 1..SENDERS {
            send(&results);
        }
        while gateway.queued() > 0 {
            assert!(std::time::Instant::now() < deadline, "the sender threads did not take their texts");
            std::thread::yield_now();
        }
        for _ in 0..QUEUE {
            send(&results);
        }
        send(&results);
        assert_eq!(done.recv_timeout(limit).unwrap(), Err("queue_full"));
        assert_eq!(metrics.failed_count("queue_full"), 1);
        for _ in 0..SENDERS + QUEUE {
            release.send(()).unwrap();
        }
        for _ in 0..SENDERS + QUEUE {
            assert_eq!(done.recv_timeout(limit).unwrap(), Ok(()));
        }
        assert_eq!(metrics.sent.load(std::sync::atomic::Ordering::Relaxed), (SENDERS + QUEUE) as u64);
    }
}
