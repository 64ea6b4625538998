//! [`PlacementAuditStore`] in the gateway database (table `placements`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_domain::placement::audit::{AuditEntry, PlacementAuditStore};

use crate::db::Db;

/// Placement decisions in `<state_dir>/skyport.db`.
pub struct SqlitePlacementAudit {
    db: Db,
}

impl SqlitePlacementAudit {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "placement audit",
            "CREATE TABLE IF NOT EXISTS placements (
                id TEXT PRIMARY KEY,
                created_at TEXT NOT NULL,
                tenant TEXT NOT NULL,
                request_id TEXT NOT NULL,
                mode TEXT NOT NULL,
                offering TEXT NOT NULL,
                provider TEXT NOT NULL,
                region TEXT NOT NULL,
                record TEXT NOT NULL
            );",
        )?;
        Ok(Self { db })
    }
}

#[async_trait]
impl PlacementAuditStore for SqlitePlacementAudit {
    async fn insert(&self, e: AuditEntry) -> Result<(), GatewayError> {
        self.db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO placements (id, created_at, tenant, request_id, mode, offering,
                         provider, region, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        e.id,
                        e.created_at,
                        e.tenant,
                        e.request_id,
                        e.mode.as_str(),
                        e.offering,
                        e.provider,
                        e.region,
                        e.record.to_string()
                    ],
                )
                .map(|_| ())
            })
            .await
    }

    async fn prune_explained(&self, before: &str) -> Result<u64, GatewayError> {
        let before = before.to_string();
        self.db
            .with(move |conn| {
                conn.execute(
                    "DELETE FROM placements WHERE mode = 'explain' AND created_at < ?1",
                    [before],
                )
                .map(|n| n as u64)
            })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Value>, GatewayError> {
        let id = id.to_string();
        let text: Option<String> = self
            .db
            .with(move |conn| {
                conn.query_row("SELECT record FROM placements WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .optional()
            })
            .await?;
        text.map(|t| serde_json::from_str(&t).map_err(GatewayError::internal))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn sqlite_placement_audit_passes_the_conformance_suite() {
        skyport_domain::placement::audit::conformance::run(|| async {
            let dir = crate::test_dir("placements");
            Arc::new(SqlitePlacementAudit::open(&dir).unwrap()) as Arc<dyn PlacementAuditStore>
        })
        .await;
    }
}
