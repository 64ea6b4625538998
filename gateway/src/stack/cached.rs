//! Serving a cacheable read through the read cache: one call for concurrent misses of a
//! key, a 200 answer stored for its TTL, anything else passed to every waiter and not
//! stored; hits and misses counted the same way for both front doors.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::{BodyExt, Full};
use skyport_core::metrics::{CacheLookupLabels, Metrics};

use super::cache::{CacheKey, CachedResponse};
use super::{Call, FrontDoor, Stack};

/// What a cache fill produced that is not stored: the call's error, or a response other
/// than 200; every caller waiting on the fill gets it.
#[derive(Clone)]
enum Unstored<E> {
    Failed(E),
    Passed(CachedResponse),
}

/// Serves a cacheable read through the cache: concurrent misses of `key` wait for one
/// call; a 200 answer is stored for `ttl`. The flag says whether the answer was cached.
pub(super) async fn fill<D: FrontDoor>(
    stack: &Stack,
    door: &D,
    route: D::Route,
    call: Call<'_>,
    key: CacheKey,
    ttl: Duration,
) -> (Result<Response<Full<Bytes>>, D::Error>, bool) {
    let request_id = call.request_id;
    let filling = async {
        let response = door.call(route, call).await.map_err(Unstored::Failed)?;
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json"));
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let mut entry = CachedResponse::new(status, content_type, body, ttl);
        entry.request_id_at = door.request_id_in(&entry.body);
        if status == http::StatusCode::OK {
            Ok(entry)
        } else {
            Err(Unstored::Passed(entry))
        }
    };
    match stack.cache.get_or_fill(key, filling).await {
        Ok((entry, hit)) => (Ok(response(door, &entry, request_id)), hit),
        Err(unstored) => match (*unstored).clone() {
            Unstored::Failed(e) => (Err(e), false),
            Unstored::Passed(entry) => (Ok(response(door, &entry, request_id)), false),
        },
    }
}

/// Counts a read-cache hit or miss; `hit` or `miss`, for the outcome.
pub(super) fn count(metrics: &Metrics, hit: bool) -> &'static str {
    let result = if hit { "hit" } else { "miss" };
    metrics
        .cache_lookups
        .get_or_create(&CacheLookupLabels { result })
        .inc();
    result
}

/// Headers a cached answer's map holds without growing: its own and the tail's (six), and
/// also a client's request headers, since hyper keeps a response's map, emptied, for the
/// next request's headers on the connection (an SDK sends nine or ten, which a map sized
/// for six would be grown again for).
const HEADER_ROOM: usize = 12;

/// The response a cache entry holds, as `door`'s answer of request `request_id` (its id
/// written where the entry's body spells one, as [`FrontDoor::request_id_text`] writes it).
pub(super) fn response<D: FrontDoor>(
    door: &D,
    hit: &CachedResponse,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let body = match hit.request_id_at {
        Some(_) => hit.body_for(&door.request_id_text(request_id)),
        None => hit.body.clone(),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = hit.status;
    let headers = response.headers_mut();
    *headers = http::HeaderMap::with_capacity(HEADER_ROOM);
    headers.insert(http::header::CONTENT_TYPE, hit.content_type.clone());
    response
}
