//! [`InstanceLeaseStore`] in the shared database (table `instance_leases`).

use async_trait::async_trait;
use skyport_core::error::GatewayError;
use skyport_domain::instance_leases::{ms_text, InstanceLease, InstanceLeaseStore, COLUMNS};
use tokio_postgres::Row;

use crate::db::Pg;

/// Instance leases shared by every replica.
pub struct PgInstanceLeases {
    db: Pg,
}

impl PgInstanceLeases {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }

    async fn select(&self, filter: &str, value: &str) -> Result<Vec<InstanceLease>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                &format!(
                    "SELECT {COLUMNS} FROM instance_leases WHERE {filter} ORDER BY expires_at"
                ),
                &[&value],
            )
            .await?;
        rows.iter().map(row_to_lease).collect()
    }
}

const WHAT: &str = "instance leases";

fn row_to_lease(row: &Row) -> Result<InstanceLease, GatewayError> {
    let mut columns: [String; 7] = Default::default();
    for (i, column) in columns.iter_mut().enumerate() {
        *column = row.get(i);
    }
    InstanceLease::from_columns(columns)
}

#[async_trait]
impl InstanceLeaseStore for PgInstanceLeases {
    async fn put(&self, lease: &InstanceLease) -> Result<(), GatewayError> {
        let [id, tenant, granted, expires, warn, on_expiry, state] = lease.to_columns();
        let due = lease.due_text();
        self.db
            .execute(
                WHAT,
                &format!(
                    "INSERT INTO instance_leases ({COLUMNS}, due_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (instance_id) DO UPDATE SET tenant = $2, granted_at = $3,
                         expires_at = $4, warn_at = $5, on_expiry = $6, state = $7, due_at = $8"
                ),
                &[
                    &id, &tenant, &granted, &expires, &warn, &on_expiry, &state, &due,
                ],
            )
            .await
            .map(|_| ())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<InstanceLease>, GatewayError> {
        let found = self.select("instance_id = $1", id).await?;
        Ok(found.into_iter().find(|l| l.tenant == tenant))
    }

    async fn of_tenant(&self, tenant: &str) -> Result<Vec<InstanceLease>, GatewayError> {
        self.select("tenant = $1", tenant).await
    }

    async fn due(&self, now_ms: i64) -> Result<Vec<InstanceLease>, GatewayError> {
        self.select("due_at <= $1", &ms_text(now_ms)).await
    }

    async fn extend(&self, lease: &InstanceLease, from: i64) -> Result<bool, GatewayError> {
        let [id, _, _, expires, warn, on_expiry, state] = lease.to_columns();
        self.db
            .execute(
                WHAT,
                "UPDATE instance_leases
                 SET expires_at = $2, warn_at = $3, on_expiry = $4, state = $5, due_at = $6
                 WHERE instance_id = $1 AND expires_at = $7 AND state <> 'expired'",
                &[
                    &id,
                    &expires,
                    &warn,
                    &on_expiry,
                    &state,
                    &lease.due_text(),
                    &ms_text(from),
                ],
            )
            .await
            .map(|n| n == 1)
    }

    async fn mark(&self, id: &str, expires_ms: i64, expired: bool) -> Result<bool, GatewayError> {
        self.db
            .execute(
                WHAT,
                "UPDATE instance_leases
                 SET state = CASE WHEN $3 THEN 'expired' ELSE 'warned' END,
                     due_at = CASE WHEN $3 THEN NULL ELSE expires_at END
                 WHERE instance_id = $1 AND expires_at = $2 AND state <> 'expired'",
                &[&id, &ms_text(expires_ms), &expired],
            )
            .await
            .map(|n| n == 1)
    }
}
