//! Leases: run-once work (the inventory sync of a provider) done by one replica at a
//! time. A holder keeps a lease by renewing it before it expires; when the holder dies,
//! its lease expires and another replica takes the work over. On embedded storage the
//! gateway is alone and every lease is its own ([`SoleHolder`]); replicas sharing
//! PostgreSQL hold them in the database, on its clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;

/// Where leases are kept.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes lease `name` for `holder` for `ttl`, or renews it when `holder` has it;
    /// whether `holder` holds it now. Another holder's lease is taken only once it has
    /// expired.
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, GatewayError>;

    /// Gives lease `name` up if `holder` has it (work that is done: nothing is left to
    /// take over); another holder's lease is left as it is.
    async fn release(&self, name: &str, holder: &str) -> Result<(), GatewayError>;
}

/// The leases of a gateway alone with its storage: always its own.
pub struct SoleHolder;

#[async_trait]
impl LeaseStore for SoleHolder {
    async fn acquire(&self, _: &str, _: &str, _: Duration) -> Result<bool, GatewayError> {
        Ok(true)
    }

    async fn release(&self, _: &str, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// Runs `work` every `every` on whichever replica holds lease `name` in `leases` as
/// `holder` (for three periods unrenewed: another replica takes it over that long after
/// its holder dies), until the task is dropped.
pub fn every_on_one_replica<F, Fut>(
    leases: Arc<dyn LeaseStore>,
    name: &'static str,
    holder: String,
    every: Duration,
    mut work: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match leases.acquire(name, &holder, every * 3).await {
                Ok(true) => work().await,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(lease = name, error = %e.public, "the lease is unavailable")
                }
            }
        }
    })
}
