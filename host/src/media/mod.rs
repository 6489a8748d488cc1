//! The media endpoint: HTTPS/1.1 on `media.listen` (default 127.0.0.1:4443) where registered
//! numbers upload files and download them by id (docs/protocol.md, "Media over HTTPS").
//! This module binds and serves it: TLS with the broker's certificate (the same
//! [`LiveCertificate`] as QUIC, so a reload covers both), one task per connection with
//! time limits, and the sweep that deletes expired uploads. `http.rs` has the routes,
//! `auth.rs` the credentials, `blobs.rs` the files, `io.rs` the write deadline; the records are in storage
//! ([`crate::store::MediaRecord`]).

mod auth;
mod blobs;
mod http;
mod io;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::HeaderMap;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use blobs::{BlobError, Blobs, Swept};

use crate::broker::{now_ms, Broker};
use crate::config::{Config, MediaConfig};
use crate::tls::LiveCertificate;

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 1024;
/// Uploads received at once; more are answered `503` with `Retry-After`.
const MAX_UPLOADS: usize = 64;
/// A client has this long for the TLS handshake…
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// …and this long for each request's headers (also the idle time of a kept-alive connection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that reads nothing of an answer for this long loses its connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the routes share.
pub struct Media {
    broker: Arc<Broker>,
    config: MediaConfig,
    blobs: Blobs,
    uploads: Arc<Semaphore>,
}

impl Media {
    /// The part of an upload's URL before `/media/<id>`: `media.public_url`, or `https://`
    /// and the request's `Host` (the listening address without one).
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
        match host {
            Some(host) => format!("https://{host}"),
            None => format!("https://{}", self.config.listen),
        }
    }
}

/// The bound media endpoint, ready to [`MediaServer::run`].
pub struct MediaServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    media: Arc<Media>,
}

impl MediaServer {
    /// Opens the media folder (deleting unfinished uploads of an earlier run), sweeps it
    /// once and binds `media.listen`. A port in use is an error naming the setting.
    pub async fn bind(config: &Config, broker: Arc<Broker>, certificate: Arc<LiveCertificate>) -> Result<MediaServer> {
        let blobs = Blobs::open(&config.media_dir()).context("opening the media folder")?;
        let swept = blobs.sweep(&broker.store, now_ms(), &broker.metrics.media).context("sweeping the media folder")?;
        if swept.expired + swept.files_deleted > 0 {
            tracing::info!(expired = swept.expired, files_deleted = swept.files_deleted, "media sweep at start");
        }
        let listener = TcpListener::bind(config.media.listen)
            .await
            .with_context(|| format!("binding the media endpoint media.listen = {} (--media)", config.media.listen))?;
        let tls = crate::tls::https_config(certificate)?;
        let media = Media { broker, config: config.media.clone(), blobs, uploads: Arc::new(Semaphore::new(MAX_UPLOADS)) };
        Ok(MediaServer { listener, acceptor: TlsAcceptor::from(Arc::new(tls)), media: Arc::new(media) })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until the task is aborted, and sweeps every `media.sweep_secs`.
    pub async fn run(self) {
        let sweeper = tokio::spawn(sweep_every(self.media.clone()));
        let _stop_sweeper = AbortOnDrop(sweeper);
        let app = http::router(self.media.clone());
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = connections.clone().acquire_owned().await else { return };
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "media endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, app) = (self.acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tcp.set_nodelay(true);
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "media endpoint: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "media endpoint: TLS handshake timed out");
                        return;
                    }
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(io::WriteDeadline::new(tls, WRITE_TIMEOUT)), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "media endpoint: connection ended");
                }
            });
        }
    }
}

/// Deletes expired uploads and unreferenced files every `media.sweep_secs`.
async fn sweep_every(media: Arc<Media>) {
    let every = Duration::from_secs(media.config.sweep_secs);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let media = media.clone();
        match tokio::task::spawn_blocking(move || media.blobs.sweep(&media.broker.store, now_ms(), &media.broker.metrics.media)).await {
            Ok(Ok(swept)) if swept.expired + swept.files_deleted > 0 => {
                tracing::info!(expired = swept.expired, files_deleted = swept.files_deleted, objects = swept.objects, "media sweep");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "media sweep failed"),
            Err(e) => tracing::error!(error = %e, "media sweep failed"),
        }
    }
}

/// Aborts the task when dropped (the sweeper stops with the server).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
