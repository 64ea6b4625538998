//! Orders waiting for approval, in memory, for tests.

use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{ApprovalStore, OrderStatus, PendingOrder};

/// Orders in a list.
#[derive(Default)]
pub struct MemoryApprovals {
    orders: Mutex<Vec<PendingOrder>>,
}

#[async_trait]
impl ApprovalStore for MemoryApprovals {
    async fn insert(&self, order: &PendingOrder) -> Result<PendingOrder, GatewayError> {
        let mut orders = self.orders.lock().unwrap();
        if let Some(token) = order.client_token() {
            let earlier = orders
                .iter()
                .find(|o| o.tenant == order.tenant && o.client_token() == Some(token));
            if let Some(earlier) = earlier {
                return Ok(earlier.clone());
            }
        }
        orders.push(order.clone());
        Ok(order.clone())
    }

    async fn get(&self, id: &str) -> Result<Option<PendingOrder>, GatewayError> {
        let orders = self.orders.lock().unwrap();
        Ok(orders.iter().find(|o| o.id == id).cloned())
    }

    async fn list(
        &self,
        tenant: Option<&str>,
        status: Option<OrderStatus>,
    ) -> Result<Vec<PendingOrder>, GatewayError> {
        let orders = self.orders.lock().unwrap();
        let mut found: Vec<PendingOrder> = orders
            .iter()
            .filter(|o| tenant.is_none_or(|t| o.tenant == t))
            .filter(|o| status.is_none_or(|s| o.status == s))
            .cloned()
            .collect();
        found.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(found)
    }

    async fn update(&self, order: &PendingOrder, from: OrderStatus) -> Result<bool, GatewayError> {
        let mut orders = self.orders.lock().unwrap();
        match orders.iter_mut().find(|o| o.id == order.id) {
            Some(stored) if stored.status == from => {
                *stored = order.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
