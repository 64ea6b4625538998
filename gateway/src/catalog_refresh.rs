//! The catalog on shared storage: another replica may change it at any time. Every
//! [`REFRESH_EVERY`] the stored changes are read again and, when they differ from those
//! in force here, the catalog they make is put in force ([`CatalogService::refresh`]).
//! On SQLite the gateway is the store's only writer and has nothing to read back.

use std::sync::Arc;
use std::time::Duration;

use skyport_core::config::StorageBackend;
use skyport_domain::catalog::CatalogService;

/// How often a replica on shared storage reads the catalog changes again: the longest a
/// change made through one replica takes to be in force on the others.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Keeps `catalog` in step with the shared store, in the background; nothing on SQLite.
pub fn spawn(
    catalog: Arc<CatalogService>,
    backend: StorageBackend,
) -> Option<tokio::task::JoinHandle<()>> {
    if backend == StorageBackend::Sqlite {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = catalog.refresh().await {
                tracing::debug!(error = %e.public, "the catalog changes could not be read again now");
            }
        }
    }))
}
