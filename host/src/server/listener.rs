//! The QUIC endpoint: TLS 1.3, ALPN `hotline/1`, one bidirectional stream per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use quinn::crypto::rustls::QuicServerConfig;

use crate::broker::Broker;

/// A bound QUIC endpoint serving the broker.
pub struct Listener {
    endpoint: quinn::Endpoint,
    broker: Arc<Broker>,
}

impl Listener {
    /// Binds `addr` with the given TLS config.
    pub fn bind(addr: SocketAddr, tls: rustls::ServerConfig, broker: Arc<Broker>) -> Result<Listener> {
        let crypto = QuicServerConfig::try_from(tls).context("TLS config unusable for QUIC")?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        // One stream carries the whole session; nothing else may be opened.
        transport.max_concurrent_bidi_streams(1u32.into());
        transport.max_concurrent_uni_streams(0u32.into());
        let idle = Duration::from_secs(broker.limits.idle_timeout_secs);
        transport.max_idle_timeout(Some(idle.try_into().context("idle timeout too large")?));
        config.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::server(config, addr).with_context(|| format!("binding UDP {addr}"))?;
        Ok(Listener { endpoint, broker })
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
