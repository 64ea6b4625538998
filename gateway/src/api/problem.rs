//! RFC 9457 `application/problem+json` rendering of [`GatewayError`] for the native and
//! admin APIs.

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::Full;

use skyport_core::error::{GatewayError, RateLimitInfo};

/// Problem documents' `type` URIs live under this base.
const TYPE_BASE: &str = "https://skyport.dev/problems/";

/// Renders `err` as a problem document for the request `request_id`.
pub fn problem_response(err: &GatewayError, request_id: &str) -> Response<Full<Bytes>> {
    let status = err.kind.status();
    let body = serde_json::json!({
        "type": format!("{TYPE_BASE}{}", err.kind.slug()),
        "title": err.kind.title(),
        "status": status.as_u16(),
        "detail": err.public,
        "request_id": request_id,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if err.kind == skyport_core::error::ErrorKind::Unauthenticated {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(info) = &err.rate_limit {
        insert_rate_limit_headers(headers, info);
    }
    response
}

/// `RateLimit-Limit`.
pub const RATELIMIT_LIMIT: header::HeaderName = header::HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const RATELIMIT_REMAINING: header::HeaderName =
    header::HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
pub const RATELIMIT_RESET: header::HeaderName = header::HeaderName::from_static("ratelimit-reset");

/// Writes `RateLimit-*` (and `Retry-After` when refused) headers.
pub fn insert_rate_limit_headers(headers: &mut http::HeaderMap, info: &RateLimitInfo) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(info.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(info.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(info.reset_secs));
    if let Some(wait) = info.retry_after {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
}
