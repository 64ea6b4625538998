//! Per-tenant concurrency: beside the rate limit (how many requests a second), how many
//! requests of one tenant may be in the gateway at once, so that a tenant whose requests
//! are slow (large bodies sent slowly, slow providers) holds at most its share of the
//! gateway while others are served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use skyport_core::error::{ErrorKind, GatewayError};

/// Requests in flight per tenant, each at most `limit`.
pub struct TenantConcurrency {
    limit: usize,
    in_flight: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// One request's place in its tenant's share; given back on drop.
pub struct InFlight {
    tenant: Arc<str>,
    in_flight: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = in_flight.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.tenant);
            }
        }
    }
}

impl TenantConcurrency {
    /// At most `limit` requests of one tenant at once.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            in_flight: Arc::default(),
        }
    }

    /// A place for one more request of `tenant`, or a refusal (429; EC2's 503
    /// `RequestLimitExceeded`) when it has its most in flight.
    pub fn enter(&self, tenant: &Arc<str>) -> Result<InFlight, GatewayError> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let count = in_flight.entry(Arc::clone(tenant)).or_insert(0);
        if *count >= self.limit {
            return Err(GatewayError::new(
                ErrorKind::Throttled,
                format!(
                    "tenant '{tenant}' has {} requests in flight, its most at once \
                     (limits.max_concurrent_requests); retry when one has finished",
                    self.limit
                ),
            ));
        }
        *count += 1;
        Ok(InFlight {
            tenant: Arc::clone(tenant),
            in_flight: Arc::clone(&self.in_flight),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_has_its_own_share_given_back_on_drop() {
        let limits = TenantConcurrency::new(2);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let first = limits.enter(&a).unwrap();
        let _second = limits.enter(&a).unwrap();
        let refused = limits.enter(&a).err().unwrap();
        assert_eq!(refused.kind, ErrorKind::Throttled);
        assert!(refused.public.contains("2 requests in flight"));
        let _other = limits.enter(&b).unwrap();
        drop(first);
        let _third = limits.enter(&a).unwrap();
        drop(_other);
        assert!(!limits.in_flight.lock().unwrap().contains_key(&b));
    }
}
