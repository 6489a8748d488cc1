//! One client's session as a state machine that does no I/O, after quinn-proto: the driver
//! calls [`Session::handle`] with each [`Input`] and the current time, then executes every
//! [`Output`] that [`Session::poll_output`] yields, in order, and feeds
//! [`Input::Timeout`] at [`Session::poll_timeout`]. It reads the frame inbox only while
//! [`Session::wants_frames`].
//!
//! Stages: `New` (until `Hello`) → `Anonymous` (registration, `Login`) → `LoggingIn` (until
//! the directory holds the session) → `Online` (messaging and delivery). Answers go out in
//! the order of the requests (see [`answers`]); a protocol error or the end of the client's
//! stream first answers what was asked, then closes; a kick or a frame out of place closes
//! at once.
//!
//! Policy is asked, never called ([`ask`]): one question at a time goes out as
//! [`Output::Ask`]; frames that arrive before its [`Input::Answered`] are held and taken in
//! order after it, so sends and acks that pile up meanwhile make the next batch.

mod answers;
mod ask;
mod command;
mod delivery;
mod login;
mod push;
mod read;
mod register;
mod send;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use hotline_protocol::{close_code, ClientFrame, FrameError, MessageKind, ServerFrame, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use crate::close::Close;
use crate::jobs::{Job, JobOutcome};
use crate::policy::{PolicyError, Question, Reply};
use crate::ports::{Ports, StorageFailure};
use crate::window::DeliveryWindow;
use crate::Millis;
use answers::{Answer, Answers};
use ask::Asked;
use send::Outgoing;

/// Sends routed together in one policy call, at most…
pub const MAX_SEND_BATCH: usize = 64;
/// …acks whose receipts are asked about together, at most…
pub const MAX_ACK_BATCH: usize = 64;
/// …and frames held while a question is out, at most.
pub const MAX_HELD_FRAMES: usize = 64;
/// Answers owed, at most, before the session stops reading frames…
pub const MAX_PENDING_ANSWERS: usize = 1024;
/// …and body bytes of sends not yet committed, at most (one batch may pass it once).
pub const PENDING_SEND_BYTES: usize = 2 << 20;
/// Items read from the queue at a time while pushing: bounds what a session holds while
/// its driver waits for room in the client's mailbox.
pub const PUSH_CHUNK: usize = 32;

/// A session's settings (from the broker's configuration).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Most items pushed and not yet acknowledged.
    pub delivery_window: usize,
    /// Largest message body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a new session may wait for `Hello`, in milliseconds.
    pub hello_timeout_ms: u64,
    /// A `Send` is refused while any of its recipients' stored queues holds this many
    /// items or more (`limits.max_queue_items`; receipts are not limited).
    pub max_queue_items: u64,
}

/// Names one storage job or policy question of a session; its [`Input::Committed`] or
/// [`Input::Answered`] carries it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What happens to a session.
#[derive(Debug)]
pub enum Input {
    /// A whole frame from the client.
    Frame(ClientFrame),
    /// Bytes that are not a frame; nothing follows.
    BadFrame(FrameError),
    /// The client finished its stream inside a frame, this many bytes of it having arrived.
    Truncated(usize),
    /// The client finished its stream.
    StreamEnd,
    /// The directory now holds this session (after [`Output::Register`]).
    Registered,
    /// The user's queue gained durable items.
    Wake,
    /// The broker closes this session (another device, a newer connection).
    Kicked(Close),
    /// A storage job finished: durable, or failed.
    Committed { ticket: Ticket, result: Result<JobOutcome, StorageFailure> },
    /// Policy answered [`Output::Ask`] (or its call failed).
    Answered { ticket: Ticket, reply: Result<Reply, PolicyError> },
    /// [`Session::poll_timeout`]'s time has come.
    Timeout,
    /// The client stopped reading the stream (or the connection went).
    PeerStoppedReading,
}

/// What the driver must do, in the order given.
#[derive(Debug)]
pub enum Output {
    /// Write this frame to the client.
    Frame(ServerFrame),
    /// Submit this job to the committer (jobs run in the order submitted); feed its result
    /// back as [`Input::Committed`].
    Submit { ticket: Ticket, job: Job },
    /// Ask policy this question; feed its reply (or the call's failure: every question
    /// must be answered) back as [`Input::Answered`]. At most one is out at a time.
    Ask { ticket: Ticket, question: Question },
    /// Put this session in the directory as `phone`'s, closing an older session of the
    /// number with `replaces`; then feed [`Input::Registered`].
    Register { phone: String, replaces: Close },
    /// Take this session out of the directory.
    Unregister { phone: String },
    /// Close `phone`'s online session, if any (not this one).
    Kick { phone: String, close: Close },
    /// Close the connection; the last output.
    Close(Close),
}

enum Stage {
    /// Waiting for `Hello` until `deadline`.
    New { deadline: Millis },
    /// Version agreed; registration frames or `Login` allowed.
    Anonymous,
    /// Key checked; waiting for the directory ([`Input::Registered`]) to check it again.
    LoggingIn { phone: String, key: String },
    /// Logged in with the key whose hash is `key_hash`; messaging frames allowed, items
    /// pushed through the window.
    Online { phone: String, key_hash: [u8; 32], window: DeliveryWindow },
}

/// One client's session.
pub struct Session {
    config: SessionConfig,
    stage: Stage,
    /// The protocol version agreed in `Hello`/`Welcome` (0 before): which error codes the
    /// client knows.
    version: u16,
    /// The number this session holds in the directory (from `Register` to `Unregister`).
    registered: Option<String>,
    /// Answers owed, in request order.
    answers: Answers,
    /// Sends handed in together, routed in one policy call before anything else happens.
    unrouted: Vec<Outgoing>,
    /// Acks handed in together: their receipts are asked about in one policy call.
    unacked: Vec<u64>,
    /// The question out, and what its reply is for.
    asking: Option<(Ticket, Asked)>,
    /// Frames (and the stream's end) that came while a question or a barrier job was out,
    /// to be taken in order once it is back.
    held: VecDeque<Input>,
    /// Body bytes of sends handed in and not yet submitted (held, unrouted or routing).
    unsubmitted_bytes: usize,
    /// Body bytes of sends submitted and not yet committed.
    pending_send_bytes: usize,
    /// A job whose result later frames depend on (a `Verify`'s account, a `Read`'s check):
    /// no frame is read until it is back.
    barrier: Option<Ticket>,
    /// Close with this once every answer is out.
    draining: Option<Close>,
    /// Set when storage failed under a send before its job was queued (an account read):
    /// every later send is refused and the session closes once its answers are out, so no
    /// later send is stored ahead of the client's retry (as a failed fsync refuses every
    /// later write on one node).
    sends_refused: bool,
    /// `Output::Close` was emitted; nothing more happens.
    closed: bool,
    outputs: VecDeque<Output>,
    next_ticket: u64,
}

impl Session {
    /// A session that has seen nothing yet, at `now`.
    pub fn new(now: Millis, config: SessionConfig) -> Session {
        let deadline = now + config.hello_timeout_ms;
        Session {
            config,
            stage: Stage::New { deadline },
            version: 0,
            registered: None,
            answers: Answers::default(),
            unrouted: Vec::new(),
            unacked: Vec::new(),
            asking: None,
            held: VecDeque::new(),
            unsubmitted_bytes: 0,
            pending_send_bytes: 0,
            barrier: None,
            draining: None,
            sends_refused: false,
            closed: false,
            outputs: VecDeque::new(),
            next_ticket: 0,
        }
    }

    /// Takes one input. Its consequences are in [`Session::poll_output`].
    pub fn handle(&mut self, now: Millis, input: Input, ports: &Ports<'_>) {
        if self.closed {
            return;
        }
        let input = self.in_version(input);
        if let Input::Frame(ClientFrame::Send { body, .. } | ClientFrame::SendTyped { body, .. }) = &input {
            self.unsubmitted_bytes += body.len();
        }
        match input {
            // A reply may unblock the frames held behind it.
            input if !from_stream(&input) => {
                self.dispatch(now, input, ports);
                self.take_held(now, ports);
            }
            input if self.blocked() || !self.held.is_empty() => self.held.push_back(input),
            input => {
                if let Some(input) = self.take(now, input, ports) {
                    self.held.push_back(input);
                }
            }
        }
        self.settle();
    }

    /// The next thing the driver must do, or `None` until the next input. Routes the sends
    /// and asks about the acks handed in since the last call, and reads the next chunk of
    /// the queue to push when everything before it is out.
    pub fn poll_output(&mut self, now: Millis, ports: &Ports<'_>) -> Option<Output> {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            if self.closed {
                return None;
            }
            if self.asking.is_none() && !(self.unrouted.is_empty() && self.unacked.is_empty()) {
                self.route(now);
                self.flush_acks(now, ports);
                self.settle();
                continue;
            }
            if !self.push(ports) {
                return None;
            }
            self.settle();
        }
    }

    /// When to feed [`Input::Timeout`], if ever.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.stage {
            Stage::New { deadline } if !self.closed => Some(deadline),
            _ => None,
        }
    }

    /// Whether the driver may hand in the next frame: not while answers or uncommitted
    /// bodies are over budget, a send batch is full, too many frames wait for a question,
    /// a request's result is awaited that later frames depend on, or the session is closing.
    pub fn wants_frames(&self) -> bool {
        !self.closed
            && self.draining.is_none()
            && self.barrier.is_none()
            && !matches!(self.stage, Stage::LoggingIn { .. })
            && self.unrouted.len() < MAX_SEND_BATCH
            && self.held.len() < MAX_HELD_FRAMES
            && self.answers.len() + self.unrouted.len() + self.held.len() < MAX_PENDING_ANSWERS
            && self.pending_send_bytes() < PENDING_SEND_BYTES
    }

    /// Body bytes of sends handed in and not yet committed (a memory gauge).
    pub fn pending_send_bytes(&self) -> usize {
        self.pending_send_bytes + self.unsubmitted_bytes
    }

    /// Whether `Output::Close` has been emitted.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The protocol version agreed with the client (0 before `Hello`).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The number the session is logged in as.
    pub fn phone(&self) -> Option<&str> {
        match &self.stage {
            Stage::Online { phone, .. } => Some(phone),
            _ => None,
        }
    }

    /// A frame of a later protocol version than the session's (`SendTyped` in a version-2
    /// session) as the malformed frame it is in that version: the answers owed go out,
    /// then the session closes with `MALFORMED_FRAME`, as a broker of that version would.
    fn in_version(&self, input: Input) -> Input {
        match input {
            Input::Frame(frame) if self.version != 0 && frame.since_version() > self.version => {
                let (name, since, version) = (frame.name(), frame.since_version(), self.version);
                Input::BadFrame(FrameError::Malformed(format!(
                    "{name} is a frame of protocol version {since}; this session speaks version {version}"
                )))
            }
            input => input,
        }
    }

    /// Whether frames must wait: a question is out, or a job later frames depend on.
    fn blocked(&self) -> bool {
        self.asking.is_some() || self.barrier.is_some()
    }

    /// Takes an input from the client's stream, or gives it back when it must wait for a
    /// question it caused to be asked (the sends or acks before it). Sends and acks gather
    /// into batches; anything else from the stream first flushes them, to keep order.
    fn take(&mut self, now: Millis, input: Input, ports: &Ports<'_>) -> Option<Input> {
        let online = matches!(self.stage, Stage::Online { .. });
        match input {
            Input::Frame(frame @ (ClientFrame::Send { .. } | ClientFrame::SendTyped { .. })) if online => {
                self.flush_acks(now, ports);
                if self.unrouted.len() >= MAX_SEND_BATCH {
                    self.route(now);
                }
                if self.blocked() {
                    return Some(Input::Frame(frame));
                }
                self.unrouted.push(match frame {
                    ClientFrame::Send { client_id, to, body } => Outgoing { client_id, to, kind: MessageKind::Text, body },
                    ClientFrame::SendTyped { client_id, to, kind, body } => Outgoing { client_id, to, kind, body },
                    _ => unreachable!("matched above"),
                });
            }
            Input::Frame(ClientFrame::Ack { id }) if online => {
                self.route(now);
                if self.unacked.len() >= MAX_ACK_BATCH {
                    self.flush_acks(now, ports);
                }
                if self.blocked() {
                    return Some(Input::Frame(ClientFrame::Ack { id }));
                }
                self.unacked.push(id);
            }
            input => {
                self.route(now);
                self.flush_acks(now, ports);
                if self.blocked() {
                    return Some(input);
                }
                self.dispatch(now, input, ports);
            }
        }
        None
    }

    /// Takes the held frames in order, until one must wait again.
    fn take_held(&mut self, now: Millis, ports: &Ports<'_>) {
        while !self.blocked() && !self.closed {
            let Some(input) = self.held.pop_front() else { return };
            if let Some(input) = self.take(now, input, ports) {
                self.held.push_front(input);
                return;
            }
        }
    }

    fn dispatch(&mut self, now: Millis, input: Input, ports: &Ports<'_>) {
        match input {
            Input::Frame(frame) => self.frame(now, frame, ports),
            Input::BadFrame(e) => {
                // Nothing after it is taken: the driver reads nothing more after bytes that
                // are not a frame, and a frame of a later version is one in this session.
                self.held.clear();
                self.drain(Close::from_frame_error(&e))
            }
            Input::Truncated(bytes) => self.drain(Close::truncated(bytes)),
            Input::StreamEnd => self.drain(Close::new(close_code::NORMAL, "bye")),
            Input::Registered => self.registered(ports),
            Input::Wake => {
                if let Stage::Online { window, .. } = &mut self.stage {
                    window.woken();
                }
            }
            Input::Kicked(close) => self.close(close),
            Input::Committed { ticket, result } => self.committed(ticket, result),
            Input::Answered { ticket, reply } => self.answered(now, ticket, reply, ports),
            Input::Timeout => {
                if matches!(self.stage, Stage::New { deadline } if now >= deadline) {
                    self.close(Close::new(close_code::TIMEOUT, "no Hello in time"));
                }
            }
            Input::PeerStoppedReading => self.close(Close::new(close_code::NORMAL, "the client stopped reading the stream")),
        }
    }

    /// Which frame is allowed when.
    fn frame(&mut self, now: Millis, frame: ClientFrame, ports: &Ports<'_>) {
        match (&self.stage, frame) {
            (Stage::New { .. }, ClientFrame::Hello { min_version, max_version }) => {
                // The highest version in both ranges.
                let version = max_version.min(PROTOCOL_VERSION);
                if min_version > max_version || version < min_version.max(MIN_PROTOCOL_VERSION) {
                    let reason = format!("this broker speaks versions {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}");
                    return self.close(Close::new(close_code::UNSUPPORTED_VERSION, reason));
                }
                self.version = version;
                self.stage = Stage::Anonymous;
                self.answers.ready(ServerFrame::Welcome { version });
            }
            (Stage::New { .. }, other) => self.close(Close::unexpected(&other, "before Hello")),
            (Stage::LoggingIn { .. }, other) => self.close(Close::unexpected(&other, "while logging in")),
            (_, ClientFrame::Ping { nonce }) => self.answers.ready(ServerFrame::Pong { nonce }),
            (Stage::Anonymous, ClientFrame::RequestCode { phone }) => self.request_code(phone),
            (Stage::Anonymous, ClientFrame::Verify { phone, code }) => self.verify(phone, code),
            (Stage::Anonymous, ClientFrame::Login { phone, key }) => self.login(phone, key, ports),
            (Stage::Anonymous, ClientFrame::SetPushToken { .. }) => self.answers.ready(push::not_logged_in()),
            (Stage::Anonymous, other) => self.close(Close::unexpected(&other, "before Login")),
            (Stage::Online { phone, .. }, ClientFrame::Command { request_id, slot, name, args }) => {
                let from = phone.clone();
                self.command(from, request_id, slot, name, args);
            }
            (Stage::Online { .. }, ClientFrame::Read { id, from }) => self.read(id, from),
            (Stage::Online { .. }, ClientFrame::SetPushToken { token }) => self.set_push_token(now, token),
            (Stage::Online { .. }, frame @ (ClientFrame::Send { .. } | ClientFrame::SendTyped { .. } | ClientFrame::Ack { .. })) => {
                unreachable!("`take` batches {} before dispatch", frame.name())
            }
            (Stage::Online { .. }, other) => self.close(Close::unexpected(&other, "after Login")),
        }
    }

    /// A job came back: its answer (if it has one) is now known.
    fn committed(&mut self, ticket: Ticket, result: Result<JobOutcome, StorageFailure>) {
        if self.barrier == Some(ticket) {
            self.barrier = None;
        }
        let Some((at, answer)) = self.answers.take(ticket) else {
            // An `Ack` or a `Read`'s receipt: nobody waits for it; a failure means the item
            // stays queued (pushed again) or the receipt is not sent.
            if let Err(e) = result {
                tracing::debug!(error = %e, "a storage job without an answer failed");
            }
            return;
        };
        let answer = match answer {
            Answer::Sent { client_id, bytes, to, .. } => {
                self.pending_send_bytes -= bytes;
                Some(Answer::Ready(send::outcome(self.version, client_id, &to, result)))
            }
            Answer::ReadChecked { id, sender, .. } => self.read_checked(id, sender, result),
            Answer::Registered { phone, key, .. } => Some(Answer::Ready(self.account_stored(phone, key, result))),
            Answer::PushTokenSet { .. } => Some(Answer::Ready(push::outcome(result))),
            other @ (Answer::Ready(_) | Answer::Asked { .. }) => Some(other),
        };
        if let Some(answer) = answer {
            self.answers.put(at, answer);
        }
    }

    /// Emits the known answers at the front, and closes a draining session once all are out.
    fn settle(&mut self) {
        while let Some(frame) = self.answers.pop_ready() {
            self.outputs.push_back(Output::Frame(frame));
        }
        let idle = self.answers.is_empty() && self.unrouted.is_empty() && self.unacked.is_empty() && self.asking.is_none();
        if self.draining.is_some() && idle {
            let close = self.draining.take().expect("checked above");
            self.close(close);
        }
    }

    /// Submits `job`; its result comes back as `Input::Committed` with the ticket.
    fn submit(&mut self, job: Job) -> Ticket {
        let ticket = self.next_ticket();
        self.outputs.push_back(Output::Submit { ticket, job });
        ticket
    }

    fn next_ticket(&mut self) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        ticket
    }

    /// Closes once every answer owed is out.
    fn drain(&mut self, close: Close) {
        self.draining = Some(close);
    }

    /// Closes now: leaves the directory, then the connection. Not while a new device's
    /// account is being stored: its old device's session must still be kicked once it is
    /// durable, so the session closes when that answer is known (the client may be gone;
    /// a `Login` with the old key could otherwise stay online).
    fn close(&mut self, close: Close) {
        if self.closed {
            return;
        }
        if self.answers.awaits_registration() {
            return self.drain(close);
        }
        if let Some(phone) = self.registered.take() {
            self.outputs.push_back(Output::Unregister { phone });
        }
        self.outputs.push_back(Output::Close(close));
        self.closed = true;
        self.unrouted.clear();
        self.unacked.clear();
        self.held.clear();
        self.asking = None;
        self.unsubmitted_bytes = 0;
    }
}

/// Whether `input` comes from the client's stream (and so is taken in stream order).
fn from_stream(input: &Input) -> bool {
    matches!(input, Input::Frame(_) | Input::BadFrame(_) | Input::Truncated(_) | Input::StreamEnd)
}
