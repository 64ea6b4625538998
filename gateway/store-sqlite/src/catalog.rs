//! [`CatalogChangeStore`] in the gateway database (table `catalog_objects`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::params;
use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_domain::catalog::changes::{CatalogChangeStore, Change, Kind};

use crate::db::Db;

/// Catalog changes in `<state_dir>/skyport.db`.
pub struct SqliteCatalogChanges {
    db: Db,
}

impl SqliteCatalogChanges {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "catalog changes",
            "CREATE TABLE IF NOT EXISTS catalog_objects (
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                body TEXT,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, name)
            );",
        )?;
        Ok(Self { db })
    }
}

#[async_trait]
impl CatalogChangeStore for SqliteCatalogChanges {
    async fn load(&self) -> Result<Vec<Change>, GatewayError> {
        let rows: Vec<(String, String, Option<String>)> = self
            .db
            .with(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT kind, name, body FROM catalog_objects ORDER BY updated_at, kind, name",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect()
            })
            .await?;
        rows.into_iter()
            .map(|(kind, name, body)| {
                let kind = Kind::from_segment(&kind).ok_or_else(|| {
                    GatewayError::internal(format!("catalog_objects: unknown kind '{kind}'"))
                })?;
                let body = body
                    .map(|b| serde_json::from_str(&b))
                    .transpose()
                    .map_err(GatewayError::internal)?;
                Ok(Change { kind, name, body })
            })
            .collect()
    }

    async fn save(&self, change: &Change, at: &str) -> Result<(), GatewayError> {
        let row = (
            change.kind.plural(),
            change.name.clone(),
            change.body.as_ref().map(Value::to_string),
            at.to_string(),
        );
        self.db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO catalog_objects (kind, name, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body,
                         updated_at = excluded.updated_at",
                    params![row.0, row.1, row.2, row.3],
                )
                .map(|_| ())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn sqlite_catalog_changes_pass_the_conformance_suite() {
        let dirs = crate::TestDirs::default();
        let dirs = &dirs;
        skyport_domain::catalog::changes::conformance::run(move || async move {
            let dir = dirs.make("catalog");
            Arc::new(SqliteCatalogChanges::open(&dir).unwrap()) as Arc<dyn CatalogChangeStore>
        })
        .await;
    }
}
