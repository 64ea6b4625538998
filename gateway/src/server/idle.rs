//! Idle connections end. A connection is idle while no request is in flight on it; once it
//! has been idle for the idle timeout it reads as closed, so hyper ends it: for HTTP/1
//! between requests (where hyper's header timeout does not reach) and HTTP/2 (which hyper
//! never times out) alike. Idleness is counted from the last request's start or end, not
//! from the last byte: HTTP/2 pings and their answers move bytes on a connection that
//! serves nothing. This also ends a TLS connection that never sends a request and an
//! HTTP/2 connection that stops half way through its preface.
//!
//! Writes that make no progress for the same time fail (`TimedOut`): a client that sends
//! requests and never reads the answers cannot hold its connection by filling the
//! buffers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    /// Since `opened`, in milliseconds: the end of the last request (a request's start
    /// needs no time: while one is in flight the connection is not idle).
    last_change_ms: AtomicU64,
    opened: Instant,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            count: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            opened: Instant::now(),
        }
    }
}

/// One request counted in [`InFlight`] until dropped.
pub(crate) struct Serving(Arc<InFlight>);

impl InFlight {
    /// Counts a request until the returned guard is dropped.
    pub(crate) fn serving(self: &Arc<Self>) -> Serving {
        self.count.fetch_add(1, Ordering::SeqCst);
        Serving(Arc::clone(self))
    }

    fn changed(&self) {
        let ms = Instant::now().duration_since(self.opened).as_millis() as u64;
        self.last_change_ms.fetch_max(ms, Ordering::SeqCst);
    }

    fn busy(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// When the connection became idle (the last change), if it is.
    fn idle_since(&self) -> Option<Instant> {
        (!self.busy()).then(|| {
            self.opened + Duration::from_millis(self.last_change_ms.load(Ordering::SeqCst))
        })
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Stamped before the count falls, so that an idle connection's time is never one
        // from before its last request.
        self.0.changed();
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's stream that reads as closed once it has been idle for `idle`, and whose
/// writes fail once they make no progress for `idle`.
pub(crate) struct IdleTimeoutIo<T> {
    inner: T,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    /// Whether the last write attempt was left pending (the write timer runs only then).
    write_stalled: bool,
    in_flight: Arc<InFlight>,
}

impl<T> IdleTimeoutIo<T> {
    /// `inner`, idle after `idle` with nothing in `in_flight`.
    pub(crate) fn new(inner: T, idle: Duration, in_flight: Arc<InFlight>) -> Self {
        Self {
            inner,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            write_timer: Box::pin(tokio::time::sleep(idle)),
            write_stalled: false,
            in_flight,
        }
    }

    /// Whether the connection has been idle for the idle timeout; otherwise the idle
    /// timer is set to when it could be, and polled (so this task is woken then).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.idle_timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            match self.in_flight.idle_since() {
                Some(since) if now >= since + self.idle => return true,
                Some(since) => self.idle_timer.as_mut().reset(since + self.idle),
                // Serving: looked at again one idle period from now.
                None => self.idle_timer.as_mut().reset(now + self.idle),
            }
        }
    }

    /// After a write attempt: progress restarts the stall clock; a pending write fails
    /// once it has stalled for the idle timeout.
    fn after_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match result {
            Poll::Pending => {
                if !self.write_stalled {
                    self.write_stalled = true;
                    let deadline = Instant::now() + self.idle;
                    self.write_timer.as_mut().reset(deadline);
                }
                match self.write_timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client has read nothing for the idle timeout",
                    ))),
                }
            }
            ready => {
                self.write_stalled = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeoutIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => Poll::Ready(result),
            // Idle: the end of the stream, which hyper answers by closing.
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
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
        self.after_write(cx, written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        self.after_write(cx, flushed)
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
        self.after_write(cx, written)
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
        // ...and once none is, idle time from the request's end ends it.
        let ended = Instant::now();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        let waited = Instant::now() - ended;
        assert!(
            waited >= Duration::from_secs(60) && waited <= Duration::from_secs(61),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_move_without_a_request_do_not_keep_it_open() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let in_flight = Arc::new(InFlight::default());
        let mut io = IdleTimeoutIo::new(ours, Duration::from_secs(60), in_flight);
        let pinger = tokio::spawn(async move {
            // A ping every 20 s, as an HTTP/2 peer answers the server's pings.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if theirs.write_all(b"p").await.is_err() {
                    return;
                }
            }
        });
        let mut buf = [0u8; 16];
        let started = Instant::now();
        while io.read(&mut buf).await.unwrap() > 0 {}
        let waited = Instant::now() - started;
        assert!(waited <= Duration::from_secs(61), "{waited:?}");
        pinger.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_reads_fails_after_the_idle_time() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut io = IdleTimeoutIo::new(ours, Duration::from_secs(60), Arc::default());
        let started = Instant::now();
        let mut failed = None;
        for _ in 0..10 {
            if let Err(e) = io.write_all(&[0u8; 64]).await {
                failed = Some(e);
                break;
            }
        }
        let failed = failed.expect("the write fails");
        assert_eq!(failed.kind(), std::io::ErrorKind::TimedOut);
        assert!(Instant::now() - started <= Duration::from_secs(61));
    }
}
