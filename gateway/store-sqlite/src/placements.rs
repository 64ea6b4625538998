//! [`PlacementAuditStore`] in the gateway database (table `placements`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_domain::placement::audit::{AuditEntry, AuditFilter, PlacementAuditStore};

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
            );
            CREATE INDEX IF NOT EXISTS placements_by_time ON placements (created_at);",
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

    async fn search(&self, filter: &AuditFilter) -> Result<Vec<Value>, GatewayError> {
        let f = filter.clone();
        let texts: Vec<String> = self
            .db
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT record FROM placements
                     WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR offering = ?2)
                       AND (?3 IS NULL OR provider = ?3) AND (?4 IS NULL OR region = ?4)
                       AND (?5 IS NULL OR mode = ?5) AND (?6 IS NULL OR request_id = ?6)
                       AND (?7 IS NULL OR created_at >= ?7) AND (?8 IS NULL OR created_at < ?8)
                     ORDER BY created_at DESC, id DESC LIMIT ?9",
                )?;
                let rows = stmt.query_map(
                    params![
                        f.tenant,
                        f.offering,
                        f.provider,
                        f.region,
                        f.mode,
                        f.request_id,
                        f.since,
                        f.until,
                        f.limit as i64
                    ],
                    |row| row.get(0),
                )?;
                rows.collect()
            })
            .await?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(GatewayError::internal))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn sqlite_placement_audit_passes_the_conformance_suite() {
        let dirs = crate::TestDirs::default();
        let dirs = &dirs;
        skyport_domain::placement::audit::conformance::run(move || async move {
            let dir = dirs.make("placements");
            Arc::new(SqlitePlacementAudit::open(&dir).unwrap()) as Arc<dyn PlacementAuditStore>
        })
        .await;
    }
}
