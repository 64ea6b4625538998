//! Subscriptions: an HTTPS endpoint, the event types it wants, whose events it may see,
//! and the secret its deliveries are signed with.

use serde::{Deserialize, Serialize};
use skyport_core::error::GatewayError;

use super::Event;

/// Every event type Skyport publishes.
pub const EVENT_TYPES: &[&str] = &[
    "instance.lifecycle",
    "order.pending_approval",
    "order.approved",
    "order.denied",
    "order.expired",
    "order.failed",
    "budget.threshold",
    "lease.warning",
    "lease.expired",
    "provider.health",
    "sla.breach",
];

/// Event types that concern no tenant: only operators' subscriptions may name them.
pub const OPERATOR_EVENT_TYPES: &[&str] = &["provider.health", "sla.breach"];

/// A subscription as its owner asks for it (`POST /v1/webhooks`, `POST /admin/webhooks`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// The endpoint: an `https://` URL.
    pub url: String,
    /// Event types (`instance.lifecycle`), families (`order.*`) or `*` for every type.
    pub events: Vec<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
}

/// An endpoint subscribed to events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// `whk-` and 17 hex digits.
    pub id: String,
    /// The tenant whose events it receives; `None`: an operators' subscription, which
    /// receives every tenant's events and the platform's.
    pub tenant: Option<String>,
    /// With a tenant, the department whose events only it receives (made by a
    /// department's credential).
    pub department: Option<String>,
    /// The endpoint.
    pub url: String,
    /// The event types, families or `*` it wants.
    pub events: Vec<String>,
    /// The signing secret (`whsec_` and base64), shown once when it is made.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub secret: String,
    /// What it is for.
    pub description: Option<String>,
    /// Who made it (the credential's subject).
    pub created_by: String,
    /// When (RFC 3339).
    pub created_at: String,
}

impl NewSubscription {
    /// What is wrong with it, for `operator` (whether an operator asks) or a tenant.
    pub fn validate(&self, operator: bool) -> Result<(), GatewayError> {
        let url = self.url.trim();
        let Some(rest) = url.strip_prefix("https://") else {
            return Err(GatewayError::invalid(format!(
                "url '{url}' is not an https:// URL: events are delivered over TLS only"
            )));
        };
        if rest.is_empty() || rest.starts_with('/') || url.len() > 2048 || url.contains(' ') {
            return Err(GatewayError::invalid(format!(
                "url '{url}' names no host (or is longer than 2048 characters)"
            )));
        }
        if self.events.is_empty() || self.events.len() > 32 {
            return Err(GatewayError::invalid(
                "events must name 1-32 event types, families (order.*) or *",
            ));
        }
        for pattern in &self.events {
            if !EVENT_TYPES.iter().any(|t| pattern_matches(pattern, t)) {
                return Err(GatewayError::invalid(format!(
                    "events: '{pattern}' names no event type; the types are {}",
                    EVENT_TYPES.join(", ")
                )));
            }
            if !operator && OPERATOR_EVENT_TYPES.contains(&pattern.as_str()) {
                return Err(GatewayError::forbidden(format!(
                    "events: '{pattern}' is an operators' event type"
                )));
            }
        }
        if self.description.as_ref().is_some_and(|d| d.len() > 256) {
            return Err(GatewayError::invalid(
                "description is longer than 256 characters",
            ));
        }
        Ok(())
    }
}

impl Subscription {
    /// Whether `event` goes to this subscription: a type it wants, and (for a tenant's)
    /// its tenant's, and its department's when it has one.
    pub fn wants(&self, event: &Event) -> bool {
        let visible = match &self.tenant {
            None => true,
            Some(tenant) => {
                event.tenant.as_deref() == Some(tenant.as_str())
                    && self
                        .department
                        .as_ref()
                        .is_none_or(|d| event.department.as_deref() == Some(d.as_str()))
            }
        };
        visible && self.events.iter().any(|p| pattern_matches(p, &event.kind))
    }

    /// The subscription without its secret, as listings show it.
    pub fn redacted(&self) -> Self {
        Self {
            secret: String::new(),
            ..self.clone()
        }
    }

    /// The subscription as the stores keep it: one JSON text (secret included).
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).expect("a subscription serialises")
    }

    /// A subscription read back from [`Subscription::to_record`]'s text.
    pub fn from_record(text: &str) -> Result<Self, GatewayError> {
        serde_json::from_str(text).map_err(GatewayError::internal)
    }
}

/// Whether `pattern` (`a.b`, `a.*` or `*`) matches event type `kind`.
fn pattern_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.') && kind.starts_with(prefix),
        None => pattern == kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_types_families_and_everything() {
        assert!(pattern_matches("*", "order.approved"));
        assert!(pattern_matches("order.*", "order.approved"));
        assert!(!pattern_matches("order.*", "orders.approved"));
        assert!(!pattern_matches("ord*", "order.approved"));
        assert!(pattern_matches("lease.warning", "lease.warning"));
        assert!(!pattern_matches("lease.warning", "lease.expired"));
    }

    #[test]
    fn only_https_endpoints_and_known_types_are_accepted() {
        let new = |url: &str, events: &[&str]| NewSubscription {
            url: url.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            description: None,
        };
        assert!(new("https://hooks.example/x", &["order.*"])
            .validate(false)
            .is_ok());
        for (bad, operator) in [
            (new("http://hooks.example/x", &["*"]), true),
            (new("https:///x", &["*"]), true),
            (new("https://hooks.example", &[]), true),
            (new("https://hooks.example", &["instance.deleted"]), true),
            (new("https://hooks.example", &["provider.health"]), false),
        ] {
            assert!(bad.validate(operator).is_err(), "{bad:?}");
        }
        assert!(new("https://hooks.example", &["provider.health"])
            .validate(true)
            .is_ok());
    }
}
