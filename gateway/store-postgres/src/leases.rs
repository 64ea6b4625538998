//! [`LeaseStore`] in the shared database (table `skyport_leases`), on the database's
//! clock, so replicas agree on expiry whatever their own clocks say.

use std::time::Duration;

use async_trait::async_trait;
use skyport_core::error::GatewayError;
use skyport_domain::leases::LeaseStore;

use crate::db::Pg;

/// Leases shared by every replica.
pub struct PgLeases {
    db: Pg,
}

impl PgLeases {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

#[async_trait]
impl LeaseStore for PgLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, GatewayError> {
        // One statement: taken when free or expired, renewed by its holder, else left.
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let rows = self
            .db
            .query(
                "leases",
                "INSERT INTO skyport_leases (name, holder, expires_at)
                 VALUES ($1, $2, clock_timestamp() + $3::BIGINT * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE
                     SET holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE skyport_leases.holder = excluded.holder
                        OR skyport_leases.expires_at <= clock_timestamp()
                 RETURNING holder",
                &[&name, &holder, &ttl_ms],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), GatewayError> {
        self.db
            .execute(
                "leases",
                "DELETE FROM skyport_leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(())
    }
}
