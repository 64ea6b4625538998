//! [`CatalogChangeStore`] in the shared database (table `catalog_objects`).

use async_trait::async_trait;
use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_domain::catalog::changes::{CatalogChangeStore, Change, Kind};

use crate::db::Pg;

/// Catalog changes shared by every replica.
pub struct PgCatalogChanges {
    db: Pg,
}

impl PgCatalogChanges {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "catalog changes";

#[async_trait]
impl CatalogChangeStore for PgCatalogChanges {
    async fn load(&self) -> Result<Vec<Change>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT kind, name, body FROM catalog_objects ORDER BY updated_at, kind, name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.get(0);
                let kind = Kind::from_segment(&kind).ok_or_else(|| {
                    GatewayError::internal(format!("catalog_objects: unknown kind '{kind}'"))
                })?;
                let body = row
                    .get::<_, Option<String>>(2)
                    .map(|b| serde_json::from_str(&b))
                    .transpose()
                    .map_err(GatewayError::internal)?;
                Ok(Change {
                    kind,
                    name: row.get(1),
                    body,
                })
            })
            .collect()
    }

    async fn save(&self, change: &Change, at: &str) -> Result<(), GatewayError> {
        let body = change.body.as_ref().map(Value::to_string);
        self.db
            .execute(
                WHAT,
                "INSERT INTO catalog_objects (kind, name, body, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body,
                     updated_at = excluded.updated_at",
                &[&change.kind.plural(), &change.name, &body, &at],
            )
            .await
            .map(drop)
    }
}
