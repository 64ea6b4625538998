//! One replica's own rate-limit buckets: governor's (GCRA), tenants sharing a quota share
//! one keyed limiter, refilled by the injected clock's monotonic time. They are the
//! limiter with `[limits] backend = "local"`, and the fallback of the shared buckets
//! ([`super::shared_limit`]) while Redis cannot answer.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use skyport_core::clock::SharedClock;
use skyport_core::config::Config;
use skyport_core::error::{ErrorKind, GatewayError, RateLimitInfo};

/// The gateway's clock as governor's: instants are monotonic time since the clock's origin.
#[derive(Clone)]
pub(crate) struct LimiterClock(pub(crate) SharedClock);

impl Clock for LimiterClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.monotonic()
    }
}

type KeyedLimiter =
    RateLimiter<Arc<str>, DashMapStateStore<Arc<str>>, LimiterClock, StateInformationMiddleware>;

struct QuotaLimiter {
    per_second: u32,
    burst: u32,
    limiter: KeyedLimiter,
}

/// Every tenant's rate and burst: its own, or `[limits]`'s defaults.
#[derive(Debug, Clone)]
pub(crate) struct Quotas {
    by_tenant: HashMap<String, (u32, u32)>,
    default: (u32, u32),
}

impl Quotas {
    /// From `[limits]` and each tenant's own rate and burst.
    pub(crate) fn from_config(config: &Config) -> Self {
        let default = (
            config.limits.default_requests_per_second,
            config.limits.default_burst,
        );
        let by_tenant = config
            .tenants
            .iter()
            .map(|(id, t)| {
                let rate = t.requests_per_second.unwrap_or(default.0);
                (id.clone(), (rate, t.burst.unwrap_or(default.1)))
            })
            .collect();
        Self { by_tenant, default }
    }

    /// `tenant`'s (requests per second, burst).
    pub(crate) fn of(&self, tenant: &str) -> (u32, u32) {
        self.by_tenant.get(tenant).copied().unwrap_or(self.default)
    }
}

/// One replica's buckets, each tenant's quota divided by `share`.
pub(crate) struct LocalBuckets {
    limiters: Vec<QuotaLimiter>,
    by_tenant: HashMap<String, usize>,
    default_index: usize,
    clock: LimiterClock,
}

impl LocalBuckets {
    /// Buckets for `quotas`, each rate and burst divided by `share` (at least 1 each),
    /// refilled by `clock`.
    pub(crate) fn new(quotas: &Quotas, share: u32, clock: SharedClock) -> Self {
        let share = share.max(1);
        let divide = |(rate, burst): (u32, u32)| ((rate / share).max(1), (burst / share).max(1));
        let clock = LimiterClock(clock);
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
                limiter: RateLimiter::<_, _, _, NoOpMiddleware<Duration>>::new(
                    quota,
                    DashMapStateStore::default(),
                    clock.clone(),
                )
                .with_middleware::<StateInformationMiddleware>(),
            });
            limiters.len() - 1
        };
        let (rate, burst) = divide(quotas.default);
        let default_index = index_for(rate, burst);
        let mut by_tenant = HashMap::new();
        for (id, quota) in &quotas.by_tenant {
            let (rate, burst) = divide(*quota);
            by_tenant.insert(id.clone(), index_for(rate, burst));
        }
        Self {
            limiters,
            by_tenant,
            default_index,
            clock,
        }
    }

    /// Takes one request from `tenant`'s bucket, or refuses with 429 and the wait.
    pub(crate) fn check(&self, tenant: &Arc<str>) -> Result<RateLimitInfo, GatewayError> {
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
    pub(crate) fn retain_recent(&self) {
        for q in &self.limiters {
            q.limiter.retain_recent();
            q.limiter.shrink_to_fit();
        }
    }
}

/// Seconds until `used` tokens are back at `per_second`.
pub(crate) fn reset_secs(used: u32, per_second: u32) -> u64 {
    u64::from(used).div_ceil(u64::from(per_second.max(1)))
}

#[cfg(test)]
mod tests {
    use skyport_core::clock::ManualClock;

    use super::*;

    fn limiter(clock: SharedClock) -> LocalBuckets {
        let text = skyport_core::config::EMBEDDED_DEFAULT.replace(
            "requests_per_second = 100\nburst = 200",
            "requests_per_second = 2\nburst = 3",
        );
        LocalBuckets::new(
            &Quotas::from_config(&Config::parse(&text).unwrap()),
            1,
            clock,
        )
    }

    #[test]
    fn a_burst_then_a_refusal_with_retry_after_and_another_tenant_unaffected() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let limiter = limiter(clock.clone());
        let demo: Arc<str> = Arc::from("demo");
        for expected_remaining in [2, 1, 0] {
            assert_eq!(limiter.check(&demo).unwrap().remaining, expected_remaining);
        }
        let refused = limiter.check(&demo).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Throttled);
        let info = refused.rate_limit.unwrap();
        assert_eq!(info.retry_after, Some(Duration::from_millis(500)));
        assert_eq!((info.limit, info.remaining), (3, 0));
        assert!(limiter.check(&Arc::from("acme")).is_ok());
    }

    #[test]
    fn the_bucket_refills_at_the_tenants_rate_on_the_clock_not_the_wall() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let limiter = limiter(clock.clone());
        let demo: Arc<str> = Arc::from("demo");
        for _ in 0..3 {
            limiter.check(&demo).unwrap();
        }
        assert!(limiter.check(&demo).is_err());
        clock.advance(Duration::from_millis(499));
        assert!(limiter.check(&demo).is_err(), "not a whole token yet");
        clock.advance(Duration::from_millis(1));
        assert_eq!(limiter.check(&demo).unwrap().remaining, 0);
        clock.advance(Duration::from_secs(10));
        assert_eq!(limiter.check(&demo).unwrap().remaining, 2, "full again");
    }

    #[test]
    fn a_share_divides_rate_and_burst() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let text = skyport_core::config::EMBEDDED_DEFAULT.replace(
            "requests_per_second = 100\nburst = 200",
            "requests_per_second = 4\nburst = 6",
        );
        let half = LocalBuckets::new(
            &Quotas::from_config(&Config::parse(&text).unwrap()),
            2,
            clock.clone(),
        );
        let demo: Arc<str> = Arc::from("demo");
        for _ in 0..3 {
            half.check(&demo).unwrap();
        }
        let refused = half.check(&demo).unwrap_err();
        // Half the rate: a token every 500 ms.
        assert_eq!(
            refused.rate_limit.unwrap().retry_after,
            Some(Duration::from_millis(500))
        );
    }
}
