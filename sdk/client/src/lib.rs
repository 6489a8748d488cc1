//! `hotline-client`: an async client for the Hotline broker over QUIC.
//!
//! A [`Client`] owns one connection and its one stream. It is deliberately thin: frames in,
//! frames out, plus helpers for the request/answer steps (registration, login). Delivery
//! is the caller's loop over [`Client::next_frame`], acknowledging what it has accepted.
//! [`Client::split`] gives a [`ClientSender`] and a [`ClientReceiver`] for two tasks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hotline_client::ClientError> {
//! use hotline_client::{Client, ConnectOptions};
//! let mut client = Client::connect(&ConnectOptions::local("hotline-data/tls/cert.pem")).await?;
//! client.login("+15551230001", "key-from-registration").await?;
//! let client_id = client.send("+15551230002", b"hello".to_vec()).await?;
//! # Ok(()) }
//! ```

pub mod media;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hotline_protocol::{
    close_code, encode, ClientFrame, ErrorCode, FrameDecoder, FrameError, MessageKind, ServerFrame, ALPN, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};

/// How often a connection that has heard nothing from the broker sends a keep-alive (a
/// QUIC PING), by default.
///
/// 2 s: after a broker restart the client's next packet reaches the new process within
/// about this long, and the new process answers it with a stateless reset (it keeps its
/// reset key across restarts), so the client learns within a few seconds of the broker's
/// return that its connection is gone. Two small packets every 2 s is a light load on a
/// connection that is otherwise idle; a battery-bound client may choose a longer interval.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// How long a connection may go without hearing from the broker before the client
/// declares it dead (the QUIC idle timeout), by default.
///
/// 10 s: five keep-alive intervals, so a few lost packets do not end a healthy connection,
/// but a broker that is gone (and does not come back to reset the connection) is noticed
/// within 10 s rather than the 30 s of QUIC's usual default. The broker has its own idle
/// timeout (`limits.idle_timeout_secs`); the shorter of the two applies.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// UDP address of the broker.
    pub server: SocketAddr,
    /// PEM file of the certificate (or CA) to trust.
    pub ca: PathBuf,
    /// Name the certificate must carry (`localhost` for the development certificate).
    pub server_name: String,
    /// Keep-alive interval: a PING is sent after this long without hearing from the
    /// broker. Default [`DEFAULT_KEEP_ALIVE`].
    pub keep_alive: Duration,
    /// Idle timeout: the connection is declared lost after this long without hearing from
    /// the broker. Keep it several times `keep_alive`. Default [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// The protocol versions offered in `Hello` (`min_version`, `max_version`). Default
    /// [`MIN_PROTOCOL_VERSION`]`..=`[`PROTOCOL_VERSION`] (1 to 4); the broker answers the
    /// highest it speaks, which [`Client::version`] reports. A client that cannot handle
    /// `ErrorCode::QueueFull` offers `(1, 1)`; one that wants `Message` frames rather than
    /// `TypedMessage` (and sends no [`Client::send_typed`]) offers at most 2; one that sets
    /// no push token ([`Client::set_push_token`]) may offer 3.
    pub versions: (u16, u16),
    /// Local address to bind the client's UDP socket to. Default: any address of the
    /// server's family, any port. Not used with a shared [`ConnectOptions::endpoint`].
    pub bind: Option<SocketAddr>,
    /// The endpoint (UDP socket and its driver) to connect through. None (the default): a
    /// new one for this connection, released by [`Client::close`], as an app has. Many
    /// connections may share one (a load generator simulating many devices does): each
    /// endpoint costs a socket, a task and a receive buffer of a few MiB.
    pub endpoint: Option<quinn::Endpoint>,
    /// The QUIC and TLS settings, from [`client_config`]. None (the default): made from
    /// `ca` at every connect. Made once and kept, it spares reading and parsing `ca` each
    /// time, and its TLS session store keeps the tickets the broker sends, so the next
    /// connect with it resumes the TLS session (no certificate to send, sign or verify).
    /// Its transport settings are replaced by `keep_alive`, `idle_timeout` and
    /// `mtu_discovery`.
    pub config: Option<quinn::ClientConfig>,
    /// Whether the connection probes for datagrams larger than QUIC's 1,200 bytes (path
    /// MTU discovery, up to 1,452). Default off: the probes and their acknowledgements are
    /// about a quarter of a login's datagrams, and chat frames are small; turn it on for a
    /// long-lived connection that sends large bodies.
    pub mtu_discovery: bool,
}

impl ConnectOptions {
    /// The defaults: 127.0.0.1:4433, server name `localhost`, trusting `ca`, keep-alive
    /// [`DEFAULT_KEEP_ALIVE`], idle timeout [`DEFAULT_IDLE_TIMEOUT`].
    pub fn local(ca: impl Into<PathBuf>) -> Self {
        ConnectOptions::new("127.0.0.1:4433".parse().unwrap(), ca)
    }

    /// Connects to `server` trusting `ca`, with the other defaults of [`ConnectOptions::local`].
    pub fn new(server: SocketAddr, ca: impl Into<PathBuf>) -> Self {
        ConnectOptions {
            server,
            ca: ca.into(),
            server_name: "localhost".into(),
            keep_alive: DEFAULT_KEEP_ALIVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            versions: (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION),
            bind: None,
            endpoint: None,
            config: None,
            mtu_discovery: false,
        }
    }
}

/// What went wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file could not be read or holds no certificate.
    #[error("cannot use CA file {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
    /// The QUIC connection could not be set up.
    #[error("cannot connect to {server}: {detail}")]
    Connect { server: SocketAddr, detail: String },
    /// The broker closed the connection with a `close_code` and a reason.
    #[error("connection closed by the broker (code {code}): {reason}")]
    Closed { code: u32, reason: String },
    /// The connection was lost without an application close: the broker reset it (a
    /// restarted broker does so to the connections of the process before it), or it went
    /// silent for the idle timeout.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The broker sent bytes that are not a valid frame, or an unexpected frame.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered a request with an error.
    #[error("{error:?}: {reason}")]
    Refused { error: ErrorCode, reason: String },
    /// Nothing arrived within the time allowed.
    #[error("timed out")]
    Timeout,
}

/// A message pushed to this client, whichever frame brought it: `TypedMessage` (protocol
/// version 3) or `Message` (versions 1 and 2, kind `Text`). Acknowledge it by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue item's id: acknowledge it with [`Client::ack`]; receipts name it.
    pub id: u64,
    /// The sender's number.
    pub from: String,
    /// When the broker accepted it, in Unix milliseconds.
    pub sent_at_ms: u64,
    /// What it carries, as its sender declared it (`Text` for a plain `Send`, and for
    /// every message in a session of version 1 or 2).
    pub kind: MessageKind,
    pub body: Vec<u8>,
}

impl ReceivedMessage {
    /// The message a `Message` or `TypedMessage` frame pushes; any other frame back.
    pub fn from_frame(frame: ServerFrame) -> Result<ReceivedMessage, ServerFrame> {
        match frame {
            ServerFrame::TypedMessage { id, from, sent_at_ms, kind, body } => Ok(ReceivedMessage { id, from, sent_at_ms, kind, body }),
            ServerFrame::Message { id, from, sent_at_ms, body } => {
                Ok(ReceivedMessage { id, from, sent_at_ms, kind: MessageKind::Text, body })
            }
            other => Err(other),
        }
    }
}

/// One connection to the broker: a [`ClientSender`] and a [`ClientReceiver`] together.
/// [`Client::split`] separates them for two tasks.
pub struct Client {
    tx: ClientSender,
    rx: ClientReceiver,
}

/// The sending half of a connection: writes frames. From [`Client::split`].
pub struct ClientSender {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    /// The negotiated protocol version (0: none, see [`Client::version`]).
    version: u16,
}

/// The receiving half of a connection: reads frames. From [`Client::split`].
pub struct ClientReceiver {
    endpoint: quinn::Endpoint,
    /// Whether the endpoint was made for this connection (not [`ConnectOptions::endpoint`]).
    own_endpoint: bool,
    conn: quinn::Connection,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl Client {
    /// Connects, opens the stream and negotiates the protocol version.
    pub async fn connect(opts: &ConnectOptions) -> Result<Client, ClientError> {
        let mut client = Client::connect_raw(opts).await?;
        let (min_version, max_version) = opts.versions;
        client.send_frame(&ClientFrame::Hello { min_version, max_version }).await?;
        client.welcomed(opts).await?;
        Ok(client)
    }

    /// Connects and logs in with one exchange: `Hello` and `Login` leave in one write,
    /// without waiting for `Welcome` (the broker handles frames in order), which saves a
    /// round trip and the datagrams of one exchange per connect. Queued items are pushed
    /// right after `LoggedIn`, as after [`Client::login`].
    pub async fn connect_and_login(opts: &ConnectOptions, phone: &str, key: &str) -> Result<Client, ClientError> {
        let mut client = Client::connect_raw(opts).await?;
        let (min_version, max_version) = opts.versions;
        let mut bytes = encode(&ClientFrame::Hello { min_version, max_version });
        bytes.extend_from_slice(&encode(&ClientFrame::Login { phone: phone.into(), key: key.into() }));
        client.write_raw(&bytes).await?;
        client.welcomed(opts).await?;
        match client.next_answer().await? {
            ServerFrame::LoggedIn { .. } => Ok(client),
            other => Err(unexpected(other)),
        }
    }

    /// Reads the broker's `Welcome` and keeps the version it chose.
    async fn welcomed(&mut self, opts: &ConnectOptions) -> Result<(), ClientError> {
        let (min_version, max_version) = opts.versions;
        match self.next_frame().await? {
            ServerFrame::Welcome { version } if (min_version..=max_version).contains(&version) => {
                self.tx.version = version;
                Ok(())
            }
            ServerFrame::Welcome { version } => Err(ClientError::Protocol(format!(
                "the broker chose protocol version {version}, outside the offered {min_version} to {max_version}"
            ))),
            other => Err(ClientError::Protocol(format!("expected Welcome, got {other:?}"))),
        }
    }

    /// The protocol version agreed with the broker (`Welcome`'s), or 0 for a client from
    /// [`Client::connect_raw`], which negotiates nothing itself.
    pub fn version(&self) -> u16 {
        self.tx.version
    }

    /// Connects and opens the stream without saying `Hello`: for tests and probes that
    /// want to speak the protocol (or break it) by hand.
    pub async fn connect_raw(opts: &ConnectOptions) -> Result<Client, ClientError> {
        let connect_err = |detail: String| ClientError::Connect { server: opts.server, detail };
        let endpoint = match &opts.endpoint {
            Some(shared) => shared.clone(),
            None => {
                let any: SocketAddr = if opts.server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
                let bind = opts.bind.unwrap_or(any);
                own_endpoint(bind).map_err(|e| connect_err(e.to_string()))?
            }
        };
        let mut config = match &opts.config {
            Some(config) => config.clone(),
            None => client_config(&opts.ca)?,
        };
        config.transport_config(Arc::new(transport_config(opts.keep_alive, opts.idle_timeout, opts.mtu_discovery).map_err(connect_err)?));
        let conn = endpoint
            .connect_with(config, opts.server, &opts.server_name)
            .map_err(|e| connect_err(e.to_string()))?
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let (send, recv) = conn.open_bi().await.map_err(|e| connect_err(e.to_string()))?;
        let own_endpoint = opts.endpoint.is_none();
        Ok(Client {
            tx: ClientSender { endpoint: endpoint.clone(), conn: conn.clone(), send, version: 0 },
            rx: ClientReceiver { endpoint, own_endpoint, conn, recv, decoder: FrameDecoder::new() },
        })
    }

    /// Separates the connection into a sending and a receiving half, for a client that
    /// writes from one task while another reads. A client that sends many frames without
    /// reading the answers needs this: the broker stops reading while its answers to that
    /// client are not read, so a single task that only writes would wait forever.
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        (self.tx, self.rx)
    }

    /// Puts the halves of one connection back together (e.g. to [`Client::close`] it).
    /// Fails if they belong to different connections.
    pub fn reunite(tx: ClientSender, rx: ClientReceiver) -> Result<Client, ClientError> {
        if tx.conn.stable_id() != rx.conn.stable_id() {
            return Err(ClientError::Protocol("the two halves belong to different connections".into()));
        }
        Ok(Client { tx, rx })
    }

    /// Asks for a registration code by SMS. Returns its validity in seconds.
    pub async fn request_code(&mut self, phone: &str) -> Result<u32, ClientError> {
        self.send_frame(&ClientFrame::RequestCode { phone: phone.into() }).await?;
        match self.next_answer().await? {
            ServerFrame::CodeSent { expires_in_secs, .. } => Ok(expires_in_secs),
            other => Err(unexpected(other)),
        }
    }

    /// Sends the code back; returns the new secret key (shown once, keep it).
    pub async fn verify(&mut self, phone: &str, code: &str) -> Result<String, ClientError> {
        self.send_frame(&ClientFrame::Verify { phone: phone.into(), code: code.into() }).await?;
        match self.next_answer().await? {
            ServerFrame::Registered { key, .. } => Ok(key),
            other => Err(unexpected(other)),
        }
    }

    /// Authenticates. Queued items are pushed right after; read them with [`Client::next_frame`].
    pub async fn login(&mut self, phone: &str, key: &str) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Login { phone: phone.into(), key: key.into() }).await?;
        match self.next_answer().await? {
            ServerFrame::LoggedIn { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a message with a fresh random client id, which it returns. The broker answers
    /// `Sent` or `SendFailed` with that client id later.
    pub async fn send(&mut self, to: &str, body: Vec<u8>) -> Result<u64, ClientError> {
        self.tx.send(to, body).await
    }

    /// Sends a message with a chosen client id (use the same id to retry safely).
    pub async fn send_with_id(&mut self, client_id: u64, to: &str, body: Vec<u8>) -> Result<(), ClientError> {
        self.tx.send_with_id(client_id, to, body).await
    }

    /// Sends a message of `kind` (`SendTyped`, protocol version 3) with a fresh random
    /// client id, which it returns; answered like [`Client::send`]. Refused here, sending
    /// nothing, in a session of an older version (the broker would close it).
    pub async fn send_typed(&mut self, to: &str, kind: MessageKind, body: Vec<u8>) -> Result<u64, ClientError> {
        self.tx.send_typed(to, kind, body).await
    }

    /// [`Client::send_typed`] with a chosen client id (use the same id to retry safely).
    pub async fn send_typed_with_id(&mut self, client_id: u64, to: &str, kind: MessageKind, body: Vec<u8>) -> Result<(), ClientError> {
        self.tx.send_typed_with_id(client_id, to, kind, body).await
    }

    /// Sets this device's push token (`SetPushToken`, protocol version 4; after
    /// [`Client::login`]), where the operator's push gateway can wake the device while it is
    /// not connected; the empty string removes it. Waits for `PushTokenSet` (the token is
    /// stored durably) and returns the frames pushed meanwhile (messages, receipts), for the
    /// caller to handle. The broker's `Error` (a token over 4096 bytes or with a control
    /// character, not logged in) is [`ClientError::Refused`]. Refused here, sending nothing,
    /// in a session of an older version (the broker would close it).
    pub async fn set_push_token(&mut self, token: &str) -> Result<Vec<ServerFrame>, ClientError> {
        self.tx.set_push_token(token).await?;
        let mut other = Vec::new();
        loop {
            match self.next_frame().await? {
                ServerFrame::PushTokenSet => return Ok(other),
                ServerFrame::Error { error, reason } => return Err(ClientError::Refused { error, reason }),
                frame => other.push(frame),
            }
        }
    }

    /// Acknowledges item `id`: the broker deletes it. `Ack` has no answer; see [`Client::close`].
    pub async fn ack(&mut self, id: u64) -> Result<(), ClientError> {
        self.tx.ack(id).await
    }

    /// Reports message `id` from `from` as read.
    pub async fn read(&mut self, id: u64, from: &str) -> Result<(), ClientError> {
        self.tx.read(id, from).await
    }

    /// Sends a command to the plugin in `slot` and waits for its answer. Frames that arrive
    /// meanwhile (messages, receipts) are returned too, so the caller can handle them.
    pub async fn command(
        &mut self,
        slot: &str,
        name: &str,
        args: Vec<String>,
    ) -> Result<(Result<String, String>, Vec<ServerFrame>), ClientError> {
        let request_id: u64 = rand::random();
        self.send_frame(&ClientFrame::Command { request_id, slot: slot.into(), name: name.into(), args }).await?;
        let mut other = Vec::new();
        loop {
            match self.next_frame().await? {
                ServerFrame::CommandResult { request_id: r, ok, output } if r == request_id => {
                    return Ok((if ok { Ok(output) } else { Err(output) }, other));
                }
                frame => other.push(frame),
            }
        }
    }

    /// Writes one frame.
    pub async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.tx.send_frame(frame).await
    }

    /// Writes bytes as they are, framed or not (for tests of malformed input).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.tx.write_raw(bytes).await
    }

    /// The next frame from the broker, whatever it is.
    pub async fn next_frame(&mut self) -> Result<ServerFrame, ClientError> {
        self.rx.next_frame().await
    }

    /// [`Client::next_frame`] with a time limit.
    pub async fn next_frame_within(&mut self, limit: Duration) -> Result<ServerFrame, ClientError> {
        self.rx.next_frame_within(limit).await
    }

    /// The next frame, turning an `Error` frame into [`ClientError::Refused`].
    async fn next_answer(&mut self) -> Result<ServerFrame, ClientError> {
        match self.next_frame().await? {
            ServerFrame::Error { error, reason } => Err(ClientError::Refused { error, reason }),
            frame => Ok(frame),
        }
    }

    /// Whether the broker has closed the connection (and with what), without waiting.
    pub fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.rx.close_reason()
    }

    /// The QUIC connection's counters so far (datagrams and bytes each way, frames, path
    /// figures), for benchmarks and diagnostics.
    pub fn stats(&self) -> quinn::ConnectionStats {
        self.rx.conn.stats()
    }

    /// Ends the session cleanly: finishes the stream, so the broker handles everything sent
    /// so far (acks included: `Ack` has no answer, and this is how a client knows they were
    /// applied), waits for the broker to close the connection, then releases the socket (an
    /// endpoint given in [`ConnectOptions::endpoint`] stays open, and sends the close).
    pub async fn close(self) {
        let _ = self.close_checked().await;
    }

    /// [`Client::close`], saying how the broker ended the session: `Ok` when it closed
    /// normally (every frame sent was handled and its acks applied), else the broker's close
    /// ([`ClientError::Closed`]: e.g. code 8, storage unavailable, when its last acks could
    /// not be applied), a lost connection, or [`ClientError::Timeout`] when it did not close
    /// within 5 s. Frames still arriving meanwhile are dropped.
    pub async fn close_checked(mut self) -> Result<(), ClientError> {
        self.tx.finish();
        let drain = async {
            loop {
                if let Err(e) = self.rx.next_frame().await {
                    return e;
                }
            }
        };
        let ended = tokio::time::timeout(Duration::from_secs(5), drain).await;
        self.rx.conn.close(0u32.into(), b"bye");
        if self.rx.own_endpoint {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.rx.endpoint.wait_idle()).await;
        }
        match ended {
            Ok(ClientError::Closed { code: close_code::NORMAL, .. }) => Ok(()),
            Ok(e) => Err(e),
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

impl ClientSender {
    /// The protocol version agreed with the broker (see [`Client::version`]).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Sends a message with a fresh random client id, which it returns.
    pub async fn send(&mut self, to: &str, body: Vec<u8>) -> Result<u64, ClientError> {
        let client_id = rand::random();
        self.send_with_id(client_id, to, body).await?;
        Ok(client_id)
    }

    /// Sends a message with a chosen client id (use the same id to retry safely).
    pub async fn send_with_id(&mut self, client_id: u64, to: &str, body: Vec<u8>) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Send { client_id, to: to.into(), body }).await
    }

    /// Sends a message of `kind` with a fresh random client id, which it returns.
    pub async fn send_typed(&mut self, to: &str, kind: MessageKind, body: Vec<u8>) -> Result<u64, ClientError> {
        let client_id = rand::random();
        self.send_typed_with_id(client_id, to, kind, body).await?;
        Ok(client_id)
    }

    /// Sends a message of `kind` with a chosen client id. Needs a session of protocol
    /// version 3 or later: refused with [`ClientError::Protocol`] otherwise.
    pub async fn send_typed_with_id(&mut self, client_id: u64, to: &str, kind: MessageKind, body: Vec<u8>) -> Result<(), ClientError> {
        self.send_in_version(&ClientFrame::SendTyped { client_id, to: to.into(), kind, body }).await
    }

    /// Sends `SetPushToken` (its answer, `PushTokenSet` or `Error`, comes in request order).
    /// Needs a session of protocol version 4 or later: refused with [`ClientError::Protocol`]
    /// otherwise.
    pub async fn set_push_token(&mut self, token: &str) -> Result<(), ClientError> {
        self.send_in_version(&ClientFrame::SetPushToken { token: token.into() }).await
    }

    /// Writes `frame` if it exists in the session's protocol version.
    async fn send_in_version(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        if self.version != 0 && self.version < frame.since_version() {
            return Err(ClientError::Protocol(format!(
                "{} needs protocol version {}; this session speaks version {}",
                frame.name(),
                frame.since_version(),
                self.version
            )));
        }
        self.send_frame(frame).await
    }

    /// Acknowledges item `id`: the broker deletes it.
    pub async fn ack(&mut self, id: u64) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Ack { id }).await
    }

    /// Reports message `id` from `from` as read.
    pub async fn read(&mut self, id: u64, from: &str) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Read { id, from: from.into() }).await
    }

    /// Writes one frame.
    pub async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.write_raw(&encode(frame)).await
    }

    /// Writes bytes as they are, framed or not (for tests of malformed input).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match self.send.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(_) => Err(close_error(&self.conn).await),
        }
    }

    /// Says that no more frames follow (finishes the stream). The broker handles every
    /// frame sent before, then closes the connection; the [`ClientReceiver`] sees that close.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    /// The endpoint this connection uses (kept alive by either half).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }
}

impl ClientReceiver {
    /// The next frame from the broker, whatever it is.
    pub async fn next_frame(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            match self.decoder.next_frame::<ServerFrame>() {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e @ (FrameError::TooLarge(_) | FrameError::Malformed(_))) => {
                    return Err(ClientError::Protocol(e.to_string()))
                }
            }
            match self.recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => self.decoder.extend(&chunk.bytes),
                Ok(None) | Err(_) => return Err(close_error(&self.conn).await),
            }
        }
    }

    /// [`ClientReceiver::next_frame`] with a time limit.
    pub async fn next_frame_within(&mut self, limit: Duration) -> Result<ServerFrame, ClientError> {
        tokio::time::timeout(limit, self.next_frame()).await.map_err(|_| ClientError::Timeout)?
    }

    /// Whether the broker has closed the connection (and with what), without waiting.
    pub fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.conn.close_reason()
    }

    /// The endpoint this connection uses (kept alive by either half).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }
}

/// Why the connection ended, waiting briefly for the broker's close to arrive.
async fn close_error(conn: &quinn::Connection) -> ClientError {
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
        Ok(error) => connection_error(error),
        Err(_) => ClientError::Lost("stream ended but the connection stayed open".into()),
    }
}

/// A QUIC connection error in the client's words.
fn connection_error(error: quinn::ConnectionError) -> ClientError {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => ClientError::Closed {
            code: close.error_code.into_inner() as u32,
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        quinn::ConnectionError::Reset => ClientError::Lost("the broker reset the connection (restarted?)".into()),
        quinn::ConnectionError::TimedOut => {
            ClientError::Lost("nothing heard from the broker within the idle timeout".into())
        }
        other => ClientError::Lost(other.to_string()),
    }
}

fn unexpected(frame: ServerFrame) -> ClientError {
    ClientError::Protocol(format!("unexpected answer {frame:?}"))
}

/// A QUIC client config trusting the certificates in `ca`, with ALPN `hotline/1`.
pub fn client_config(ca: &Path) -> Result<quinn::ClientConfig, ClientError> {
    let ca_err = |detail: String| ClientError::Ca { path: ca.to_path_buf(), detail };
    let pem = std::fs::read(ca).map_err(|e| ca_err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.map_err(|e| ca_err(e.to_string()))?).map_err(|e| ca_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_err("no certificate in file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ca_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| ca_err(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let transport = transport_config(DEFAULT_KEEP_ALIVE, DEFAULT_IDLE_TIMEOUT, false).expect("the defaults are valid");
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// QUIC transport settings with the given keep-alive interval and idle timeout, and path
/// MTU discovery only if asked for.
/// A client endpoint for this connection alone. Its connection ids are empty: with one
/// connection per socket the endpoint tells packets apart by the broker's address, and the
/// ids a client issues only serve to tell connections apart. With none, a login saves the
/// exchange that issues and retires them (the client's four `NEW_CONNECTION_ID` frames,
/// the broker switching to one of them and asking for a replacement: two or three
/// datagrams), and the broker issues the client one spare id instead of four. A shared
/// [`ConnectOptions::endpoint`] keeps quinn's 8-byte ids.
fn own_endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime found"))?;
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(|| Box::new(NoConnectionIds));
    quinn::Endpoint::new(config, None, socket, runtime)
}

/// Connection ids of length zero (see [`own_endpoint`]).
struct NoConnectionIds;

impl quinn::ConnectionIdGenerator for NoConnectionIds {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&[])
    }

    fn cid_len(&self) -> usize {
        0
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

fn transport_config(keep_alive: Duration, idle_timeout: Duration, mtu_discovery: bool) -> Result<quinn::TransportConfig, String> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(keep_alive));
    let idle = quinn::IdleTimeout::try_from(idle_timeout).map_err(|_| format!("idle timeout {idle_timeout:?} is too large"))?;
    transport.max_idle_timeout(Some(idle));
    if !mtu_discovery {
        transport.mtu_discovery_config(None);
    }
    Ok(transport)
}
