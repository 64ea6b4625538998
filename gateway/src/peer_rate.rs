//! How fast one client address may do something (open connections, try to sign in):
//! governor's keyed limiter on the gateway's clock. Its memory grows with the addresses
//! it has seen and is trimmed, every [`TRIM_EVERY`] checks, of those back at full burst.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use skyport_core::clock::SharedClock;

use crate::stack::local_limit::LimiterClock;

/// Checks between two trims of the addresses remembered.
const TRIM_EVERY: u32 = 4096;

/// A rate per client address.
pub(crate) struct PeerRate {
    limiter: RateLimiter<
        IpAddr,
        DashMapStateStore<IpAddr>,
        LimiterClock,
        NoOpMiddleware<std::time::Duration>,
    >,
    since_trim: AtomicU32,
}

impl PeerRate {
    /// `per_sec` a second on average and `burst` at once for each address, by `clock`.
    pub(crate) fn new(per_sec: NonZeroU32, burst: NonZeroU32, clock: SharedClock) -> Self {
        Self {
            limiter: RateLimiter::new(
                Quota::per_second(per_sec).allow_burst(burst),
                DashMapStateStore::default(),
                LimiterClock(clock),
            ),
            since_trim: AtomicU32::new(0),
        }
    }

    /// Whether `peer` may act now (taking one from its allowance when it may).
    pub(crate) fn allows(&self, peer: IpAddr) -> bool {
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
        let two = NonZeroU32::new(2).unwrap();
        let rate = PeerRate::new(two, NonZeroU32::new(30).unwrap(), clock.clone());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "::1".parse().unwrap());
        assert!((0..30).all(|_| rate.allows(a)));
        assert!(!rate.allows(a));
        assert!(rate.allows(b));
        clock.advance(Duration::from_millis(500));
        assert!(rate.allows(a));
        assert!(!rate.allows(a));
    }

    #[test]
    fn trimming_forgets_only_addresses_back_at_full_burst() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let one = NonZeroU32::new(1).unwrap();
        let rate = PeerRate::new(one, one, clock.clone());
        let spent: IpAddr = "127.0.0.9".parse().unwrap();
        assert!(rate.allows(spent));
        // Enough other addresses to trim a few times: the spent one stays spent.
        for i in 0..(2 * TRIM_EVERY) {
            rate.allows(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]));
        }
        assert!(!rate.allows(spent));
        clock.advance(Duration::from_secs(1));
        assert!(rate.allows(spent));
    }
}
