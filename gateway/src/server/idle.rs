//! Idle connections end: a connection with no request in flight whose bytes have not moved
//! for the idle timeout reads as closed, so hyper ends it, for HTTP/1 (between requests,
//! where hyper's header timeout does not reach) and HTTP/2 (which hyper never times out)
//! alike. This also ends a TLS connection that never sends a request and an HTTP/2
//! connection that stops half way through its preface.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests in flight on one connection.
#[derive(Debug, Default)]
pub(crate) struct InFlight(AtomicUsize);

/// One request counted in [`InFlight`] until dropped.
pub(crate) struct Serving(Arc<InFlight>);

impl InFlight {
    /// Counts a request until the returned guard is dropped.
    pub(crate) fn serving(self: &Arc<Self>) -> Serving {
        self.0.fetch_add(1, Ordering::SeqCst);
        Serving(Arc::clone(self))
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's stream that reads as closed once it has been idle for `idle`.
pub(crate) struct IdleTimeoutIo<T> {
    inner: T,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    in_flight: Arc<InFlight>,
}

impl<T> IdleTimeoutIo<T> {
    /// `inner`, idle after `idle` with nothing moving and nothing in `in_flight`.
    pub(crate) fn new(inner: T, idle: Duration, in_flight: Arc<InFlight>) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            in_flight,
        }
    }

    fn moved(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.idle);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeoutIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => loop {
                match self.timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    // Idle: the end of the stream, which hyper answers by closing.
                    Poll::Ready(()) if !self.in_flight.busy() => return Poll::Ready(Ok(())),
                    // A request is being served: idle time starts again after it.
                    Poll::Ready(()) => self.moved(),
                }
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeoutIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_reads_as_closed_unless_a_request_is_in_flight() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let in_flight = Arc::new(InFlight::default());
        let mut io = IdleTimeoutIo::new(ours, Duration::from_secs(60), Arc::clone(&in_flight));
        theirs.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).await.unwrap(), 3);
        // A request in flight keeps it open past the idle time...
        let serving = in_flight.serving();
        let read = tokio::time::timeout(Duration::from_secs(150), io.read(&mut buf)).await;
        assert!(read.is_err(), "still open while serving");
        drop(serving);
        // ...and once none is, idle time ends it.
        let started = Instant::now();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert!(Instant::now() - started <= Duration::from_secs(61));
    }
}
