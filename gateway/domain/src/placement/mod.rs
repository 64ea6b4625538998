//! Placement of orders by offering: the offering is checked against the caller's plan, the
//! resource's parameters are gathered over the five decision points ([`params`]), the
//! administrators' rules run ([`rules`]), and a provider region is chosen among the loaded
//! ones ([`engine`]): the cheapest for the order's instance type by the metering plugin's
//! rate card ([`rates`]), configuration order among equals, each candidate recording why it
//! lost. Every decision is kept for the audit ([`audit`]).
//!
//! [`PlacementService::decide`] runs without side effects, so an explanation
//! (`POST /v1/placement/explain`) and a create (`POST /v1/instances` with an offering)
//! reach the same decision for the same request and the same gateway state.

pub mod audit;
pub mod engine;
pub mod params;
pub mod rates;
mod refusals;
pub mod rules;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::Serialize;
use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;
use skyport_core::ids::rfc3339_millis;
use skyport_core::metrics::Metrics;
use skyport_core::tenancy::{TenantContext, TenantDirectory};
use skyport_plugin_api::ops::provider::PLACEMENT_OPS;
use skyport_plugin_host::Plugins;

use crate::catalog::{CatalogService, ParamValue, Params, RAW};
use crate::regions::Regions;
use audit::{AuditEntry, Mode, PlacementAuditStore};
use engine::{Ranked, Site};
use params::{Order, ParamSet};
use refusals::{check_pins, check_values, gather_error, inseparable, no_candidate};
use rules::{RuleFiring, RuleSet};

/// An order by offering.
#[derive(Debug, Clone, Default)]
pub struct OrderRequest {
    /// The offering.
    pub offering: String,
    /// What the caller chose (only the offering's `user_params`).
    pub preferences: Params,
    /// The department to charge (already checked against the caller's).
    pub department: Option<String>,
    /// The provider regions that hold the ordered image, when the front end has resolved
    /// it (EC2 `ImageId`); the others lose. `None`: not known, every region is a candidate.
    pub image_regions: Option<Vec<String>>,
}

/// One provider region considered, and why it lost if it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Provider instance.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Price per hour of the order's instance type here, from the rate card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// `None` for the chosen one; otherwise why it was not chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

/// A placement decision for one resource.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The offering ordered.
    pub offering: String,
    /// The blueprint's resource placed.
    pub resource: String,
    /// The parameter set, each value with its decision point.
    pub params: ParamSet,
    /// The administrators' rules that fired (or failed) for it, in order.
    pub rules: Vec<RuleFiring>,
    /// Chosen provider instance.
    pub provider: String,
    /// Chosen region.
    pub region: String,
    /// Every provider region considered, in configuration order.
    pub candidates: Vec<Candidate>,
    /// Currency of the candidates' prices; `None` when no rate card could be read (then
    /// configuration order decides).
    pub currency: Option<String>,
}

impl Decision {
    /// The instance type decided.
    pub fn instance_type(&self) -> &str {
        self.params.text("instance_type").unwrap_or_default()
    }
}

/// One resource on its way to a decision.
pub(crate) struct Pending {
    pub(crate) resource: String,
    params: ParamSet,
    rules: Vec<RuleFiring>,
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) order: Vec<usize>,
    prices: rates::Prices,
}

/// Placement: decisions, and their audit.
pub struct PlacementService {
    catalog: Arc<CatalogService>,
    rules: RuleSet,
    tenants: Arc<TenantDirectory>,
    regions: Arc<Regions>,
    plugins: Arc<dyn Plugins>,
    audit: Arc<dyn PlacementAuditStore>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// Explained decisions recorded since start (every [`PRUNE_EVERY`]th prunes old ones).
    explained: std::sync::atomic::AtomicU64,
}

/// How many explained decisions are recorded between two prunings of old ones.
const PRUNE_EVERY: u64 = 100;

impl PlacementService {
    /// Placement over `catalog` and `rules`, among the `regions` the `plugins` serve,
    /// for the `tenants`; decisions kept in `audit`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        catalog: Arc<CatalogService>,
        rules: RuleSet,
        tenants: Arc<TenantDirectory>,
        regions: Arc<Regions>,
        plugins: Arc<dyn Plugins>,
        audit: Arc<dyn PlacementAuditStore>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        Self {
            catalog,
            rules,
            tenants,
            regions,
            plugins,
            audit,
            metrics,
            clock,
            explained: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Every provider region placement may use, in configuration order, with its health
    /// now. A provider that does not serve every op of the provider contract placement
    /// needs ([`PLACEMENT_OPS`]) is never one.
    fn sites(&self) -> Vec<Site> {
        let loaded = self.plugins.loaded();
        self.regions
            .sites()
            .filter(|(provider, _)| {
                loaded
                    .iter()
                    .any(|p| p.name == *provider && p.missing(&PLACEMENT_OPS).is_empty())
            })
            .map(|(provider, region)| Site {
                provider: provider.to_string(),
                region: region.to_string(),
                unhealthy: loaded
                    .iter()
                    .find(|p| p.name == provider)
                    .map(|p| &p.health)
                    .filter(|h| !h.healthy)
                    .map(|h| h.reason.clone().unwrap_or_else(|| "no reason given".into())),
            })
            .collect()
    }

    /// Stores `decision` for the audit; returns its placement id.
    pub async fn record(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        mode: Mode,
        decision: &Decision,
    ) -> Result<String, GatewayError> {
        let entry = AuditEntry::new(
            &ctx.tenant,
            request_id,
            mode,
            decision,
            rfc3339_millis(self.clock.wall()),
        );
        let id = entry.id.clone();
        self.audit.insert(entry).await?;
        if mode == Mode::Explain
            && self
                .explained
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % PRUNE_EVERY
                == 0
        {
            let before = self.clock.wall() - audit::EXPLAIN_RETENTION;
            match self.audit.prune_explained(&rfc3339_millis(before)).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(
                    pruned,
                    "explained placement decisions past their retention removed"
                ),
                Err(e) => {
                    tracing::warn!(error = %e.public, "pruning explained placement decisions failed")
                }
            }
        }
        Ok(id)
    }

    /// The full stored record of placement `id` (404 when unknown).
    pub async fn audit_record(&self, id: &str) -> Result<serde_json::Value, GatewayError> {
        self.audit
            .get(id)
            .await?
            .ok_or_else(|| GatewayError::not_found(format!("no placement '{id}'")))
    }

    /// The stored decisions `filter` selects, newest first (the placement audit's search).
    pub async fn audit_search(
        &self,
        filter: &audit::AuditFilter,
    ) -> Result<Vec<serde_json::Value>, GatewayError> {
        self.audit.search(filter).await
    }

    /// Decides an order of one resource and records the decision as acted on: what a
    /// create does before creating. Returns the placement id and the decision.
    pub async fn place(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        order: &OrderRequest,
    ) -> Result<(String, Decision), GatewayError> {
        let decision = self.decide_one(ctx, request_id, order).await?;
        let id = self
            .record(ctx, request_id, Mode::Create, &decision)
            .await?;
        Ok((id, decision))
    }

    /// The decisions `order` would reach, each recorded as explained; nothing is created.
    pub async fn explain(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        order: &OrderRequest,
    ) -> Result<Vec<(String, Decision)>, GatewayError> {
        let decisions = self.decide(ctx, request_id, order).await?;
        let mut explained = Vec::with_capacity(decisions.len());
        for decision in decisions {
            let id = self
                .record(ctx, request_id, Mode::Explain, &decision)
                .await?;
            explained.push((id, decision));
        }
        Ok(explained)
    }

    /// Decides where each resource of an order by offering goes, without creating anything:
    /// one decision per blueprint resource, in blueprint order, separated resources kept apart.
    /// The prices come from the metering plugin, asked once per resource.
    pub async fn decide(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        request: &OrderRequest,
    ) -> Result<Vec<Decision>, GatewayError> {
        let catalog = self.catalog.current();
        let name = &request.offering;
        let (offering, blueprint) = catalog.offering(name).ok_or_else(|| {
            GatewayError::invalid(format!(
                "unknown offering '{name}'; GET /v1/offerings lists yours"
            ))
        })?;
        let plan_entry = catalog.plan(self.tenants.plan_of(&ctx.tenant));
        if let Some((plan_name, plan)) = plan_entry {
            if !plan.offers(name) {
                return Err(GatewayError::forbidden(if name == RAW {
                    format!("plan '{plan_name}' does not allow requests by image and instance type; see GET /v1/offerings")
                } else {
                    format!("offering '{name}' is not in your plan '{plan_name}'")
                }));
            }
        }

        let context = self.caller_context(ctx, request, plan_entry.map(|(name, _)| name));
        let sites = self.sites();
        let image_regions = request.image_regions.as_deref();
        let plan = plan_entry.map(|(_, plan)| plan);
        let mut pending = Vec::with_capacity(blueprint.resources.len());
        for resource in &blueprint.resources {
            let mut params = params::gather(&Order {
                offering_name: name,
                offering,
                blueprint,
                resource,
                context: &context,
                preferences: &request.preferences,
            })
            .map_err(|e| gather_error(&self.metrics, ctx, name, offering, e))?;
            check_pins(&sites, &params, plan_entry)?;
            let mut candidates = engine::candidates(&sites, &params, plan, image_regions);
            let outcome =
                self.rules
                    .evaluate(&resource.kind, name, &params, &engine::open(&candidates));
            engine::apply_rules(&mut candidates, &outcome);
            for failed in outcome.errors() {
                tracing::warn!(request_id, rule = %failed.rule,
                    error = failed.error.as_deref().unwrap_or_default(),
                    "placement rule failed; it does not fire");
                self.metrics
                    .placement_rule_errors
                    .get_or_create(&vec![("rule", failed.rule.clone())])
                    .inc();
            }
            if let Some((rule, chosen)) = &outcome.chosen {
                if let Some(t) = &chosen.instance_type {
                    params.set_by_rule("instance_type", &ParamValue::Text(t.clone()), rule);
                }
            }
            check_values(&params)?;
            let providers: Vec<String> = candidates
                .iter()
                .filter(|c| c.lost.is_none())
                .map(|c| c.provider.clone())
                .collect();
            let instance_type = params.text("instance_type").unwrap_or_default();
            let prices =
                rates::prices(&*self.plugins, ctx, request_id, instance_type, &providers).await;
            let order = engine::preference_order(&mut candidates, &prices);
            if order.is_empty() {
                return Err(no_candidate(name, &resource.name, &candidates, plan_entry));
            }
            pending.push(Pending {
                resource: resource.name.clone(),
                params,
                rules: outcome.fired,
                candidates,
                order,
                prices,
            });
        }

        let ranked: Vec<Ranked<'_>> = pending
            .iter()
            .map(|p| Ranked {
                resource: &p.resource,
                candidates: &p.candidates,
                order: &p.order,
            })
            .collect();
        let separate = blueprint.separate.as_ref();
        let picks = engine::pick(&ranked, separate)
            .ok_or_else(|| inseparable(name, blueprint, &pending))?;

        let mut placed: Vec<(String, Candidate)> = Vec::new();
        let mut decisions = Vec::with_capacity(pending.len());
        for (mut p, winner) in pending.into_iter().zip(picks) {
            engine::mark_losers(
                &mut p.candidates,
                winner,
                &p.prices,
                separate,
                &p.resource,
                &placed,
            );
            let chosen = p.candidates[winner].clone();
            placed.push((p.resource.clone(), chosen.clone()));
            decisions.push(Decision {
                offering: name.clone(),
                resource: p.resource,
                params: p.params,
                rules: p.rules,
                provider: chosen.provider,
                region: chosen.region,
                candidates: p.candidates,
                currency: p.prices.currency,
            });
        }
        Ok(decisions)
    }

    /// Who is asking (decision point 3): `tenant`, `department`, `plan`, and for the built-in
    /// raw offering the tenant's `default_region` when a provider serves it and it holds the
    /// image (if that is known).
    fn caller_context(
        &self,
        ctx: &TenantContext,
        request: &OrderRequest,
        plan: Option<&str>,
    ) -> Params {
        let mut context = Params::new();
        context.insert("tenant".into(), ParamValue::Text(ctx.tenant.to_string()));
        if let Some(department) = &request.department {
            context.insert("department".into(), ParamValue::Text(department.clone()));
        }
        if let Some(plan) = plan {
            context.insert("plan".into(), ParamValue::Text(plan.to_string()));
        }
        if request.offering == RAW {
            let default_region = self
                .tenants
                .get(&ctx.tenant)
                .and_then(|t| t.default_region.clone())
                .filter(|r| self.regions.serves(r))
                .filter(|r| {
                    request
                        .image_regions
                        .as_ref()
                        .is_none_or(|within| within.contains(r))
                });
            if let Some(region) = default_region {
                context.insert("region".into(), ParamValue::Text(region));
            }
        }
        context
    }

    /// Decides an order for an offering of one resource (`POST /v1/instances`, EC2
    /// `RunInstances`); an offering of several is refused, naming `POST /v1/deployments`.
    pub async fn decide_one(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        request: &OrderRequest,
    ) -> Result<Decision, GatewayError> {
        let several = {
            let catalog = self.catalog.current();
            catalog
                .offering(&request.offering)
                .map(|(_, b)| {
                    b.resources
                        .iter()
                        .map(|r| r.name.clone())
                        .collect::<Vec<_>>()
                })
                .filter(|names| names.len() > 1)
        };
        if let Some(names) = several {
            return Err(GatewayError::invalid(format!(
                "offering '{}' creates {} resources ({}); order it with POST /v1/deployments",
                request.offering,
                names.len(),
                names.join(", ")
            )));
        }
        let mut decisions = self.decide(ctx, request_id, request).await?;
        decisions
            .pop()
            .ok_or_else(|| GatewayError::internal("a placement decided no resource"))
    }
}
