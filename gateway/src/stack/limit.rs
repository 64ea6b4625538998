//! Per-tenant rate limiting, keyed by the verified tenant only (never by anything a client
//! can choose). Each replica's own buckets ([`super::local_limit`]) keep state for idle
//! tenants only until `retain_recent` drops it, so memory stays bounded. With `[limits]
//! backend = "redis"` the buckets are shared by every replica ([`super::shared_limit`]),
//! and the local ones serve only while Redis cannot.

use std::sync::Arc;

use skyport_core::clock::SharedClock;
use skyport_core::config::{Config, LimitsBackend};
use skyport_core::error::{GatewayError, RateLimitInfo};

use super::local_limit::{LocalBuckets, Quotas};
use crate::redis_link::RedisLink;

/// The gateway's rate limiter: this replica's buckets, or buckets shared on Redis.
pub struct TenantRateLimiter {
    local: LocalBuckets,
    shared: Option<super::shared_limit::SharedBuckets>,
}

impl TenantRateLimiter {
    /// This replica's own buckets, from `[limits]` and each tenant's own rate and burst,
    /// refilled by `clock`.
    pub fn from_config(config: &Config, clock: SharedClock) -> Self {
        Self {
            local: LocalBuckets::new(&Quotas::from_config(config), 1, clock),
            shared: None,
        }
    }

    /// The limiter `[limits]` configures: with `backend = "redis"`, buckets shared by
    /// every replica on `redis`.
    pub async fn connect(config: &Config, redis: Option<&RedisLink>, clock: SharedClock) -> Self {
        let mut limiter = Self::from_config(config, clock.clone());
        if let (LimitsBackend::Redis, Some(redis)) = (config.limits.backend, redis) {
            limiter.shared = Some(
                super::shared_limit::SharedBuckets::connect(
                    redis,
                    config.limits.on_redis_error,
                    Quotas::from_config(config),
                    clock,
                )
                .await,
            );
        }
        limiter
    }

    /// Takes one request from `tenant`'s bucket, or refuses with 429 and the wait.
    pub async fn check(&self, tenant: &Arc<str>) -> Result<RateLimitInfo, GatewayError> {
        match &self.shared {
            None => self.local.check(tenant),
            Some(shared) => shared.check(tenant).await,
        }
    }

    /// Drops state of tenants idle long enough to be back at full burst.
    pub fn retain_recent(&self) {
        self.local.retain_recent();
        if let Some(shared) = &self.shared {
            shared.retain_recent();
        }
    }

    /// The shared buckets' background work (replica heartbeats), when there are any.
    pub fn spawn_shared_upkeep(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.shared.as_ref().map(|s| s.spawn_upkeep())
    }
}
