//! `GET /v1/offerings`: what the caller's plan lets it order.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::api::json_response;
use crate::auth::TenantContext;
use crate::catalog::{Params, RAW};
use crate::state::AppState;

/// `GET /v1/offerings`: the caller's plan, the provider regions it allows, whether raw
/// requests are allowed, and each offering it may order (the built-in `raw` last, when
/// allowed) with its effective parameters (blueprint's, then the offering's) and defaults
/// (offering's first).
pub fn offerings(state: &AppState, ctx: &TenantContext) -> Response<Full<Bytes>> {
    let config = state.catalog.load();
    let (plan_name, plan) = config.plan(state.config.plan_name(&ctx.tenant)).unzip();
    let regions: Vec<&str> = state
        .regions
        .iter()
        .filter(|r| r.kind == "provider")
        .map(|r| r.name.as_str())
        .filter(|r| plan.is_none_or(|p| p.allows_region(r)))
        .collect();
    let offerings: Vec<Value> = config
        .offerings
        .keys()
        .map(String::as_str)
        .chain([RAW])
        .filter(|name| plan.is_none_or(|p| p.offers(name)))
        .filter_map(|name| {
            let (offering, blueprint) = config.offering(name)?;
            Some(json!({
                "name": name,
                "description": offering.description,
                "blueprint": offering.blueprint,
                "resources": blueprint.resources.iter().map(|r| json!({
                    "name": r.name,
                    "type": r.kind,
                })).collect::<Vec<_>>(),
                "separate": blueprint.separate,
                "params": merged(&blueprint.params, &offering.params),
                "defaults": merged(&blueprint.defaults, &offering.defaults),
                "user_params": offering.user_params,
            }))
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "tenant": &*ctx.tenant,
            "plan": plan_name,
            "raw_requests": plan.is_none_or(|p| p.raw),
            "regions": regions,
            "offerings": offerings,
        }),
    )
}

/// `base` with `over` laid on top.
fn merged(base: &Params, over: &Params) -> Params {
    let mut out = base.clone();
    out.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}
