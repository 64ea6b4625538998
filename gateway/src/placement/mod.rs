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
pub mod params;
pub mod rates;

use serde::Serialize;

use crate::auth::TenantContext;
use crate::catalog::{ParamValue, Params};
use crate::error::GatewayError;
use crate::state::AppState;
use params::{GatherError, Order, ParamSet};

/// An order by offering.
#[derive(Debug, Clone, Default)]
pub struct OrderRequest {
    /// The offering.
    pub offering: String,
    /// What the caller chose (only the offering's `user_params`).
    pub preferences: Params,
    /// The department to charge (already checked against the caller's).
    pub department: Option<String>,
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
    /// Chosen provider instance.
    pub provider: String,
    /// Chosen region.
    pub region: String,
    /// Every provider region considered, in configuration order.
    pub candidates: Vec<Candidate>,
    /// Currency of the candidates' prices; `None` when no rate card could be read (then
    /// the first candidate in configuration order wins).
    pub currency: Option<String>,
}

/// Decides where an order by offering goes, without creating anything (the prices come
/// from the metering plugin, asked once).
pub async fn decide(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    request: &OrderRequest,
) -> Result<Decision, GatewayError> {
    let config = &state.config;
    let name = &request.offering;
    let offering = config.offerings.get(name).ok_or_else(|| {
        GatewayError::invalid(format!(
            "unknown offering '{name}'; GET /v1/offerings lists yours"
        ))
    })?;
    let (plan_name, plan) = config.plan_of(&ctx.tenant).unzip();
    if let (Some(plan_name), Some(plan)) = (plan_name, plan) {
        if !plan.offers(name) {
            return Err(GatewayError::forbidden(format!(
                "offering '{name}' is not in your plan '{plan_name}'"
            )));
        }
    }
    let blueprint = config.blueprints.get(&offering.blueprint).ok_or_else(|| {
        GatewayError::internal(format!("blueprint '{}' is not defined", offering.blueprint))
    })?;
    let [resource] = blueprint.resources.as_slice() else {
        return Err(GatewayError::invalid(format!(
            "offering '{name}' creates {} resources; such deployments cannot be ordered yet",
            blueprint.resources.len()
        )));
    };

    let mut context = Params::new();
    context.insert("tenant".into(), ParamValue::Text(ctx.tenant.to_string()));
    if let Some(department) = &request.department {
        context.insert("department".into(), ParamValue::Text(department.clone()));
    }
    if let Some(plan) = plan_name {
        context.insert("plan".into(), ParamValue::Text(plan.to_string()));
    }
    let params = params::gather(&Order {
        offering_name: name,
        offering,
        blueprint,
        resource,
        context: &context,
        preferences: &request.preferences,
    })
    .map_err(|e| match e {
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
    })?;
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

    // Every provider region, with why it cannot serve this order, if it cannot.
    let mut candidates = Vec::new();
    for view in state.regions.iter().filter(|r| r.kind == "provider") {
        for provider in &view.providers {
            let health = state.plugins.get(provider).map(|p| p.health());
            let lost = if let Some(h) = health.as_ref().filter(|h| !h.healthy) {
                Some(format!(
                    "unhealthy: {}",
                    h.reason.as_deref().unwrap_or("no reason given")
                ))
            } else if !plan.is_none_or(|p| p.allows_region(&view.name)) {
                Some("region not in your plan".to_string())
            } else if let Some(p) = params.text("provider").filter(|p| p != provider) {
                Some(format!("provider set to '{p}'"))
            } else {
                params
                    .text("region")
                    .filter(|r| *r != view.name)
                    .map(|r| format!("region set to '{r}'"))
            };
            candidates.push(Candidate {
                provider: provider.clone(),
                region: view.name.clone(),
                price: None,
                lost,
            });
        }
    }
    let instance_type = params.text("instance_type").unwrap_or_default().to_string();
    let providers: Vec<String> = candidates
        .iter()
        .filter(|c| c.lost.is_none())
        .map(|c| c.provider.clone())
        .collect();
    let card = rates::prices(state, ctx, request_id, &instance_type, &providers).await;
    let Some(winner) = rates::rank(&mut candidates, &card) else {
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
        return Err(GatewayError::invalid(format!(
            "no provider can serve offering '{name}'{}",
            if reasons.is_empty() {
                " (no provider is loaded)".to_string()
            } else {
                format!(": {}", reasons.join("; "))
            }
        )));
    };
    let (provider, region) = (
        candidates[winner].provider.clone(),
        candidates[winner].region.clone(),
    );
    Ok(Decision {
        offering: name.clone(),
        resource: resource.name.clone(),
        params,
        provider,
        region,
        candidates,
        currency: card.currency,
    })
}
