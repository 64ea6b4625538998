//! [`ApprovalStore`] in the gateway database (table `approval_orders`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use skyport_core::error::GatewayError;
use skyport_domain::approvals::{ApprovalStore, OrderStatus, PendingOrder};

use crate::db::Db;

/// Orders waiting for approval in `<state_dir>/skyport.db`.
pub struct SqliteApprovals {
    db: Db,
}

impl SqliteApprovals {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "approvals",
            "CREATE TABLE IF NOT EXISTS approval_orders (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at TEXT NOT NULL,
                record TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS approval_orders_by_tenant
                ON approval_orders (tenant, created_at);",
        )?;
        // Added after the first release: one order per tenant and client token.
        db.add_missing_columns("approval_orders", &[("client_token", "TEXT")])?;
        db.migrate(|conn| {
            conn.execute_batch(
                "CREATE UNIQUE INDEX IF NOT EXISTS approval_orders_client_token
                 ON approval_orders (tenant, client_token) WHERE client_token IS NOT NULL;",
            )
        })?;
        Ok(Self { db })
    }
}

#[async_trait]
impl ApprovalStore for SqliteApprovals {
    async fn insert(&self, order: &PendingOrder) -> Result<PendingOrder, GatewayError> {
        let (id, tenant, status, created, body, token) = (
            order.id.clone(),
            order.tenant.clone(),
            order.status.as_str(),
            order.created_at.clone(),
            order.to_record(),
            order.client_token().map(str::to_owned),
        );
        // None: stored; Some(record): not stored, and the tenant's order with this token.
        let refused: Option<Option<String>> = self
            .db
            .with(move |c| {
                let stored = c.execute(
                    "INSERT OR IGNORE INTO approval_orders
                         (id, tenant, status, created_at, record, client_token)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, tenant, status, created, body, token],
                )?;
                if stored == 1 {
                    return Ok(None);
                }
                c.query_row(
                    "SELECT record FROM approval_orders WHERE tenant = ?1 AND client_token = ?2",
                    params![tenant, token],
                    |row| row.get::<_, String>(0),
                )
                .optional()
                .map(Some)
            })
            .await?;
        match refused {
            None => Ok(order.clone()),
            Some(Some(earlier)) => PendingOrder::from_record(&earlier),
            Some(None) => Err(GatewayError::internal(format!(
                "approvals: an order {} is already stored",
                order.id
            ))),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<PendingOrder>, GatewayError> {
        let id = id.to_string();
        let found = self
            .db
            .with(move |c| {
                c.query_row(
                    "SELECT record FROM approval_orders WHERE id = ?1",
                    params![id],
                    |row| row.get::<_, String>(0),
                )
                .optional()
            })
            .await?;
        found.map(|t| PendingOrder::from_record(&t)).transpose()
    }

    async fn list(
        &self,
        tenant: Option<&str>,
        status: Option<OrderStatus>,
    ) -> Result<Vec<PendingOrder>, GatewayError> {
        let (tenant, status) = (tenant.map(str::to_owned), status.map(OrderStatus::as_str));
        let rows = self
            .db
            .with(move |c| {
                let mut stmt = c.prepare(
                    "SELECT record FROM approval_orders
                     WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR status = ?2)
                     ORDER BY created_at, id",
                )?;
                let rows = stmt.query_map(params![tenant, status], |row| row.get(0))?;
                rows.collect::<Result<Vec<String>, _>>()
            })
            .await?;
        rows.iter().map(|t| PendingOrder::from_record(t)).collect()
    }

    async fn update(&self, order: &PendingOrder, from: OrderStatus) -> Result<bool, GatewayError> {
        let (id, status, body) = (order.id.clone(), order.status.as_str(), order.to_record());
        self.db
            .with(move |c| {
                c.execute(
                    "UPDATE approval_orders SET status = ?2, record = ?3
                     WHERE id = ?1 AND status = ?4",
                    params![id, status, body, from.as_str()],
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
    async fn sqlite_approvals_pass_the_conformance_suite() {
        let guard = crate::test_dir("approvals");
        let dir = guard.path();
        let store = SqliteApprovals::open(dir).unwrap();
        skyport_domain::approvals::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn a_table_from_before_client_tokens_gains_the_column_and_keeps_its_orders() {
        let guard = crate::test_dir("approvals-upgrade");
        let dir = guard.path();
        let old = rusqlite::Connection::open(dir.join("skyport.db")).unwrap();
        old.execute_batch(
            "CREATE TABLE approval_orders (id TEXT PRIMARY KEY, tenant TEXT NOT NULL,
                 status TEXT NOT NULL, created_at TEXT NOT NULL, record TEXT NOT NULL);",
        )
        .unwrap();
        let kept = PendingOrder {
            id: "ord-old".into(),
            tenant: "demo".into(),
            department: None,
            ordered_by: "alice".into(),
            offering: "dev-vm".into(),
            request: serde_json::json!({"client_token": "tok-1"}),
            status: OrderStatus::PendingApproval,
            reason: None,
            created_at: "2026-12-01T00:00:00.000Z".into(),
            decided_at: None,
            decided_by: None,
            instance_id: None,
        };
        old.execute(
            "INSERT INTO approval_orders VALUES (?1, 'demo', 'pending_approval', ?2, ?3)",
            params![kept.id, kept.created_at, kept.to_record()],
        )
        .unwrap();
        drop(old);
        let store = SqliteApprovals::open(dir).unwrap();
        assert_eq!(store.get("ord-old").await.unwrap(), Some(kept.clone()));
        // Orders from before have no token on record: a new one with it is stored.
        let new = PendingOrder {
            id: "ord-new".into(),
            ..kept
        };
        assert_eq!(store.insert(&new).await.unwrap(), new);
        let again = PendingOrder {
            id: "ord-again".into(),
            ..new.clone()
        };
        assert_eq!(store.insert(&again).await.unwrap(), new);
    }
}
