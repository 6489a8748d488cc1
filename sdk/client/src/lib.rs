//! `hotline-client`: an async client for the Hotline broker over QUIC.
//!
//! A [`Client`] owns one connection and its one stream. It is deliberately thin: frames in,
//! frames out, plus helpers for the request/answer steps (registration, login). Delivery
//! is the caller's loop over [`Client::next_frame`], acknowledging what it has accepted.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hotline_client::ClientError> {
//! use hotline_client::{Client, ConnectOptions};
//! let mut client = Client::connect(&ConnectOptions::local("hotline-data/tls/cert.pem")).await?;
//! client.login("+15551230001", "key-from-registration").await?;
//! let client_id = client.send("+15551230002", b"hello".to_vec()).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hotline_protocol::{
    encode, ClientFrame, ErrorCode, FrameDecoder, FrameError, ServerFrame, ALPN, PROTOCOL_VERSION,
};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// UDP address of the broker.
    pub server: SocketAddr,
    /// PEM file of the certificate (or CA) to trust.
    pub ca: PathBuf,
    /// Name the certificate must carry (`localhost` for the development certificate).
    pub server_name: String,
}

impl ConnectOptions {
    /// The defaults: 127.0.0.1:4433, server name `localhost`, trusting `ca`.
    pub fn local(ca: impl Into<PathBuf>) -> Self {
        ConnectOptions { server: "127.0.0.1:4433".parse().unwrap(), ca: ca.into(), server_name: "localhost".into() }
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
    /// The connection was lost without an application close (time-out, reset).
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

/// One connection to the broker.
pub struct Client {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl Client {
    /// Connects, opens the stream and negotiates the protocol version.
    pub async fn connect(opts: &ConnectOptions) -> Result<Client, ClientError> {
        let mut client = Client::connect_raw(opts).await?;
        client.send_frame(&ClientFrame::Hello { min_version: PROTOCOL_VERSION, max_version: PROTOCOL_VERSION }).await?;
        match client.next_frame().await? {
            ServerFrame::Welcome { .. } => Ok(client),
            other => Err(ClientError::Protocol(format!("expected Welcome, got {other:?}"))),
        }
    }

    /// Connects and opens the stream without saying `Hello`: for tests and probes that
    /// want to speak the protocol (or break it) by hand.
    pub async fn connect_raw(opts: &ConnectOptions) -> Result<Client, ClientError> {
        let connect_err = |detail: String| ClientError::Connect { server: opts.server, detail };
        let bind: SocketAddr = if opts.server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_err(e.to_string()))?;
        endpoint.set_default_client_config(client_config(&opts.ca)?);
        let conn = endpoint
            .connect(opts.server, &opts.server_name)
            .map_err(|e| connect_err(e.to_string()))?
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let (send, recv) = conn.open_bi().await.map_err(|e| connect_err(e.to_string()))?;
        Ok(Client { endpoint, conn, send, recv, decoder: FrameDecoder::new(), buf: vec![0; 16 * 1024] })
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
        let client_id = rand::random();
        self.send_with_id(client_id, to, body).await?;
        Ok(client_id)
    }

    /// Sends a message with a chosen client id (use the same id to retry safely).
    pub async fn send_with_id(&mut self, client_id: u64, to: &str, body: Vec<u8>) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Send { client_id, to: to.into(), body }).await
    }

    /// Acknowledges item `id`: the broker deletes it.
    pub async fn ack(&mut self, id: u64) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Ack { id }).await
    }

    /// Reports message `id` from `from` as read.
    pub async fn read(&mut self, id: u64, from: &str) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Read { id, from: from.into() }).await
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
        self.write_raw(&encode(frame)).await
    }

    /// Writes bytes as they are, framed or not (for tests of malformed input).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match self.send.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.close_error().await),
        }
    }

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
            match self.recv.read(&mut self.buf).await {
                Ok(Some(n)) => self.decoder.extend(&self.buf[..n]),
                Ok(None) | Err(_) => return Err(self.close_error().await),
            }
        }
    }

    /// [`Client::next_frame`] with a time limit.
    pub async fn next_frame_within(&mut self, limit: Duration) -> Result<ServerFrame, ClientError> {
        tokio::time::timeout(limit, self.next_frame()).await.map_err(|_| ClientError::Timeout)?
    }

    /// The next frame, turning an `Error` frame into [`ClientError::Refused`].
    async fn next_answer(&mut self) -> Result<ServerFrame, ClientError> {
        match self.next_frame().await? {
            ServerFrame::Error { error, reason } => Err(ClientError::Refused { error, reason }),
            frame => Ok(frame),
        }
    }

    /// Why the connection ended, waiting briefly for the broker's close to arrive.
    async fn close_error(&self) -> ClientError {
        let reason = tokio::time::timeout(Duration::from_secs(5), self.conn.closed()).await;
        match reason {
            Ok(quinn::ConnectionError::ApplicationClosed(close)) => ClientError::Closed {
                code: close.error_code.into_inner() as u32,
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            Ok(other) => ClientError::Lost(other.to_string()),
            Err(_) => ClientError::Lost("stream ended but the connection stayed open".into()),
        }
    }

    /// Whether the broker has closed the connection (and with what), without waiting.
    pub fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.conn.close_reason()
    }

    /// Ends the session cleanly: finishes the stream so the broker handles everything sent
    /// so far (acks included), waits for it to close, then releases the socket.
    pub async fn close(mut self) {
        let _ = self.send.finish();
        let drain = async {
            while self.next_frame().await.is_ok() {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        self.conn.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
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
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(15)));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
