//! [`PlacementAuditStore`] in the shared database (table `placements`).

use async_trait::async_trait;
use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_domain::placement::audit::{AuditEntry, AuditFilter, PlacementAuditStore};

use crate::db::Pg;

/// Placement decisions shared by every replica.
pub struct PgPlacementAudit {
    db: Pg,
}

impl PgPlacementAudit {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "placement audit";

#[async_trait]
impl PlacementAuditStore for PgPlacementAudit {
    async fn insert(&self, e: AuditEntry) -> Result<(), GatewayError> {
        self.db
            .execute(
                WHAT,
                "INSERT INTO placements (id, created_at, tenant, request_id, mode, offering,
                     provider, region, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &e.id,
                    &e.created_at,
                    &e.tenant,
                    &e.request_id,
                    &e.mode.as_str(),
                    &e.offering,
                    &e.provider,
                    &e.region,
                    &e.record.to_string(),
                ],
            )
            .await
            .map(drop)
    }

    async fn get(&self, id: &str) -> Result<Option<Value>, GatewayError> {
        let rows = self
            .db
            .query(WHAT, "SELECT record FROM placements WHERE id = $1", &[&id])
            .await?;
        rows.first()
            .map(|row| serde_json::from_str(row.get(0)).map_err(GatewayError::internal))
            .transpose()
    }

    async fn prune_explained(&self, before: &str) -> Result<u64, GatewayError> {
        self.db
            .execute(
                WHAT,
                "DELETE FROM placements WHERE mode = 'explain' AND created_at < $1",
                &[&before],
            )
            .await
    }

    async fn search(&self, f: &AuditFilter) -> Result<Vec<Value>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record FROM placements
                 WHERE ($1::TEXT IS NULL OR tenant = $1) AND ($2::TEXT IS NULL OR offering = $2)
                   AND ($3::TEXT IS NULL OR provider = $3) AND ($4::TEXT IS NULL OR region = $4)
                   AND ($5::TEXT IS NULL OR mode = $5) AND ($6::TEXT IS NULL OR request_id = $6)
                   AND ($7::TEXT IS NULL OR created_at >= $7)
                   AND ($8::TEXT IS NULL OR created_at < $8)
                 ORDER BY created_at DESC, id DESC LIMIT $9",
                &[
                    &f.tenant,
                    &f.offering,
                    &f.provider,
                    &f.region,
                    &f.mode,
                    &f.request_id,
                    &f.since,
                    &f.until,
                    &(f.limit as i64),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| serde_json::from_str(row.get(0)).map_err(GatewayError::internal))
            .collect()
    }
}
