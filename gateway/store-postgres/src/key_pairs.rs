//! [`KeyPairStore`] in the shared database (table `key_pairs`).

use async_trait::async_trait;
use skyport_core::error::GatewayError;
use skyport_domain::operations::key_pairs::{KeyPair, KeyPairStore};
use tokio_postgres::Row;

use crate::db::Pg;

/// Key pairs shared by every replica.
pub struct PgKeyPairs {
    db: Pg,
}

impl PgKeyPairs {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "key pairs";

fn row_to_pair(row: &Row) -> KeyPair {
    KeyPair {
        name: row.get(0),
        id: row.get(1),
        key_type: row.get(2),
        fingerprint: row.get(3),
        public_key: row.get(4),
        created_at: row.get(5),
    }
}

#[async_trait]
impl KeyPairStore for PgKeyPairs {
    async fn insert(&self, tenant: &str, pair: KeyPair) -> Result<bool, GatewayError> {
        self.db
            .execute(
                WHAT,
                "INSERT INTO key_pairs
                 (tenant, name, id, key_type, fingerprint, public_key, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &tenant,
                    &pair.name,
                    &pair.id,
                    &pair.key_type,
                    &pair.fingerprint,
                    &pair.public_key,
                    &pair.created_at,
                ],
            )
            .await
            .map(|inserted| inserted == 1)
    }

    async fn list(&self, tenant: &str) -> Result<Vec<KeyPair>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT name, id, key_type, fingerprint, public_key, created_at
                 FROM key_pairs WHERE tenant = $1 ORDER BY name",
                &[&tenant],
            )
            .await?;
        Ok(rows.iter().map(row_to_pair).collect())
    }

    async fn get(&self, tenant: &str, name: &str) -> Result<Option<KeyPair>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT name, id, key_type, fingerprint, public_key, created_at
                 FROM key_pairs WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await?;
        Ok(rows.first().map(row_to_pair))
    }

    async fn delete(&self, tenant: &str, name_or_id: &str) -> Result<bool, GatewayError> {
        self.db
            .execute(
                WHAT,
                "DELETE FROM key_pairs WHERE tenant = $1 AND (name = $2 OR id = $2)",
                &[&tenant, &name_or_id],
            )
            .await
            .map(|n| n > 0)
    }
}
