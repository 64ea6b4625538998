//! One request, top to bottom. This file is the gateway's stack:
//!
//! 1. request id (`x-request-id`, generated when absent, echoed) and removal of every
//!    client-sent `x-skyport-*` header before anything reads them;
//! 2. route (404/405 for unknown paths and methods);
//! 3. authenticate (JWT or mTLS) -> tenant context;
//! 4. per-tenant rate limit (429 with `Retry-After` and `RateLimit-*`);
//! 5. admin check for `/admin/*`;
//! 6. read cache (GET, per tenant);
//! 7. handler;
//! 8. cache fill / tenant invalidation on writes;
//! 9. metering tap (`api.request`, every authenticated request, served or refused);
//! 10. access log line and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::api::{self, problem, Route, RouteMatch};
use crate::auth::{ServiceIdentity, TenantContext};
use crate::cache::CachedResponse;
use crate::error::{ErrorKind, GatewayError, RateLimitInfo};
use crate::metering_tap::ApiRequestEvent;
use crate::metrics::{CacheLookupLabels, RequestLabels, RouteLabels, TenantLabel, TenantLabels};
use crate::state::AppState;

/// Largest request body accepted on the native and admin APIs.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
const X_SKYPORT_CACHE: http::HeaderName = http::HeaderName::from_static("x-skyport-cache");

/// What the TLS layer learned about a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// Identity from a verified client certificate.
    pub identity: Option<ServiceIdentity>,
}

/// Everything the tail of the pipeline records about a request.
pub(crate) struct Outcome {
    /// The response, or the error the front end renders.
    pub(crate) response: Result<Response<Full<Bytes>>, GatewayError>,
    /// Route template (or EC2 action) for logs and metrics.
    pub(crate) route: &'static str,
    /// The caller, once authenticated.
    pub(crate) tenant: Option<TenantContext>,
    /// Rate-limit facts for the response headers.
    pub(crate) rate_limit: Option<RateLimitInfo>,
    /// `hit` or `miss` when the read cache was consulted.
    pub(crate) cache: Option<&'static str>,
}

/// Serves one request.
pub async fn handle(
    state: Arc<AppState>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let started = Instant::now();
    let request_id = request_id(req.headers());
    strip_identity_headers(req.headers_mut());
    let method = req.method().clone();
    // For the access log: a clone of the parsed URI shares its bytes (no copy).
    let uri = req.uri().clone();
    let bytes_in = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);

    let outcome = serve(&state, &conn, req, &request_id).await;

    let mut response = match outcome.response {
        Ok(response) => response,
        Err(err) => {
            if err.kind == ErrorKind::Internal || err.cause.is_some() {
                tracing::warn!(request_id = %request_id, error = %err.public, cause = ?err.cause, "request failed");
            }
            problem::problem_response(&err, &request_id)
        }
    };
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
    let elapsed = started.elapsed();
    let bytes_out = hyper::body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    let tenant_label = match &outcome.tenant {
        Some(ctx) => Arc::clone(&ctx.tenant),
        None => Arc::clone(&state.metrics.no_tenant),
    };
    let tenant = &*tenant_label;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: outcome.route,
            status,
            tenant: TenantLabel(Arc::clone(&tenant_label)),
        })
        .inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&RouteLabels {
            route: outcome.route,
        })
        .observe(elapsed.as_secs_f64());
    if status == 429 {
        state
            .metrics
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
        path = %uri.path(),
        route = outcome.route,
        status,
        tenant,
        identity = outcome.tenant.as_ref().map(|t| t.source.as_str()).unwrap_or("-"),
        cache = outcome.cache.unwrap_or("-"),
        bytes_in,
        bytes_out,
        micros = elapsed.as_micros() as u64,
    );
    if let Some(ctx) = outcome.tenant {
        let now = SystemTime::now();
        state.tap.record(ApiRequestEvent {
            id: crate::ids::time_ordered_uuid(now),
            time: now,
            tenant: ctx.tenant,
            department: ctx.department,
            request_id,
            identity_source: ctx.source.as_str(),
            route: outcome.route,
            method,
            status,
            bytes_in,
            bytes_out,
            latency_us: elapsed.as_micros() as u64,
        });
    }
    Ok(response)
}

async fn serve(
    state: &AppState,
    conn: &ConnInfo,
    req: Request<Incoming>,
    request_id: &str,
) -> Outcome {
    let mut outcome = Outcome {
        response: Err(GatewayError::internal("unreached")),
        route: "unmatched",
        tenant: None,
        rate_limit: None,
        cache: None,
    };
    let matched = match api::route(req.method(), req.uri().path()) {
        Ok(m) => m,
        Err(e) => {
            outcome.response = Err(e);
            return outcome;
        }
    };
    outcome.route = matched.template;
    if matched.route == Route::Ec2 {
        // Boxed, as `dispatch` below (see there): the EC2 front end's own state would
        // otherwise enlarge every native request's future too.
        Box::pin(api::ec2::serve(state, req, request_id, &mut outcome)).await;
        return outcome;
    }
    let principal = match state
        .auth
        .authenticate(req.headers(), conn.identity.as_ref())
        .await
    {
        Ok(p) => p,
        Err(e) => {
            outcome.response = Err(e);
            return outcome;
        }
    };
    let ctx = match state.tenants.resolve(principal) {
        Ok(ctx) => ctx,
        Err(e) => {
            outcome.response = Err(e);
            return outcome;
        }
    };
    let ctx = &*outcome.tenant.insert(ctx);
    match state.limiter.check(&ctx.tenant) {
        Ok(info) => outcome.rate_limit = Some(info),
        Err(e) => {
            outcome.response = Err(e);
            return outcome;
        }
    }
    if matched.admin && !ctx.is_admin() {
        outcome.response = Err(GatewayError::forbidden(
            "the admin API requires the admin role",
        ));
        return outcome;
    }
    let cacheable = matched.cache_ttl.is_some() && req.method() == http::Method::GET;
    let cache_key = cacheable.then(|| {
        state.cache.key(
            &ctx.tenant,
            ctx.department.as_deref(),
            req.method(),
            req.uri(),
        )
    });
    if let Some(key) = &cache_key {
        if let Some(hit) = cache_lookup(state, key, &mut outcome.cache).await {
            outcome.response = Ok(hit);
            return outcome;
        }
    }
    // Boxed: the handlers' futures together are tens of kilobytes, and inline they would
    // make every request's future that large (hyper moves it into place per request),
    // cache hits included. A miss pays one allocation instead.
    let response = Box::pin(dispatch(state, ctx, &matched, req, request_id)).await;
    if matched.write {
        state.cache.invalidate_tenant(&ctx.tenant);
    }
    if let (Some(key), Ok(response), Some(ttl)) = (cache_key, &response, matched.cache_ttl) {
        cache_fill(state, key, response, ttl).await;
    }
    outcome.response = response;
    outcome
}

async fn dispatch(
    state: &AppState,
    ctx: &TenantContext,
    matched: &RouteMatch,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    match &matched.route {
        Route::Whoami => Ok(api::native::whoami(ctx)),
        Route::Providers => Ok(api::native::providers(state)),
        Route::Regions => Ok(api::native::regions(state)),
        Route::AdminPlugins => Ok(api::admin::plugins(state)),
        Route::AdminTenants => Ok(api::admin::tenants(state)),
        Route::AdminPluginCall { plugin, op } => {
            let body = read_body(req).await?;
            api::admin::call_plugin(state, ctx, request_id, plugin, op, body).await
        }
        Route::InstanceTypes => Ok(api::instances::instance_types()),
        Route::Offerings => Ok(api::catalog::offerings(state, ctx)),
        Route::PlacementExplain => {
            let body = read_body(req).await?;
            api::placement::explain(state, ctx, request_id, body).await
        }
        Route::AdminPlacement(id) => api::placement::placement_record(state, id).await,
        Route::AdminCatalog(kind, name) => {
            let method = req.method().clone();
            let body = read_body(req).await?;
            api::catalog_admin::handle(state, &method, *kind, name.as_deref(), body).await
        }
        Route::DeploymentList => api::deployments::list(state, ctx, request_id).await,
        Route::DeploymentCreate => {
            let body = read_body(req).await?;
            api::deployments::create(state, ctx, request_id, body).await
        }
        Route::DeploymentGet(id) => api::deployments::get(state, ctx, request_id, id).await,
        Route::InstanceList => {
            let query = query_pairs(req.uri());
            api::instances::list(state, ctx, request_id, &query).await
        }
        Route::InstanceCreate => {
            let wait = query_value(req.uri(), "wait");
            let body = read_body(req).await?;
            api::instances::create(state, ctx, request_id, body, wait.as_deref()).await
        }
        Route::InstanceGet(id) => {
            let wait = query_value(req.uri(), "wait");
            api::instances::get(state, ctx, request_id, id, wait.as_deref()).await
        }
        Route::InstanceAction(id, action) => {
            let wait = query_value(req.uri(), "wait");
            api::instances::action(state, ctx, request_id, id, action, wait.as_deref()).await
        }
        Route::InstanceResize(id) => {
            let body = read_body(req).await?;
            api::instances::resize(state, ctx, request_id, id, body).await
        }
        Route::InstanceConsole(id) => api::instances::console(state, ctx, request_id, id).await,
        Route::Images => api::images::list(state, ctx, request_id).await,
        Route::AdminImages => api::images::admin_list(state, ctx, request_id).await,
        Route::Bill => {
            let query = query_pairs(req.uri());
            api::metering::bill(state, ctx, request_id, &query).await
        }
        Route::AdminBills => {
            let query = query_pairs(req.uri());
            api::metering::admin_bills(state, ctx, request_id, &query).await
        }
        Route::AdminPeriods => api::metering::periods(state, ctx, request_id).await,
        Route::AdminRecordTypes => api::metering::record_types(state, ctx, request_id).await,
        Route::AdminRecordTypeRegister => {
            let body = read_body(req).await?;
            api::metering::register_record_type(state, ctx, request_id, body).await
        }
        Route::AdminFinalize(period) => {
            api::metering::finalize(state, ctx, request_id, period).await
        }
        Route::Usage => {
            let query = query_pairs(req.uri());
            api::metering::usage(state, ctx, request_id, &query).await
        }
        Route::AdminImageRegister => {
            let body = read_body(req).await?;
            api::images::register(state, ctx, request_id, body).await
        }
        Route::AdminImageRemove(name) => {
            let provider = query_value(req.uri(), "provider");
            api::images::remove(state, ctx, request_id, name, provider.as_deref()).await
        }
        Route::AdminKeys => {
            let query = query_pairs(req.uri());
            api::keys::list(state, &query).await
        }
        Route::AdminKeyCreate => {
            let body = read_body(req).await?;
            api::keys::create(state, body).await
        }
        Route::AdminKeyRevoke(id) => api::keys::revoke(state, id).await,
        Route::Ec2 => Err(GatewayError::internal(
            "EC2 requests are served by api::ec2",
        )),
    }
}

fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn query_value(uri: &http::Uri, key: &str) -> Option<String> {
    query_pairs(uri)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, GatewayError> {
    read_incoming(req.into_body()).await
}

/// A request body, whole, up to [`MAX_BODY_BYTES`].
pub(crate) async fn read_incoming(body: Incoming) -> Result<Bytes, GatewayError> {
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

/// The cached response for `key`, if fresh; the hit or miss is counted and noted in
/// `cache` (front ends share this, so every cached read is counted the same way).
async fn cache_lookup(
    state: &AppState,
    key: &crate::cache::CacheKey,
    cache: &mut Option<&'static str>,
) -> Option<Response<Full<Bytes>>> {
    let hit = state.cache.get(key).await;
    *cache = Some(count_cache_result(state, hit.is_some()));
    hit.map(|hit| cached_response(&hit))
}

/// Counts a read-cache hit or miss; `hit` or `miss`, for the outcome.
pub(crate) fn count_cache_result(state: &AppState, hit: bool) -> &'static str {
    let result = if hit { "hit" } else { "miss" };
    state
        .metrics
        .cache_lookups
        .get_or_create(&CacheLookupLabels { result })
        .inc();
    result
}

/// Stores `response` under `key` for `ttl` when its status is 200.
async fn cache_fill(
    state: &AppState,
    key: crate::cache::CacheKey,
    response: &Response<Full<Bytes>>,
    ttl: std::time::Duration,
) {
    if response.status() != http::StatusCode::OK {
        return;
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/json"));
    state
        .cache
        .put(
            key,
            CachedResponse {
                status: response.status(),
                content_type,
                body: body_bytes(response).await,
                ttl,
            },
        )
        .await;
}

/// The bytes of a buffered response body (`Full` is cheap to clone and never fails).
async fn body_bytes(response: &Response<Full<Bytes>>) -> Bytes {
    match response.body().clone().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    }
}

fn cached_response(hit: &CachedResponse) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(hit.body.clone()));
    *response.status_mut() = hit.status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, hit.content_type.clone());
    response
}

/// The client's `x-request-id` when it is sane (1-128 visible ASCII), else a new UUID.
fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::ids::time_ordered_uuid(SystemTime::now()).to_string())
}

/// Removes every `x-skyport-*` header: identity is never taken from a client's word.
fn strip_identity_headers(headers: &mut http::HeaderMap) {
    let spoofed: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-skyport-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
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
}
