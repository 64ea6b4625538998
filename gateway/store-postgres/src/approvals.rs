//! [`ApprovalStore`] in the shared database (table `approval_orders`).

use async_trait::async_trait;
use skyport_core::error::GatewayError;
use skyport_domain::approvals::{ApprovalStore, OrderStatus, PendingOrder};

use crate::db::Pg;

/// Orders waiting for approval, shared by every replica.
pub struct PgApprovals {
    db: Pg,
}

impl PgApprovals {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "approvals";

#[async_trait]
impl ApprovalStore for PgApprovals {
    async fn insert(&self, order: &PendingOrder) -> Result<PendingOrder, GatewayError> {
        let token = order.client_token();
        // ON CONFLICT waits for a concurrent insert of the same token to commit, so the
        // read after it sees that order.
        let stored = self
            .db
            .execute(
                WHAT,
                "INSERT INTO approval_orders (id, tenant, status, created_at, record, client_token)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &order.id,
                    &order.tenant,
                    &order.status.as_str(),
                    &order.created_at,
                    &order.to_record(),
                    &token,
                ],
            )
            .await?;
        if stored == 1 {
            return Ok(order.clone());
        }
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record FROM approval_orders WHERE tenant = $1 AND client_token = $2",
                &[&order.tenant, &token],
            )
            .await?;
        match rows.first() {
            Some(row) => PendingOrder::from_record(row.get(0)),
            None => Err(GatewayError::internal(format!(
                "approvals: an order {} is already stored",
                order.id
            ))),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<PendingOrder>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record FROM approval_orders WHERE id = $1",
                &[&id],
            )
            .await?;
        rows.first()
            .map(|r| PendingOrder::from_record(r.get(0)))
            .transpose()
    }

    async fn list(
        &self,
        tenant: Option<&str>,
        status: Option<OrderStatus>,
    ) -> Result<Vec<PendingOrder>, GatewayError> {
        let status = status.map(OrderStatus::as_str);
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record FROM approval_orders
                 WHERE ($1::TEXT IS NULL OR tenant = $1) AND ($2::TEXT IS NULL OR status = $2)
                 ORDER BY created_at, id",
                &[&tenant, &status],
            )
            .await?;
        rows.iter()
            .map(|r| PendingOrder::from_record(r.get(0)))
            .collect()
    }

    async fn update(&self, order: &PendingOrder, from: OrderStatus) -> Result<bool, GatewayError> {
        self.db
            .execute(
                WHAT,
                "UPDATE approval_orders SET status = $2, record = $3
                 WHERE id = $1 AND status = $4",
                &[
                    &order.id,
                    &order.status.as_str(),
                    &order.to_record(),
                    &from.as_str(),
                ],
            )
            .await
            .map(|n| n == 1)
    }
}
