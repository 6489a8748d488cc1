//! The QUIC endpoint: TLS 1.3, ALPN `hotline/1`, one bidirectional stream per connection,
//! a UDP socket sized for bursts (see [`udp`](super::udp)), and a stateless-reset key kept
//! in the data folder.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use quinn::crypto::rustls::QuicServerConfig;

use super::udp::{self, BufferSizes, UdpStats};
use crate::broker::Broker;

/// Bytes quinn keeps toward one client, sent or not, until acknowledged (its default is
/// 10 MiB, which a client that never reads could make the broker hold).
const SEND_WINDOW: u64 = 2 << 20;
/// Bytes one client may send ahead of what the session has read (the stream and the
/// connection: one stream carries everything).
const RECEIVE_WINDOW: u32 = 1 << 20;

/// A bound QUIC endpoint serving the broker.
pub struct Listener {
    endpoint: quinn::Endpoint,
    broker: Arc<Broker>,
    udp: Arc<UdpStats>,
}

impl Listener {
    /// Binds `addr` with the given TLS config and socket buffer sizes, probing each
    /// connection's path MTU only with `mtu_discovery` (`udp.mtu_discovery`). The
    /// stateless-reset key is read from `reset_key` (made there on first start, see
    /// [`reset_key`]).
    pub fn bind(
        addr: SocketAddr,
        buffers: BufferSizes,
        mtu_discovery: bool,
        tls: rustls::ServerConfig,
        reset_key: &Path,
        broker: Arc<Broker>,
    ) -> Result<Listener> {
        let crypto = QuicServerConfig::try_from(tls).context("TLS config unusable for QUIC")?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        // One stream carries the whole session; nothing else may be opened.
        transport.max_concurrent_bidi_streams(1u32.into());
        transport.max_concurrent_uni_streams(0u32.into());
        let idle = Duration::from_secs(broker.limits.idle_timeout_secs);
        transport.max_idle_timeout(Some(idle.try_into().context("idle timeout too large")?));
        // What quinn buffers per connection, bounded whatever the client announces: unsent
        // and unacknowledged data toward the client, and data from it not yet read.
        transport.send_window(SEND_WINDOW);
        transport.stream_receive_window(RECEIVE_WINDOW.into());
        transport.receive_window(RECEIVE_WINDOW.into());
        if !mtu_discovery {
            transport.mtu_discovery_config(None);
        }
        config.transport_config(Arc::new(transport));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self::reset_key(reset_key)?);
        // Connection ids carry a keyed hash that the endpoint checks before answering a
        // packet for an unknown connection; with a key derived from the reset key, the ids
        // of the process before a restart pass that check and get their stateless reset.
        let cid_key = u64::from_le_bytes(ring::hmac::sign(&key, b"hotline connection ids").as_ref()[..8].try_into().unwrap());
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(key));
        endpoint_config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
        let (socket, udp) = udp::bind(addr, buffers).with_context(|| format!("binding UDP {addr}"))?;
        let endpoint = quinn::Endpoint::new(endpoint_config, Some(config), socket, Arc::new(quinn::TokioRuntime))
            .with_context(|| format!("serving QUIC on UDP {addr}"))?;
        Ok(Listener { endpoint, broker, udp: Arc::new(udp) })
    }

    /// The socket's buffer sizes and drop counter.
    pub fn udp_stats(&self) -> Arc<UdpStats> {
        self.udp.clone()
    }

    /// What `/metrics` reports of the transport: the socket, and the connections quinn holds.
    pub fn transport_stats(&self) -> Arc<TransportStats> {
        Arc::new(TransportStats { udp: self.udp.clone(), endpoint: self.endpoint.clone() })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Accepts connections until [`Listener::close`] is called.
    pub async fn run(&self) {
        while let Some(incoming) = self.endpoint.accept().await {
            let broker = self.broker.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => super::connection::serve(broker, conn).await,
                    Err(e) => tracing::debug!(error = %e, "handshake failed"),
                }
            });
        }
    }

    /// Closes every connection with `code` and `reason`, then waits for them to go away.
    pub async fn close(&self, code: u32, reason: &str) {
        self.endpoint.close(code.into(), reason.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
    }
}

/// The transport's figures for `/metrics`.
pub struct TransportStats {
    udp: Arc<UdpStats>,
    endpoint: quinn::Endpoint,
}

impl TransportStats {
    /// The UDP socket's buffer sizes and drop counter.
    pub fn udp(&self) -> &UdpStats {
        &self.udp
    }

    /// Connections the QUIC endpoint holds, closing ones included: a connection stays
    /// after its session ended until the close is through (QUIC's closing or draining
    /// period, three probe timeouts), with its buffers and keys.
    pub fn quic_connections(&self) -> usize {
        self.endpoint.open_connections()
    }
}

/// Length of the stateless-reset key file.
const RESET_KEY_LEN: usize = 32;

/// The QUIC stateless-reset key in `path`, made (32 random bytes, mode 0600) if the file
/// does not exist. A peer's packet for a connection this process does not know is answered
/// with a stateless reset whose token is derived from this key and the connection id; as
/// the key outlives the process, a broker restarted after a crash resets the connections
/// of the process before it at once, instead of leaving clients to time out.
pub fn reset_key(path: &Path) -> Result<[u8; RESET_KEY_LEN]> {
    let mut key = [0u8; RESET_KEY_LEN];
    match std::fs::read(path) {
        Ok(bytes) => {
            if bytes.len() != RESET_KEY_LEN {
                bail!(
                    "the QUIC reset key {} holds {} bytes instead of {RESET_KEY_LEN}; remove it and a new one is made at start",
                    path.display(),
                    bytes.len()
                );
            }
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            rand::fill(&mut key);
            let made = || -> std::io::Result<()> {
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                file.write_all(&key)?;
                file.sync_all()
            };
            made().with_context(|| format!("writing the QUIC reset key {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading the QUIC reset key {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_reset_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quic-reset-key");
        let first = reset_key(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(reset_key(&path).unwrap(), first, "a second start reads the same key");
        assert_ne!(first, [0u8; RESET_KEY_LEN]);
    }

    #[test]
    fn a_malformed_reset_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quic-reset-key");
        std::fs::write(&path, b"short").unwrap();
        let error = format!("{:#}", reset_key(&path).unwrap_err());
        assert!(error.contains("quic-reset-key") && error.contains("5 bytes instead of 32"), "{error}");
    }
}
