//! [`AccessKeyStore`] in the gateway database (table `access_keys`). The database file is
//! made readable by its owner only: it holds secrets.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use skyport_auth::access_keys::{AccessKey, AccessKeyStore, KeySecret, Revocation};
use skyport_core::error::GatewayError;

use crate::db::Db;

/// Access keys in `<state_dir>/skyport.db`.
pub struct SqliteAccessKeys {
    db: Db,
}

impl SqliteAccessKeys {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`, which is made readable
    /// by its owner only.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "access keys",
            "CREATE TABLE IF NOT EXISTS access_keys (
                access_key_id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                department TEXT,
                secret TEXT NOT NULL,
                created_at TEXT NOT NULL,
                revoked_at TEXT
            );",
        )?;
        Ok(Self { db })
    }
}

const KEY_COLUMNS: &str = "access_key_id, tenant, department, created_at, revoked_at";

#[async_trait]
impl AccessKeyStore for SqliteAccessKeys {
    async fn insert(&self, key: AccessKey, secret: String) -> Result<(), GatewayError> {
        self.db
            .with(move |c| {
                c.execute(
                    "INSERT INTO access_keys (access_key_id, tenant, department, secret, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        key.access_key_id,
                        key.tenant,
                        key.department,
                        secret,
                        key.created_at
                    ],
                )
                .map(|_| ())
            })
            .await
    }

    async fn list(&self, tenant: Option<&str>) -> Result<Vec<AccessKey>, GatewayError> {
        let tenant = tenant.map(str::to_owned);
        self.db
            .with(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {KEY_COLUMNS} FROM access_keys WHERE ?1 IS NULL OR tenant = ?1
                     ORDER BY created_at, access_key_id"
                ))?;
                let rows = stmt.query_map(params![tenant], row_to_key)?;
                rows.collect()
            })
            .await
    }

    async fn revoke(&self, access_key_id: &str, at: &str) -> Result<Revocation, GatewayError> {
        let (id, at) = (access_key_id.to_string(), at.to_string());
        self.db
            .with(move |c| {
                let changed = c.execute(
                    "UPDATE access_keys SET revoked_at = ?2
                     WHERE access_key_id = ?1 AND revoked_at IS NULL",
                    params![id, at],
                )?;
                let key = c
                    .query_row(
                        &format!("SELECT {KEY_COLUMNS} FROM access_keys WHERE access_key_id = ?1"),
                        params![id],
                        row_to_key,
                    )
                    .optional()?;
                Ok(match (key, changed) {
                    (None, _) => Revocation::Unknown,
                    (Some(key), 0) => Revocation::AlreadyRevoked(key),
                    (Some(key), _) => Revocation::Revoked(key),
                })
            })
            .await
    }

    async fn secret(&self, access_key_id: &str) -> Result<Option<KeySecret>, GatewayError> {
        let id = access_key_id.to_string();
        self.db
            .with(move |c| {
                c.query_row(
                    "SELECT tenant, department, secret FROM access_keys
                     WHERE access_key_id = ?1 AND revoked_at IS NULL",
                    params![id],
                    |row| {
                        Ok(KeySecret {
                            tenant: row.get(0)?,
                            department: row.get(1)?,
                            secret: row.get(2)?,
                        })
                    },
                )
                .optional()
            })
            .await
    }
}

fn row_to_key(row: &rusqlite::Row<'_>) -> Result<AccessKey, rusqlite::Error> {
    Ok(AccessKey {
        access_key_id: row.get(0)?,
        tenant: row.get(1)?,
        department: row.get(2)?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn sqlite_access_keys_pass_the_conformance_suite() {
        let dirs = crate::TestDirs::default();
        let dirs = &dirs;
        skyport_auth::access_keys::conformance::run(move || async move {
            let dir = dirs.make("access-keys");
            Arc::new(SqliteAccessKeys::open(&dir).unwrap()) as Arc<dyn AccessKeyStore>
        })
        .await;
    }

    #[test]
    fn the_database_holding_secrets_is_readable_by_its_owner_only() {
        let guard = crate::test_dir("access-keys-mode");
        let dir = guard.path();
        // Another store opens the database first, as the gateway does.
        let _inventory = crate::SqliteInventory::open(dir).unwrap();
        SqliteAccessKeys::open(dir).unwrap();
        for file in ["skyport.db", "skyport.db-wal", "skyport.db-shm"] {
            let mode = std::fs::metadata(dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}
