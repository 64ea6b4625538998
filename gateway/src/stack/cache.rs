//! Read cache (moka). Entries are never shared across tenants: the key starts with the
//! tenant (then the department, the tenant's write generation, path and the normalised
//! query). Only reads answered with status 200 on routes with a TTL are cached (an EC2
//! read is the same entry whether sent by GET or POST).
//! Any write by a tenant bumps its generation, so its older entries are never served again
//! and simply age out.
//!
//! With `[cache] coherence = "redis"`, the key also holds the tenant's and everyone's
//! write epochs in Redis ([`super::cache_epochs`]), so a write through any replica
//! invalidates every replica's entries of that tenant.
//!
//! Freshness is judged by the injected clock: an entry is served until its time to live
//! has passed on the clock's monotonic time. moka's own expiry (the same TTL, on its own
//! clock) only bounds how long memory is held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use skyport_core::clock::SharedClock;

use super::cache_epochs::{Epochs, SharedEpochs};

/// What identifies a cached response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    tenant: Arc<str>,
    department: Option<String>,
    generation: u64,
    /// The tenant's and everyone's epochs in Redis, in this replica's view of them (zero
    /// without shared epochs).
    epochs: Epochs,
    path: String,
    query: String,
}

/// A cached response body with the headers that matter.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    /// Status code.
    pub status: http::StatusCode,
    /// Content type.
    pub content_type: http::HeaderValue,
    /// Body.
    pub body: Bytes,
    /// Time to live.
    pub ttl: Duration,
    /// Where the body spells the id of the request that filled the entry, in answers that
    /// carry their request's id (EC2's `<requestId>`): each reader gets its own there.
    pub request_id_at: Option<std::ops::Range<usize>>,
    /// When it stops being fresh, on the cache clock's monotonic time (set when stored).
    expires_at: Duration,
}

impl CachedResponse {
    /// A response to keep for `ttl`.
    pub fn new(
        status: http::StatusCode,
        content_type: http::HeaderValue,
        body: Bytes,
        ttl: Duration,
    ) -> Self {
        Self {
            status,
            content_type,
            body,
            ttl,
            request_id_at: None,
            expires_at: Duration::ZERO,
        }
    }

    /// The body as the answer of the request whose id is written `request_id` there: the
    /// filling request's id, where the body spells it, replaced.
    pub fn body_for(&self, request_id: &str) -> Bytes {
        let Some(at) = self.request_id_at.clone() else {
            return self.body.clone();
        };
        let mut body = Vec::with_capacity(self.body.len() - at.len() + request_id.len());
        body.extend_from_slice(&self.body[..at.start]);
        body.extend_from_slice(request_id.as_bytes());
        body.extend_from_slice(&self.body[at.end..]);
        Bytes::from(body)
    }
}

struct TtlFromEntry;

impl moka::Expiry<CacheKey, Arc<CachedResponse>> for TtlFromEntry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedResponse>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The read cache.
pub struct ResponseCache {
    entries: moka::future::Cache<CacheKey, Arc<CachedResponse>>,
    generations: Mutex<HashMap<Arc<str>, u64>>,
    shared: Option<SharedEpochs>,
    clock: SharedClock,
}

impl ResponseCache {
    /// A cache holding at most `max_entries` responses, fresh by `clock`.
    pub fn new(max_entries: u64, clock: SharedClock) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(TtlFromEntry)
                .build(),
            generations: Mutex::new(HashMap::new()),
            shared: None,
            clock,
        }
    }

    /// This cache, coherent across replicas through `epochs`.
    pub fn with_shared_epochs(mut self, epochs: SharedEpochs) -> Self {
        self.shared = Some(epochs);
        self
    }

    /// `response`, stamped with when it stops being fresh.
    fn stamped(&self, mut response: CachedResponse) -> Arc<CachedResponse> {
        response.expires_at = self.clock.monotonic() + response.ttl;
        Arc::new(response)
    }

    /// Whether `entry` is still fresh now.
    fn fresh(&self, entry: &CachedResponse) -> bool {
        self.clock.monotonic() < entry.expires_at
    }

    /// The key for a read by `tenant`/`department`: `path` names the route (for an EC2
    /// action, the front door and region), `query` its normalised parameters. `None`
    /// when the read must not be cached now (the shared epochs cannot be read).
    pub async fn key_for(
        &self,
        tenant: &Arc<str>,
        department: Option<&str>,
        path: String,
        query: String,
    ) -> Option<CacheKey> {
        let epochs = match &self.shared {
            None => Epochs::default(),
            Some(shared) => shared.current(tenant).await?,
        };
        let generation = *self
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .unwrap_or(&0);
        Some(CacheKey {
            tenant: Arc::clone(tenant),
            department: department.map(str::to_owned),
            generation,
            epochs,
            path,
            query,
        })
    }

    /// A cached response for `key`, if fresh at `now` (the clock's monotonic time, read by
    /// the caller: a request reads the clock once for all its steps).
    pub async fn get_at(&self, key: &CacheKey, now: Duration) -> Option<Arc<CachedResponse>> {
        self.entries.get(key).await.filter(|e| now < e.expires_at)
    }

    /// The fresh entry for `key`, or the one `fill` produces. Concurrent misses of one key
    /// wait for a single `fill` (no stampede on a provider when a popular entry expires);
    /// its error, if any, is returned to each of them and nothing is stored. The flag says
    /// whether the entry was already there.
    pub async fn get_or_fill<E, F>(
        &self,
        key: CacheKey,
        fill: F,
    ) -> Result<(Arc<CachedResponse>, bool), Arc<E>>
    where
        E: Send + Sync + 'static,
        F: std::future::Future<Output = Result<CachedResponse, E>>,
    {
        if let Some(stale) = self.entries.get(&key).await.filter(|e| !self.fresh(e)) {
            // Expired by the clock, still held by moka: dropped so that it is filled anew.
            drop(stale);
            self.entries.invalidate(&key).await;
        }
        let filled = std::sync::atomic::AtomicBool::new(false);
        let entry = self
            .entries
            .try_get_with(key, async {
                filled.store(true, std::sync::atomic::Ordering::Relaxed);
                fill.await.map(|r| self.stamped(r))
            })
            .await?;
        Ok((entry, !filled.load(std::sync::atomic::Ordering::Relaxed)))
    }

    /// Drops every entry of every tenant (after a catalog change, which every tenant's
    /// `/v1/offerings` may show), on every replica with shared epochs.
    pub async fn invalidate_all(&self) {
        self.entries.invalidate_all();
        if let Some(shared) = &self.shared {
            shared.bump_everyone().await;
        }
    }

    /// Makes every earlier entry of `tenant` unreachable (called after any write), on
    /// every replica with shared epochs.
    pub async fn invalidate_tenant(&self, tenant: &Arc<str>) {
        {
            let mut generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
            *generations.entry(Arc::clone(tenant)).or_insert(0) += 1;
        }
        if let Some(shared) = &self.shared {
            shared.bump_tenant(tenant).await;
        }
    }
}

/// Sorts `a=1&b=2` pairs and drops empty ones, so equivalent queries share an entry.
pub fn normalise_query(query: &str) -> String {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    pairs.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    use skyport_core::clock::{Clock, ManualClock, SystemClock};

    fn response() -> CachedResponse {
        CachedResponse::new(
            http::StatusCode::OK,
            http::HeaderValue::from_static("application/json"),
            Bytes::from_static(b"{}"),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_cached_body_carries_each_readers_request_id_where_it_spells_one() {
        let mut entry = CachedResponse::new(
            http::StatusCode::OK,
            http::HeaderValue::from_static("text/xml"),
            Bytes::from_static(b"<r><requestId>filler</requestId><x/></r>"),
            Duration::from_secs(60),
        );
        assert_eq!(
            entry.body_for("reader"),
            entry.body,
            "spells none: as stored"
        );
        entry.request_id_at = Some(14..20);
        assert_eq!(
            entry.body_for("a-longer-reader"),
            Bytes::from_static(b"<r><requestId>a-longer-reader</requestId><x/></r>")
        );
        assert_eq!(
            entry.body_for("r"),
            Bytes::from_static(b"<r><requestId>r</requestId><x/></r>")
        );
    }

    #[tokio::test]
    async fn an_entry_expires_when_its_ttl_has_passed_on_the_clock() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let cache = ResponseCache::new(100, clock.clone());
        let tenant: Arc<str> = Arc::from("a");
        let key = key(&cache, &tenant, "/v1/regions", "").await;
        fill(&cache, &key).await;
        clock.advance(Duration::from_secs(59));
        assert!(cache.get_at(&key, clock.monotonic()).await.is_some());
        clock.advance(Duration::from_secs(1));
        assert!(
            cache.get_at(&key, clock.monotonic()).await.is_none(),
            "expired at exactly its TTL"
        );
        let (_, was_there) = cache
            .get_or_fill::<(), _>(key.clone(), async { Ok(response()) })
            .await
            .unwrap();
        assert!(!was_there, "an expired entry is filled anew");
        assert!(cache.get_at(&key, clock.monotonic()).await.is_some());
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fill() {
        let cache = Arc::new(ResponseCache::new(100, SystemClock::shared()));
        let tenant: Arc<str> = Arc::from("a");
        let fills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, tenant, fills) = (cache.clone(), tenant.clone(), fills.clone());
            tasks.push(tokio::spawn(async move {
                let key = key(&cache, &tenant, "ec2/x", "q").await;
                cache
                    .get_or_fill::<(), _>(key, async {
                        fills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(response())
                    })
                    .await
                    .unwrap()
                    .1
            }));
        }
        let mut hits = 0;
        for t in tasks {
            hits += usize::from(t.await.unwrap());
        }
        assert_eq!(fills.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(hits, 7);
        // A failed fill stores nothing.
        let key = key(&cache, &tenant, "ec2/y", "q").await;
        assert!(cache
            .get_or_fill::<&str, _>(key.clone(), async { Err("provider down") })
            .await
            .is_err());
        assert!(cache.get_at(&key, now(&cache)).await.is_none());
    }

    #[tokio::test]
    async fn tenants_never_share_entries_and_writes_invalidate() {
        let cache = ResponseCache::new(100, SystemClock::shared());
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let query = normalise_query("y=2&x=1");
        let key_a = key(&cache, &a, "/v1/regions", &query).await;
        fill(&cache, &key_a).await;
        assert!(cache.get_at(&key_a, now(&cache)).await.is_some());
        let key_b = key(&cache, &b, "/v1/regions", &query).await;
        assert!(cache.get_at(&key_b, now(&cache)).await.is_none());
        let reordered = key(&cache, &a, "/v1/regions", &normalise_query("x=1&y=2&")).await;
        assert!(cache.get_at(&reordered, now(&cache)).await.is_some());
        cache.invalidate_tenant(&a).await;
        let after_write = key(&cache, &a, "/v1/regions", &query).await;
        assert!(cache.get_at(&after_write, now(&cache)).await.is_none());
    }

    async fn key(cache: &ResponseCache, tenant: &Arc<str>, path: &str, query: &str) -> CacheKey {
        cache
            .key_for(tenant, None, path.to_owned(), query.to_owned())
            .await
            .unwrap()
    }

    fn now(cache: &ResponseCache) -> Duration {
        cache.clock.monotonic()
    }

    async fn fill(cache: &ResponseCache, key: &CacheKey) {
        cache
            .get_or_fill::<(), _>(key.clone(), async { Ok(response()) })
            .await
            .unwrap();
    }
}
