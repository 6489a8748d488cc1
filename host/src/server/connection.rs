//! One QUIC connection: the session reading frames from the stream itself (its [`Inbox`]),
//! and a writer task turning the frames of its mailbox into stream bytes. The mailbox is
//! bounded in bytes (see [`mailbox`](super::mailbox)) and the inbox reads only when the
//! session asks (QUIC's receive window holds the rest), so what a connection holds in the
//! broker's memory is bounded whatever its client does.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hotline_protocol::{close_code, FrameDecoder};

use super::mailbox;
use super::session::{Inbound, Session};
use crate::broker::Broker;
use crate::connections::KICK_REASON;
use crate::metrics::{self, Metrics};

/// How long a client has to open its stream, and then again to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Encoded frames waiting to be written: the session's mailbox. A client that does not read
/// fills it (behind QUIC's own send window) and then holds up only its own session.
const OUTBOUND_FRAMES: usize = 512;
const OUTBOUND_BYTES: usize = 1 << 20;
/// How long queued answers may take to reach a client that said goodbye.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one connection until it closes. It is listed in the broker's connection
/// registry meanwhile, and counted: opened, bytes both ways, closed by close code.
pub async fn serve(broker: Arc<Broker>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let handle = broker.connections.open(remote);
    let metrics = broker.metrics.clone();
    metrics::inc(&metrics.connections_opened);
    let (send, recv) = tokio::select! {
        streams = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()) => match streams {
            Ok(Ok(streams)) => streams,
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "connection closed before opening a stream");
                metrics.connection_closed(None);
                return;
            }
            Err(_) => {
                conn.close(close_code::TIMEOUT.into(), b"no stream opened in time");
                metrics.connection_closed(Some(close_code::TIMEOUT));
                return;
            }
        },
        () = handle.kicked() => {
            conn.close(close_code::NORMAL.into(), KICK_REASON.as_bytes());
            metrics.connection_closed(Some(close_code::NORMAL));
            return;
        }
    };
    let inbox = Inbox::new(recv, metrics.clone(), broker.gauges.inbound_bytes.clone());
    let (out_tx, out_rx) =
        mailbox::channel(OUTBOUND_FRAMES, OUTBOUND_BYTES, broker.gauges.mailbox_bytes.clone(), handle.mailbox());
    let writer = tokio::spawn(write_frames(send, out_rx, metrics.clone()));

    let (close, phone) = Session::new(broker, out_tx, &handle).run(inbox, HELLO_TIMEOUT).await;
    let phone = phone.as_deref().unwrap_or("-");
    if close.code == close_code::NORMAL {
        tracing::debug!(%remote, phone, reason = %close.reason, "closing connection");
    } else {
        tracing::info!(%remote, phone, code = close.code, reason = %close.reason, "closing connection");
    }
    // Let queued answers (to the frames before a goodbye or a protocol error) reach the
    // client before the connection goes: the session is gone, so its mailbox is closed and
    // the writer finishes the stream and waits for the client to have it.
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
    // A connection the client closed itself (with its own code) counts under the session's
    // close; one that timed out, was reset or failed never got a close code: it is lost.
    let lost = matches!(conn.close_reason(), Some(reason) if !matches!(reason, quinn::ConnectionError::ApplicationClosed(_)));
    conn.close(close.code.into(), close.reason.as_bytes());
    // Unlisted before it is counted closed, so the two figures agree for a reader.
    drop(handle);
    metrics.connection_closed((!lost).then_some(close.code));
}

/// The client's stream as the session reads it: quinn's received chunks, decoded in place
/// (no task and no channel between them). Reading only when the session asks is the
/// backpressure: what the client sends beyond waits in quinn's receive window (1 MiB).
pub struct Inbox {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    metrics: Arc<Metrics>,
    /// Bytes received and not yet part of a frame handed to the session, all connections.
    gauge: Arc<AtomicU64>,
    /// What this inbox added to `gauge`.
    counted: u64,
    /// Set once the last item (a bad frame, a truncated one, or the end) was handed out.
    ended: bool,
}

impl Inbox {
    fn new(recv: quinn::RecvStream, metrics: Arc<Metrics>, gauge: Arc<AtomicU64>) -> Inbox {
        Inbox { recv, decoder: FrameDecoder::new(), metrics, gauge, counted: 0, ended: false }
    }

    /// The next frame, or the error that ends the stream; `None` once it has ended (or the
    /// connection is gone). Cancel-safe: a frame is taken from the buffer only when it is
    /// returned, and a chunk only when it is in the buffer.
    pub async fn recv(&mut self) -> Option<Inbound> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// A frame (or the end) already received, in the buffer or in quinn's, without waiting.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        // A read that would wait is dropped unfinished, which takes nothing; the next
        // `recv` registers its own waker again.
        match self.poll_recv(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            if let Some(item) = self.decoded() {
                return Poll::Ready(item);
            }
            let read = {
                let mut read = std::pin::pin!(self.recv.read_chunk(usize::MAX, true));
                std::task::ready!(read.as_mut().poll(cx))
            };
            match read {
                Ok(Some(chunk)) => self.take(&chunk.bytes),
                Ok(None) => {
                    self.ended = true;
                    let partial = self.decoder.buffered();
                    return Poll::Ready((partial > 0).then_some(Inbound::Truncated(partial)));
                }
                // Reset by the client or the connection is gone: nothing more to read.
                Err(_) => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
            }
        }
    }

    /// Bytes from the client, into the decoder.
    fn take(&mut self, bytes: &[u8]) {
        self.metrics.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.decoder.extend(bytes);
        self.count();
    }

    /// What the buffer holds: `Some(item)` to hand out (`Some(None)`: the end), `None`
    /// when more bytes are needed.
    fn decoded(&mut self) -> Option<Option<Inbound>> {
        if self.ended {
            return Some(None);
        }
        let item = match self.decoder.next_frame() {
            Ok(Some(frame)) => Some(Inbound::Frame(frame, Instant::now())),
            Ok(None) => return None,
            Err(e) => {
                self.ended = true;
                Some(Inbound::Bad(e))
            }
        };
        self.count();
        Some(item)
    }

    /// Keeps `gauge` at what the decoder holds.
    fn count(&mut self) {
        let now = self.decoder.buffered() as u64;
        if now == self.counted {
            return;
        }
        if now > self.counted {
            self.gauge.fetch_add(now - self.counted, Ordering::Relaxed);
        } else {
            self.gauge.fetch_sub(self.counted - now, Ordering::Relaxed);
        }
        self.counted = now;
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.gauge.fetch_sub(self.counted, Ordering::Relaxed);
    }
}

/// Writes encoded frames from the session's mailbox until it closes, then finishes the
/// stream and waits until the client has acknowledged all of it (so the close that follows
/// does not overtake it). Ends early, even while idle, if the client stops reading
/// (STOP_SENDING) or the connection goes; the session notices (its mailbox is closed) and
/// ends too.
async fn write_frames(mut send: quinn::SendStream, mut frames: mailbox::Receiver<Vec<u8>>, metrics: Arc<Metrics>) {
    let stopped = send.stopped();
    tokio::pin!(stopped);
    loop {
        let next = tokio::select! {
            next = frames.recv() => next,
            _ = &mut stopped => return,
        };
        let Some(bytes) = next else { break };
        if send.write_all(&bytes).await.is_err() {
            return;
        }
        metrics.bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    if send.finish().is_ok() {
        let _ = stopped.await;
    }
}
