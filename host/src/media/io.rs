//! A connection's byte stream with a write deadline: a write (or flush) that makes no
//! progress for [`WriteDeadline`]'s limit fails with `TimedOut`, which ends the
//! connection. So a client that stops reading a download lets its connection go instead
//! of holding it (and its file) until TCP gives up.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` whose writes must make progress within `limit`.
pub struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    /// Running while a write waits; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub fn new(inner: T, limit: Duration) -> WriteDeadline<T> {
        WriteDeadline { inner, limit, stalled: None }
    }

    /// `Pending` from the inner stream: start (or check) the deadline.
    fn wait<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, format!("the client read nothing for {} s", limit.as_secs()))))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.wait(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.wait(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.wait(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_limit_and_reads_go_on() {
        let limit = Duration::from_millis(400);
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stream = WriteDeadline::new(near, limit);
        let mut got = [0; 1024];
        // Progress resets the deadline: a write that waits less than the limit each time is
        // fine, however long they take together.
        for _ in 0..3 {
            stream.write_all(&[1; 1024]).await.unwrap();
            let writing = tokio::spawn(async move {
                stream.write_all(&[2; 1024]).await.map(|()| stream)
            });
            tokio::time::sleep(limit / 2).await;
            far.read_exact(&mut got).await.unwrap();
            stream = writing.await.unwrap().unwrap();
            far.read_exact(&mut got).await.unwrap();
        }
        far.write_all(b"hi").await.unwrap();
        let mut two = [0; 2];
        stream.read_exact(&mut two).await.unwrap();
        // The far side stops reading: the buffer fills and the next write fails at the limit.
        stream.write_all(&[3; 1024]).await.unwrap();
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(limit * 10, stream.write_all(&[4; 1024])).await.expect("the stalled write ends").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
    }
}
