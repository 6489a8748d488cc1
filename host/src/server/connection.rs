//! One QUIC connection: a reader task turning stream bytes into frames, a writer task
//! turning frames into stream bytes, and the session in between. Both channels between
//! them are bounded in bytes (see [`mailbox`](super::mailbox)), so what a connection holds
//! in the broker's memory is bounded whatever its client does.

use std::sync::Arc;
use std::time::Duration;

use hotline_protocol::{close_code, FrameDecoder};

use super::mailbox;
use super::session::{Inbound, Session};
use crate::broker::Broker;

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

/// Serves one connection until it closes.
pub async fn serve(broker: Arc<Broker>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let (send, recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "connection closed before opening a stream");
            return;
        }
        Err(_) => {
            conn.close(close_code::TIMEOUT.into(), b"no stream opened in time");
            return;
        }
    };
    let (in_tx, in_rx) = mailbox::channel(INBOUND_FRAMES, INBOUND_BYTES, broker.gauges.inbound_bytes.clone());
    let (out_tx, out_rx) = mailbox::channel(OUTBOUND_FRAMES, OUTBOUND_BYTES, broker.gauges.mailbox_bytes.clone());
    let reader = tokio::spawn(read_frames(recv, in_tx));
    let writer = tokio::spawn(write_frames(send, out_rx));

    let (close, phone) = Session::new(broker, out_tx).run(in_rx, HELLO_TIMEOUT).await;
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
    conn.close(close.code.into(), close.reason.as_bytes());
}

/// Reads frames into `frames` until the stream ends or is broken. A decoding error, or a
/// stream that ends inside a frame, is passed on as the last item.
async fn read_frames(mut recv: quinn::RecvStream, frames: mailbox::Sender<Inbound>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                if decoder.buffered() > 0 {
                    let _ = frames.send(Inbound::Truncated(decoder.buffered()), 0).await;
                }
                return;
            }
            // Reset by the client or the connection is gone: nothing more to read.
            Err(_) => return,
        };
        decoder.extend(&buf[..n]);
        loop {
            let before = decoder.buffered();
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if frames.send(Inbound::Frame(frame), before - decoder.buffered()).await.is_err() {
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
async fn write_frames(mut send: quinn::SendStream, mut frames: mailbox::Receiver<Vec<u8>>) {
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
    }
    if send.finish().is_ok() {
        let _ = stopped.await;
    }
}
