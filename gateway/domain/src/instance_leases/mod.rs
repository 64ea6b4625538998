//! Instance leases: how long an instance may run before it is stopped or terminated. An
//! offering or an order gives one; its warning fires before the expiry, and the tenant may
//! extend it within its plan's limit. Kept beside the inventory, one row per instance.

use async_trait::async_trait;
use serde::Serialize;
use skyport_core::config::LeaseAction;
use skyport_core::error::GatewayError;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;

/// An instance's lease. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceLease {
    /// The instance.
    pub instance_id: String,
    /// Its tenant (never shown).
    #[serde(skip)]
    pub tenant: String,
    /// When the instance was leased (its create).
    #[serde(skip)]
    pub granted_ms: i64,
    /// When it expires.
    #[serde(skip)]
    pub expires_ms: i64,
    /// When its warning fires.
    #[serde(skip)]
    pub warn_ms: i64,
    /// What the expiry does.
    pub on_expiry: LeaseAction,
    /// Whether its warning fired.
    pub warned: bool,
    /// Whether it expired (and its action ran).
    pub expired: bool,
}

impl InstanceLease {
    /// `leased`, `warned` or `expired`: how the stores keep its progress.
    pub fn state(&self) -> &'static str {
        match (self.warned, self.expired) {
            (_, true) => "expired",
            (true, false) => "warned",
            (false, false) => "leased",
        }
    }

    /// When it is next due (its warning, then its expiry); none once expired.
    pub fn due_ms(&self) -> Option<i64> {
        match (self.warned, self.expired) {
            (_, true) => None,
            (true, false) => Some(self.expires_ms),
            (false, false) => Some(self.warn_ms.min(self.expires_ms)),
        }
    }
}

/// The columns a store keeps a lease in, all text, in this order (with `due_at`, the
/// next due time, NULL once expired, beside them).
pub const COLUMNS: &str = "instance_id, tenant, granted_at, expires_at, warn_at, on_expiry, state";

impl InstanceLease {
    /// Its [`COLUMNS`] as text.
    pub fn to_columns(&self) -> [String; 7] {
        [
            self.instance_id.clone(),
            self.tenant.clone(),
            ms_text(self.granted_ms),
            ms_text(self.expires_ms),
            ms_text(self.warn_ms),
            self.on_expiry.as_str().to_string(),
            self.state().to_string(),
        ]
    }

    /// When it is next due, as text (`due_at`).
    pub fn due_text(&self) -> Option<String> {
        self.due_ms().map(ms_text)
    }

    /// A lease read back from its [`COLUMNS`].
    pub fn from_columns(columns: [String; 7]) -> Result<Self, GatewayError> {
        let [instance_id, tenant, granted, expires, warn, on_expiry, state] = columns;
        Ok(Self {
            instance_id,
            tenant,
            granted_ms: text_ms(&granted)?,
            expires_ms: text_ms(&expires)?,
            warn_ms: text_ms(&warn)?,
            on_expiry: if on_expiry == "terminate" {
                LeaseAction::Terminate
            } else {
                LeaseAction::Stop
            },
            warned: state != "leased",
            expired: state == "expired",
        })
    }
}

/// Unix milliseconds as the stores keep times: RFC 3339 UTC with milliseconds, which
/// sorts as text.
pub fn ms_text(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    skyport_core::ids::rfc3339_millis(at)
}

/// [`ms_text`] read back.
pub fn text_ms(text: &str) -> Result<i64, GatewayError> {
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| GatewayError::internal(format!("a stored lease time is not a time: {text}")))
}

/// Where instance leases are kept.
#[async_trait]
pub trait InstanceLeaseStore: Send + Sync {
    /// Records `lease`, replacing the instance's earlier one.
    async fn put(&self, lease: &InstanceLease) -> Result<(), GatewayError>;

    /// The tenant's instance `instance_id`'s lease, if it has one (`None` for another
    /// tenant's).
    async fn get(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> Result<Option<InstanceLease>, GatewayError>;

    /// Every lease of the tenant.
    async fn of_tenant(&self, tenant: &str) -> Result<Vec<InstanceLease>, GatewayError>;

    /// Every lease not expired yet whose warning or expiry is due at `now_ms`, soonest
    /// first.
    async fn due(&self, now_ms: i64) -> Result<Vec<InstanceLease>, GatewayError>;

    /// Replaces the lease of `lease.instance_id` with `lease` (an extension) if it still
    /// expires at `from_expires_ms` and has not expired: whether it did.
    async fn extend(
        &self,
        lease: &InstanceLease,
        from_expires_ms: i64,
    ) -> Result<bool, GatewayError>;

    /// Marks instance `instance_id`'s lease warned (`expired` false) or expired (true),
    /// unless it was changed (extended) since it was read as `expires_ms`: whether it was
    /// marked.
    async fn mark(
        &self,
        instance_id: &str,
        expires_ms: i64,
        expired: bool,
    ) -> Result<bool, GatewayError>;
}
