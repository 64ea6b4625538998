//! Per-tenant rate limiting with governor, keyed by the verified tenant only (never by
//! anything a client can choose). Tenants sharing a quota share one keyed limiter; state
//! for idle tenants is dropped by `retain_recent` on a timer, so memory stays bounded.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::Config;
use crate::error::{ErrorKind, GatewayError, RateLimitInfo};

type KeyedLimiter =
    RateLimiter<Arc<str>, DashMapStateStore<Arc<str>>, DefaultClock, StateInformationMiddleware>;

struct QuotaLimiter {
    per_second: u32,
    burst: u32,
    limiter: KeyedLimiter,
}

/// The gateway's rate limiter.
pub struct TenantRateLimiter {
    limiters: Vec<QuotaLimiter>,
    by_tenant: HashMap<String, usize>,
    default_index: usize,
    clock: DefaultClock,
}

impl TenantRateLimiter {
    /// Builds limiters from `[limits]` and each tenant's own rate and burst.
    pub fn from_config(config: &Config) -> Self {
        let mut limiters: Vec<QuotaLimiter> = Vec::new();
        let mut index_for = |per_second: u32, burst: u32| -> usize {
            if let Some(i) = limiters
                .iter()
                .position(|l| l.per_second == per_second && l.burst == burst)
            {
                return i;
            }
            let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
            limiters.push(QuotaLimiter {
                per_second,
                burst,
                limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            });
            limiters.len() - 1
        };
        let default_index = index_for(
            config.limits.default_requests_per_second,
            config.limits.default_burst,
        );
        let mut by_tenant = HashMap::new();
        for (id, tenant) in &config.tenants {
            let i = index_for(
                tenant
                    .requests_per_second
                    .unwrap_or(config.limits.default_requests_per_second),
                tenant.burst.unwrap_or(config.limits.default_burst),
            );
            by_tenant.insert(id.clone(), i);
        }
        Self {
            limiters,
            by_tenant,
            default_index,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `tenant`'s bucket, or refuses with 429 and the wait.
    pub fn check(&self, tenant: &Arc<str>) -> Result<RateLimitInfo, GatewayError> {
        let q = &self.limiters[*self.by_tenant.get(&**tenant).unwrap_or(&self.default_index)];
        match q.limiter.check_key(tenant) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(RateLimitInfo {
                    limit: q.burst,
                    remaining,
                    reset_secs: reset_secs(q.burst - remaining.min(q.burst), q.per_second),
                    retry_after: None,
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let mut err = GatewayError::new(
                    ErrorKind::Throttled,
                    format!(
                        "rate limit of {} requests/s (burst {}) exceeded for tenant '{tenant}'",
                        q.per_second, q.burst
                    ),
                );
                err.rate_limit = Some(RateLimitInfo {
                    limit: q.burst,
                    remaining: 0,
                    reset_secs: reset_secs(q.burst, q.per_second),
                    retry_after: Some(wait.max(Duration::from_millis(1))),
                });
                Err(err)
            }
        }
    }

    /// Drops state of tenants idle long enough to be back at full burst.
    pub fn retain_recent(&self) {
        for q in &self.limiters {
            q.limiter.retain_recent();
            q.limiter.shrink_to_fit();
        }
    }
}

fn reset_secs(used: u32, per_second: u32) -> u64 {
    u64::from(used).div_ceil(u64::from(per_second.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_retry_after_and_other_tenant_unaffected() {
        let text = crate::config::EMBEDDED_DEFAULT.replace(
            "requests_per_second = 100\nburst = 200",
            "requests_per_second = 1\nburst = 3",
        );
        let config = Config::parse(&text).unwrap();
        let limiter = TenantRateLimiter::from_config(&config);
        let demo: Arc<str> = Arc::from("demo");
        let acme: Arc<str> = Arc::from("acme");
        for expected_remaining in [2, 1, 0] {
            assert_eq!(limiter.check(&demo).unwrap().remaining, expected_remaining);
        }
        let refused = limiter.check(&demo).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Throttled);
        assert!(refused.rate_limit.unwrap().retry_after.is_some());
        assert!(limiter.check(&acme).is_ok());
    }
}
