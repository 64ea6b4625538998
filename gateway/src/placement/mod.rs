//! Placement of orders by offering: the offering is checked against the caller's plan, the
//! resource's parameters are gathered over the five decision points ([`params`]), and a
//! provider region is chosen among the loaded ones: the cheapest for the order's instance
//! type by the metering plugin's rate card, configuration order among equals, each
//! candidate recording why it lost.
//!
//! [`decide`] runs without side effects, so an explanation (`POST /v1/placement/explain`)
//! and a create (`POST /v1/instances` with an offering) reach the same decision for the
//! same request and the same gateway state.

pub mod audit;
pub mod engine;
pub mod params;
pub mod rates;
pub mod rules;

use serde::Serialize;

use crate::auth::TenantContext;
use crate::catalog::{ParamValue, Params, RAW};
use crate::error::GatewayError;
use crate::state::AppState;
use engine::{Ranked, Site};
use params::{GatherError, Order, ParamSet};
use rules::RuleFiring;

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
struct Pending {
    resource: String,
    params: ParamSet,
    rules: Vec<RuleFiring>,
    candidates: Vec<Candidate>,
    order: Vec<usize>,
    prices: rates::Prices,
}

/// Every provider region placement may use, in configuration order, with its health now.
fn sites(state: &AppState) -> Vec<Site> {
    let mut sites = Vec::new();
    for view in state.regions.iter().filter(|r| r.kind == "provider") {
        for provider in &view.providers {
            let unhealthy = state
                .plugins
                .get(provider)
                .map(|p| p.health())
                .filter(|h| !h.healthy)
                .map(|h| h.reason.unwrap_or_else(|| "no reason given".into()));
            sites.push(Site {
                provider: provider.clone(),
                region: view.name.clone(),
                unhealthy,
            });
        }
    }
    sites
}

/// Decides where each resource of an order by offering goes, without creating anything:
/// one decision per blueprint resource, in blueprint order, separated resources kept apart.
/// The prices come from the metering plugin, asked once per resource.
pub async fn decide(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    request: &OrderRequest,
) -> Result<Vec<Decision>, GatewayError> {
    let catalog = state.catalog.load();
    let name = &request.offering;
    let (offering, blueprint) = catalog.offering(name).ok_or_else(|| {
        GatewayError::invalid(format!(
            "unknown offering '{name}'; GET /v1/offerings lists yours"
        ))
    })?;
    let plan_entry = catalog.plan(state.config.plan_name(&ctx.tenant));
    if let Some((plan_name, plan)) = plan_entry {
        if !plan.offers(name) {
            return Err(GatewayError::forbidden(if name == RAW {
                format!("plan '{plan_name}' does not allow requests by image and instance type; see GET /v1/offerings")
            } else {
                format!("offering '{name}' is not in your plan '{plan_name}'")
            }));
        }
    }

    let context = caller_context(state, ctx, request, plan_entry.map(|(name, _)| name));
    let sites = sites(state);
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
        .map_err(|e| gather_error(state, ctx, name, offering, e))?;
        check_pins(&sites, &params, plan_entry)?;
        let mut candidates = engine::candidates(&sites, &params, plan, image_regions);
        let outcome =
            state
                .rules
                .evaluate(&resource.kind, name, &params, &engine::open(&candidates));
        engine::apply_rules(&mut candidates, &outcome);
        for failed in outcome.errors() {
            tracing::warn!(request_id, rule = %failed.rule,
                error = failed.error.as_deref().unwrap_or_default(),
                "placement rule failed; it does not fire");
            state
                .metrics
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
        let prices = rates::prices(state, ctx, request_id, instance_type, &providers).await;
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
    let picks =
        engine::pick(&ranked, separate).ok_or_else(|| inseparable(name, blueprint, &pending))?;

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
    state: &AppState,
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
        let default_region = state
            .tenants
            .get(&ctx.tenant)
            .and_then(|t| t.default_region.clone())
            .filter(|r| {
                state
                    .regions
                    .iter()
                    .any(|served| served.kind == "provider" && served.name == *r)
            })
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

/// A `provider` or `region` parameter must name one that is loaded (400 otherwise), and a
/// region must be one the caller's plan allows (403 otherwise).
fn check_pins(
    sites: &[Site],
    params: &ParamSet,
    plan: Option<(&str, &crate::catalog::PlanConfig)>,
) -> Result<(), GatewayError> {
    let known = |names: Vec<&str>| {
        let mut distinct: Vec<&str> = Vec::new();
        for name in names {
            if !distinct.contains(&name) {
                distinct.push(name);
            }
        }
        distinct.join(", ")
    };
    if let Some(provider) = params.text("provider") {
        if !sites.iter().any(|s| s.provider == provider) {
            return Err(GatewayError::invalid(format!(
                "no provider '{provider}' is loaded; choose one of {}",
                known(sites.iter().map(|s| s.provider.as_str()).collect())
            )));
        }
    }
    if let Some(region) = params.text("region") {
        if !sites.iter().any(|s| s.region == region) {
            return Err(GatewayError::invalid(format!(
                "unknown region '{region}'; choose one of {}",
                known(sites.iter().map(|s| s.region.as_str()).collect())
            )));
        }
        if let Some((name, plan)) = plan.filter(|(_, p)| !p.allows_region(region)) {
            return Err(GatewayError::forbidden(format!(
                "plan '{name}' does not include region '{region}'; it allows {}",
                plan.regions.join(", ")
            )));
        }
    }
    Ok(())
}

/// Decides an order for an offering of one resource (`POST /v1/instances`, EC2
/// `RunInstances`); an offering of several is refused, naming `POST /v1/deployments`.
pub async fn decide_one(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    request: &OrderRequest,
) -> Result<Decision, GatewayError> {
    let several = {
        let catalog = state.catalog.load();
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
    let mut decisions = decide(state, ctx, request_id, request).await?;
    decisions
        .pop()
        .ok_or_else(|| GatewayError::internal("a placement decided no resource"))
}

/// The problem for a parameter set that could not be gathered; a missing parameter is also
/// logged and counted, for the operator.
fn gather_error(
    state: &AppState,
    ctx: &TenantContext,
    name: &str,
    offering: &crate::catalog::OfferingConfig,
    e: GatherError,
) -> GatewayError {
    match e {
        GatherError::NotUserSettable { parameter } => GatewayError::invalid(format!(
            "offering '{name}' does not let you set '{parameter}'; you may set: {}",
            offering.user_params.join(", ")
        )),
        GatherError::Missing { parameter } => {
            tracing::warn!(offering = %name, tenant = %ctx.tenant, parameter = %parameter,
                "order stopped: a required parameter has no value and no default");
            state
                .metrics
                .placement_missing_parameter
                .get_or_create(&vec![("parameter", parameter.clone())])
                .inc();
            GatewayError::invalid(format!(
                "parameter '{parameter}' has no value: neither the blueprint, the offering, \
                 your context, your request nor a default sets it"
            ))
        }
    }
}

/// The values Skyport reads itself must be text, and the instance type one it knows.
fn check_values(params: &ParamSet) -> Result<(), GatewayError> {
    for text_param in crate::catalog::TEXT_PARAMS {
        if params
            .get(text_param)
            .is_some_and(|v| v.as_text().is_none())
        {
            return Err(GatewayError::invalid(format!(
                "parameter '{text_param}' must be text"
            )));
        }
    }
    crate::operations::instances::parse_instance_type(
        params.text("instance_type").unwrap_or_default(),
    )?;
    Ok(())
}

/// The problem when no candidate can serve a resource: every candidate and why, and the
/// regions the caller's plan allows when it limits them. 503 when one could serve but its
/// provider is unhealthy now, else 400.
fn no_candidate(
    offering: &str,
    resource: &str,
    candidates: &[Candidate],
    plan: Option<(&str, &crate::catalog::PlanConfig)>,
) -> GatewayError {
    let reasons: Vec<String> = candidates
        .iter()
        .map(|c| {
            format!(
                "{}/{}: {}",
                c.provider,
                c.region,
                c.lost.as_deref().unwrap_or("")
            )
        })
        .collect();
    let plan_regions = plan
        .filter(|(_, p)| !p.regions.is_empty())
        .map(|(name, p)| {
            format!(
                "; your plan '{name}' allows only region {}",
                p.regions.join(", ")
            )
        })
        .unwrap_or_default();
    let message = format!(
        "no provider can serve offering '{offering}' (resource '{resource}'){}{plan_regions}",
        if reasons.is_empty() {
            " (no provider is loaded)".to_string()
        } else {
            format!(": {}", reasons.join("; "))
        }
    );
    // A provider that could serve but is unhealthy now: worth retrying later.
    let unhealthy = candidates.iter().any(|c| {
        c.lost
            .as_deref()
            .is_some_and(|l| l.starts_with(engine::UNHEALTHY))
    });
    if unhealthy {
        GatewayError::new(crate::error::ErrorKind::Unavailable, message)
    } else {
        GatewayError::invalid(message)
    }
}

/// The problem when every resource has candidates but no combination keeps the separated
/// ones apart.
fn inseparable(
    offering: &str,
    blueprint: &crate::catalog::BlueprintConfig,
    pending: &[Pending],
) -> GatewayError {
    let separate = blueprint.separate.as_ref();
    let by = match separate.map(|s| s.by) {
        Some(crate::catalog::Separation::Provider) => "providers",
        _ => "regions",
    };
    let each: Vec<String> = pending
        .iter()
        .map(|p| {
            let at: Vec<String> = p
                .order
                .iter()
                .map(|&i| format!("{}/{}", p.candidates[i].provider, p.candidates[i].region))
                .collect();
            format!("'{}' can use {}", p.resource, at.join(", "))
        })
        .collect();
    GatewayError::new(
        crate::error::ErrorKind::Conflict,
        format!(
            "offering '{offering}' needs {} in different {by}, and no placement does that: {}",
            separate
                .map(|s| s.resources.join(" and "))
                .unwrap_or_default(),
            each.join("; ")
        ),
    )
}
