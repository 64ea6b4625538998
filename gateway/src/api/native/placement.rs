//! Placement on the native API: `POST /v1/placement/explain` (what an order would do,
//! nothing created), `GET /admin/placements/{id}` (a stored decision in full), and the
//! summary a create's response carries.

use http::StatusCode;
use serde_json::{json, Value};
use skyport_domain::placement::Decision;

use super::instances::CreateRequest;
use super::{json_response, Answer, NativeApi, NativeCall};

/// The summary of placement `id` in a create's response: where the resource went, its
/// price, and the parameter values it was created with.
pub(super) fn summary(id: &str, decision: &Decision) -> Value {
    json!({
        "id": id,
        "offering": decision.offering,
        "resource": decision.resource,
        "provider": decision.provider,
        "region": decision.region,
        "price_per_hour": decision.candidates.iter()
            .find(|c| c.lost.is_none())
            .and_then(|c| c.price.clone()),
        "currency": decision.currency,
        "rules": decision.rules.iter()
            .filter(|f| f.error.is_none())
            .map(|f| json!({"rule": f.rule, "effect": f.effect}))
            .collect::<Vec<_>>(),
        "params": decision.params.iter()
            .map(|(k, p)| (k.to_string(), json!(p.value)))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// `POST /v1/placement/explain`: the decisions a create with the same body would reach
/// (`POST /v1/instances` for an offering of one resource, `POST /v1/deployments` for one of
/// several), with every parameter's decision point, every rule that fired and every
/// candidate; each is stored for the audit, and nothing is created.
///
/// One resource: the decision itself, with its `id`. Several: `{offering, resources}`.
pub(super) async fn explain(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let mut req: CreateRequest = call.json("order")?;
    let department = api
        .services
        .instances
        .department_for(call.ctx, req.department.take())?;
    let order = req.order(department)?;
    let explained: Vec<Value> = api
        .services
        .placement
        .explain(call.ctx, call.request_id, &order)
        .await?
        .into_iter()
        .map(|(id, decision)| {
            let mut body = json!(decision);
            body["id"] = json!(id);
            body
        })
        .collect();
    let body = match <[Value; 1]>::try_from(explained) {
        Ok([one]) => one,
        Err(many) => json!({"offering": order.offering, "resources": many}),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /admin/placements/{id}`: the full stored record of one placement decision.
pub(super) async fn record(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let record = api.services.placement.audit_record(call.param(0)).await?;
    Ok(json_response(StatusCode::OK, &record))
}
