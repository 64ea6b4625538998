//! A [`LeaseStore`] in memory, on a manual clock, for tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;

use super::LeaseStore;

/// Leases by name: (holder, expiry on the clock's monotonic time).
pub struct MemoryLeases {
    leases: Mutex<HashMap<String, (String, Duration)>>,
    clock: SharedClock,
}

impl MemoryLeases {
    /// Leases that expire by `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            leases: Mutex::default(),
            clock,
        }
    }
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, GatewayError> {
        let now = self.clock.monotonic();
        let mut leases = self.leases.lock().unwrap();
        let free = match leases.get(name) {
            None => true,
            Some((h, expires)) => h == holder || *expires <= now,
        };
        if free {
            leases.insert(name.to_string(), (holder.to_string(), now + ttl));
        }
        Ok(free)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), GatewayError> {
        let mut leases = self.leases.lock().unwrap();
        if leases.get(name).is_some_and(|(h, _)| h == holder) {
            leases.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use skyport_core::clock::ManualClock;

    use super::*;

    #[tokio::test]
    async fn memory_leases_pass_the_conformance_suite() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let store = Arc::new(MemoryLeases::new(clock.clone()));
        super::super::conformance::run(store, |d: Duration| {
            clock.advance(d);
            std::future::ready(())
        })
        .await;
    }
}
