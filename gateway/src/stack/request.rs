//! What the stack reads of every request before any front door sees it: the connection's
//! verified identity, the request id, and the body (bounded); and what it removes: every
//! client-sent `x-skyport-*` header.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use skyport_auth::ServiceIdentity;
use skyport_core::error::ErrorKind;
use skyport_core::error::GatewayError;
use tokio::sync::Semaphore;

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

/// How request bodies are read: within a deadline, and within a budget of bytes being
/// read at once across every connection (so that many slow or large bodies cannot take
/// the gateway's memory).
pub struct BodyLimits {
    /// The budget, in KiB.
    budget: Arc<Semaphore>,
    /// Bodies being read at once per client address (at most [`BODIES_PER_PEER`]), so that
    /// one address holds at most part of the budget, also before anyone is authenticated.
    per_peer: PerKeyLimit<IpAddr>,
    /// Time allowed for reading one body.
    timeout: Duration,
}

/// How long a body waits for room in the budget before the request gets 503.
const BUDGET_WAIT: Duration = Duration::from_secs(2);
/// Request bodies one client address may have in reading at once.
pub const BODIES_PER_PEER: usize = 32;

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
    /// declared length says so), 408 when it does not arrive within the deadline, 503
    /// when the budget stays full.
    pub(crate) async fn read<B>(
        &self,
        peer: IpAddr,
        headers: &http::HeaderMap,
        body: B,
    ) -> Result<Bytes, GatewayError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let too_large = || {
            GatewayError::new(
                ErrorKind::PayloadTooLarge,
                format!("request body over {MAX_BODY_BYTES} bytes"),
            )
        };
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        if declared == Some(0) {
            return Ok(Bytes::new());
        }
        let _reading = self.per_peer.take(&peer).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unavailable,
                format!(
                    "{BODIES_PER_PEER} request bodies from your address are being read already; retry shortly"
                ),
            )
        })?;
        // Room for what it says it will send, or for the most it may send.
        let reserve = declared.map_or(MAX_BODY_BYTES, |n| n as usize);
        let kib = u32::try_from(reserve.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let _room = tokio::time::timeout(
            BUDGET_WAIT,
            Arc::clone(&self.budget).acquire_many_owned(kib),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unavailable,
                "the gateway is reading too many request bodies at once; retry shortly",
            )
        })?;
        let collected =
            tokio::time::timeout(self.timeout, Limited::new(body, MAX_BODY_BYTES).collect())
                .await
                .map_err(|_| {
                    GatewayError::new(
                        ErrorKind::RequestTimeout,
                        format!("the request body did not arrive within {:?}", self.timeout),
                    )
                })?;
        collected.map(|c| c.to_bytes()).map_err(|e| {
            if e.is::<LengthLimitError>() {
                too_large()
            } else {
                GatewayError::invalid("request body unreadable").with_cause(e)
            }
        })
    }
}

/// The request's `Content-Length`, 0 when absent or unreadable.
pub(crate) fn content_length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

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
