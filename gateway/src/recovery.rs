//! What an earlier run left unfinished: creates recorded but never answered, and
//! deployments left part-made. Resolved at startup, and on shared storage also every
//! minute, because there another replica may be the one that died.
//!
//! On SQLite the gateway is the database's only user: whatever is unfinished when it
//! starts is from an earlier run, taken before the listener serves. On PostgreSQL other
//! replicas may be creating right now, so only what has been unfinished for longer than
//! [`ABANDONED_AFTER`] is taken.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skyport_core::config::StorageBackend;
use skyport_core::ids::rfc3339_millis;

use crate::services::Services;

/// How long a create or deployment may stay unfinished on shared storage before it is
/// taken as abandoned: longer than any create takes (a plugin call's deadline, one retry).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(10 * 60);

/// How often shared storage is searched for what a dead replica left.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The time before which unfinished work counts as abandoned, on `backend`, at `now`.
fn cutoff(backend: StorageBackend, now: SystemTime) -> SystemTime {
    match backend {
        StorageBackend::Sqlite => now,
        StorageBackend::Postgres => now - ABANDONED_AFTER,
    }
}

/// Resolves what was unfinished at `cutoff`: unfinished creates first (a VM found is
/// adopted), then part-made deployments (whose adopted VMs are then terminated).
async fn resolve(services: &Services, cutoff: SystemTime) {
    let before = rfc3339_millis(cutoff);
    match services.instances.unfinished_creates().await {
        Ok(mut unfinished) => {
            unfinished.retain(|r| r.created_at < before);
            if !unfinished.is_empty() {
                let recovered = services.instances.recover_creates(unfinished).await;
                tracing::info!(
                    adopted = recovered.adopted.len(),
                    removed = recovered.removed.len(),
                    left = recovered.left.len(),
                    "unfinished creates of an earlier run resolved"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e.public, "unfinished creates could not be listed"),
    }
    match services.deployments.recover_abandoned(cutoff).await {
        Ok(undone) if !undone.is_empty() => {
            tracing::info!(deployments = ?undone, "part-made deployments of an earlier run undone")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e.public, "abandoned deployments could not be listed"),
    }
}

/// Resolves what an earlier run left, in the background. Call before the listener
/// serves: the cutoff is read now.
pub fn spawn(services: Arc<Services>, backend: StorageBackend) -> tokio::task::JoinHandle<()> {
    let first = cutoff(backend, services.clock.wall());
    tokio::spawn(async move {
        resolve(&services, first).await;
        if backend == StorageBackend::Sqlite {
            return;
        }
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            resolve(&services, cutoff(backend, services.clock.wall())).await;
        }
    })
}
