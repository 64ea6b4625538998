//! Approvals: orders of offerings that require one wait as `pending_approval` until an
//! approver approves (they are then placed and created as they would have been) or denies
//! them; denied and expired orders are kept with their reason.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use skyport_core::error::GatewayError;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod service;
#[cfg(test)]
mod tests;

pub use service::ApprovalService;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;

/// Where an order waiting for approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Waiting for an approver.
    PendingApproval,
    /// Approved and created (`instance_id` says what).
    Approved,
    /// Approved, but its create failed (`reason` says why).
    Failed,
    /// Denied (`reason` says why).
    Denied,
    /// Not decided in time.
    Expired,
}

impl OrderStatus {
    /// Its name in the API and the stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::Approved => "approved",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

/// An order that required approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOrder {
    /// `ord-` and 17 hex digits.
    pub id: String,
    /// The ordering tenant.
    pub tenant: String,
    /// The department it bills.
    pub department: Option<String>,
    /// Who ordered (the credential's subject).
    pub ordered_by: String,
    /// The offering ordered.
    pub offering: String,
    /// The order as it was sent (`POST /v1/instances`'s body), replayed on approval.
    pub request: Value,
    /// Where it stands.
    pub status: OrderStatus,
    /// Why it was denied, failed or expired; the approver's note when approved.
    pub reason: Option<String>,
    /// When it was ordered (RFC 3339).
    pub created_at: String,
    /// When it was decided.
    pub decided_at: Option<String>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// The instance created on approval.
    pub instance_id: Option<String>,
}

impl PendingOrder {
    /// The order as the stores keep it: one JSON text.
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).expect("an order serialises")
    }

    /// An order read back from [`PendingOrder::to_record`]'s text.
    pub fn from_record(text: &str) -> Result<Self, GatewayError> {
        serde_json::from_str(text).map_err(GatewayError::internal)
    }

    /// The `client_token` its body carries: one order per tenant and token.
    pub fn client_token(&self) -> Option<&str> {
        self.request["client_token"].as_str()
    }
}

/// Where orders waiting for approval are kept.
#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Records a new order and returns it; but when the tenant already has an order with
    /// the same [`PendingOrder::client_token`], stores nothing and returns that one. The
    /// check and the write are one step: of two inserts with one token at once, one is
    /// stored and both return it.
    async fn insert(&self, order: &PendingOrder) -> Result<PendingOrder, GatewayError>;

    /// Order `id`, whoever's it is.
    async fn get(&self, id: &str) -> Result<Option<PendingOrder>, GatewayError>;

    /// The orders of `tenant` (every tenant's when `None`), oldest first, of `status`
    /// when given.
    async fn list(
        &self,
        tenant: Option<&str>,
        status: Option<OrderStatus>,
    ) -> Result<Vec<PendingOrder>, GatewayError>;

    /// Replaces order `order.id` if its stored status is still `from`: whether it did
    /// (two approvers deciding at once: one wins).
    async fn update(&self, order: &PendingOrder, from: OrderStatus) -> Result<bool, GatewayError>;
}
