//! A session: the state machine of one connection, from `Hello` through registration or
//! `Login` to delivering the user's queue. Speaks frames over channels; knows no QUIC.
//!
//! Delivery: the session keeps a cursor (the highest item id pushed) and the set of items
//! pushed but not yet acknowledged. When woken (new durable items) or when an ack frees
//! room in the window, it reads the queue after the cursor and pushes. Items leave storage
//! only on `Ack` (or when they expire); a broken connection leaves them queued for the
//! next session.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hotline_protocol::{close_code, ClientFrame, FrameError, ServerFrame, PROTOCOL_VERSION};
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::cmd;
use crate::sessions::{Kick, SessionSignals};
use crate::store::StoredItem;

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

/// One client's session.
pub struct Session {
    broker: Arc<Broker>,
    out: mpsc::Sender<ServerFrame>,
    state: State,
    /// A frame read ahead while batching sends, handled next.
    stashed: Option<ClientFrame>,
}

type Inbound = mpsc::Receiver<Result<ClientFrame, FrameError>>;

/// Most sends routed in one plugin call.
const MAX_SEND_BATCH: usize = 64;

impl Session {
    pub fn new(broker: Arc<Broker>, out: mpsc::Sender<ServerFrame>) -> Session {
        Session { broker, out, state: State::New, stashed: None }
    }

    /// Runs until the client leaves, breaks the protocol or is kicked.
    pub async fn run(mut self, mut inbound: Inbound, hello_timeout: Duration) -> Close {
        let close = self.run_inner(&mut inbound, hello_timeout).await;
        if let State::Online(online) = &self.state {
            self.broker.sessions.unregister(&online.phone, online.signals.id);
        }
        close
    }

    async fn run_inner(&mut self, inbound: &mut Inbound, hello_timeout: Duration) -> Close {
        let hello_deadline = tokio::time::sleep(hello_timeout);
        tokio::pin!(hello_deadline);
        loop {
            if let Some(frame) = self.stashed.take() {
                if let Err(close) = self.handle(frame, inbound).await {
                    return close;
                }
                continue;
            }
            let step = match &mut self.state {
                State::Online(online) => {
                    tokio::select! {
                        frame = inbound.recv() => Step::Frame(frame),
                        () = online.signals.wake.notified() => Step::Wake,
                        kick = online.signals.kick.recv() => Step::Kicked(kick),
                    }
                }
                State::New => {
                    tokio::select! {
                        frame = inbound.recv() => Step::Frame(frame),
                        () = &mut hello_deadline => Step::HelloTimeout,
                    }
                }
                State::Anonymous => Step::Frame(inbound.recv().await),
            };
            let result = match step {
                Step::Frame(None) => return Close::new(close_code::NORMAL, "bye"),
                Step::Frame(Some(Err(e))) => return Close::from_frame_error(&e),
                Step::Frame(Some(Ok(frame))) => self.handle(frame, inbound).await,
                Step::Wake => self.push().await,
                Step::Kicked(Some(kick)) => return kick.into(),
                Step::Kicked(None) => return Close::new(close_code::SESSION_REPLACED, "session removed"),
                Step::HelloTimeout => return Close::new(close_code::TIMEOUT, "no Hello in time"),
            };
            if let Err(close) = result {
                return close;
            }
        }
    }

    async fn handle(&mut self, frame: ClientFrame, inbound: &mut Inbound) -> Result<(), Close> {
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
                    tracing::error!(error = %e, "ack failed");
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

    /// Sends `first` together with every `Send` already waiting behind it: one router call
    /// for the batch, commits submitted in order, each answered once durable.
    async fn send(&mut self, inbound: &mut Inbound, first: cmd::send::Outgoing) -> Result<(), Close> {
        let State::Online(online) = &self.state else { return Ok(()) };
        let mut batch = vec![first];
        while batch.len() < MAX_SEND_BATCH {
            match inbound.try_recv() {
                Ok(Ok(ClientFrame::Send { client_id, to, body })) => batch.push(cmd::send::Outgoing { client_id, to, body }),
                Ok(Ok(other)) => {
                    self.stashed = Some(other);
                    break;
                }
                Ok(Err(e)) => {
                    // Answer what we have first; the bad frame closes the session after.
                    let close = Close::from_frame_error(&e);
                    self.submit_sends(online.phone.clone(), batch).await?;
                    return Err(close);
                }
                Err(_) => break,
            }
        }
        let phone = online.phone.clone();
        self.submit_sends(phone, batch).await
    }

    async fn submit_sends(&self, phone: String, batch: Vec<cmd::send::Outgoing>) -> Result<(), Close> {
        for submitted in cmd::send::send(&self.broker, &phone, batch).await {
            match submitted {
                cmd::send::Submitted::Pending { client_id, pending } => {
                    // Answer once durable, without holding up the frames behind it.
                    let out = self.out.clone();
                    tokio::spawn(async move {
                        let _ = out.send(cmd::send::outcome(client_id, pending.wait().await)).await;
                    });
                }
                cmd::send::Submitted::Refused(frame) => self.reply(frame).await?,
            }
        }
        Ok(())
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

    /// Pushes queued items after the cursor while the window has room.
    async fn push(&mut self) -> Result<(), Close> {
        let State::Online(online) = &mut self.state else { return Ok(()) };
        let window = self.broker.limits.delivery_window;
        while online.in_flight.len() < window {
            let room = window - online.in_flight.len();
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
                if self.out.send(frame_for(id, item)).await.is_err() {
                    return Err(Close::new(close_code::NORMAL, "writer closed"));
                }
            }
        }
        Ok(())
    }

    async fn reply(&self, frame: ServerFrame) -> Result<(), Close> {
        self.out.send(frame).await.map_err(|_| Close::new(close_code::NORMAL, "writer closed"))
    }
}

enum Step {
    Frame(Option<Result<ClientFrame, FrameError>>),
    Wake,
    Kicked(Option<Kick>),
    HelloTimeout,
}

fn unexpected(frame: &ClientFrame, when: &str) -> Close {
    let name = format!("{frame:?}");
    let name = name.split([' ', '{']).next().unwrap_or("frame");
    Close::new(close_code::UNEXPECTED_FRAME, format!("{name} is not allowed {when}"))
}

fn frame_for(id: u64, item: StoredItem) -> ServerFrame {
    match item {
        StoredItem::Message { from, sent_at_ms, body } => ServerFrame::Message { id, from, sent_at_ms, body },
        StoredItem::Receipt { message_id, by, status, at_ms } => {
            ServerFrame::Receipt { id, message_id, by, status, at_ms }
        }
    }
}
