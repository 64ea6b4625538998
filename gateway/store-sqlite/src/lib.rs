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

/// A new empty directory for one test's database, removed when the guard drops.
#[cfg(test)]
fn test_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("skyport-{tag}-"))
        .tempdir()
        .unwrap()
}

/// Directories for the stores a conformance suite makes one after another, all removed
/// when the test ends (a store must not outlive its directory).
#[cfg(test)]
#[derive(Default)]
struct TestDirs(std::sync::Mutex<Vec<tempfile::TempDir>>);

#[cfg(test)]
impl TestDirs {
    /// A new empty directory tagged `tag`, removed with `self`.
    fn make(&self, tag: &str) -> std::path::PathBuf {
        let dir = test_dir(tag);
        let path = dir.path().to_path_buf();
        self.0.lock().unwrap().push(dir);
        path
    }
}
