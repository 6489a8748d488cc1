//! The session driver: runs one connection's [`hotline_core::Session`] (the state machine
//! that holds every delivery rule) against the real world. It feeds the core its inputs —
//! frames from the reader task, commit results, wake-ups and kicks from the directory, the
//! hello timer, a writer that went away — and executes its outputs: frames into the
//! mailbox, jobs to the committer, registrations in the directory, the close. It decides
//! nothing itself. Policy questions go to the plugin threads ([`crate::policy::PolicyThreads`]);
//! the session serves its connection while it waits for the reply.
//!
//! Back-pressure: the driver reads the next frame only while the core
//! [`wants_frames`](hotline_core::Session::wants_frames), so a client that floods waits on
//! QUIC flow control instead of growing the broker. Frames that are already waiting are
//! handed in together (up to a send batch), so the core routes them in one policy call.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hotline_core::session::MAX_SEND_BATCH;
use hotline_core::policy::{PolicyError, Reply, Slot};
use hotline_core::{Input, JobOutcome, Output, Ports, SessionConfig, StorageFailure, Ticket};
use tokio::sync::oneshot;
use hotline_protocol::{close_code, encode, ClientFrame, ErrorCode, FrameError, ServerFrame, MAX_FRAME_LEN};

pub use hotline_core::Close;

use super::mailbox;
use crate::broker::{now_ms, Broker};
use crate::sessions::SessionSignals;
use crate::store::Pending;

/// A question the plugin threads are answering.
struct Asking {
    ticket: Ticket,
    slot: Slot,
    reply: oneshot::Receiver<Result<Reply, PolicyError>>,
}

/// What the reader task hands the session.
#[derive(Debug)]
pub enum Inbound {
    /// A whole frame.
    Frame(ClientFrame),
    /// Bytes that are not a frame; the last item.
    Bad(FrameError),
    /// The client finished its stream with this many bytes of an incomplete frame; the
    /// last item.
    Truncated(usize),
}

type InboundRx = mailbox::Receiver<Inbound>;

/// One client's session: the core and what it needs from the world.
pub struct Session {
    broker: Arc<Broker>,
    out: mailbox::Sender<Vec<u8>>,
    /// The directory's signals, once the core registered the session.
    signals: Option<SessionSignals>,
    /// The number the session registered as.
    phone: Option<String>,
    /// Jobs submitted and not yet finished, in submission order (the committer finishes a
    /// session's jobs in that order).
    jobs: VecDeque<(Ticket, Pending<JobOutcome>)>,
    /// The question out with the plugin threads (the core asks one at a time).
    asking: Option<Asking>,
    /// Bytes of uncommitted bodies counted in the broker's gauge for this session.
    gauged_bytes: usize,
    /// The mailbox refused a frame: the client stopped reading.
    writer_gone: bool,
}

impl Session {
    pub fn new(broker: Arc<Broker>, out: mailbox::Sender<Vec<u8>>) -> Session {
        Session { broker, out, signals: None, phone: None, jobs: VecDeque::new(), asking: None, gauged_bytes: 0, writer_gone: false }
    }

    /// Runs until the client leaves, breaks the protocol or is kicked. Returns how it ended
    /// and the number it was logged in as, if any.
    pub async fn run(mut self, mut inbound: InboundRx, hello_timeout: Duration) -> (Close, Option<String>) {
        let broker = self.broker.clone();
        let ports = broker.ports();
        let config = SessionConfig {
            delivery_window: broker.limits.delivery_window,
            max_body_bytes: broker.max_body_bytes(),
            hello_timeout_ms: hello_timeout.as_millis() as u64,
        };
        let mut core = hotline_core::Session::new(now_ms(), config);
        let close = loop {
            if let Some(close) = self.execute(&mut core, &ports).await {
                break close;
            }
            let input = self.next_input(&core, &mut inbound).await;
            let was_frame = matches!(input, Input::Frame(_));
            core.handle(now_ms(), input, &ports);
            if was_frame {
                // Hand in what is already waiting, so sends that came together are routed
                // together.
                for _ in 1..MAX_SEND_BATCH {
                    if !core.wants_frames() {
                        break;
                    }
                    let Some(inbound) = inbound.try_recv() else { break };
                    core.handle(now_ms(), inbound_input(Some(inbound)), &ports);
                }
            }
        };
        self.gauge(0);
        (close, self.phone)
    }

    /// Executes the core's outputs until it has none; the close, when it is the last.
    async fn execute(&mut self, core: &mut hotline_core::Session, ports: &Ports<'_>) -> Option<Close> {
        let mut close = None;
        while let Some(output) = core.poll_output(now_ms(), ports) {
            match output {
                Output::Frame(frame) => {
                    if !self.writer_gone && write(&self.out, frame).await.is_err() {
                        self.writer_gone = true;
                        core.handle(now_ms(), Input::PeerStoppedReading, ports);
                    }
                }
                Output::Submit { ticket, job } => match self.broker.committer.submit_job(job).await {
                    Ok(pending) => self.jobs.push_back((ticket, pending)),
                    Err(e) => core.handle(now_ms(), Input::Committed { ticket, result: Err(StorageFailure::new(e)) }, ports),
                },
                Output::Ask { ticket, question } => {
                    let slot = question.slot();
                    self.asking = Some(Asking { ticket, slot, reply: self.broker.policy.ask(question) });
                }
                Output::Register { phone, replaces } => {
                    self.signals = Some(self.broker.sessions.register(&phone, replaces));
                    self.phone = Some(phone);
                    core.handle(now_ms(), Input::Registered, ports);
                }
                Output::Unregister { phone } => {
                    if let Some(signals) = &self.signals {
                        self.broker.sessions.unregister(&phone, signals.id);
                    }
                }
                Output::Kick { phone, close } => self.broker.sessions.kick(&phone, close),
                Output::Close(c) => close = Some(c),
            }
        }
        self.gauge(core.pending_send_bytes());
        close
    }

    /// Waits for whatever happens next.
    async fn next_input(&mut self, core: &hotline_core::Session, inbound: &mut InboundRx) -> Input {
        let reading = core.wants_frames();
        let hello = core.poll_timeout().map(|deadline| Duration::from_millis(deadline.saturating_sub(now_ms())));
        let committing = !self.jobs.is_empty();
        let front = self.jobs.front_mut().map(|(ticket, pending)| (*ticket, pending));
        let asking = self.asking.as_mut();
        let waiting_for_policy = asking.is_some();
        let (wake, kick) = match &mut self.signals {
            Some(signals) => (Some(&signals.wake), Some(&mut signals.kick)),
            None => (None, None),
        };
        let out = &self.out;
        // Once the writer is known to be gone, its closed mailbox says nothing new (and
        // would fire at once on every turn while the session drains).
        let writer_alive = !self.writer_gone;
        let input = tokio::select! {
            (ticket, result) = async {
                let (ticket, pending) = front.expect("guarded");
                (ticket, pending.await)
            }, if committing => Input::Committed { ticket, result: result.map_err(StorageFailure::new) },
            (ticket, reply) = async {
                let Asking { ticket, slot, reply } = asking.expect("guarded");
                let reply = reply.await.unwrap_or_else(|_| {
                    Err(PolicyError::Failed { slot: *slot, detail: "the plugin threads dropped the question".into() })
                });
                (*ticket, reply)
            }, if waiting_for_policy => Input::Answered { ticket, reply },
            frame = inbound.recv(), if reading => inbound_input(frame),
            () = async { wake.expect("guarded").notified().await }, if wake.is_some() => Input::Wake,
            kick = async { kick.expect("guarded").recv().await }, if kick.is_some() => {
                Input::Kicked(kick.unwrap_or_else(|| Close::new(close_code::SESSION_REPLACED, "session removed")))
            }
            () = async { tokio::time::sleep(hello.expect("guarded")).await }, if hello.is_some() => Input::Timeout,
            () = out.closed(), if writer_alive => Input::PeerStoppedReading,
            // Nothing left to wait for: the writer is gone and the core waits for nothing.
            else => Input::PeerStoppedReading,
        };
        match input {
            Input::Committed { .. } => {
                self.jobs.pop_front();
            }
            Input::Answered { .. } => self.asking = None,
            Input::PeerStoppedReading => self.writer_gone = true,
            _ => {}
        }
        input
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

/// What the reader task's item (or the end of its stream) is to the core.
fn inbound_input(inbound: Option<Inbound>) -> Input {
    match inbound {
        None => Input::StreamEnd,
        Some(Inbound::Frame(frame)) => Input::Frame(frame),
        Some(Inbound::Bad(e)) => Input::BadFrame(e),
        Some(Inbound::Truncated(bytes)) => Input::Truncated(bytes),
    }
}

/// Encodes `frame` into the mailbox, waiting for room. A frame over the protocol's limit
/// is never sent: it is a bug, logged, and replaced by an `Error` frame.
async fn write(out: &mailbox::Sender<Vec<u8>>, frame: ServerFrame) -> Result<(), ()> {
    let mut bytes = encode(&frame);
    if bytes.len() - 4 > MAX_FRAME_LEN as usize {
        tracing::error!(bytes = bytes.len(), frame = frame.name(), "an answer exceeded the frame limit; sent an error instead");
        bytes = encode(&ServerFrame::Error { error: ErrorCode::Retryable, reason: "the answer was too large to send".into() });
    }
    let len = bytes.len();
    out.send(bytes, len).await.map_err(|_| ())
}

