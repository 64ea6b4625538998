//! Publishing events into the outbox, and subscriptions as their owners see them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;
use skyport_core::ids::{has_id_shape, new_id, rfc3339_millis};
use skyport_core::tenancy::TenantContext;
use tokio::sync::Notify;

use super::signing::new_secret;
use super::{
    Delivery, DeliveryQuery, DeliveryStatus, Event, EventStore, NewSubscription, Subscription,
};

/// How long another replica's new subscription may take to be seen here.
const SUBSCRIPTIONS_TTL: Duration = Duration::from_secs(2);

/// Who is looking at subscriptions.
#[derive(Debug, Clone, Copy)]
pub enum Viewer<'a> {
    /// An operator: every subscription.
    Operator,
    /// A tenant's credential: its tenant's (its department's, for a department's).
    Tenant(&'a TenantContext),
}

impl Viewer<'_> {
    fn sees(&self, subscription: &Subscription) -> bool {
        match self {
            Viewer::Operator => true,
            Viewer::Tenant(ctx) => {
                subscription.tenant.as_deref() == Some(&*ctx.tenant)
                    && (ctx.department.is_none() || subscription.department == ctx.department)
            }
        }
    }
}

/// Events published into the outbox, and the subscriptions they go to.
pub struct EventService {
    store: Arc<dyn EventStore>,
    clock: SharedClock,
    /// Subscriptions as last read, and when (monotonic).
    cached: Mutex<Option<(Duration, Arc<Vec<Subscription>>)>>,
    /// Woken when something entered the outbox.
    wake: Arc<Notify>,
}

impl EventService {
    /// Events kept in `store`.
    pub fn new(store: Arc<dyn EventStore>, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            cached: Mutex::new(None),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The store (for the dispatcher).
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Notified whenever deliveries enter the outbox.
    pub fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// The clock events are timed by.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Every subscription, read at most [`SUBSCRIPTIONS_TTL`] ago.
    pub async fn subscriptions(&self) -> Result<Arc<Vec<Subscription>>, GatewayError> {
        let now = self.clock.monotonic();
        if let Some((at, subscriptions)) = &*self.cached.lock().unwrap() {
            if now.saturating_sub(*at) < SUBSCRIPTIONS_TTL {
                return Ok(Arc::clone(subscriptions));
            }
        }
        let fresh = Arc::new(self.store.subscriptions().await?);
        *self.cached.lock().unwrap() = Some((now, Arc::clone(&fresh)));
        Ok(fresh)
    }

    fn forget_subscriptions(&self) {
        *self.cached.lock().unwrap() = None;
    }

    /// Puts `event` in the outbox, once for each subscription that wants it, and returns
    /// once it is stored: whatever happens to the gateway afterwards, it is delivered.
    pub async fn publish(&self, event: Event) -> Result<(), GatewayError> {
        let deliveries = self.deliveries_of(&event).await?;
        if deliveries.is_empty() {
            return Ok(());
        }
        self.store.enqueue(&deliveries).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Publishes `event` unless `key` was published before (by any replica): whether it
    /// was new. The key is stored with the deliveries, so a crash in between neither
    /// loses the event nor publishes it twice.
    pub async fn publish_once(&self, key: &str, event: Event) -> Result<bool, GatewayError> {
        let deliveries = self.deliveries_of(&event).await?;
        let now = rfc3339_millis(self.clock.wall());
        let new = self.store.enqueue_once(key, &now, &deliveries).await?;
        if new && !deliveries.is_empty() {
            self.wake.notify_one();
        }
        Ok(new)
    }

    /// `event`'s deliveries, one for each subscription that wants it.
    async fn deliveries_of(&self, event: &Event) -> Result<Vec<Delivery>, GatewayError> {
        let subscriptions = self.subscriptions().await?;
        let wanted: Vec<&Subscription> = subscriptions.iter().filter(|s| s.wants(event)).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let payload = event.to_cloudevent().to_string();
        let now = rfc3339_millis(self.clock.wall());
        Ok(wanted
            .iter()
            .map(|s| Delivery {
                id: Delivery::id_for(&s.id, &event.id),
                subscription_id: s.id.clone(),
                tenant: s.tenant.clone(),
                event_id: event.id.clone(),
                event_type: event.kind.clone(),
                payload: payload.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                created_at: now.clone(),
                next_attempt_at: now.clone(),
                last_error: None,
                finished_at: None,
            })
            .collect())
    }

    /// Publishes `event`, logging (not returning) a failure: for callers whose own work is
    /// done and must not fail because an event could not be stored.
    pub async fn publish_or_log(&self, event: Event) {
        let (kind, id) = (event.kind.clone(), event.id.clone());
        if let Err(e) = self.publish(event).await {
            tracing::error!(event = %id, kind = %kind, error = %e.public, cause = ?e.cause, "an event could not be put in the outbox");
        }
    }

    /// Subscribes an endpoint: `ctx`'s tenant's (its department's, for a department's
    /// credential), or an operators' one when `operator`. The answer holds the signing
    /// secret, shown this once.
    pub async fn subscribe(
        &self,
        ctx: &TenantContext,
        operator: bool,
        new: NewSubscription,
    ) -> Result<Subscription, GatewayError> {
        new.validate(operator)?;
        let subscription = Subscription {
            id: new_id("whk"),
            tenant: (!operator).then(|| ctx.tenant.to_string()),
            department: if operator {
                None
            } else {
                ctx.department.clone()
            },
            url: new.url.trim().to_string(),
            events: new.events,
            secret: new_secret(),
            description: new.description,
            created_by: ctx.subject.clone(),
            created_at: rfc3339_millis(self.clock.wall()),
        };
        self.store.insert_subscription(&subscription).await?;
        self.forget_subscriptions();
        tracing::info!(subscription = %subscription.id, tenant = ?subscription.tenant, url = %subscription.url, "webhook subscribed");
        Ok(subscription)
    }

    /// The subscriptions `viewer` sees, without secrets.
    pub async fn list(&self, viewer: Viewer<'_>) -> Result<Vec<Subscription>, GatewayError> {
        Ok(self
            .store
            .subscriptions()
            .await?
            .iter()
            .filter(|s| viewer.sees(s))
            .map(Subscription::redacted)
            .collect())
    }

    /// Subscription `id`, if `viewer` sees it (404 otherwise, another tenant's included).
    pub async fn get(&self, viewer: Viewer<'_>, id: &str) -> Result<Subscription, GatewayError> {
        let not_found = || GatewayError::not_found(format!("no webhook subscription '{id}'"));
        if !has_id_shape(id, "whk") {
            return Err(not_found());
        }
        self.list(viewer)
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(not_found)
    }

    /// Removes subscription `id` and what it has not yet been delivered.
    pub async fn unsubscribe(&self, viewer: Viewer<'_>, id: &str) -> Result<(), GatewayError> {
        self.get(viewer, id).await?;
        self.store.delete_subscription(id).await?;
        self.forget_subscriptions();
        tracing::info!(subscription = %id, "webhook unsubscribed");
        Ok(())
    }

    /// Deliveries of subscriptions `viewer` sees, newest first: of `query`'s
    /// subscription (which must be one of them) or of all of them.
    pub async fn deliveries(
        &self,
        viewer: Viewer<'_>,
        mut query: DeliveryQuery,
    ) -> Result<Vec<Delivery>, GatewayError> {
        query.limit = query.limit.clamp(1, 1000);
        if let Some(id) = &query.subscription_id {
            self.get(viewer, id).await?;
            return self.store.deliveries(&query).await;
        }
        match viewer {
            Viewer::Operator => self.store.deliveries(&query).await,
            Viewer::Tenant(_) => {
                let mut all = Vec::new();
                for subscription in self.list(viewer).await? {
                    let query = DeliveryQuery {
                        subscription_id: Some(subscription.id),
                        ..query.clone()
                    };
                    all.extend(self.store.deliveries(&query).await?);
                }
                all.sort_by(|a, b| b.created_at.cmp(&a.created_at));
                all.truncate(query.limit);
                Ok(all)
            }
        }
    }

    /// Puts dead-lettered delivery `id` back in the outbox (an operator's retry).
    pub async fn retry(&self, id: &str) -> Result<Delivery, GatewayError> {
        let now = rfc3339_millis(self.clock.wall());
        let found = self
            .store
            .delivery(id)
            .await?
            .ok_or_else(|| GatewayError::not_found(format!("no delivery '{id}'")))?;
        if !self.store.revive(id, &now).await? {
            return Err(GatewayError::new(
                skyport_core::error::ErrorKind::Conflict,
                format!(
                    "delivery '{id}' is {}: only a dead-lettered delivery is retried",
                    found.status.as_str()
                ),
            ));
        }
        self.wake.notify_one();
        self.store
            .delivery(id)
            .await?
            .ok_or_else(|| GatewayError::not_found(format!("no delivery '{id}'")))
    }
}
