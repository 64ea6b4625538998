//! The placement audit: every decision, explained or acted on, kept with its full record,
//! so an operator can see later why an order went where it went
//! (`GET /admin/placements/{id}`). Where records are kept is a [`PlacementAuditStore`].

use async_trait::async_trait;
use serde_json::{json, Value};
use skyport_core::error::GatewayError;

use super::Decision;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;

/// Whether a decision was only explained or also acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST /v1/placement/explain`: nothing was created.
    Explain,
    /// An order that went on to create.
    Create,
}

impl Mode {
    /// `explain` or `create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Explain => "explain",
            Self::Create => "create",
        }
    }
}

/// One stored decision: the columns a store may index, and the whole record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// `pl-` and 17 hex digits.
    pub id: String,
    /// When it was decided (RFC 3339).
    pub created_at: String,
    /// The tenant that ordered.
    pub tenant: String,
    /// The request that decided it.
    pub request_id: String,
    /// Explained or acted on.
    pub mode: Mode,
    /// The offering ordered.
    pub offering: String,
    /// Where it went.
    pub provider: String,
    /// Its region.
    pub region: String,
    /// The full record, as `GET /admin/placements/{id}` shows it.
    pub record: Value,
}

impl AuditEntry {
    /// The entry of `decision`, made for `tenant`'s request `request_id` at `created_at`.
    pub fn new(
        tenant: &str,
        request_id: &str,
        mode: Mode,
        decision: &Decision,
        created_at: String,
    ) -> Self {
        let id = skyport_core::ids::new_id("pl");
        let record = json!({
            "id": id,
            "created_at": created_at,
            "tenant": tenant,
            "request_id": request_id,
            "mode": mode.as_str(),
            "decision": decision,
        });
        Self {
            id,
            created_at,
            tenant: tenant.to_string(),
            request_id: request_id.to_string(),
            mode,
            offering: decision.offering.clone(),
            provider: decision.provider.clone(),
            region: decision.region.clone(),
            record,
        }
    }
}

/// Where placement decisions are kept.
#[async_trait]
pub trait PlacementAuditStore: Send + Sync {
    /// Stores `entry`.
    async fn insert(&self, entry: AuditEntry) -> Result<(), GatewayError>;

    /// The full record of placement `id`.
    async fn get(&self, id: &str) -> Result<Option<Value>, GatewayError>;

    /// Removes the decisions that were only explained, made before `before` (RFC 3339);
    /// how many. Decisions acted on are kept.
    async fn prune_explained(&self, before: &str) -> Result<u64, GatewayError>;

    /// The records `filter` selects, newest first, at most `filter.limit`.
    async fn search(&self, filter: &AuditFilter) -> Result<Vec<Value>, GatewayError>;
}

/// What [`PlacementAuditStore::search`] selects: every given field must match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The tenant.
    pub tenant: Option<String>,
    /// The offering.
    pub offering: Option<String>,
    /// The provider chosen.
    pub provider: Option<String>,
    /// The region chosen.
    pub region: Option<String>,
    /// `explain` or `create`.
    pub mode: Option<String>,
    /// The request that made it.
    pub request_id: Option<String>,
    /// Made at or after (RFC 3339).
    pub since: Option<String>,
    /// Made before (RFC 3339).
    pub until: Option<String>,
    /// The most records returned (1-500).
    pub limit: usize,
}

/// The most records one search returns.
pub const MAX_SEARCH_LIMIT: usize = 500;

impl AuditFilter {
    /// Whether `entry` is selected (for stores that filter in memory).
    pub fn selects(&self, entry: &AuditEntry) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.tenant, &entry.tenant)
            && is(&self.offering, &entry.offering)
            && is(&self.provider, &entry.provider)
            && is(&self.region, &entry.region)
            && is(&self.mode, entry.mode.as_str())
            && is(&self.request_id, &entry.request_id)
            && self
                .since
                .as_deref()
                .is_none_or(|s| entry.created_at.as_str() >= s)
            && self
                .until
                .as_deref()
                .is_none_or(|u| entry.created_at.as_str() < u)
    }
}

/// How long a decision that was only explained is kept.
pub const EXPLAIN_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
