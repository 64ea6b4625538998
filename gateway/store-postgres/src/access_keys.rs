//! [`AccessKeyStore`] in the shared database (table `access_keys`).

use async_trait::async_trait;
use skyport_auth::access_keys::{AccessKey, AccessKeyStore, KeySecret, Revocation};
use skyport_core::error::GatewayError;
use tokio_postgres::Row;

use crate::db::Pg;

/// Access keys shared by every replica.
pub struct PgAccessKeys {
    db: Pg,
}

impl PgAccessKeys {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "access keys";

fn row_to_key(row: &Row) -> AccessKey {
    AccessKey {
        access_key_id: row.get(0),
        tenant: row.get(1),
        department: row.get(2),
        created_at: row.get(3),
        revoked_at: row.get(4),
    }
}

#[async_trait]
impl AccessKeyStore for PgAccessKeys {
    async fn insert(&self, key: AccessKey, secret: String) -> Result<(), GatewayError> {
        self.db
            .execute(
                WHAT,
                "INSERT INTO access_keys (access_key_id, tenant, department, secret, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &key.access_key_id,
                    &key.tenant,
                    &key.department,
                    &secret,
                    &key.created_at,
                ],
            )
            .await
            .map(drop)
    }

    async fn list(&self, tenant: Option<&str>) -> Result<Vec<AccessKey>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT access_key_id, tenant, department, created_at, revoked_at
                 FROM access_keys WHERE $1::TEXT IS NULL OR tenant = $1
                 ORDER BY created_at, access_key_id",
                &[&tenant],
            )
            .await?;
        Ok(rows.iter().map(row_to_key).collect())
    }

    async fn revoke(&self, access_key_id: &str, at: &str) -> Result<Revocation, GatewayError> {
        // One statement: the key as it was, and whether this call revoked it.
        let rows = self
            .db
            .query(
                WHAT,
                "WITH revoked AS (
                     UPDATE access_keys SET revoked_at = $2
                     WHERE access_key_id = $1 AND revoked_at IS NULL
                     RETURNING access_key_id)
                 SELECT k.access_key_id, k.tenant, k.department, k.created_at,
                        COALESCE(k.revoked_at, $2), EXISTS (SELECT 1 FROM revoked)
                 FROM access_keys k WHERE k.access_key_id = $1",
                &[&access_key_id, &at],
            )
            .await?;
        Ok(match rows.first() {
            None => Revocation::Unknown,
            Some(row) if row.get::<_, bool>(5) => Revocation::Revoked(row_to_key(row)),
            Some(row) => Revocation::AlreadyRevoked(row_to_key(row)),
        })
    }

    async fn secret(&self, access_key_id: &str) -> Result<Option<KeySecret>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT tenant, department, secret FROM access_keys
                 WHERE access_key_id = $1 AND revoked_at IS NULL",
                &[&access_key_id],
            )
            .await?;
        Ok(rows.first().map(|row| KeySecret {
            tenant: row.get(0),
            department: row.get(1),
            secret: row.get(2),
        }))
    }
}
