//! The tail of every request, whichever front door served it: response headers the stack
//! owns (`x-request-id`, `RateLimit-*`, `x-skyport-cache`), metrics, one access-log line,
//! and one metering event for every authenticated request, served or refused.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body_util::Full;
use skyport_core::error::RateLimitInfo;
use skyport_core::metrics::{RequestLabels, RouteLabels, TenantLabel, TenantLabels};
use skyport_core::tenancy::TenantContext;
use skyport_domain::metering_tap::{method_label, ApiRequestEvent};

use super::request::{ConnInfo, X_REQUEST_ID};
use super::Stack;
use crate::api::problem;

const X_SKYPORT_CACHE: http::HeaderName = http::HeaderName::from_static("x-skyport-cache");

/// What the stack learned about a request on its way through.
pub(crate) struct Outcome {
    /// Route template (or EC2 action) for logs and metrics, never the raw path.
    pub(crate) route: &'static str,
    /// The caller, once authenticated and resolved.
    pub(crate) tenant: Option<TenantContext>,
    /// Rate-limit facts for the response headers.
    pub(crate) rate_limit: Option<RateLimitInfo>,
    /// `hit` or `miss` when the read cache was consulted.
    pub(crate) cache: Option<&'static str>,
}

/// What the tail needs of the request itself.
pub(crate) struct Received {
    pub(crate) request_id: String,
    pub(crate) method: Method,
    pub(crate) uri: http::Uri,
    /// Its body's declared length (`Content-Length`), when present and readable.
    pub(crate) declared: Option<u64>,
    /// When it arrived, on the stack clock's monotonic time.
    pub(crate) started: Duration,
}

/// Finishes `response`: headers, metrics, access log, metering.
pub(crate) fn finish(
    stack: &Stack,
    conn: &ConnInfo,
    received: Received,
    outcome: Outcome,
    mut response: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let Received {
        request_id,
        method,
        uri,
        declared,
        started,
    } = received;
    let bytes_in = declared.unwrap_or(0);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    if let Some(info) = &outcome.rate_limit {
        if !headers.contains_key(problem::RATELIMIT_LIMIT) {
            problem::insert_rate_limit_headers(headers, info);
        }
    }
    if let Some(cache) = outcome.cache {
        headers.insert(X_SKYPORT_CACHE, HeaderValue::from_static(cache));
    }

    let status = response.status().as_u16();
    let elapsed = stack.clock.monotonic().saturating_sub(started);
    let bytes_out = hyper::body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    let tenant_label = match &outcome.tenant {
        Some(ctx) => Arc::clone(&ctx.tenant),
        None => Arc::clone(&stack.metrics.no_tenant),
    };
    let metrics = &stack.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: outcome.route,
            status,
            tenant: TenantLabel(Arc::clone(&tenant_label)),
        })
        .inc();
    metrics
        .request_seconds
        .get_or_create(&RouteLabels {
            route: outcome.route,
        })
        .observe(elapsed.as_secs_f64());
    if outcome.rate_limit.is_some_and(|r| r.retry_after.is_some()) {
        metrics
            .rate_limited
            .get_or_create(&TenantLabels {
                tenant: TenantLabel(Arc::clone(&tenant_label)),
            })
            .inc();
    }
    tracing::info!(
        target: "access",
        request_id = %request_id,
        peer = %conn.peer,
        method = %method,
        path = %crate::api::failure_log::clip(uri.path()),
        route = outcome.route,
        status,
        tenant = &*tenant_label,
        identity = outcome.tenant.as_ref().map(|t| t.source.as_str()).unwrap_or("-"),
        cache = outcome.cache.unwrap_or("-"),
        bytes_in,
        bytes_out,
        micros = elapsed.as_micros() as u64,
    );
    if let Some(ctx) = outcome.tenant {
        let now = stack.clock.wall();
        stack.tap.record(ApiRequestEvent {
            time: now,
            tenant: ctx.tenant,
            department: ctx.department,
            identity_source: ctx.source.as_str(),
            route: outcome.route,
            method: method_label(&method),
            status,
            bytes_in,
            bytes_out,
        });
    }
    response
}
