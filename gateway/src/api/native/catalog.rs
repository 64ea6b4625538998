//! The catalog on the API: `GET /v1/offerings` (what the caller's plan lets it order) and
//! `/admin/{blueprints,offerings,plans}[/{name}]` (the catalog, managed at run time).

use http::StatusCode;
use serde_json::{json, Value};
use skyport_core::error::GatewayError;
use skyport_domain::catalog::changes::Kind;
use skyport_domain::catalog::{Params, RAW};

use super::{json_response, Answer, NativeApi, NativeCall};

/// `GET /v1/offerings`: the caller's plan, the provider regions it allows, whether raw
/// requests are allowed, and each offering it may order (the built-in `raw` last, when
/// allowed) with its effective parameters (blueprint's, then the offering's) and defaults
/// (offering's first).
pub(super) async fn offerings(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let services = &api.services;
    let catalog = services.catalog.current();
    let (plan_name, plan) = catalog
        .plan(services.tenants.plan_of(&call.ctx.tenant))
        .unzip();
    let regions: Vec<&str> = services
        .regions
        .provider_regions()
        .map(|r| r.name.as_str())
        .filter(|r| plan.is_none_or(|p| p.allows_region(r)))
        .collect();
    let offerings: Vec<Value> = catalog
        .offerings
        .keys()
        .map(String::as_str)
        .chain([RAW])
        .filter(|name| plan.is_none_or(|p| p.offers(name)))
        .filter_map(|name| {
            let (offering, blueprint) = catalog.offering(name)?;
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
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "tenant": &*call.ctx.tenant,
            "plan": plan_name,
            "raw_requests": plan.is_none_or(|p| p.raw),
            "regions": regions,
            "offerings": offerings,
        }),
    ))
}

/// `base` with `over` laid on top.
fn merged(base: &Params, over: &Params) -> Params {
    let mut out = base.clone();
    out.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The kind a catalog route names (its first path parameter).
fn kind(call: &NativeCall<'_>) -> Result<Kind, GatewayError> {
    Kind::from_segment(call.param(0))
        .ok_or_else(|| GatewayError::not_found(format!("no route for {}", call.head.uri.path())))
}

/// `GET /admin/{kind}`: every object of the kind, by name.
pub(super) async fn admin_list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let kind = kind(&call)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ kind.plural(): api.services.catalog.objects(kind) }),
    ))
}

/// `GET /admin/{kind}/{name}`.
pub(super) async fn admin_get(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let object = api.services.catalog.object(kind(&call)?, call.param(1))?;
    Ok(json_response(StatusCode::OK, &object))
}

/// `PUT /admin/{kind}/{name}`: 201 when new, 200 when replaced; 400 naming every problem
/// of the catalog it would make.
pub(super) async fn admin_put(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let body: Value = serde_json::from_slice(&call.body)
        .map_err(|e| GatewayError::invalid(format!("the body must be a JSON object: {e}")))?;
    let (created, object) = api
        .services
        .catalog
        .put(kind(&call)?, call.param(1), body)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &object))
}

/// `DELETE /admin/{kind}/{name}`: 409 while others refer to it.
pub(super) async fn admin_delete(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let kind = kind(&call)?;
    let name = call.param(1);
    api.services.catalog.delete(kind, name).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"deleted": format!("{}.{name}", kind.plural())}),
    ))
}
