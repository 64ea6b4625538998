//! [`InstanceLeaseStore`] in the gateway database (table `instance_leases`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::params;
use skyport_core::error::GatewayError;
use skyport_domain::instance_leases::{ms_text, InstanceLease, InstanceLeaseStore, COLUMNS};

use crate::db::Db;

/// Instance leases in `<state_dir>/skyport.db`.
pub struct SqliteInstanceLeases {
    db: Db,
}

impl SqliteInstanceLeases {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "instance leases",
            "CREATE TABLE IF NOT EXISTS instance_leases (
                instance_id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                granted_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                warn_at TEXT NOT NULL,
                on_expiry TEXT NOT NULL,
                state TEXT NOT NULL,
                due_at TEXT
            );
            CREATE INDEX IF NOT EXISTS instance_leases_due ON instance_leases (due_at)
                WHERE due_at IS NOT NULL;
            CREATE INDEX IF NOT EXISTS instance_leases_by_tenant ON instance_leases (tenant);",
        )?;
        Ok(Self { db })
    }

    async fn select(
        &self,
        filter: &'static str,
        value: String,
    ) -> Result<Vec<InstanceLease>, GatewayError> {
        let rows = self
            .db
            .with(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM instance_leases WHERE {filter} ORDER BY expires_at"
                ))?;
                let rows = stmt.query_map(params![value], |row| {
                    let mut columns: [String; 7] = Default::default();
                    for (i, column) in columns.iter_mut().enumerate() {
                        *column = row.get(i)?;
                    }
                    Ok(columns)
                })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.into_iter().map(InstanceLease::from_columns).collect()
    }
}

#[async_trait]
impl InstanceLeaseStore for SqliteInstanceLeases {
    async fn put(&self, lease: &InstanceLease) -> Result<(), GatewayError> {
        let [id, tenant, granted, expires, warn, on_expiry, state] = lease.to_columns();
        let due = lease.due_text();
        self.db
            .with(move |c| {
                c.execute(
                    &format!(
                        "INSERT OR REPLACE INTO instance_leases ({COLUMNS}, due_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                    ),
                    params![id, tenant, granted, expires, warn, on_expiry, state, due],
                )
            })
            .await
            .map(|_| ())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<InstanceLease>, GatewayError> {
        let found = self.select("instance_id = ?1", id.to_string()).await?;
        Ok(found.into_iter().find(|l| l.tenant == tenant))
    }

    async fn of_tenant(&self, tenant: &str) -> Result<Vec<InstanceLease>, GatewayError> {
        self.select("tenant = ?1", tenant.to_string()).await
    }

    async fn due(&self, now_ms: i64) -> Result<Vec<InstanceLease>, GatewayError> {
        self.select("due_at <= ?1", ms_text(now_ms)).await
    }

    async fn extend(&self, lease: &InstanceLease, from: i64) -> Result<bool, GatewayError> {
        let [id, _, _, expires, warn, on_expiry, state] = lease.to_columns();
        let (due, from) = (lease.due_text(), ms_text(from));
        self.db
            .with(move |c| {
                c.execute(
                    "UPDATE instance_leases
                     SET expires_at = ?2, warn_at = ?3, on_expiry = ?4, state = ?5, due_at = ?6
                     WHERE instance_id = ?1 AND expires_at = ?7 AND state <> 'expired'",
                    params![id, expires, warn, on_expiry, state, due, from],
                )
                .map(|n| n == 1)
            })
            .await
    }

    async fn mark(&self, id: &str, expires_ms: i64, expired: bool) -> Result<bool, GatewayError> {
        let (id, expires) = (id.to_string(), ms_text(expires_ms));
        self.db
            .with(move |c| {
                c.execute(
                    "UPDATE instance_leases
                     SET state = CASE WHEN ?3 THEN 'expired' ELSE 'warned' END,
                         due_at = CASE WHEN ?3 THEN NULL ELSE expires_at END
                     WHERE instance_id = ?1 AND expires_at = ?2 AND state <> 'expired'",
                    params![id, expires, expired],
                )
                .map(|n| n == 1)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_instance_leases_pass_the_conformance_suite() {
        let guard = crate::test_dir("instance-leases");
        let dir = guard.path();
        let store = SqliteInstanceLeases::open(dir).unwrap();
        skyport_domain::instance_leases::conformance::run(&store).await;
    }
}
