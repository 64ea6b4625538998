//! Per-tenant concurrency: beside the rate limit (how many requests a second), how many
//! requests of one tenant may be in the gateway at once, so that a tenant whose requests
//! are slow (large bodies sent slowly, slow providers) holds at most its share of the
//! gateway while others are served.

use std::sync::Arc;

use skyport_core::error::{ErrorKind, GatewayError};

use crate::per_key::{PerKeyLimit, Slot};

/// Requests in flight per tenant, each at most `limit`.
pub struct TenantConcurrency(PerKeyLimit<Arc<str>>);

/// One request's place in its tenant's share; given back on drop.
pub struct InFlight {
    _slot: Slot<Arc<str>>,
}

impl TenantConcurrency {
    /// At most `limit` requests of one tenant at once.
    pub fn new(limit: usize) -> Self {
        Self(PerKeyLimit::new(limit))
    }

    /// A place for one more request of `tenant`, or a refusal (429; EC2's 503
    /// `RequestLimitExceeded`) when it has its most in flight.
    pub fn enter(&self, tenant: &Arc<str>) -> Result<InFlight, GatewayError> {
        self.0
            .take(tenant)
            .map(|_slot| InFlight { _slot })
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorKind::Throttled,
                    format!(
                        "tenant '{tenant}' has {} requests in flight, its most at once \
                     (limits.max_concurrent_requests); retry when one has finished",
                        self.0.limit()
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_past_its_share_is_throttled_naming_the_limit() {
        let limits = TenantConcurrency::new(2);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let first = limits.enter(&a).unwrap();
        let _second = limits.enter(&a).unwrap();
        let refused = limits.enter(&a).err().unwrap();
        assert_eq!(refused.kind, ErrorKind::Throttled);
        assert!(refused.public.contains("2 requests in flight"));
        let _other = limits.enter(&b).unwrap();
        drop(first);
        assert!(limits.enter(&a).is_ok());
    }
}
