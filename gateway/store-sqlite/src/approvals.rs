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
        Ok(Self { db })
    }
}

#[async_trait]
impl ApprovalStore for SqliteApprovals {
    async fn insert(&self, order: &PendingOrder) -> Result<(), GatewayError> {
        let (id, tenant, status, created, body) = (
            order.id.clone(),
            order.tenant.clone(),
            order.status.as_str(),
            order.created_at.clone(),
            order.to_record(),
        );
        self.db
            .with(move |c| {
                c.execute(
                    "INSERT INTO approval_orders (id, tenant, status, created_at, record)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, status, created, body],
                )
            })
            .await
            .map(|_| ())
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
        let store = SqliteApprovals::open(&crate::test_dir("approvals")).unwrap();
        skyport_domain::approvals::conformance::run(&store).await;
    }
}
