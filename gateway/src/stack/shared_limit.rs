//! Rate-limit buckets shared by every replica, on Redis: GCRA in one Lua script on Redis'
//! own clock (`TIME`), so replicas agree whatever their clocks say.
//!
//! The request path does not wait on Redis for every request: a replica takes tokens in
//! small batches (a lease, [`batch`] tokens, kept [`LEASE`]) and spends them locally.
//! Tokens are reserved in Redis before they are spent, so replicas never admit more
//! than the bucket gave out; a token is spent at most [`LEASE`] after it was reserved,
//! so over any window of W seconds a tenant is admitted at most `rate x (W + 0.1) +
//! burst` (the worst-case overshoot is `rate x 100 ms`). A lease that expires unspent
//! admits less, never more.
//!
//! When Redis fails (an error, or no answer within `timeout_ms`), a breaker opens for
//! [`BREAKER_OPEN`] and `[limits] on_redis_error` decides: `local-share` (default)
//! limits each replica to its share (the limit divided by the replicas last seen
//! alive, from their heartbeats in Redis), `open` admits, `closed` refuses with 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::Script;
use skyport_core::clock::SharedClock;
use skyport_core::config::OnRedisError;
use skyport_core::error::{ErrorKind, GatewayError, RateLimitInfo};

use super::local_limit::{reset_secs, LocalBuckets, Quotas};
use crate::redis_link::RedisLink;

/// How long a replica may hold tokens it took from Redis before spending them.
pub const LEASE: Duration = Duration::from_millis(100);

/// How long the breaker stays open after a Redis failure before Redis is tried again.
pub const BREAKER_OPEN: Duration = Duration::from_secs(1);

/// How often a replica says it is alive; it counts as alive for three times as long.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// GCRA for up to ARGV[3] tokens at once: KEYS[1] holds the tenant's theoretical arrival
/// time (microseconds, Redis' clock). Returns {tokens granted, microseconds until one
/// more would be}.
const TAKE: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / rate
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((now + tolerance - tat) / interval)
local granted = math.min(want, room)
if granted <= 0 then
  return {0, math.ceil(tat + interval - tolerance - now)}
end
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {granted, 0}
";

/// Records this replica alive (ARGV[1], for ARGV[2] ms) in the sorted set KEYS[1], drops
/// the ones not seen for that long, and returns how many are alive.
const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
";

/// Tokens a replica takes from Redis at once for a tenant of `rate` and `burst`: about
/// 1/20 s of the rate, never more than a quarter of the burst, at least one.
pub fn batch(rate: u32, burst: u32) -> u32 {
    (rate / 20).min(burst / 4).max(1)
}

/// Tokens taken from Redis, to spend before `expires` (monotonic).
struct Lease {
    tokens: u32,
    expires: Duration,
}

/// Buckets shared by every replica.
pub struct SharedBuckets {
    redis: RedisLink,
    take: Script,
    quotas: Quotas,
    leases: Mutex<HashMap<Arc<str>, Lease>>,
    on_error: OnRedisError,
    timeout: Duration,
    /// Until when (monotonic) Redis is not asked.
    open_until: Mutex<Option<Duration>>,
    membership: Arc<Membership>,
    clock: SharedClock,
}

/// The replicas alive, as their heartbeats in Redis say, and this replica's share of
/// each limit while Redis cannot be reached.
struct Membership {
    redis: RedisLink,
    heartbeat: Script,
    replica_id: String,
    /// Replicas last seen alive (this one included).
    replicas: AtomicU32,
    /// This replica's share while Redis cannot be reached.
    fallback: ArcSwap<LocalBuckets>,
    quotas: Quotas,
    clock: SharedClock,
}

impl Membership {
    /// Says this replica is alive and learns how many are; rebuilds the local share when
    /// that number changed.
    async fn beat(&self) -> Result<(), String> {
        let Some(mut redis) = self.redis.connection() else {
            return Err("not connected".into());
        };
        let mut call = self.heartbeat.key("skyport:replicas");
        call.arg(&self.replica_id)
            .arg((HEARTBEAT * 3).as_millis() as u64);
        let alive: u32 = call
            .invoke_async(&mut redis)
            .await
            .map_err(|e| e.to_string())?;
        let alive = alive.max(1);
        if self.replicas.swap(alive, Ordering::Relaxed) != alive {
            tracing::info!(replicas = alive, "rate limits: replicas alive");
            self.fallback.store(Arc::new(LocalBuckets::new(
                &self.quotas,
                alive,
                self.clock.clone(),
            )));
        }
        Ok(())
    }
}

impl SharedBuckets {
    /// Buckets on `link`'s Redis for `quotas`; while Redis fails, `on_error` decides.
    /// Registers this replica's heartbeat now when Redis answers.
    pub(crate) async fn connect(
        link: &RedisLink,
        on_error: OnRedisError,
        quotas: Quotas,
        clock: SharedClock,
    ) -> Self {
        let membership = Arc::new(Membership {
            redis: link.clone(),
            heartbeat: Script::new(HEARTBEAT_SCRIPT),
            replica_id: skyport_core::ids::new_id("replica"),
            replicas: AtomicU32::new(1),
            fallback: ArcSwap::from_pointee(LocalBuckets::new(&quotas, 1, clock.clone())),
            quotas: quotas.clone(),
            clock: clock.clone(),
        });
        if let Err(e) = membership.beat().await {
            tracing::warn!(error = %e, "rate limits: this replica could not register with Redis yet");
        }
        Self {
            redis: link.clone(),
            take: Script::new(TAKE),
            quotas,
            leases: Mutex::new(HashMap::new()),
            on_error,
            timeout: link.timeout,
            open_until: Mutex::new(None),
            membership,
            clock,
        }
    }

    /// Takes one request from `tenant`'s shared bucket.
    pub async fn check(&self, tenant: &Arc<str>) -> Result<RateLimitInfo, GatewayError> {
        let (rate, burst) = self.quotas.of(tenant);
        let now = self.clock.monotonic();
        if let Some(left) = self.spend_leased(tenant, now) {
            return Ok(info(rate, burst, left));
        }
        if self.breaker_open(now) {
            return self.degraded(tenant);
        }
        let key = format!("skyport:rl:{tenant}");
        let Some(mut redis) = self.redis.connection() else {
            self.trip(now, "not connected");
            return self.degraded(tenant);
        };
        let mut call = self.take.key(key);
        call.arg(rate).arg(burst).arg(batch(rate, burst));
        let answer =
            tokio::time::timeout(self.timeout, call.invoke_async::<(u32, u64)>(&mut redis)).await;
        match answer {
            Ok(Ok((granted, _))) if granted > 0 => {
                let left = granted - 1;
                if left > 0 {
                    self.leases
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(
                            Arc::clone(tenant),
                            Lease {
                                tokens: left,
                                expires: now + LEASE,
                            },
                        );
                }
                Ok(info(rate, burst, left))
            }
            Ok(Ok((_, wait_us))) => Err(throttled(
                tenant,
                rate,
                burst,
                Duration::from_micros(wait_us),
            )),
            Ok(Err(e)) => {
                self.trip(now, &e.to_string());
                self.degraded(tenant)
            }
            Err(_) => {
                self.trip(
                    now,
                    &format!("no answer in {} ms", self.timeout.as_millis()),
                );
                self.degraded(tenant)
            }
        }
    }

    /// One token from `tenant`'s lease, if it has one still valid; what is left.
    fn spend_leased(&self, tenant: &Arc<str>, now: Duration) -> Option<u32> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let lease = leases.get_mut(tenant)?;
        if lease.tokens == 0 || now >= lease.expires {
            leases.remove(tenant);
            return None;
        }
        lease.tokens -= 1;
        Some(lease.tokens)
    }

    fn breaker_open(&self, now: Duration) -> bool {
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        match *open {
            Some(until) if now < until => true,
            Some(_) => {
                *open = None;
                false
            }
            None => false,
        }
    }

    /// Opens the breaker after a failed Redis call.
    fn trip(&self, now: Duration, why: &str) {
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        if open.is_none() {
            tracing::warn!(error = %why, on_error = ?self.on_error, replicas = self.membership.replicas.load(Ordering::Relaxed),
                "rate limits: Redis failed; degraded for {} s", BREAKER_OPEN.as_secs());
        }
        *open = Some(now + BREAKER_OPEN);
    }

    /// The answer while Redis cannot be asked, as `on_error` says.
    fn degraded(&self, tenant: &Arc<str>) -> Result<RateLimitInfo, GatewayError> {
        let (rate, burst) = self.quotas.of(tenant);
        match self.on_error {
            OnRedisError::LocalShare => self.membership.fallback.load().check(tenant),
            OnRedisError::Open => Ok(info(rate, burst, burst)),
            OnRedisError::Closed => Err(GatewayError::new(
                ErrorKind::Unavailable,
                "the rate limiter cannot reach its Redis; retry shortly",
            )),
        }
    }

    /// Heartbeats, every [`HEARTBEAT`], for as long as the gateway runs.
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let membership = Arc::clone(&self.membership);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                if let Err(e) = membership.beat().await {
                    tracing::debug!(error = %e, "rate limits: heartbeat failed");
                }
            }
        })
    }

    /// Drops expired leases and idle fallback state.
    pub fn retain_recent(&self) {
        let now = self.clock.monotonic();
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, lease| now < lease.expires);
        self.membership.fallback.load().retain_recent();
    }
}

/// What a request admitted with `left` tokens in hand is told.
fn info(rate: u32, burst: u32, left: u32) -> RateLimitInfo {
    RateLimitInfo {
        limit: burst,
        remaining: left.min(burst),
        reset_secs: reset_secs(burst - left.min(burst), rate),
        retry_after: None,
    }
}

fn throttled(tenant: &str, rate: u32, burst: u32, wait: Duration) -> GatewayError {
    let mut err = GatewayError::new(
        ErrorKind::Throttled,
        format!("rate limit of {rate} requests/s (burst {burst}) exceeded for tenant '{tenant}'"),
    );
    err.rate_limit = Some(RateLimitInfo {
        limit: burst,
        remaining: 0,
        reset_secs: reset_secs(burst, rate),
        retry_after: Some(wait.max(Duration::from_millis(1))),
    });
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_a_twentieth_of_a_second_at_most_a_quarter_of_the_burst() {
        assert_eq!(batch(20, 20), 1);
        assert_eq!(batch(100, 200), 5);
        assert_eq!(batch(1000, 100), 25);
        assert_eq!(batch(1, 1), 1);
    }
}
