//! What the stack reads of every request before any front door sees it: the connection's
//! verified identity, the request id, and the body (bounded); and what it removes: every
//! client-sent `x-skyport-*` header.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use skyport_auth::ServiceIdentity;
use skyport_core::error::GatewayError;

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

/// A request body, whole, up to [`MAX_BODY_BYTES`].
pub(crate) async fn read_body<B>(body: B) -> Result<Bytes, GatewayError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            GatewayError::invalid(format!(
                "request body unreadable or over {MAX_BODY_BYTES} bytes"
            ))
            .with_cause(e)
        })
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
