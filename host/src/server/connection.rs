//! One QUIC connection: a reader task turning stream bytes into frames, a writer task
//! turning frames into stream bytes, and the session in between.

use std::sync::Arc;
use std::time::Duration;

use hotline_protocol::{close_code, encode, ClientFrame, FrameDecoder, FrameError, ServerFrame};
use tokio::sync::mpsc;

use super::session::{Close, Session};
use crate::broker::Broker;

/// How long a client has to open its stream, and then again to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames decoded but not yet handled; the reader stops reading when it is full.
const INBOUND_CAPACITY: usize = 64;
/// Frames waiting to be written: the session's mailbox.
const OUTBOUND_CAPACITY: usize = 512;

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
    let (in_tx, in_rx) = mpsc::channel(INBOUND_CAPACITY);
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let reader = tokio::spawn(read_frames(recv, in_tx));
    let writer = tokio::spawn(write_frames(send, out_rx));

    let close = Session::new(broker, out_tx).run(in_rx, HELLO_TIMEOUT).await;
    reader.abort();
    if close.code == close_code::NORMAL {
        // Let queued answers reach the client before the connection goes.
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    } else {
        tracing::info!(%remote, code = close.code, reason = %close.reason, "closing connection");
    }
    conn.close(close.code.into(), close.reason.as_bytes());
}

/// Reads frames into `frames` until the stream ends or is broken. A decoding error is
/// passed on as the last item.
async fn read_frames(mut recv: quinn::RecvStream, frames: mpsc::Sender<Result<ClientFrame, FrameError>>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => return,
        };
        decoder.extend(&buf[..n]);
        loop {
            match decoder.next_frame::<ClientFrame>() {
                Ok(Some(frame)) => {
                    if frames.send(Ok(frame)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = frames.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}

/// Writes frames from the session's mailbox until it closes, then finishes the stream.
async fn write_frames(mut send: quinn::SendStream, mut frames: mpsc::Receiver<ServerFrame>) {
    while let Some(frame) = frames.recv().await {
        if send.write_all(&encode(&frame)).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

impl Close {
    pub(super) fn from_frame_error(e: &FrameError) -> Close {
        let code = match e {
            FrameError::TooLarge(_) => close_code::FRAME_TOO_LARGE,
            FrameError::Malformed(_) => close_code::MALFORMED_FRAME,
        };
        Close { code, reason: e.to_string() }
    }
}
