//! Instance leases as the instance operations apply them: granted at the create (from the
//! order, else its offering), shown on the instance, extended by the tenant within its
//! plan's limit, and expired by one replica's periodic look ([`InstanceService::run_leases`]):
//! the warning fires first, then the instance is stopped or terminated.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use skyport_core::config::{LeaseAction, LeaseTerms};
use skyport_core::error::GatewayError;
use skyport_core::ids::rfc3339_millis;
use skyport_core::tenancy::{IdentitySource, TenantContext};

use super::actions::wrong_state;
use super::{Action, InstanceService};
use crate::budgets::{billed, OrderItem};
use crate::events::Event;
use crate::instance_leases::{InstanceLease, InstanceLeaseStore};
use crate::inventory::InstanceRecord;

/// The coordination lease of the replica that looks at the instance leases.
const UPKEEP_LEASE: &str = "instance-leases";

/// The longest lease an order may ask for without a plan limit: a year.
const MAX_LEASE_SECS: u64 = 366 * 24 * 3600;

impl InstanceService {
    /// Keeps instances' leases in `store` (without one, orders with a lease are refused).
    pub fn with_instance_leases(mut self, store: Arc<dyn InstanceLeaseStore>) -> Self {
        self.instance_leases = Some(store);
        self
    }

    /// The lease an order of `offering` gets: the order's own (`asked`) within the
    /// offering's (no longer, and terminated when the offering's terminates), else the
    /// offering's.
    pub fn lease_terms(&self, offering: &str, asked: Option<LeaseTerms>) -> Option<LeaseTerms> {
        let offered = self
            .catalog
            .current()
            .offering(offering)
            .and_then(|(o, _)| o.lease);
        match (asked, offered) {
            (Some(asked), Some(offered)) => {
                let duration_secs = asked.duration_secs.min(offered.duration_secs);
                Some(LeaseTerms {
                    duration_secs,
                    on_expiry: match offered.on_expiry {
                        LeaseAction::Terminate => LeaseAction::Terminate,
                        LeaseAction::Stop => asked.on_expiry,
                    },
                    warn_before_secs: asked.warn_before_secs.map(|w| w.min(duration_secs)),
                })
            }
            (asked, offered) => asked.or(offered),
        }
    }

    /// Whether orders of `offering` wait for an approver; only `POST /v1/instances` can
    /// keep an order waiting, so the other front doors refuse them with
    /// [`Self::approval_refusal`].
    pub fn requires_approval(&self, offering: &str) -> bool {
        self.catalog
            .current()
            .offering(offering)
            .is_some_and(|(o, _)| o.requires_approval)
    }

    /// Why an order of `items`, billed to `department`, needs an approver because of a
    /// budget's `approval_above` (`None`: it does not). Every item of one order is priced
    /// together (each instance of an EC2 launch, each resource of a deployment).
    pub async fn budget_approval(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        department: Option<&str>,
        items: &[OrderItem],
    ) -> Result<Option<String>, GatewayError> {
        match &self.budgets {
            Some(budgets) => {
                budgets
                    .approval_needed(ctx, request_id, department, items)
                    .await
            }
            None => Ok(None),
        }
    }

    /// The refusal of an order that needs an approver (`why`), made where it cannot wait
    /// for one.
    pub fn budget_approval_refusal(why: &str) -> GatewayError {
        GatewayError::forbidden(format!(
            "{why}: it needs an approver; order it with POST /v1/instances, where it waits for one"
        ))
    }

    /// The refusal of an order of `offering`, which requires approval, made where it
    /// cannot wait for one.
    pub fn approval_refusal(offering: &str) -> GatewayError {
        GatewayError::forbidden(format!(
            "offering '{offering}' requires approval: order it with POST /v1/instances, where \
             it waits for an approver"
        ))
    }

    /// The longest lease the caller's plan allows, in seconds.
    fn max_lease_secs(&self, ctx: &TenantContext) -> u64 {
        let catalog = self.catalog.current();
        let plan = self.tenants.plan_of(&ctx.tenant);
        catalog
            .plan(plan)
            .and_then(|(_, p)| p.max_lease_secs)
            .unwrap_or(MAX_LEASE_SECS)
    }

    /// Refuses `terms` that the caller may not hold: a zero duration, a warning longer
    /// than the lease, or a lease longer than the plan allows.
    pub(super) fn check_lease(
        &self,
        ctx: &TenantContext,
        terms: &LeaseTerms,
    ) -> Result<(), GatewayError> {
        if self.instance_leases.is_none() {
            return Err(GatewayError::invalid(
                "this gateway keeps no instance leases",
            ));
        }
        if terms.duration_secs == 0 {
            return Err(GatewayError::invalid(
                "a lease's duration_secs must be at least 1",
            ));
        }
        if terms
            .warn_before_secs
            .is_some_and(|w| w > terms.duration_secs)
        {
            return Err(GatewayError::invalid(
                "a lease's warn_before_secs must not be longer than its duration_secs",
            ));
        }
        let max = self.max_lease_secs(ctx);
        if terms.duration_secs > max {
            return Err(GatewayError::forbidden(format!(
                "a lease of {} s is longer than your plan allows ({max} s)",
                terms.duration_secs
            )));
        }
        Ok(())
    }

    /// Records `terms` as the lease of `record`, just created.
    pub(super) async fn grant_lease(
        &self,
        record: &InstanceRecord,
        terms: &LeaseTerms,
    ) -> Result<(), GatewayError> {
        let Some(store) = &self.instance_leases else {
            return Ok(());
        };
        let now = self.now_ms();
        let expires_ms = now + secs_ms(terms.duration_secs);
        store
            .put(&InstanceLease {
                instance_id: record.id.clone(),
                tenant: record.tenant.clone(),
                granted_ms: now,
                expires_ms,
                warn_ms: expires_ms - secs_ms(terms.warn_before()),
                on_expiry: terms.on_expiry,
                warned: false,
                expired: false,
            })
            .await
    }

    /// The lease of the caller's instance `id`, if it has one.
    pub async fn lease_of(
        &self,
        ctx: &TenantContext,
        id: &str,
    ) -> Result<Option<InstanceLease>, GatewayError> {
        match &self.instance_leases {
            Some(store) => store.get(&ctx.tenant, id).await,
            None => Ok(None),
        }
    }

    /// Every lease of the caller's tenant.
    pub async fn leases_of(&self, ctx: &TenantContext) -> Result<Vec<InstanceLease>, GatewayError> {
        match &self.instance_leases {
            Some(store) => store.of_tenant(&ctx.tenant).await,
            None => Ok(Vec::new()),
        }
    }

    /// Extends the lease of the caller's instance `id` by `secs`, within the plan's
    /// limit (counted from the create); its warning fires again before the new expiry.
    /// 404 for another tenant's, 409 without a lease or once it expired.
    pub async fn extend_lease(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        id: &str,
        secs: u64,
    ) -> Result<InstanceLease, GatewayError> {
        let record = self.get(ctx, request_id, id).await?;
        let store = self
            .instance_leases
            .as_ref()
            .ok_or_else(|| GatewayError::invalid("this gateway keeps no instance leases"))?;
        let mut lease = store
            .get(&ctx.tenant, &record.id)
            .await?
            .ok_or_else(|| wrong_state(format!("instance {id} has no lease")))?;
        if lease.expired {
            return Err(wrong_state(format!(
                "the lease of instance {id} expired; it cannot be extended"
            )));
        }
        if secs == 0 || secs > MAX_LEASE_SECS {
            return Err(GatewayError::invalid(format!(
                "extend_secs must be 1-{MAX_LEASE_SECS}"
            )));
        }
        // The added time is an order too: priced against the budgets while it runs.
        if let Some(budgets) = self.budgets.as_ref().filter(|_| billed(&record.state)) {
            let item = OrderItem {
                instance_type: record.instance_type.clone(),
                provider: record.provider.clone(),
                lease_secs: Some(secs),
            };
            budgets
                .check_now(ctx, request_id, record.department.as_deref(), &[item])
                .await?;
        }
        let (from_ms, warn_before) = (lease.expires_ms, lease.expires_ms - lease.warn_ms);
        let expires_ms = lease.expires_ms + secs_ms(secs);
        let max = self.max_lease_secs(ctx);
        let total_secs = ((expires_ms - lease.granted_ms) / 1000) as u64;
        if total_secs > max {
            return Err(GatewayError::forbidden(format!(
                "your plan allows leases of at most {max} s from the create; extended by \
                 {secs} s this one would last {total_secs} s"
            )));
        }
        lease.expires_ms = expires_ms;
        lease.warn_ms = expires_ms - warn_before;
        lease.warned = false;
        if !store.extend(&lease, from_ms).await? {
            return Err(wrong_state(format!(
                "the lease of instance {id} changed meanwhile (it expired, or was extended); \
                 read it again"
            )));
        }
        Ok(lease)
    }

    /// One look at the leases that are due: each warning due fires once (logged, counted
    /// as a `lease.warning`), each lease expired stops or terminates its instance. Returns
    /// how many leases expired. Run by one replica at a time.
    pub async fn run_leases(&self) -> Result<usize, GatewayError> {
        let Some(store) = &self.instance_leases else {
            return Ok(0);
        };
        let now = self.now_ms();
        let mut expired = 0;
        for lease in store.due(now).await? {
            if lease.expires_ms > now {
                // The event is in the outbox before the warning is marked: a failed write
                // is tried again at the next look, and a repeated one is delivered once.
                if self.announce_lease(&lease, "lease.warning").await
                    && store
                        .mark(&lease.instance_id, lease.expires_ms, false)
                        .await?
                {
                    tracing::warn!(instance = %lease.instance_id, tenant = %lease.tenant,
                        on_expiry = lease.on_expiry.as_str(),
                        expires_in_secs = (lease.expires_ms - now) / 1000,
                        "lease warning: the instance's lease expires soon");
                }
                continue;
            }
            // Acted on only while the lease is still the one read (not extended since),
            // and marked expired only once its action took (or its instance is already
            // where the action would put it): a failed action is tried again next time.
            let current = store.get(&lease.tenant, &lease.instance_id).await?;
            if current.as_ref().map(|l| l.expires_ms) != Some(lease.expires_ms) {
                continue;
            }
            let ctx = TenantContext {
                tenant: lease.tenant.as_str().into(),
                department: None,
                roles: Vec::new(),
                subject: "skyport-lease".into(),
                source: IdentitySource::Mtls,
                operator: false,
            };
            let action = match lease.on_expiry {
                LeaseAction::Stop => Action::Stop,
                LeaseAction::Terminate => Action::Terminate,
            };
            let done = match self
                .act(&ctx, "lease-expiry", &lease.instance_id, action)
                .await
            {
                Ok((_, record)) => {
                    tracing::info!(instance = %record.id, tenant = %lease.tenant,
                        action = lease.on_expiry.as_str(), state = %record.state,
                        "lease expired: the instance was acted on");
                    true
                }
                Err(e) => {
                    let state = self
                        .inventory
                        .get(&lease.tenant, &lease.instance_id)
                        .await?
                        .map(|r| r.state);
                    let already = matches!(
                        (state.as_deref(), lease.on_expiry),
                        (None | Some("terminated"), _) | (Some("stopped"), LeaseAction::Stop)
                    );
                    if !already {
                        tracing::warn!(instance = %lease.instance_id, error = %e.public,
                            "lease expired, but its action failed; it is tried again");
                    }
                    already
                }
            };
            if done
                && self.announce_lease(&lease, "lease.expired").await
                && store
                    .mark(&lease.instance_id, lease.expires_ms, true)
                    .await?
            {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Looks at the leases every `every`, on one replica at a time (whoever holds the
    /// `instance-leases` lease, for three looks unrenewed).
    pub fn spawn_lease_upkeep(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let (leases, holder) = (Arc::clone(&self.leases), self.holder.clone());
        crate::leases::every_on_one_replica(leases, UPKEEP_LEASE, holder, every, move || {
            let this = Arc::clone(&self);
            async move {
                if let Err(e) = this.run_leases().await {
                    tracing::warn!(error = %e.public, "looking at the instance leases failed");
                }
            }
        })
    }

    /// Publishes `kind` (`lease.warning`, `lease.expired`) for `lease`, once: its key and
    /// id name the instance, the expiry and the kind, so a look repeated (by another
    /// replica, or after a failed mark) publishes nothing new. Whether the event is in
    /// the outbox (or there is no outbox).
    async fn announce_lease(&self, lease: &InstanceLease, kind: &str) -> bool {
        let Some(events) = &self.events else {
            return true;
        };
        let department = match self.inventory.get(&lease.tenant, &lease.instance_id).await {
            Ok(record) => record.and_then(|r| r.department),
            Err(_) => None,
        };
        let at = |ms: i64| rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64));
        let id = format!("{}.{}.{}", lease.instance_id, kind, lease.expires_ms);
        let event = Event {
            id: id.clone(),
            kind: kind.into(),
            subject: Some(lease.instance_id.clone()),
            time: rfc3339_millis(self.clock.wall()),
            tenant: Some(lease.tenant.clone()),
            department,
            data: serde_json::json!({
                "instance_id": lease.instance_id,
                "expires_at": at(lease.expires_ms),
                "on_expiry": lease.on_expiry.as_str(),
            }),
        };
        match events.publish_once(&id, event).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(instance = %lease.instance_id, kind, error = %e.public,
                    "a lease event could not be put in the outbox; tried again at the next look");
                false
            }
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as i64
    }
}

fn secs_ms(secs: u64) -> i64 {
    (secs.min(MAX_LEASE_SECS * 2) * 1000) as i64
}
