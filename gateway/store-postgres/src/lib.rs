//! Shared storage for replicas: every gateway store in one PostgreSQL database, each
//! implementing its trait from the layer that owns it and passing that trait's
//! conformance suite, as the embedded SQLite stores do. The schema is versioned
//! ([`schema`]) and migrated at startup.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod access_keys;
pub mod approvals;
pub mod catalog;
pub mod db;
pub mod deployments;
pub mod events;
pub mod instance_leases;
pub mod inventory;
pub mod key_pairs;
pub mod leases;
pub mod placements;
pub mod schema;
pub mod sessions;
pub mod sla;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use access_keys::PgAccessKeys;
pub use approvals::PgApprovals;
pub use catalog::PgCatalogChanges;
pub use db::Pg;
pub use deployments::PgDeployments;
pub use events::PgEvents;
pub use instance_leases::PgInstanceLeases;
pub use inventory::PgInventory;
pub use key_pairs::PgKeyPairs;
pub use leases::PgLeases;
pub use placements::PgPlacementAudit;
pub use sessions::PgSessions;
pub use sla::PgSla;

#[cfg(test)]
mod tests;
