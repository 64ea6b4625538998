//! The request stack: one pipeline that runs every shared step once and in one order for
//! both front doors, the native JSON API and the EC2 Query API. Each door is a
//! [`FrontDoor`]; what differs between them is what the trait says, phase by phase:
//!
//! 1. request id (`x-request-id`, generated when absent, echoed); every client-sent
//!    `x-skyport-*` header removed before anything reads it;
//! 2. **route** (door): unknown paths and methods are refused before authentication;
//! 3. the body, when the door authenticates over it (SigV4 signs it), after the door has
//!    screened what it can without it (**screen**: door), up to
//!    [`request::MAX_BODY_BYTES`], within a deadline and a budget across connections;
//! 4. **authenticate** (door) -> a principal;
//! 5. tenant context: the tenant directory checks tenant and department;
//! 6. per-tenant rate limit and concurrency limit (the door renders a refusal: 429
//!    problem, or EC2's 503 `RequestLimitExceeded`);
//! 7. **admit** (door): the route's facts once the caller is known (EC2: region and
//!    action); the admin role for admin routes;
//! 8. read cache, per tenant, for the reads the facts mark cacheable (**cache key**:
//!    door), fresh as of the request's start; concurrent misses of one key share one
//!    call;
//! 9. the body for routes that take one; **call** (door);
//! 10. invalidation after writes (the tenant's entries; everyone's after a catalog change
//!     that succeeded);
//! 11. errors rendered in the door's wire format (**render error**: door);
//! 12. the tail: `RateLimit-*` and `x-skyport-cache` headers, metrics, one access-log
//!     line, one metering event for every authenticated request ([`tail`]);
//! 13. over HTTP/2, the body of a request answered without it (a refusal before the body)
//!     read to its end, bounded, before the answer leaves
//!     ([`request::BodyLimits::drain_unread`]).

pub mod cache;
pub mod cache_epochs;
mod cached;
pub mod concurrency;
mod door;
pub mod limit;
pub mod local_limit;
pub mod request;
pub mod shared_limit;
mod tail;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::Full;
use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;
use skyport_core::ids::time_ordered_uuid;
use skyport_core::metrics::Metrics;
use skyport_core::tenancy::{Principal, TenantContext, TenantDirectory};
use skyport_domain::metering_tap::MeteringTap;

use cache::ResponseCache;
use limit::TenantRateLimiter;
use request::ConnInfo;
use tail::{Outcome, Received};

pub use door::{Call, FrontDoor, RouteFacts, Writes};

/// The state of the shared steps.
pub struct Stack {
    /// Tenants and departments.
    pub tenants: Arc<TenantDirectory>,
    /// Per-tenant rate limits.
    pub limiter: TenantRateLimiter,
    /// The read cache.
    pub cache: ResponseCache,
    /// The metering tap.
    pub tap: MeteringTap,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Time.
    pub clock: SharedClock,
    /// How request bodies are read.
    pub bodies: request::BodyLimits,
    /// Requests in flight per tenant.
    pub concurrency: concurrency::TenantConcurrency,
}

/// Serves one request through `door` (the server's bodies are hyper's `Incoming`; tests
/// use any buffered body).
pub async fn handle<D, B>(
    stack: &Stack,
    door: &D,
    conn: &ConnInfo,
    mut req: Request<B>,
) -> Response<Full<Bytes>>
where
    D: FrontDoor,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = stack.clock.monotonic();
    let request_id = request::request_id(req.headers(), || {
        time_ordered_uuid(stack.clock.wall()).to_string()
    });
    request::strip_identity_headers(req.headers_mut());
    let (head, body) = req.into_parts();
    let (version, declared) = (head.version, request::declared_length(&head.headers));
    let received = Received {
        request_id,
        method: head.method.clone(),
        uri: head.uri.clone(),
        declared,
        started,
    };
    let mut outcome = Outcome {
        route: "unmatched",
        tenant: None,
        rate_limit: None,
        cache: None,
    };
    let mut incoming = Some(body);
    let served = serve(
        stack,
        door,
        conn,
        head,
        &mut incoming,
        &received,
        &mut outcome,
    )
    .await;
    let response = served.unwrap_or_else(|e| door.render_error(e, &received.request_id));
    let response = tail::finish(stack, conn, received, outcome, response);
    if let Some(unread) = incoming {
        // Answered without its body: over HTTP/2, the client finishes sending it first.
        stack.bodies.drain_unread(version, declared, unread).await;
    }
    response
}

async fn serve<D, B>(
    stack: &Stack,
    door: &D,
    conn: &ConnInfo,
    head: Parts,
    incoming: &mut Option<B>,
    received: &Received,
    outcome: &mut Outcome,
) -> Result<Response<Full<Bytes>>, D::Error>
where
    D: FrontDoor,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut route = door.route(&head)?;
    outcome.route = door.template(&route);
    let mut body = Bytes::new();
    if door.body_before_auth(&route) {
        let unread = incoming.take().expect("unread");
        // A client waiting for `100 Continue` has sent no body yet, and a look would ask
        // for it before the screen.
        let look = !head.headers.contains_key(http::header::EXPECT);
        body = match stack
            .bodies
            .arrival(received.declared, unread, look)
            .await?
        {
            // Here whole with its head (a small form): holding it costs nothing, so there
            // is nothing for the screen to spare; `authenticate` judges head and body.
            request::Arrival::Whole(whole) => whole,
            request::Arrival::Coming { first, rest } => {
                if let Err(refused) = door.screen(&mut route, &head).await {
                    // Answered without the rest of its body, as any refusal before it.
                    *incoming = Some(rest);
                    return Err(refused);
                }
                let coming = request::Arrival::Coming { first, rest };
                stack
                    .bodies
                    .finish(conn.peer.ip(), received.declared, coming)
                    .await?
            }
        };
    }
    let principal = door.authenticate(&mut route, &head, &body, conn).await?;
    let ctx = &*outcome.tenant.insert(stack.tenants.resolve(principal)?);
    match stack.limiter.check(&ctx.tenant).await {
        Ok(info) => outcome.rate_limit = Some(info),
        Err(refused) => {
            outcome.rate_limit = refused.rate_limit;
            return Err(refused.into());
        }
    }
    let _in_flight = stack.concurrency.enter(&ctx.tenant)?;
    let facts = match door.admit(&mut route, ctx, &head, &body) {
        Ok(facts) => facts,
        Err(refused) => {
            // The door may know more now (the EC2 action a client asked for).
            outcome.route = door.template(&route);
            return Err(refused);
        }
    };
    outcome.route = facts.template;
    let approver = || {
        facts.approvers
            && ctx.roles.iter().any(|r| r == "approver")
            && stack.tenants.get(&ctx.tenant).is_some_and(|t| t.operator)
    };
    if facts.admin && !ctx.is_admin() && !approver() {
        return Err(GatewayError::forbidden(if facts.approvers {
            "the approval queue requires the admin or approver role of an operator tenant \
             (`operator = true`)"
        } else {
            "the admin API requires the admin role of an operator tenant (`operator = true`)"
        })
        .into());
    }
    let cacheable = match facts.cache_ttl {
        Some(ttl) => {
            let (path, query) = door.cache_key(&route, &head, &body);
            stack
                .cache
                .key_for(&ctx.tenant, ctx.department.as_deref(), path, query)
                .await
                .map(|key| (key, ttl))
        }
        None => None,
    };
    if let Some((key, _)) = &cacheable {
        // Freshness is judged at the request's start (the one clock read it makes), so an
        // entry that expires while the request is being authenticated is still served.
        if let Some(hit) = stack.cache.get_at(key, received.started).await {
            outcome.cache = Some(cached::count(&stack.metrics, true));
            return Ok(cached::response(door, &hit, &received.request_id));
        }
    }
    if facts.takes_body {
        if let Some(incoming) = incoming.take() {
            body = stack
                .bodies
                .read(conn.peer.ip(), received.declared, incoming)
                .await?;
        }
    }
    let call = Call {
        ctx,
        request_id: &received.request_id,
        head,
        body,
    };
    let served = match cacheable {
        Some((key, ttl)) => {
            // Boxed: the single-flight fill (moka's and the door's futures) is large, and a
            // cache hit, served above, should not carry it.
            let (served, hit) = Box::pin(cached::fill(stack, door, route, call, key, ttl)).await;
            outcome.cache = Some(cached::count(&stack.metrics, hit));
            served
        }
        // Boxed: the doors' call futures are large, and a cached read should not carry them.
        None => Box::pin(door.call(route, call)).await,
    };
    match facts.writes {
        Writes::Nothing => {}
        // A refused write may still have changed something (a batch that failed halfway).
        Writes::Tenant => stack.cache.invalidate_tenant(&ctx.tenant).await,
        // A catalog change that failed changed nothing: every tenant keeps its entries.
        Writes::Everyone => {
            if served.as_ref().is_ok_and(|r| r.status().is_success()) {
                stack.cache.invalidate_all().await;
            }
        }
    }
    served
}
