//! One QUIC connection: a reader task turning stream bytes into frames, a writer task
//! turning frames into stream bytes, and the session in between. Both channels between
//! them are bounded in bytes (see [`mailbox`](super::mailbox)), so what a connection holds
//! in the broker's memory is bounded whatever its client does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotline_protocol::{close_code, FrameDecoder};

use super::mailbox;
use super::session::{Inbound, Session};
use crate::broker::Broker;
use crate::connections::KICK_REASON;
use crate::metrics::{self, Metrics};

/// How long a client has to open its stream, and then again to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames decoded but not yet handled; the reader stops reading when either bound is hit
/// (and QUIC flow control then stops the client).
const INBOUND_FRAMES: usize = 64;
const INBOUND_BYTES: usize = 1 << 20;
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
    let (in_tx, in_rx) = mailbox::channel(INBOUND_FRAMES, INBOUND_BYTES, broker.gauges.inbound_bytes.clone(), Arc::default());
    let (out_tx, out_rx) =
        mailbox::channel(OUTBOUND_FRAMES, OUTBOUND_BYTES, broker.gauges.mailbox_bytes.clone(), handle.mailbox());
    let reader = tokio::spawn(read_frames(recv, in_tx, metrics.clone()));
    let writer = tokio::spawn(write_frames(send, out_rx, metrics.clone()));

    let (close, phone) = Session::new(broker, out_tx, &handle).run(in_rx, HELLO_TIMEOUT).await;
    reader.abort();
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

/// Reads frames into `frames` until the stream ends or is broken. A decoding error, or a
/// stream that ends inside a frame, is passed on as the last item.
async fn read_frames(mut recv: quinn::RecvStream, frames: mailbox::Sender<Inbound>, metrics: Arc<Metrics>) {
    let mut decoder = FrameDecoder::new();
    loop {
        // quinn's own buffers, as received: no read buffer per connection, and one copy
        // fewer (into the decoder only).
        let chunk = match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => {
                if decoder.buffered() > 0 {
                    let _ = frames.send(Inbound::Truncated(decoder.buffered()), 0).await;
                }
                return;
            }
            // Reset by the client or the connection is gone: nothing more to read.
            Err(_) => return,
        };
        metrics.bytes_in.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        decoder.extend(&chunk);
        loop {
            let before = decoder.buffered();
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if frames.send(Inbound::Frame(frame, Instant::now()), before - decoder.buffered()).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = frames.send(Inbound::Bad(e), 0).await;
                    return;
                }
            }
        }
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
