//! How often one address may try to sign in: each use of a sign-in link writes a session,
//! and each identity provider callback calls the provider's token endpoint, so a caller
//! sending them in a loop would spend the gateway's and the provider's work. Every address
//! gets [`SIGN_INS_PER_SEC`] tries a second, [`SIGN_IN_BURST`] at once; past that, 429.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use skyport_core::clock::SharedClock;

use crate::stack::local_limit::LimiterClock;

/// Sign-in tries one address may make a second, on average.
pub(super) const SIGN_INS_PER_SEC: u32 = 2;
/// Sign-in tries one address may make at once (people behind one proxy signing in
/// together).
pub(super) const SIGN_IN_BURST: u32 = 30;
/// Tries between two trims of the addresses remembered.
const TRIM_EVERY: u32 = 4096;

/// The sign-in rate of each address.
pub(super) struct SignInRate {
    limiter: RateLimiter<
        IpAddr,
        DashMapStateStore<IpAddr>,
        LimiterClock,
        NoOpMiddleware<std::time::Duration>,
    >,
    since_trim: AtomicU32,
}

impl SignInRate {
    /// Rates kept by `clock`.
    pub(super) fn new(clock: SharedClock) -> Self {
        let rate = NonZeroU32::new(SIGN_INS_PER_SEC).expect("a rate above zero");
        let burst = NonZeroU32::new(SIGN_IN_BURST).expect("a burst above zero");
        Self {
            limiter: RateLimiter::new(
                Quota::per_second(rate).allow_burst(burst),
                DashMapStateStore::default(),
                LimiterClock(clock),
            ),
            since_trim: AtomicU32::new(0),
        }
    }

    /// Whether `peer` may try to sign in now.
    pub(super) fn allows(&self, peer: IpAddr) -> bool {
        if self.since_trim.fetch_add(1, Ordering::Relaxed) >= TRIM_EVERY {
            self.since_trim.store(0, Ordering::Relaxed);
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&peer).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use skyport_core::clock::ManualClock;

    use super::*;

    #[test]
    fn an_address_gets_its_burst_then_its_rate_and_others_their_own() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let rate = SignInRate::new(clock.clone());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "::1".parse().unwrap());
        assert!((0..SIGN_IN_BURST).all(|_| rate.allows(a)));
        assert!(!rate.allows(a));
        assert!(rate.allows(b));
        clock.advance(Duration::from_millis(500));
        assert!(rate.allows(a));
        assert!(!rate.allows(a));
    }
}
