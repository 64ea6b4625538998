//! The approval workflow over an [`ApprovalStore`]: orders submitted, listed (each
//! tenant its own), decided once, and expired when nobody decides in time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skyport_core::clock::SharedClock;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::ids::{has_id_shape, new_id, rfc3339_millis};
use skyport_core::tenancy::{IdentitySource, TenantContext};

use super::{ApprovalStore, OrderStatus, PendingOrder};
use crate::events::{Event, EventService};

/// Orders waiting for approval.
pub struct ApprovalService {
    store: Arc<dyn ApprovalStore>,
    clock: SharedClock,
    expire_after: Duration,
    events: Option<Arc<EventService>>,
}

impl ApprovalService {
    /// Orders kept in `store`, expired when undecided for `expire_after`.
    pub fn new(store: Arc<dyn ApprovalStore>, clock: SharedClock, expire_after: Duration) -> Self {
        Self {
            store,
            clock,
            expire_after,
            events: None,
        }
    }

    /// Also publishes every change of an order (`order.pending_approval`,
    /// `order.approved`, `order.denied`, `order.expired`, `order.failed`) to `events`.
    pub fn with_events(mut self, events: Arc<EventService>) -> Self {
        self.events = Some(events);
        self
    }

    /// Publishes `order`'s new status; its id is the order's and the status, so a
    /// change published twice is delivered once.
    async fn announce(&self, order: &PendingOrder) {
        let Some(events) = &self.events else {
            return;
        };
        let mut data = serde_json::to_value(order).unwrap_or_default();
        if let Some(object) = data.as_object_mut() {
            object.remove("request");
        }
        events
            .publish_or_log(Event {
                id: format!("{}.{}", order.id, order.status.as_str()),
                kind: format!("order.{}", order.status.as_str()),
                subject: Some(order.id.clone()),
                time: order
                    .decided_at
                    .clone()
                    .unwrap_or_else(|| order.created_at.clone()),
                tenant: Some(order.tenant.clone()),
                department: order.department.clone(),
                data,
            })
            .await;
    }

    /// Keeps the caller's order of `offering` (its body, `request`) until an approver
    /// decides; `why` it waits when its offering is not the reason (a budget's approval
    /// threshold), shown as its `reason`. An order whose body carries a `client_token`
    /// the tenant already ordered with is that earlier order, whatever became of it: a
    /// client sending its order again does not queue it twice.
    pub async fn submit(
        &self,
        ctx: &TenantContext,
        offering: &str,
        department: Option<String>,
        request: Value,
        why: Option<String>,
    ) -> Result<PendingOrder, GatewayError> {
        let order = PendingOrder {
            id: new_id("ord"),
            tenant: ctx.tenant.to_string(),
            department,
            ordered_by: ctx.subject.clone(),
            offering: offering.to_string(),
            request,
            status: OrderStatus::PendingApproval,
            reason: why,
            created_at: rfc3339_millis(self.clock.wall()),
            decided_at: None,
            decided_by: None,
            instance_id: None,
        };
        let stored = self.store.insert(&order).await?;
        if stored.id != order.id {
            // Sent again with the same client_token: the earlier order.
            return self.expired_if_due(stored).await;
        }
        tracing::info!(order = %order.id, tenant = %order.tenant, offering, "order waits for approval");
        self.announce(&order).await;
        Ok(order)
    }

    /// The caller's orders (its department's only, for a department's credential).
    pub async fn list(&self, ctx: &TenantContext) -> Result<Vec<PendingOrder>, GatewayError> {
        let mut out = Vec::new();
        for order in self.store.list(Some(&ctx.tenant), None).await? {
            if ctx.sees_department(order.department.as_deref()) {
                out.push(self.expired_if_due(order).await?);
            }
        }
        Ok(out)
    }

    /// The caller's order `id`; 404 for another tenant's (or department's).
    pub async fn get(&self, ctx: &TenantContext, id: &str) -> Result<PendingOrder, GatewayError> {
        let order = self
            .find(id)
            .await?
            .filter(|o| o.tenant == *ctx.tenant && ctx.sees_department(o.department.as_deref()))
            .ok_or_else(|| not_found(id))?;
        self.expired_if_due(order).await
    }

    /// Every tenant's orders, of `status` when given (the approvers' queue).
    pub async fn queue(
        &self,
        status: Option<OrderStatus>,
    ) -> Result<Vec<PendingOrder>, GatewayError> {
        let mut out = Vec::new();
        for order in self.store.list(None, None).await? {
            let order = self.expired_if_due(order).await?;
            if status.is_none_or(|s| order.status == s) {
                out.push(order);
            }
        }
        Ok(out)
    }

    /// Approves (`approve`) or denies order `id` as `approver`, with `reason`: once (409
    /// when it is no longer pending, for instance decided by another approver first).
    /// An approved order is then created by the caller, who records the outcome with
    /// [`Self::finish`].
    pub async fn decide(
        &self,
        id: &str,
        approver: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<PendingOrder, GatewayError> {
        let order = self.find(id).await?.ok_or_else(|| not_found(id))?;
        let order = self.expired_if_due(order).await?;
        if order.status != OrderStatus::PendingApproval {
            return Err(already(&order));
        }
        let decided = PendingOrder {
            status: if approve {
                OrderStatus::Approved
            } else {
                OrderStatus::Denied
            },
            reason,
            decided_at: Some(rfc3339_millis(self.clock.wall())),
            decided_by: Some(approver.to_string()),
            ..order
        };
        if !self
            .store
            .update(&decided, OrderStatus::PendingApproval)
            .await?
        {
            let now = self.find(id).await?.ok_or_else(|| not_found(id))?;
            return Err(already(&now));
        }
        tracing::info!(order = %decided.id, tenant = %decided.tenant, approver,
            status = decided.status.as_str(), "order decided");
        if decided.status == OrderStatus::Denied {
            self.announce(&decided).await;
        }
        Ok(decided)
    }

    /// Records what creating approved `order` gave: its instance, or why it failed.
    pub async fn finish(
        &self,
        mut order: PendingOrder,
        created: Result<String, String>,
    ) -> Result<PendingOrder, GatewayError> {
        match created {
            Ok(instance) => order.instance_id = Some(instance),
            Err(why) => {
                order.status = OrderStatus::Failed;
                order.reason = Some(why);
            }
        }
        self.store.update(&order, OrderStatus::Approved).await?;
        self.announce(&order).await;
        Ok(order)
    }

    /// Who acts for `order` when it is created on approval: its tenant and department,
    /// as the one who ordered it.
    pub fn orderer(order: &PendingOrder) -> TenantContext {
        TenantContext {
            tenant: order.tenant.as_str().into(),
            department: order.department.clone(),
            roles: Vec::new(),
            subject: order.ordered_by.clone(),
            source: IdentitySource::Jwt,
            operator: false,
        }
    }

    async fn find(&self, id: &str) -> Result<Option<PendingOrder>, GatewayError> {
        if !has_id_shape(id, "ord") {
            return Ok(None);
        }
        self.store.get(id).await
    }

    /// `order`, expired (and stored so) when it waited longer than allowed.
    async fn expired_if_due(&self, order: PendingOrder) -> Result<PendingOrder, GatewayError> {
        if order.status != OrderStatus::PendingApproval {
            return Ok(order);
        }
        let ordered =
            humantime::parse_rfc3339(&order.created_at).map_err(GatewayError::internal)?;
        let now = self.clock.wall();
        if now.duration_since(ordered).unwrap_or_default() < self.expire_after {
            return Ok(order);
        }
        let expired = PendingOrder {
            status: OrderStatus::Expired,
            reason: Some(format!(
                "no approver decided within {} s",
                self.expire_after.as_secs()
            )),
            decided_at: Some(rfc3339_millis(now)),
            ..order
        };
        if self
            .store
            .update(&expired, OrderStatus::PendingApproval)
            .await?
        {
            self.announce(&expired).await;
            return Ok(expired);
        }
        self.store
            .get(&expired.id)
            .await?
            .ok_or_else(|| not_found(&expired.id))
    }
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::not_found(format!("order {id} does not exist"))
}

fn already(order: &PendingOrder) -> GatewayError {
    GatewayError::new(
        ErrorKind::Conflict,
        format!(
            "order {} is {}, not pending_approval",
            order.id,
            order.status.as_str()
        ),
    )
}
