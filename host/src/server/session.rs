//! The session driver: runs one connection's [`hotline_core::Session`] (the state machine
//! that holds every delivery rule) against the real world. It feeds the core its inputs —
//! frames it reads from the connection's [`Inbox`], commit results, wake-ups and kicks from the directory, the
//! hello timer, a writer that went away — and executes its outputs: frames into the
//! mailbox, jobs to the committer, registrations in the directory, the close. It decides
//! nothing itself. Policy questions go to the plugin threads ([`crate::policy::PolicyThreads`]);
//! the session serves its connection while it waits for the reply.
//!
//! Back-pressure: the driver reads the next frame only while the core
//! [`wants_frames`](hotline_core::Session::wants_frames), so a client that floods waits on
//! QUIC flow control instead of growing the broker. Frames that are already waiting are
//! handed in together (up to a send batch), so the core routes them in one policy call.
//!
//! Counting: the driver sees every input and output, so it keeps the broker's traffic
//! counters and latency histograms ([`crate::metrics`]) from them — frames handed in,
//! frames written, jobs committed — without the core knowing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotline_core::session::MAX_SEND_BATCH;
use hotline_core::policy::{PolicyError, Question, Refusal, Reply, Slot};
use hotline_core::{Input, Job, JobOutcome, Output, Ports, SessionConfig, Ticket};
use tokio::sync::oneshot;
use hotline_protocol::{close_code, encode, ClientFrame, ErrorCode, FrameError, ReceiptStatus, ServerFrame, MAX_FRAME_LEN};

pub use hotline_core::Close;

use super::connection::Inbox;
use super::mailbox;
use crate::backend::{JobPending, SessionJobs};
use crate::broker::{now_ms, Broker};
use crate::connections::{ConnectionHandle, KICK_REASON};
use crate::metrics::{self, Metrics};
use crate::sessions::SessionSignals;

/// A question the plugin threads are answering.
struct Asking {
    ticket: Ticket,
    slot: Slot,
    reply: oneshot::Receiver<Result<Reply, PolicyError>>,
}

/// What the session reads from its [`Inbox`].
#[derive(Debug)]
pub enum Inbound {
    /// A whole frame, and when it was decoded.
    Frame(ClientFrame, Instant),
    /// Bytes that are not a frame; the last item.
    Bad(FrameError),
    /// The client finished its stream with this many bytes of an incomplete frame; the
    /// last item.
    Truncated(usize),
}


/// One client's session: the core and what it needs from the world.
pub struct Session<'c> {
    broker: Arc<Broker>,
    out: mailbox::Sender<Vec<u8>>,
    /// The connection's place in the registry: the number once logged in, the kick.
    conn: &'c ConnectionHandle,
    /// The directory's signals, once the core registered the session.
    signals: Option<SessionSignals>,
    /// The number the session registered as.
    phone: Option<String>,
    /// Jobs submitted and not yet finished, in submission order (the backend finishes a
    /// session's jobs in that order).
    jobs: VecDeque<(Ticket, JobPending, Counted)>,
    /// The session's place in the backend (a cluster's job lane).
    backend: SessionJobs,
    /// The question out with the plugin threads (the core asks one at a time).
    asking: Option<Asking>,
    /// Bytes of uncommitted bodies counted in the broker's gauge for this session.
    gauged_bytes: usize,
    /// The mailbox refused a frame: the client stopped reading.
    writer_gone: bool,
    /// What the counters need to remember between inputs and outputs.
    tally: Tally,
    /// A send failed in a cluster: the session closes once its answer is out.
    failed_send: bool,
}

/// Most pushed messages a session remembers for the delivery histogram.
const MAX_TRACKED_PUSHES: usize = 4096;

/// What a submitted job will mean to the counters once committed.
enum Counted {
    /// A send to this many recipients.
    Send { recipients: usize },
    /// An ack of item `id`: a message (whose sender may get a delivered receipt) or a
    /// receipt.
    Ack { id: u64, message: bool, receipt: bool },
    /// A read, which may queue a read receipt.
    Read { receipt: bool },
    /// Nothing counted.
    Other,
}

impl Counted {
    fn of(job: &Job) -> Counted {
        match job {
            Job::Send { recipients, .. } => Counted::Send { recipients: recipients.len() },
            Job::Ack { id, message, .. } => Counted::Ack {
                id: *id,
                message: message.is_some(),
                receipt: message.as_ref().is_some_and(|m| m.receipt),
            },
            Job::Read { receipt, .. } => Counted::Read { receipt: *receipt },
            _ => Counted::Other,
        }
    }
}

/// The session's share of the broker's counting: when each unanswered send was decoded,
/// the timestamps of the messages pushed and not yet acknowledged, a login under way.
#[derive(Default)]
struct Tally {
    /// Sends handed in and not yet answered, in order (answers come in request order):
    /// client id, decoded at.
    sends: VecDeque<(u64, Instant)>,
    /// Messages pushed on this connection and not yet acknowledged: id → its timestamp.
    /// The delivery window bounds the ones the client has not acked; an ack whose job never
    /// comes (the receipts policy failed: the message stays queued) would leave its entry,
    /// so past [`MAX_TRACKED_PUSHES`] the oldest id goes.
    pushed: BTreeMap<u64, u64>,
    /// A `Login` was handed in and has not ended in `LoggedIn` yet.
    logging_in: bool,
}

impl Tally {
    /// A frame from the client, decoded at `at`, goes to the core.
    fn frame_in(&mut self, metrics: &Metrics, frame: &ClientFrame, at: Instant, logged_in: bool) {
        match frame {
            ClientFrame::Send { client_id, .. } | ClientFrame::SendTyped { client_id, .. } => {
                metrics::inc(&metrics.messages_received);
                self.sends.push_back((*client_id, at));
            }
            ClientFrame::Login { .. } if !logged_in => self.logging_in = true,
            _ => {}
        }
    }

    /// The core answered with `frame` (written to the mailbox if `written`).
    fn frame_out(&mut self, metrics: &Metrics, frame: &ServerFrame, written: bool) {
        match frame {
            ServerFrame::Sent { client_id, .. } => self.answered(metrics, *client_id),
            ServerFrame::SendFailed { client_id, error, .. } => {
                metrics.refused(*error);
                self.answered(metrics, *client_id);
            }
            ServerFrame::Message { id, sent_at_ms, .. } | ServerFrame::TypedMessage { id, sent_at_ms, .. } if written => {
                metrics::inc(&metrics.messages_delivered);
                self.pushed.insert(*id, *sent_at_ms);
                if self.pushed.len() > MAX_TRACKED_PUSHES {
                    self.pushed.pop_first();
                }
            }
            ServerFrame::Receipt { .. } if written => metrics::inc(&metrics.receipts_pushed),
            ServerFrame::LoggedIn { .. } => {
                self.logging_in = false;
                metrics::inc(&metrics.logins);
            }
            ServerFrame::Registered { .. } => metrics::inc(&metrics.registrations),
            _ => {}
        }
    }

    /// A send was answered: observe its latency.
    fn answered(&mut self, metrics: &Metrics, client_id: u64) {
        if let Some(i) = self.sends.iter().position(|(id, _)| *id == client_id) {
            let (_, at) = self.sends.remove(i).expect("found above");
            metrics.send_seconds.observe(at.elapsed());
        }
    }

    /// A job submitted as `counted` is durable with `outcome`.
    fn committed(&mut self, metrics: &Metrics, counted: Counted, outcome: &JobOutcome) {
        match (counted, outcome) {
            (Counted::Send { recipients }, JobOutcome::Stored { .. }) => {
                metrics::inc(&metrics.messages_stored);
                metrics.message_items_stored.fetch_add(recipients as u64, Ordering::Relaxed);
            }
            (Counted::Ack { id, message: true, receipt }, _) => {
                // Counted once per message pushed here: a second ack of the same id in
                // one batch finds it gone.
                if let Some(sent_at_ms) = self.pushed.remove(&id) {
                    metrics::inc(&metrics.messages_acknowledged);
                    metrics.delivery_seconds.observe(Duration::from_millis(now_ms().saturating_sub(sent_at_ms)));
                    if receipt {
                        metrics.receipt_queued(ReceiptStatus::Delivered);
                    }
                }
            }
            (Counted::Ack { message: false, .. }, _) => metrics::inc(&metrics.receipts_acknowledged),
            (Counted::Read { receipt: true }, _) => metrics.receipt_queued(ReceiptStatus::Read),
            _ => {}
        }
    }

    /// The session closes with `close`.
    fn closed(&mut self, metrics: &Metrics, close: &Close) {
        if std::mem::take(&mut self.logging_in) {
            metrics.login_failed(close.code);
        }
    }
}

impl<'c> Session<'c> {
    pub fn new(broker: Arc<Broker>, out: mailbox::Sender<Vec<u8>>, conn: &'c ConnectionHandle) -> Session<'c> {
        Session {
            broker,
            out,
            conn,
            signals: None,
            phone: None,
            jobs: VecDeque::new(),
            backend: SessionJobs::default(),
            asking: None,
            gauged_bytes: 0,
            writer_gone: false,
            tally: Tally::default(),
            failed_send: false,
        }
    }

    /// Runs until the client leaves, breaks the protocol or is kicked. Returns how it ended
    /// and the number it was logged in as, if any.
    pub async fn run(mut self, mut inbound: Inbox, hello_timeout: Duration) -> (Close, Option<String>) {
        let broker = self.broker.clone();
        let ports = broker.ports();
        let config = SessionConfig {
            delivery_window: broker.limits.delivery_window,
            max_body_bytes: broker.max_body_bytes(),
            hello_timeout_ms: hello_timeout.as_millis() as u64,
            max_queue_items: broker.limits.max_queue_items,
        };
        let mut core = hotline_core::Session::new(now_ms(), config);
        let close = loop {
            if let Some(close) = self.execute(&mut core, &ports).await {
                break close;
            }
            let input = self.next_input(&core, &mut inbound).await;
            let was_frame = matches!(input, Input::Frame(_));
            let failed_send = std::mem::take(&mut self.failed_send);
            core.handle(now_ms(), input, &ports);
            if failed_send {
                // The failed send's answer is out; the later ones would all fail.
                core.handle(now_ms(), Input::Kicked(Close::storage_unavailable()), &ports);
            }
            if was_frame {
                // Hand in what is already waiting, so sends that came together are routed
                // together.
                for _ in 1..MAX_SEND_BATCH {
                    if !core.wants_frames() {
                        break;
                    }
                    let Some(inbound) = inbound.try_recv() else { break };
                    let input = self.inbound_input(Some(inbound));
                    core.handle(now_ms(), input, &ports);
                }
            }
        };
        self.gauge(0);
        (close, self.phone)
    }

    /// Executes the core's outputs until it has none; the close, when it is the last.
    async fn execute(&mut self, core: &mut hotline_core::Session, ports: &Ports<'_>) -> Option<Close> {
        let mut close = None;
        // Set by `Unregister` (always right before the `Close`) when the backend could not
        // apply the session's last jobs.
        let mut jobs_failed = false;
        while let Some(output) = core.poll_output(now_ms(), ports) {
            match output {
                Output::Frame(frame) => {
                    if let ServerFrame::LoggedIn { phone } = &frame {
                        self.conn.logged_in(phone);
                    }
                    let mut written = false;
                    if !self.writer_gone {
                        match write(&self.out, &frame).await {
                            Ok(()) => written = true,
                            Err(()) => {
                                self.writer_gone = true;
                                core.handle(now_ms(), Input::PeerStoppedReading, ports);
                            }
                        }
                    }
                    self.tally.frame_out(&self.broker.metrics, &frame, written);
                }
                Output::Submit { ticket, job } => {
                    let counted = Counted::of(&job);
                    match self.broker.backend.submit_job(job, &mut self.backend).await {
                        Ok(pending) => self.jobs.push_back((ticket, pending, counted)),
                        Err(e) => core.handle(now_ms(), Input::Committed { ticket, result: Err(e) }, ports),
                    }
                }
                Output::Ask { ticket, question } => {
                    let slot = question.slot();
                    let reply = match self.code_limit(&question) {
                        Some(refused) => refused,
                        None => self.broker.policy.ask(question),
                    };
                    self.asking = Some(Asking { ticket, slot, reply });
                }
                Output::Register { phone, replaces } => {
                    let signals = self.broker.sessions.register(&phone, replaces.clone());
                    let id = signals.id;
                    self.signals = Some(signals);
                    self.phone = Some(phone.clone());
                    // In a cluster: the number claimed and its backlog loaded first.
                    match self.broker.backend.registered(&phone, id, &replaces).await {
                        Ok(()) => core.handle(now_ms(), Input::Registered, ports),
                        Err(e) => {
                            tracing::warn!(error = %e, %phone, "login failed in the cluster");
                            core.handle(now_ms(), Input::Kicked(Close::storage_unavailable()), ports);
                        }
                    }
                }
                Output::Unregister { phone } => {
                    if let Some(signals) = &self.signals {
                        if !self.broker.backend.unregistering(&phone, signals.id, &self.backend).await {
                            jobs_failed = true;
                        }
                        self.broker.sessions.unregister(&phone, signals.id);
                    }
                }
                Output::Kick { phone, close } => self.broker.backend.kick(&self.broker.sessions, &phone, close).await,
                Output::Close(mut c) => {
                    // Not a clean close when the session's last acks were not applied.
                    if jobs_failed && c.code == close_code::NORMAL {
                        c = Close::storage_unavailable();
                    }
                    self.tally.closed(&self.broker.metrics, &c);
                    close = Some(c);
                }
            }
        }
        self.gauge(core.pending_send_bytes());
        close
    }

    /// Waits for whatever happens next.
    async fn next_input(&mut self, core: &hotline_core::Session, inbound: &mut Inbox) -> Input {
        let reading = core.wants_frames();
        let hello = core.poll_timeout().map(|deadline| Duration::from_millis(deadline.saturating_sub(now_ms())));
        let committing = !self.jobs.is_empty();
        let front = self.jobs.front_mut().map(|(ticket, pending, _)| (*ticket, pending));
        let asking = self.asking.as_mut();
        let waiting_for_policy = asking.is_some();
        let (wake, kick) = match &mut self.signals {
            Some(signals) => (Some(&signals.wake), Some(&mut signals.kick)),
            None => (None, None),
        };
        let out = &self.out;
        let conn = self.conn;
        let mut from_reader = None;
        // Once the writer is known to be gone, its closed mailbox says nothing new (and
        // would fire at once on every turn while the session drains).
        let writer_alive = !self.writer_gone;
        // An operator's kick is listened for while anything else is; when nothing is, the
        // `else` below ends the session as before.
        let listening = reading || committing || waiting_for_policy || wake.is_some() || hello.is_some() || writer_alive;
        let input = tokio::select! {
            (ticket, result) = async {
                let (ticket, pending) = front.expect("guarded");
                (ticket, pending.await)
            }, if committing => Input::Committed { ticket, result },
            (ticket, reply) = async {
                let Asking { ticket, slot, reply } = asking.expect("guarded");
                let reply = reply.await.unwrap_or_else(|_| {
                    Err(PolicyError::Failed { slot: *slot, detail: "the plugin threads dropped the question".into() })
                });
                (*ticket, reply)
            }, if waiting_for_policy => Input::Answered { ticket, reply },
            frame = inbound.recv(), if reading => {
                from_reader = Some(frame);
                Input::StreamEnd // replaced below, once `self` is free again
            }
            () = async { wake.expect("guarded").notified().await }, if wake.is_some() => Input::Wake,
            kick = async { kick.expect("guarded").recv().await }, if kick.is_some() => {
                Input::Kicked(kick.unwrap_or_else(|| Close::new(close_code::SESSION_REPLACED, "session removed")))
            }
            () = async { tokio::time::sleep(hello.expect("guarded")).await }, if hello.is_some() => Input::Timeout,
            () = conn.kicked(), if listening => Input::Kicked(Close::new(close_code::NORMAL, KICK_REASON)),
            () = out.closed(), if writer_alive => Input::PeerStoppedReading,
            // Nothing left to wait for: the writer is gone and the core waits for nothing.
            else => Input::PeerStoppedReading,
        };
        let input = match from_reader {
            Some(frame) => self.inbound_input(frame),
            None => input,
        };
        match &input {
            Input::Committed { result, .. } => {
                let (_, _, counted) = self.jobs.pop_front().expect("a job was pending");
                match result {
                    Ok(outcome) => self.tally.committed(&self.broker.metrics, counted, outcome),
                    Err(_) if matches!(counted, Counted::Send { .. }) => self.failed_send = self.broker.backend.closes_after_failed_send(),
                    Err(_) => {}
                }
            }
            Input::Answered { .. } => self.asking = None,
            Input::PeerStoppedReading => self.writer_gone = true,
            _ => {}
        }
        input
    }

    /// The host's limits on code requests (`sms.limits`, by this connection's address and
    /// the number's prefix): a refused `RequestCode` is answered here, without asking the
    /// registrar, and counted. `None`: ask policy.
    fn code_limit(&self, question: &Question) -> Option<oneshot::Receiver<Result<Reply, PolicyError>>> {
        let Question::RequestCode { phone } = question else { return None };
        let refused = self.broker.code_limits.check(self.conn.remote().ip(), phone).err()?;
        self.broker.metrics.sms.refused(refused.limit);
        tracing::info!(remote = %self.conn.remote(), %phone, limit = refused.limit.name(), "code request refused by sms.limits");
        let (reply_to, reply) = oneshot::channel();
        let _ = reply_to.send(Ok(Reply::RequestCode(Err(Refusal { error: ErrorCode::RateLimited, reason: refused.reason }))));
        Some(reply)
    }

    /// Keeps the broker's gauge of uncommitted body bytes at this session's share.
    fn gauge(&mut self, bytes: usize) {
        let gauge = &self.broker.gauges.pending_send_bytes;
        if bytes > self.gauged_bytes {
            gauge.fetch_add((bytes - self.gauged_bytes) as u64, Ordering::Relaxed);
        } else {
            gauge.fetch_sub((self.gauged_bytes - bytes) as u64, Ordering::Relaxed);
        }
        self.gauged_bytes = bytes;
    }
}

impl Session<'_> {
    /// What the inbox's item (or the end of its stream) is to the core; a frame is
    /// counted on its way in.
    fn inbound_input(&mut self, inbound: Option<Inbound>) -> Input {
        match inbound {
            None => Input::StreamEnd,
            Some(Inbound::Frame(frame, at)) => {
                self.tally.frame_in(&self.broker.metrics, &frame, at, self.phone.is_some());
                Input::Frame(frame)
            }
            Some(Inbound::Bad(e)) => Input::BadFrame(e),
            Some(Inbound::Truncated(bytes)) => Input::Truncated(bytes),
        }
    }
}

/// Encodes `frame` into the mailbox, waiting for room. A frame over the protocol's limit
/// is never sent: it is a bug, logged, and replaced by an `Error` frame.
async fn write(out: &mailbox::Sender<Vec<u8>>, frame: &ServerFrame) -> Result<(), ()> {
    let mut bytes = encode(frame);
    if bytes.len() - 4 > MAX_FRAME_LEN as usize {
        tracing::error!(bytes = bytes.len(), frame = frame.name(), "an answer exceeded the frame limit; sent an error instead");
        bytes = encode(&ServerFrame::Error { error: ErrorCode::Retryable, reason: "the answer was too large to send".into() });
    }
    let len = bytes.len();
    out.send(bytes, len).await.map_err(|_| ())
}

