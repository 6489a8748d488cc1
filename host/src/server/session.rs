//! A session: the state machine of one connection, from `Hello` through registration or
//! `Login` to delivering the user's queue. Speaks frames over channels; knows no QUIC.
//!
//! Delivery: the session keeps a cursor (the highest item id pushed) and the set of items
//! pushed but not yet acknowledged. When woken (new durable items) or when an ack frees
//! room in the window, it reads the queue after the cursor and pushes. Items leave storage
//! only on `Ack` (or when they expire); a broken connection leaves them queued for the
//! next session.
//!
//! Answers to sends: each `Send` gets its answer (`Sent` once durable, or `SendFailed`) in
//! the order the sends came. The session keeps them in a queue and writes the front one as
//! soon as it is known; while that queue is long (in answers or in message bytes not yet
//! committed), it stops reading frames, so a client that floods waits on QUIC flow control
//! instead of growing the broker.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hotline_protocol::{close_code, encode, ClientFrame, ErrorCode, FrameError, ServerFrame, MAX_FRAME_LEN, PROTOCOL_VERSION};

use super::mailbox;
use crate::broker::Broker;
use crate::cmd;
use crate::sessions::{Kick, SessionSignals};
use crate::store::{Pending, StoreError, StoredItem};

/// How and why the session ends: a `close_code` and a reason for the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u32,
    pub reason: String,
}

impl Close {
    fn new(code: u32, reason: impl Into<String>) -> Close {
        Close { code, reason: reason.into() }
    }
}

impl From<Kick> for Close {
    fn from(k: Kick) -> Close {
        Close { code: k.code, reason: k.reason }
    }
}

enum State {
    /// Waiting for `Hello`.
    New,
    /// Version agreed; registration frames or `Login` allowed.
    Anonymous,
    /// Logged in as a number; messaging frames allowed.
    Online(Online),
}

struct Online {
    phone: String,
    signals: SessionSignals,
    /// Highest item id pushed to the client.
    cursor: u64,
    /// Items pushed and not yet acknowledged.
    in_flight: BTreeSet<u64>,
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

/// The answer to one `Send`, in the queue of answers.
enum Answer {
    /// Known (a refusal, or a finished commit): the frame to write.
    Ready(ServerFrame),
    /// Submitted to the committer: `Sent` once durable. `bytes` of body are held until
    /// then (counted against [`PENDING_SEND_BYTES`]).
    Pending { client_id: u64, bytes: usize, pending: Pending<u64> },
}

/// One client's session.
pub struct Session {
    broker: Arc<Broker>,
    out: mailbox::Sender<Vec<u8>>,
    state: State,
    /// A frame read ahead while batching sends, handled next.
    stashed: Option<ClientFrame>,
    /// Answers to sends, in the order of the sends.
    answers: VecDeque<Answer>,
    /// Body bytes of the pending answers.
    pending_bytes: usize,
}

/// Most sends routed in one plugin call.
const MAX_SEND_BATCH: usize = 64;
/// Sends waiting for their answer, at most, before the session stops reading frames…
const MAX_PENDING_SENDS: usize = 1024;
/// …and body bytes of sends not yet committed, at most (one batch may pass it once).
const PENDING_SEND_BYTES: usize = 2 << 20;
/// Items read from the queue at a time while pushing: bounds the bytes a session holds
/// while its mailbox is full.
const PUSH_CHUNK: usize = 32;

impl Session {
    pub fn new(broker: Arc<Broker>, out: mailbox::Sender<Vec<u8>>) -> Session {
        Session { broker, out, state: State::New, stashed: None, answers: VecDeque::new(), pending_bytes: 0 }
    }

    /// Runs until the client leaves, breaks the protocol or is kicked. Returns how it ended
    /// and the number it was logged in as, if any.
    pub async fn run(mut self, mut inbound: InboundRx, hello_timeout: Duration) -> (Close, Option<String>) {
        let close = self.run_inner(&mut inbound, hello_timeout).await;
        self.broker.gauges.pending_send_bytes.fetch_sub(self.pending_bytes as u64, Ordering::Relaxed);
        match &self.state {
            State::Online(online) => {
                self.broker.sessions.unregister(&online.phone, online.signals.id);
                (close, Some(online.phone.clone()))
            }
            _ => (close, None),
        }
    }

    async fn run_inner(&mut self, inbound: &mut InboundRx, hello_timeout: Duration) -> Close {
        let hello_deadline = tokio::time::sleep(hello_timeout);
        tokio::pin!(hello_deadline);
        loop {
            if let Err(close) = self.write_ready_answers().await {
                return close;
            }
            if let Some(frame) = self.stashed.take() {
                if let Err(close) = self.handle(frame, inbound).await {
                    return close;
                }
                continue;
            }
            let reading = self.answers.len() < MAX_PENDING_SENDS && self.pending_bytes < PENDING_SEND_BYTES;
            let out = &self.out;
            let front = match self.answers.front_mut() {
                Some(Answer::Pending { pending, .. }) => Some(pending),
                _ => None,
            };
            let committing = front.is_some();
            let step = match &mut self.state {
                State::Online(online) => {
                    tokio::select! {
                        result = async { front.expect("guarded").await }, if committing => Step::Committed(result),
                        frame = inbound.recv(), if reading => Step::Frame(frame),
                        () = online.signals.wake.notified() => Step::Wake,
                        kick = online.signals.kick.recv() => Step::Kicked(kick),
                        () = out.closed() => Step::WriterClosed,
                    }
                }
                State::New => {
                    tokio::select! {
                        frame = inbound.recv() => Step::Frame(frame),
                        () = &mut hello_deadline => Step::HelloTimeout,
                        () = out.closed() => Step::WriterClosed,
                    }
                }
                State::Anonymous => {
                    tokio::select! {
                        frame = inbound.recv() => Step::Frame(frame),
                        () = out.closed() => Step::WriterClosed,
                    }
                }
            };
            let result = match step {
                Step::Frame(None) => {
                    // The client finished its stream: answer every send it made, then close.
                    return match self.finish_answers().await {
                        Ok(()) => Close::new(close_code::NORMAL, "bye"),
                        Err(close) => close,
                    };
                }
                Step::Frame(Some(Inbound::Frame(frame))) => self.handle(frame, inbound).await,
                Step::Frame(Some(Inbound::Bad(e))) => return self.close_after_answers(Close::from_frame_error(&e)).await,
                Step::Frame(Some(Inbound::Truncated(n))) => {
                    let close = Close::new(close_code::MALFORMED_FRAME, format!("the stream ended inside a frame ({n} bytes of it arrived)"));
                    return self.close_after_answers(close).await;
                }
                Step::Committed(result) => {
                    self.answer_front(result);
                    Ok(())
                }
                Step::Wake => self.push().await,
                Step::Kicked(Some(kick)) => return kick.into(),
                Step::Kicked(None) => return Close::new(close_code::SESSION_REPLACED, "session removed"),
                Step::HelloTimeout => return Close::new(close_code::TIMEOUT, "no Hello in time"),
                Step::WriterClosed => return Close::new(close_code::NORMAL, "the client stopped reading the stream"),
            };
            if let Err(close) = result {
                return close;
            }
        }
    }

    /// Turns the front answer's commit result into its frame (written by
    /// [`Session::write_ready_answers`]); its body bytes are no longer held.
    fn answer_front(&mut self, result: Result<u64, StoreError>) {
        let front = self.answers.front_mut().expect("a front answer was pending");
        let Answer::Pending { client_id, bytes, .. } = *front else { unreachable!("the front answer was pending") };
        self.pending_bytes -= bytes;
        self.broker.gauges.pending_send_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
        *front = Answer::Ready(cmd::send::outcome(client_id, result));
    }

    /// Writes answers from the front of the queue as long as they are known.
    async fn write_ready_answers(&mut self) -> Result<(), Close> {
        while let Some(Answer::Ready(_)) = self.answers.front() {
            let Some(Answer::Ready(frame)) = self.answers.pop_front() else { unreachable!("checked above") };
            self.reply(frame).await?;
        }
        Ok(())
    }

    /// Waits for every queued answer and writes it.
    async fn finish_answers(&mut self) -> Result<(), Close> {
        loop {
            self.write_ready_answers().await?;
            let Some(Answer::Pending { pending, .. }) = self.answers.front_mut() else {
                return Ok(());
            };
            let result = pending.await;
            self.answer_front(result);
        }
    }

    /// Answers the sends made before a protocol error, then closes with it.
    async fn close_after_answers(&mut self, close: Close) -> Close {
        match self.finish_answers().await {
            Ok(()) => close,
            Err(other) => other,
        }
    }

    async fn handle(&mut self, frame: ClientFrame, inbound: &mut InboundRx) -> Result<(), Close> {
        match (&mut self.state, frame) {
            (State::New, ClientFrame::Hello { min_version, max_version }) => {
                if !(min_version..=max_version).contains(&PROTOCOL_VERSION) {
                    return Err(Close::new(
                        close_code::UNSUPPORTED_VERSION,
                        format!("this broker speaks version {PROTOCOL_VERSION} only"),
                    ));
                }
                self.state = State::Anonymous;
                self.reply(ServerFrame::Welcome { version: PROTOCOL_VERSION }).await
            }
            (State::New, other) => Err(unexpected(&other, "before Hello")),
            (_, ClientFrame::Ping { nonce }) => self.reply(ServerFrame::Pong { nonce }).await,
            (State::Anonymous, ClientFrame::RequestCode { phone }) => {
                let answer = cmd::register::request_code(&self.broker, &phone);
                self.reply(answer).await
            }
            (State::Anonymous, ClientFrame::Verify { phone, code }) => {
                let answer = cmd::register::verify(&self.broker, &phone, &code).await;
                self.reply(answer).await
            }
            (State::Anonymous, ClientFrame::Login { phone, key }) => self.login(phone, key).await,
            (State::Anonymous, other) => Err(unexpected(&other, "before Login")),
            (State::Online(_), ClientFrame::Send { client_id, to, body }) => {
                self.send(inbound, cmd::send::Outgoing { client_id, to, body }).await
            }
            (State::Online(online), ClientFrame::Command { request_id, slot, name, args }) => {
                let answer = cmd::command::command(&self.broker, &online.phone, request_id, &slot, &name, args);
                self.reply(answer).await
            }
            (State::Online(online), ClientFrame::Ack { id }) => {
                online.in_flight.remove(&id);
                if let Err(e) = cmd::ack::ack(&self.broker, &online.phone, id).await {
                    // A storage failure is logged once by `store::Health`.
                    tracing::debug!(error = %e, "ack failed");
                    return Err(Close::new(close_code::INTERNAL, "storage unavailable"));
                }
                self.push().await
            }
            (State::Online(online), ClientFrame::Read { id, from }) => {
                match cmd::read::read(&self.broker, &online.phone, id, from).await {
                    Some(answer) => self.reply(answer).await,
                    None => Ok(()),
                }
            }
            (State::Online(_), other) => Err(unexpected(&other, "after Login")),
        }
    }

    /// Sends `first` together with every `Send` already waiting behind it (as long as the
    /// batch's bodies fit the pending budget): one router call for the batch, commits
    /// submitted in order, each answered in order once durable.
    async fn send(&mut self, inbound: &mut InboundRx, first: cmd::send::Outgoing) -> Result<(), Close> {
        let State::Online(online) = &self.state else { return Ok(()) };
        let phone = online.phone.clone();
        let mut bytes = self.pending_bytes + first.body.len();
        let mut batch = vec![first];
        let mut bad = None;
        while batch.len() < MAX_SEND_BATCH && bytes < PENDING_SEND_BYTES && self.answers.len() + batch.len() < MAX_PENDING_SENDS {
            match inbound.try_recv() {
                Some(Inbound::Frame(ClientFrame::Send { client_id, to, body })) => {
                    bytes += body.len();
                    batch.push(cmd::send::Outgoing { client_id, to, body });
                }
                Some(Inbound::Frame(other)) => {
                    self.stashed = Some(other);
                    break;
                }
                // Answer what we have first; the bad frame closes the session after.
                Some(Inbound::Bad(e)) => {
                    bad = Some(Close::from_frame_error(&e));
                    break;
                }
                Some(Inbound::Truncated(n)) => {
                    bad = Some(Close::new(close_code::MALFORMED_FRAME, format!("the stream ended inside a frame ({n} bytes of it arrived)")));
                    break;
                }
                None => break,
            }
        }
        let sizes: Vec<usize> = batch.iter().map(|m| m.body.len()).collect();
        for (submitted, bytes) in cmd::send::send(&self.broker, &phone, batch).await.into_iter().zip(sizes) {
            self.answers.push_back(match submitted {
                cmd::send::Submitted::Pending { client_id, pending } => {
                    self.pending_bytes += bytes;
                    self.broker.gauges.pending_send_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    Answer::Pending { client_id, bytes, pending }
                }
                cmd::send::Submitted::Refused(frame) => Answer::Ready(frame),
            });
        }
        match bad {
            Some(close) => Err(self.close_after_answers(close).await),
            None => Ok(()),
        }
    }

    async fn login(&mut self, phone: String, key: String) -> Result<(), Close> {
        if let Err(e) = cmd::login::login(&self.broker, &phone, &key) {
            let code = match e {
                cmd::login::LoginError::Refused(_) => close_code::AUTH_FAILED,
                cmd::login::LoginError::Storage(_) => close_code::INTERNAL,
            };
            return Err(Close::new(code, e.to_string()));
        }
        let replaced = Kick { code: close_code::SESSION_REPLACED, reason: "logged in on a newer connection".into() };
        let signals = self.broker.sessions.register(&phone, replaced);
        // A re-registration may have revoked the key between the check and the register
        // above; checking again closes that gap.
        if let Err(e) = cmd::login::login(&self.broker, &phone, &key) {
            self.broker.sessions.unregister(&phone, signals.id);
            return Err(Close::new(close_code::AUTH_FAILED, e.to_string()));
        }
        tracing::debug!(%phone, "logged in");
        self.state = State::Online(Online { phone: phone.clone(), signals, cursor: 0, in_flight: BTreeSet::new() });
        self.reply(ServerFrame::LoggedIn { phone }).await?;
        self.push().await
    }

    /// Pushes queued items after the cursor while the window has room, reading the queue
    /// [`PUSH_CHUNK`] items at a time.
    async fn push(&mut self) -> Result<(), Close> {
        let State::Online(online) = &mut self.state else { return Ok(()) };
        let window = self.broker.limits.delivery_window;
        while online.in_flight.len() < window {
            let room = (window - online.in_flight.len()).min(PUSH_CHUNK);
            let items = self.broker.store.queue_after(&online.phone, online.cursor, room).map_err(|e| {
                tracing::error!(error = %e, "reading queue failed");
                Close::new(close_code::INTERNAL, "storage unavailable")
            })?;
            if items.is_empty() {
                break;
            }
            for (id, item) in items {
                online.cursor = id;
                online.in_flight.insert(id);
                write(&self.out, frame_for(id, item)).await?;
            }
        }
        Ok(())
    }

    async fn reply(&self, frame: ServerFrame) -> Result<(), Close> {
        write(&self.out, frame).await
    }
}

/// Encodes `frame` into the mailbox, waiting for room. A frame over the protocol's limit
/// is never sent: it is a bug, logged, and replaced by an `Error` frame.
async fn write(out: &mailbox::Sender<Vec<u8>>, frame: ServerFrame) -> Result<(), Close> {
    let mut bytes = encode(&frame);
    if bytes.len() - 4 > MAX_FRAME_LEN as usize {
        tracing::error!(bytes = bytes.len(), frame = frame_name(&frame), "an answer exceeded the frame limit; sent an error instead");
        bytes = encode(&ServerFrame::Error { error: ErrorCode::Retryable, reason: "the answer was too large to send".into() });
    }
    let len = bytes.len();
    out.send(bytes, len).await.map_err(|_| Close::new(close_code::NORMAL, "the client stopped reading the stream"))
}

enum Step {
    Frame(Option<Inbound>),
    Committed(Result<u64, StoreError>),
    Wake,
    Kicked(Option<Kick>),
    HelloTimeout,
    WriterClosed,
}

fn unexpected(frame: &ClientFrame, when: &str) -> Close {
    let name = match frame {
        ClientFrame::Hello { .. } => "Hello",
        ClientFrame::RequestCode { .. } => "RequestCode",
        ClientFrame::Verify { .. } => "Verify",
        ClientFrame::Login { .. } => "Login",
        ClientFrame::Send { .. } => "Send",
        ClientFrame::Ack { .. } => "Ack",
        ClientFrame::Read { .. } => "Read",
        ClientFrame::Ping { .. } => "Ping",
        ClientFrame::Command { .. } => "Command",
    };
    Close::new(close_code::UNEXPECTED_FRAME, format!("{name} is not allowed {when}"))
}

fn frame_name(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Welcome { .. } => "Welcome",
        ServerFrame::CodeSent { .. } => "CodeSent",
        ServerFrame::Registered { .. } => "Registered",
        ServerFrame::LoggedIn { .. } => "LoggedIn",
        ServerFrame::Sent { .. } => "Sent",
        ServerFrame::SendFailed { .. } => "SendFailed",
        ServerFrame::Message { .. } => "Message",
        ServerFrame::Receipt { .. } => "Receipt",
        ServerFrame::Error { .. } => "Error",
        ServerFrame::Pong { .. } => "Pong",
        ServerFrame::CommandResult { .. } => "CommandResult",
    }
}

fn frame_for(id: u64, item: StoredItem) -> ServerFrame {
    match item {
        StoredItem::Message { from, sent_at_ms, body } => ServerFrame::Message { id, from, sent_at_ms, body },
        StoredItem::Receipt { message_id, by, status, at_ms } => {
            ServerFrame::Receipt { id, message_id, by, status, at_ms }
        }
    }
}
