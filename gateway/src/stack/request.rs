//! What the stack reads of every request before any front door sees it: the connection's
//! verified identity, the request id, and the body (bounded); and what it removes: every
//! client-sent `x-skyport-*` header.

use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use skyport_auth::ServiceIdentity;
use skyport_core::error::ErrorKind;
use skyport_core::error::GatewayError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::per_key::PerKeyLimit;

/// Largest request body accepted by either front door.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `x-request-id`.
pub(crate) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// What the TLS layer learned about a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// Identity from a verified client certificate.
    pub identity: Option<ServiceIdentity>,
}

/// The client's `x-request-id` when it is sane (1-128 visible ASCII), else `generate()`.
pub(crate) fn request_id(headers: &http::HeaderMap, generate: impl FnOnce() -> String) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(generate)
}

/// Removes every `x-skyport-*` header: identity is never taken from a client's word.
pub(crate) fn strip_identity_headers(headers: &mut http::HeaderMap) {
    let spoofed: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-skyport-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// How much of a request body had arrived when it was first asked for
/// ([`BodyLimits::arrival`]).
pub(crate) enum Arrival<B> {
    /// All of it, with its head.
    Whole(Bytes),
    /// Still coming: the data that came first, if any, and the rest of the body.
    Coming {
        /// The first data, already taken from the body.
        first: Option<Bytes>,
        /// The body, from where the first data ended.
        rest: B,
    },
}

/// How request bodies are read: within a deadline, and within a budget of bytes being
/// read at once across every connection (so that many slow or large bodies cannot take
/// the gateway's memory).
pub struct BodyLimits {
    /// The budget, in KiB, charged as a body's bytes arrive.
    budget: Arc<Semaphore>,
    /// Bodies being read at once per client address (at most [`BODIES_PER_PEER`]), so that
    /// one address holds at most part of the budget, also before anyone is authenticated.
    per_peer: PerKeyLimit<IpAddr>,
    /// Time allowed for reading one body.
    timeout: Duration,
}

/// Bytes after which a body counts as streaming, and reserves the most it may send.
const STREAMING_BYTES: usize = 64 * 1024;
/// How long a body whose next bytes find no room in the budget waits for it before the
/// request gets 503.
const BUDGET_WAIT: Duration = Duration::from_secs(2);
/// Request bodies one client address may have in reading at once.
pub const BODIES_PER_PEER: usize = 32;
/// Longest an answer waits for the rest of a request body it did not read
/// ([`BodyLimits::drain_unread`]); the body deadline, when shorter, bounds it too.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

impl BodyLimits {
    /// At most `budget_bytes` of bodies in reading at once, each read within `timeout`.
    pub fn new(budget_bytes: usize, timeout: Duration) -> Self {
        Self {
            budget: Arc::new(Semaphore::new((budget_bytes / 1024).max(1))),
            per_peer: PerKeyLimit::new(BODIES_PER_PEER),
            timeout,
        }
    }

    /// A request body, whole, up to [`MAX_BODY_BYTES`]: 413 past it (at once when the
    /// `declared` length says so), 408 when it does not arrive within the deadline, 503
    /// when its bytes find no room in the budget within [`BUDGET_WAIT`].
    /// ([`BodyLimits::arrival`], then [`BodyLimits::finish`].)
    ///
    /// The budget is charged with the bytes that have arrived, not those announced: a body
    /// that trickles in holds only what it has sent, so slow bodies are ended by the
    /// deadline alone (one refusal each, not one every few seconds as they reconnect).
    pub(crate) async fn read<B>(
        &self,
        peer: IpAddr,
        declared: Option<u64>,
        body: B,
    ) -> Result<Bytes, GatewayError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let arrival = self.arrival(declared, body, true).await?;
        self.finish(peer, declared, arrival).await
    }

    /// How much of a body is here when it is first asked for (one look, no waiting, and
    /// none at all unless `look`: over HTTP/1.1 a look at the body of a request that
    /// expects `100 Continue` sends it): 413 at once when the `declared` length, or what
    /// came, is past [`MAX_BODY_BYTES`].
    ///
    /// A body that is all here (a small form comes with its head) is taken as it is: its
    /// bytes are in memory already, within the connection's read buffer or the stream's
    /// flow-control window, and it waits for nothing, so it takes no part of the budget,
    /// nor a place among its address's bodies in reading, and needs no timer.
    pub(crate) async fn arrival<B>(
        &self,
        declared: Option<u64>,
        mut body: B,
        look: bool,
    ) -> Result<Arrival<B>, GatewayError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        if declared == Some(0) {
            return Ok(Arrival::Whole(Bytes::new()));
        }
        if !look {
            return Ok(Arrival::Coming {
                first: None,
                rest: body,
            });
        }
        let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let first = match first {
            Poll::Pending => None,
            Poll::Ready(None) => return Ok(Arrival::Whole(Bytes::new())),
            Poll::Ready(Some(frame)) => {
                let data = frame.map_err(unreadable)?.into_data().unwrap_or_default();
                if data.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                if body.is_end_stream() {
                    return Ok(Arrival::Whole(data));
                }
                Some(data)
            }
        };
        Ok(Arrival::Coming { first, rest: body })
    }

    /// The whole body of `arrival`: as it is when it was all here; otherwise the rest is
    /// read within the deadline, the budget and its address's bodies in reading.
    pub(crate) async fn finish<B>(
        &self,
        peer: IpAddr,
        declared: Option<u64>,
        arrival: Arrival<B>,
    ) -> Result<Bytes, GatewayError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match arrival {
            Arrival::Whole(body) => Ok(body),
            // Boxed: reading the rest (deadline, budget) is a large future that every body
            // here whole would otherwise carry, and move.
            Arrival::Coming { first, rest } => {
                Box::pin(self.read_rest(peer, declared, first, rest)).await
            }
        }
    }

    /// [`BodyLimits::finish`] of a body not all here: `first`, its first data if any came,
    /// then the rest, within the deadline, the budget and its address's bodies in reading.
    async fn read_rest<B>(
        &self,
        peer: IpAddr,
        declared: Option<u64>,
        first: Option<Bytes>,
        body: B,
    ) -> Result<Bytes, GatewayError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let _reading = self.per_peer.take(&peer).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unavailable,
                format!(
                    "{BODIES_PER_PEER} request bodies from your address are being read already; retry shortly"
                ),
            )
        })?;
        let most = declared.map_or(MAX_BODY_BYTES, |n| n as usize);
        tokio::time::timeout(self.timeout, self.collect(first, body, most))
            .await
            .map_err(|_| {
                GatewayError::new(
                    ErrorKind::RequestTimeout,
                    format!("the request body did not arrive within {:?}", self.timeout),
                )
            })?
    }

    /// `first`, then every data frame of `body`, charged to the budget as it arrives: byte
    /// for byte while it trickles in, and for the `most` it may send once it has sent
    /// [`STREAMING_BYTES`]. A body that streams thus reserves the rest of itself at once
    /// and then reads to its end without waiting again, so bodies that all arrive fast
    /// finish one after another instead of each holding part of the budget while waiting
    /// for more; a body that trickles holds only what it has sent.
    async fn collect<B>(
        &self,
        first: Option<Bytes>,
        body: B,
        most: usize,
    ) -> Result<Bytes, GatewayError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut len = first.as_ref().map_or(0, Bytes::len);
        let mut body = std::pin::pin!(Limited::new(body, MAX_BODY_BYTES - len));
        let mut arrived = first;
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        self.charge(len, most, &mut held).await?;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.is::<LengthLimitError>() {
                    too_large()
                } else {
                    unreadable(e)
                }
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len();
            self.charge(len, most, &mut held).await?;
            // Most bodies arrive in one frame: a list is made only for a second.
            match arrived.take() {
                None if chunks.is_empty() => arrived = Some(data),
                earlier => chunks.extend(earlier.into_iter().chain([data])),
            }
        }
        // No frame at all concatenates to nothing, without allocating.
        Ok(arrived.unwrap_or_else(|| Bytes::from(chunks.concat())))
    }

    /// Charges the budget for a body that has sent `len` bytes of at most `most`, on top
    /// of what it `held` already: waits up to [`BUDGET_WAIT`] for room, then 503.
    async fn charge(
        &self,
        len: usize,
        most: usize,
        held: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), GatewayError> {
        let charged = if len >= STREAMING_BYTES {
            len.max(most)
        } else {
            len
        };
        let held_kib = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        let more = charged.div_ceil(1024).saturating_sub(held_kib);
        if more == 0 {
            return Ok(());
        }
        let full = || {
            GatewayError::new(
                ErrorKind::Unavailable,
                "the gateway is reading too many request bodies at once; retry shortly",
            )
        };
        let kib = u32::try_from(more).map_err(|_| full())?;
        // Room at once needs no timer; otherwise waiting for it is back-pressure: the
        // body's next bytes stay with the client (TCP, HTTP/2 flow control) until it is
        // read on or refused.
        let room = match Arc::clone(&self.budget).try_acquire_many_owned(kib) {
            Ok(room) => room,
            Err(_) => tokio::time::timeout(
                BUDGET_WAIT,
                Arc::clone(&self.budget).acquire_many_owned(kib),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(full)?,
        };
        match held.as_mut() {
            Some(permit) => permit.merge(room),
            None => *held = Some(room),
        }
        Ok(())
    }

    /// Reads to its end, and drops, the body of an HTTP/2 request that was answered
    /// without it (refused before its body: 401, 403, 429...; or a route that takes
    /// none), before the answer is sent: at most [`MAX_BODY_BYTES`] (none when the
    /// declared length is larger), for at most [`DRAIN_WAIT`] (or the body deadline when
    /// shorter); what is left then is left.
    ///
    /// Why: answered before its body ended, a stream is finished by h2 with `RST_STREAM`
    /// `NO_ERROR` (h2's `maybe_cancel`, when hyper drops the stream's last handle after
    /// sending the answer), as RFC 9113 §8.1 allows; but a client that had not sent all its
    /// body by then may take that for a failure: curl 7.x sends a small body after the
    /// headers, and fails with error 92 ("Stream error in the HTTP/2 framing layer")
    /// instead of showing the answer. Read first, the request is complete and the stream
    /// ends without a reset. HTTP/1.1 is left as it is: hyper reads what has arrived of an
    /// unread body and otherwise closes the connection after the answer, and reading the
    /// body would defeat `Expect: 100-continue`.
    pub(crate) async fn drain_unread<B>(
        &self,
        version: http::Version,
        declared: Option<u64>,
        body: B,
    ) where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if version != http::Version::HTTP_2
            || body.is_end_stream()
            || declared.is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return;
        }
        let mut body = std::pin::pin!(Limited::new(body, MAX_BODY_BYTES));
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(DRAIN_WAIT.min(self.timeout), drain).await;
    }
}

/// 400: a body that could not be read (the connection failed or broke the framing).
fn unreadable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> GatewayError {
    GatewayError::invalid("request body unreadable").with_cause(e.into())
}

/// 413: a body past [`MAX_BODY_BYTES`].
fn too_large() -> GatewayError {
    GatewayError::new(
        ErrorKind::PayloadTooLarge,
        format!("request body over {MAX_BODY_BYTES} bytes"),
    )
}

/// The request's `Content-Length`, when present and readable.
pub(crate) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    type Frame = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>;
    type Frames = futures::channel::mpsc::UnboundedSender<Frame>;
    type Streamed = http_body_util::StreamBody<futures::channel::mpsc::UnboundedReceiver<Frame>>;

    /// A body whose frames the test sends as it likes.
    fn streamed() -> (Frames, Streamed) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (tx, http_body_util::StreamBody::new(rx))
    }

    fn send(frames: &Frames, bytes: usize) {
        frames
            .unbounded_send(Ok(hyper::body::Frame::data(Bytes::from(vec![b'x'; bytes]))))
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_charged_with_the_bytes_that_arrived_not_those_announced() {
        let limits = Arc::new(BodyLimits::new(8 * 1024, Duration::from_secs(5)));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let announced = Some(1_000_000);
        // Slow bodies announcing a megabyte each hold only the byte each has sent.
        let mut slow = Vec::new();
        for _ in 0..4 {
            let (frames, body) = streamed();
            send(&frames, 1);
            let limits = Arc::clone(&limits);
            slow.push((
                frames,
                tokio::spawn(async move { limits.read(peer, announced, body).await }),
            ));
        }
        tokio::task::yield_now().await;
        // 4 KiB of room left: a body of 3 KiB fits, whole.
        let (frames, body) = streamed();
        send(&frames, 2048);
        send(&frames, 1024);
        drop(frames);
        let read = limits.read(peer, None, body).await.unwrap();
        assert_eq!(read.len(), 3072);
        // One whose bytes would go past the budget waits for room, then gets 503, mid-body.
        let (frames, body) = streamed();
        send(&frames, 4096);
        send(&frames, 1024);
        let refused = limits.read(peer, None, body).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Unavailable);
        // The slow ones end, and give back what they held.
        for (frames, reading) in slow {
            drop(frames);
            assert_eq!(reading.await.unwrap().unwrap().len(), 1);
        }
        let (frames, body) = streamed();
        send(&frames, 8 * 1024);
        drop(frames);
        assert_eq!(limits.read(peer, None, body).await.unwrap().len(), 8192);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_here_whole_is_taken_without_a_place_in_reading_or_the_budget() {
        let limits = Arc::new(BodyLimits::new(64 * 1024, Duration::from_secs(5)));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // The address holds its most of bodies in reading...
        let mut slow = Vec::new();
        for _ in 0..BODIES_PER_PEER {
            let (frames, body) = streamed();
            send(&frames, 1);
            let limits = Arc::clone(&limits);
            slow.push((
                frames,
                tokio::spawn(async move { limits.read(peer, None, body).await }),
            ));
        }
        tokio::task::yield_now().await;
        let (frames, body) = streamed();
        send(&frames, 1);
        let refused = limits.read(peer, None, body).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Unavailable, "{refused:?}");
        drop(frames);
        // ...and a body that is all here is still taken, as it came.
        let whole = http_body_util::Full::new(Bytes::from_static(b"Action=DescribeRegions"));
        let read = limits.read(peer, Some(22), whole).await.unwrap();
        assert_eq!(read, "Action=DescribeRegions");
        // One larger than the most a body may be is refused all the same.
        let huge = http_body_util::Full::new(Bytes::from(vec![b'x'; MAX_BODY_BYTES + 1]));
        let refused = limits.read(peer, None, huge).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::PayloadTooLarge);
        for (frames, reading) in slow {
            drop(frames);
            assert_eq!(reading.await.unwrap().unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn a_body_is_its_frames_in_order_whether_it_comes_in_none_one_or_several() {
        let limits = BodyLimits::new(8 * 1024, Duration::from_secs(5));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        for pieces in [
            &[][..],
            &["Action=DescribeRegions"],
            &["Act", "ion=", "Describe"],
        ] {
            let (frames, body) = streamed();
            for piece in pieces {
                let data = Bytes::copy_from_slice(piece.as_bytes());
                frames
                    .unbounded_send(Ok(hyper::body::Frame::data(data)))
                    .unwrap();
            }
            drop(frames);
            let read = limits.read(peer, None, body).await.unwrap();
            assert_eq!(read, pieces.concat().as_bytes(), "{pieces:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_that_arrive_fast_together_finish_instead_of_starving_each_other() {
        // Twelve bodies of 128 KiB, 1.5 MiB in all, through a budget of 1 MiB, their
        // frames interleaved: charged byte for byte to the end, every body would hold part
        // of the budget and wait for more until all get 503; a body that streams reserves
        // the rest of itself at once, so they finish one after another.
        let limits = Arc::new(BodyLimits::new(1 << 20, Duration::from_secs(30)));
        let declared = Some(131_072);
        let mut senders = Vec::new();
        let mut readers = Vec::new();
        for i in 0..12u8 {
            let (frames, body) = streamed();
            let limits = Arc::clone(&limits);
            let peer = IpAddr::from([127, 0, 0, i + 1]);
            senders.push(frames);
            readers.push(tokio::spawn(async move {
                limits.read(peer, declared, body).await
            }));
        }
        for _ in 0..8 {
            for frames in &senders {
                send(frames, 16 * 1024);
            }
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
        }
        drop(senders);
        for reader in readers {
            let body = reader.await.unwrap().expect("every body is read");
            assert_eq!(body.len(), 128 * 1024);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_within_the_deadline_gets_408() {
        let limits = BodyLimits::new(1 << 20, Duration::from_secs(30));
        let (frames, body) = streamed();
        send(&frames, 10);
        let late = limits
            .read("127.0.0.1".parse().unwrap(), None, body)
            .await
            .unwrap_err();
        assert_eq!(late.kind, ErrorKind::RequestTimeout);
        drop(frames);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unread_http2_body_is_read_to_its_end_within_bounds_before_the_answer() {
        let limits = Arc::new(BodyLimits::new(1 << 20, Duration::from_secs(30)));
        let h2 = http::Version::HTTP_2;
        // The rest of a body the client is still sending is waited for, to its end.
        let (frames, body) = streamed();
        send(&frames, 7);
        let start = tokio::time::Instant::now();
        let draining = tokio::spawn({
            let limits = Arc::clone(&limits);
            async move { limits.drain_unread(h2, Some(14), body).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!draining.is_finished(), "waits for the rest");
        send(&frames, 7);
        drop(frames);
        draining.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        // One that never ends is waited for DRAIN_WAIT, no longer.
        let (frames, body) = streamed();
        let start = tokio::time::Instant::now();
        limits.drain_unread(h2, None, body).await;
        assert_eq!(start.elapsed(), DRAIN_WAIT);
        drop(frames);
        // Past MAX_BODY_BYTES, reading stops at once.
        let (frames, body) = streamed();
        send(&frames, MAX_BODY_BYTES + 1);
        let start = tokio::time::Instant::now();
        limits.drain_unread(h2, None, body).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(frames);
        // Nothing is read of a body declared larger than that, nor over HTTP/1.1.
        for (version, declared) in [
            (h2, Some(MAX_BODY_BYTES as u64 + 1)),
            (http::Version::HTTP_11, Some(7)),
        ] {
            let (frames, body) = streamed();
            let start = tokio::time::Instant::now();
            limits.drain_unread(version, declared, body).await;
            assert_eq!(start.elapsed(), Duration::ZERO, "{version:?} {declared:?}");
            drop(frames);
        }
    }

    #[test]
    fn identity_headers_are_stripped() {
        let mut h = http::HeaderMap::new();
        h.insert("x-skyport-tenant", HeaderValue::from_static("acme"));
        h.insert("x-other", HeaderValue::from_static("kept"));
        strip_identity_headers(&mut h);
        assert!(h.get("x-skyport-tenant").is_none());
        assert!(h.get("x-other").is_some());
    }

    #[test]
    fn a_sane_client_request_id_is_kept_and_any_other_replaced() {
        let mut h = http::HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h, || "new".into()), "abc-123");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(request_id(&h, || "new".into()), "new");
        h.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        );
        assert_eq!(request_id(&h, || "new".into()), "new");
    }
}
