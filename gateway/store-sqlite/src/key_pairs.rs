//! [`KeyPairStore`] in the gateway database (table `key_pairs`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use skyport_core::error::GatewayError;
use skyport_domain::operations::key_pairs::{KeyPair, KeyPairStore};

use crate::db::Db;

/// Key pairs in `<state_dir>/skyport.db`.
pub struct SqliteKeyPairs {
    db: Db,
}

impl SqliteKeyPairs {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "key pairs",
            "CREATE TABLE IF NOT EXISTS key_pairs (
                tenant TEXT NOT NULL,
                name TEXT NOT NULL,
                id TEXT NOT NULL UNIQUE,
                key_type TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                public_key TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (tenant, name)
            );",
        )?;
        Ok(Self { db })
    }
}

const COLUMNS: &str = "name, id, key_type, fingerprint, public_key, created_at";

#[async_trait]
impl KeyPairStore for SqliteKeyPairs {
    async fn insert(&self, tenant: &str, pair: KeyPair) -> Result<bool, GatewayError> {
        let tenant = tenant.to_string();
        self.db
            .with(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO key_pairs
                     (tenant, name, id, key_type, fingerprint, public_key, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        tenant,
                        pair.name,
                        pair.id,
                        pair.key_type,
                        pair.fingerprint,
                        pair.public_key,
                        pair.created_at
                    ],
                )
                .map(|inserted| inserted == 1)
            })
            .await
    }

    async fn list(&self, tenant: &str) -> Result<Vec<KeyPair>, GatewayError> {
        let tenant = tenant.to_string();
        self.db
            .with(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM key_pairs WHERE tenant = ?1 ORDER BY name"
                ))?;
                let rows = stmt.query_map(params![tenant], row_to_pair)?;
                rows.collect()
            })
            .await
    }

    async fn get(&self, tenant: &str, name: &str) -> Result<Option<KeyPair>, GatewayError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.db
            .with(move |c| {
                c.query_row(
                    &format!("SELECT {COLUMNS} FROM key_pairs WHERE tenant = ?1 AND name = ?2"),
                    params![tenant, name],
                    row_to_pair,
                )
                .optional()
            })
            .await
    }

    async fn delete(&self, tenant: &str, name_or_id: &str) -> Result<bool, GatewayError> {
        let (tenant, key) = (tenant.to_string(), name_or_id.to_string());
        self.db
            .with(move |c| {
                c.execute(
                    "DELETE FROM key_pairs WHERE tenant = ?1 AND (name = ?2 OR id = ?2)",
                    params![tenant, key],
                )
                .map(|n| n > 0)
            })
            .await
    }
}

fn row_to_pair(row: &rusqlite::Row<'_>) -> Result<KeyPair, rusqlite::Error> {
    Ok(KeyPair {
        name: row.get(0)?,
        id: row.get(1)?,
        key_type: row.get(2)?,
        fingerprint: row.get(3)?,
        public_key: row.get(4)?,
        created_at: row.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn sqlite_key_pairs_pass_the_conformance_suite() {
        let dirs = crate::TestDirs::default();
        let dirs = &dirs;
        skyport_domain::operations::key_pairs::conformance::run(move || async move {
            let dir = dirs.make("key-pairs");
            Arc::new(SqliteKeyPairs::open(&dir).unwrap()) as Arc<dyn KeyPairStore>
        })
        .await;
    }
}
