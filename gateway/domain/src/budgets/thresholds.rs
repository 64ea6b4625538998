//! Budget thresholds as events: one replica looks at every budget every
//! `[inventory] budget_check_secs` and publishes `budget.threshold` for each threshold
//! the month's spend has reached, once per budget, month and threshold (across replicas
//! and restarts: the mark is stored with the events).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use skyport_core::ids::rfc3339_millis;
use skyport_core::tenancy::{IdentitySource, TenantContext};

use super::BudgetService;
use crate::events::{Event, EventService};
use crate::leases::{every_on_one_replica, LeaseStore};

/// The coordination lease under which one replica looks.
const WATCH_LEASE: &str = "budget-thresholds";

impl BudgetService {
    /// Publishes `budget.threshold` for every threshold reached and not yet announced
    /// this month: how many it published.
    pub async fn announce_thresholds(&self, events: &EventService) -> usize {
        let tenants: std::collections::BTreeSet<String> = self
            .list()
            .1
            .iter()
            .map(|b| b.config.tenant.clone())
            .collect();
        let mut published = 0;
        for tenant in tenants {
            let ctx = TenantContext {
                tenant: tenant.as_str().into(),
                department: None,
                roles: Vec::new(),
                subject: "skyport-budgets".into(),
                source: IdentitySource::Mtls,
                operator: false,
            };
            let statuses = match self.status(&ctx, "budget-thresholds").await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e.public, "looking at a tenant's budgets failed");
                    continue;
                }
            };
            for status in statuses {
                for threshold in status.thresholds.iter().filter(|t| t.fired) {
                    let key = format!(
                        "budget.threshold/{}/{}/{}/{}",
                        status.tenant, status.name, status.period, threshold.threshold
                    );
                    let event = Event {
                        id: key.clone(),
                        kind: "budget.threshold".into(),
                        subject: Some(status.name.clone()),
                        time: rfc3339_millis(events.clock().wall()),
                        tenant: Some(status.tenant.clone()),
                        department: status.department.clone(),
                        data: json!({
                            "budget": status.name,
                            "period": status.period,
                            "mode": status.mode,
                            "threshold": threshold.threshold,
                            "threshold_amount": threshold.amount,
                            "amount": status.amount,
                            "spent": status.spent,
                            "forecast": status.forecast,
                            "currency": status.currency,
                        }),
                    };
                    match events.publish_once(&key, event).await {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e.public, cause = ?e.cause, "publishing a budget threshold failed; it is tried again");
                            continue;
                        }
                    }
                    tracing::info!(budget = %status.name, tenant = %status.tenant,
                        threshold = %threshold.threshold, spent = %status.spent,
                        "a budget threshold is reached");
                    published += 1;
                }
            }
        }
        published
    }

    /// Looks every `every`, on whichever replica holds the watch lease in `leases`.
    pub fn spawn_threshold_watch(
        self: Arc<Self>,
        events: Arc<EventService>,
        leases: Arc<dyn LeaseStore>,
        holder: String,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        every_on_one_replica(leases, WATCH_LEASE, holder, every, move || {
            let (this, events) = (Arc::clone(&self), Arc::clone(&events));
            async move {
                if !this.list().1.is_empty() {
                    this.announce_thresholds(&events).await;
                }
            }
        })
    }
}
