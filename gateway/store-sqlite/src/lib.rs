//! The embedded default storage: every store of the gateway in one SQLite database,
//! `<state-dir>/skyport.db` (WAL), each implementing its trait from the layer that owns
//! it and passing that trait's conformance suite.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod access_keys;
pub mod approvals;
pub mod catalog;
pub mod db;
pub mod deployments;
pub mod dump;
pub mod events;
pub mod instance_leases;
pub mod inventory;
pub mod key_pairs;
pub mod placements;
pub mod sessions;
pub mod sla;

pub use access_keys::SqliteAccessKeys;
pub use approvals::SqliteApprovals;
pub use catalog::SqliteCatalogChanges;
pub use deployments::SqliteDeployments;
pub use events::SqliteEvents;
pub use instance_leases::SqliteInstanceLeases;
pub use inventory::SqliteInventory;
pub use key_pairs::SqliteKeyPairs;
pub use placements::SqlitePlacementAudit;
pub use sessions::SqliteSessions;
pub use sla::SqliteSla;

/// A new empty directory for one test's database.
#[cfg(test)]
fn test_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(skyport_core::ids::new_id(&format!("skyport-{tag}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
