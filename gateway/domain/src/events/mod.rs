//! Events and the webhooks that deliver them: what happens in Skyport (an instance's
//! lifecycle, an order's decision, a budget's threshold, a lease's warning, a provider's
//! health) published as CloudEvents 1.0 to the HTTPS endpoints tenants and operators
//! subscribe.
//!
//! - [`Event`]: one happening, and its CloudEvents JSON form ([`Event::to_cloudevent`]).
//! - [`Subscription`]: an endpoint, the event types it wants and its signing secret; a
//!   tenant's receives only that tenant's events (a department's, only its department's).
//! - [`EventStore`]: the subscriptions and the durable outbox of [`Delivery`]s, one per
//!   event and subscription, written before the call that caused the event answers.
//! - [`EventService`]: publishes events (fans them out into the outbox) and manages
//!   subscriptions; [`dispatch::Dispatcher`] sends what is due, signed
//!   ([`signing`], the Standard Webhooks scheme), retries with exponential backoff and
//!   dead-letters what failed for too long.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use skyport_core::error::GatewayError;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
pub mod dispatch;
pub mod health;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;
mod service;
pub mod signing;
mod subscriptions;
#[cfg(test)]
mod tests;

pub use service::{EventService, Viewer};
pub use subscriptions::{NewSubscription, Subscription, EVENT_TYPES, OPERATOR_EVENT_TYPES};

/// CloudEvents `source` of every event Skyport publishes.
pub const SOURCE: &str = "/skyport";
/// Prefix of CloudEvents `type`s: `io.skyport.instance.lifecycle`, ...
pub const TYPE_PREFIX: &str = "io.skyport.";

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event; the same when one happening is published twice (a create
    /// finished on two replicas), so that receivers deduplicate on it.
    pub id: String,
    /// Its type without the prefix: `instance.lifecycle`, `order.approved`, ...
    pub kind: String,
    /// What it is about: an instance, order, budget or provider id.
    pub subject: Option<String>,
    /// When it happened (RFC 3339, milliseconds).
    pub time: String,
    /// The tenant it concerns; `None` for the platform's own (provider health).
    pub tenant: Option<String>,
    /// The department it concerns, when there is one.
    pub department: Option<String>,
    /// What happened.
    pub data: Value,
}

impl Event {
    /// The event in the CloudEvents 1.0 JSON format (structured mode), with the
    /// extension attributes `tenant` and `department` when set.
    pub fn to_cloudevent(&self) -> Value {
        let mut event = serde_json::json!({
            "specversion": "1.0",
            "id": self.id,
            "source": SOURCE,
            "type": format!("{TYPE_PREFIX}{}", self.kind),
            "time": self.time,
            "datacontenttype": "application/json",
            "data": self.data,
        });
        let object = event.as_object_mut().expect("an object");
        if let Some(subject) = &self.subject {
            object.insert("subject".into(), subject.clone().into());
        }
        if let Some(tenant) = &self.tenant {
            object.insert("tenant".into(), tenant.clone().into());
        }
        if let Some(department) = &self.department {
            object.insert("department".into(), department.clone().into());
        }
        event
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet acknowledged by the endpoint; sent when due.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Failed for longer than the retry period; kept for operators with its last error.
    Dead,
}

impl DeliveryStatus {
    /// Its name in the API and the stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One event on its way to one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `dlv-` and 24 hex digits derived from the subscription and event ids: an event
    /// published twice is delivered once.
    pub id: String,
    /// The subscription it goes to.
    pub subscription_id: String,
    /// The subscription's tenant (`None`: an operators' subscription).
    pub tenant: Option<String>,
    /// The event's id (the `webhook-id` header and the CloudEvent's `id`).
    pub event_id: String,
    /// The event's type without the prefix.
    pub event_type: String,
    /// The CloudEvent JSON text sent as the body, byte for byte on every attempt.
    pub payload: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it entered the outbox (RFC 3339, milliseconds).
    pub created_at: String,
    /// When it is next due (RFC 3339, milliseconds); while an attempt is in flight, when
    /// that attempt's claim runs out.
    pub next_attempt_at: String,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered or dead-lettered.
    pub finished_at: Option<String>,
}

impl Delivery {
    /// The id of `event_id`'s delivery to `subscription_id`.
    pub fn id_for(subscription_id: &str, event_id: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{subscription_id}\n{event_id}"));
        format!("dlv-{}", &hex::encode(digest)[..24])
    }

    /// What the stores keep besides the columns they query (`status`,
    /// `next_attempt_at`): one JSON text.
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).expect("a delivery serialises")
    }

    /// A delivery read back from [`Delivery::to_record`]'s text, with its queried columns.
    pub fn from_record(
        text: &str,
        status: &str,
        next_attempt_at: String,
    ) -> Result<Self, GatewayError> {
        let mut delivery: Self = serde_json::from_str(text).map_err(GatewayError::internal)?;
        delivery.status = DeliveryStatus::parse(status)
            .ok_or_else(|| GatewayError::internal(format!("delivery status {status}")))?;
        delivery.next_attempt_at = next_attempt_at;
        Ok(delivery)
    }
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// Of this subscription only.
    pub subscription_id: Option<String>,
    /// In this status only.
    pub status: Option<DeliveryStatus>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// Where subscriptions and the outbox of deliveries are kept.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Records a new subscription.
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), GatewayError>;

    /// Every subscription, oldest first.
    async fn subscriptions(&self) -> Result<Vec<Subscription>, GatewayError>;

    /// Removes subscription `id` and its deliveries not yet made: whether it existed.
    async fn delete_subscription(&self, id: &str) -> Result<bool, GatewayError>;

    /// Adds `deliveries` to the outbox at once (one transaction); one whose id is there
    /// already is left as it is.
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), GatewayError>;

    /// Claims up to `limit` pending deliveries due at `now` (most overdue first),
    /// skipping those of `skip`'s subscriptions: each is due again at `until` unless
    /// settled before (a dispatcher that dies mid-attempt leaves them to be retried).
    async fn claim(
        &self,
        now: &str,
        until: &str,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Delivery>, GatewayError>;

    /// Records attempts' outcomes at once (one transaction): each delivery's status,
    /// attempts, next due time, last error and finish time, for those still pending.
    async fn settle(&self, deliveries: &[Delivery]) -> Result<(), GatewayError>;

    /// Deliveries matching `query`, newest first.
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>, GatewayError>;

    /// Delivery `id`.
    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, GatewayError>;

    /// Puts dead delivery `id` back in the outbox, due at `now`, its retry period starting
    /// again (`created_at` is `now`): whether it was dead.
    async fn revive(&self, id: &str, now: &str) -> Result<bool, GatewayError>;

    /// Removes deliveries delivered before `before`: how many.
    async fn purge_delivered(&self, before: &str) -> Result<u64, GatewayError>;

    /// Adds `deliveries` to the outbox and records `key` (a budget threshold reached in
    /// a period, ...) at once, unless `key` is recorded already: whether it was new. What
    /// must happen once so happens once, across replicas and crashes.
    async fn enqueue_once(
        &self,
        key: &str,
        at: &str,
        deliveries: &[Delivery],
    ) -> Result<bool, GatewayError>;
}
