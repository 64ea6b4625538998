//! What an order must pass before anything is created: the tenant's quotas and the
//! budgets that govern it, checked together inside the inventory's atomic admission.

use std::sync::Arc;

use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::tenancy::TenantContext;

use super::InstanceService;
use crate::budgets::{BudgetService, OrderItem};
use crate::catalog::{instance_type, InstanceType, PlanConfig};
use crate::inventory::{AdmissionCheck, InstanceRecord};

/// One instance an order would create: its type and where placement put it.
#[derive(Debug, Clone, Copy)]
pub struct Adding<'a> {
    /// Its type.
    pub instance_type: InstanceType,
    /// Its provider instance.
    pub provider: &'a str,
    /// Seconds its lease lets it run, if it has one.
    pub lease_secs: Option<u64>,
}

impl InstanceService {
    /// Checks orders against `budgets` too (quotas only without).
    pub fn with_budgets(mut self, budgets: Arc<BudgetService>) -> Self {
        self.budgets = Some(budgets);
        self
    }

    /// The quota check for creating the instances `adding` (all of them together):
    /// given the tenant's live instances, it refuses when these would exceed the
    /// tenant's quotas (the tighter of its own and its plan's), naming the limit and the
    /// use.
    pub fn quota(&self, ctx: &TenantContext, adding: &[InstanceType]) -> AdmissionCheck {
        let Some(tenant) = self.tenants.get(&ctx.tenant) else {
            return Box::new(|_| Ok(()));
        };
        let catalog = self.catalog.current();
        let plan = catalog.plan(tenant.plan.as_deref());
        let limit = |own: Option<u32>, of_plan: fn(&PlanConfig) -> Option<u32>| {
            let planned = plan.and_then(|(_, p)| of_plan(p));
            own.into_iter().chain(planned).min()
        };
        let limits = [
            limit(tenant.max_instances, |p| p.max_instances),
            limit(tenant.max_vcpus, |p| p.max_vcpus),
            limit(tenant.max_memory_mib, |p| p.max_memory_mib),
        ];
        let add = [
            adding.len() as u32,
            adding.iter().map(|t| t.vcpus).sum(),
            adding.iter().map(|t| t.memory_mib).sum(),
        ];
        Box::new(move |live: &[InstanceRecord]| {
            let sizes: Vec<InstanceType> = live
                .iter()
                .filter_map(|r| instance_type(&r.instance_type))
                .collect();
            let used = [
                live.len() as u32,
                sizes.iter().map(|t| t.vcpus).sum(),
                sizes.iter().map(|t| t.memory_mib).sum(),
            ];
            let names = ["max_instances", "max_vcpus", "max_memory_mib"];
            for i in 0..names.len() {
                if let Some(limit) = limits[i] {
                    if used[i] + add[i] > limit {
                        return Err(GatewayError::new(
                            ErrorKind::QuotaExceeded,
                            format!(
                                "quota exceeded: {} is {limit}, {} in use, this request needs {} more",
                                names[i], used[i], add[i]
                            ),
                        ));
                    }
                }
            }
            Ok(())
        })
    }

    /// The check creating `adding` (all of them together) billed to `department` must
    /// pass, given the tenant's live instances at that moment: its quotas, then every
    /// `enforce` budget that governs it (priced here, before anything is created).
    pub async fn admission(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        department: Option<&str>,
        adding: &[Adding<'_>],
    ) -> Result<AdmissionCheck, GatewayError> {
        let types: Vec<InstanceType> = adding.iter().map(|a| a.instance_type).collect();
        let quota = self.quota(ctx, &types);
        let Some(budgets) = &self.budgets else {
            return Ok(quota);
        };
        let items: Vec<OrderItem> = adding
            .iter()
            .map(|a| OrderItem {
                instance_type: a.instance_type.name.to_string(),
                provider: a.provider.to_string(),
                lease_secs: a.lease_secs,
            })
            .collect();
        let Some(budget) = budgets
            .admission(ctx, request_id, department, &items)
            .await?
        else {
            return Ok(quota);
        };
        Ok(Box::new(move |live: &[InstanceRecord]| {
            quota(live)?;
            budget(live)
        }))
    }

    /// Refuses creating `adding` (all of them together) when that would exceed the
    /// tenant's quotas or a budget now ([`Self::admission`]). A check before work that
    /// creates several instances, or starts one; each create is admitted atomically again.
    pub async fn check_admission(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        department: Option<&str>,
        adding: &[Adding<'_>],
    ) -> Result<(), GatewayError> {
        let check = self.admission(ctx, request_id, department, adding).await?;
        let live: Vec<InstanceRecord> = self
            .inventory
            .list(&ctx.tenant)
            .await?
            .into_iter()
            .filter(|r| r.state != "terminated")
            .collect();
        check(&live)
    }
}
