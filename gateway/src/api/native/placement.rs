//! Placement on the native API: `POST /v1/placement/explain` (what an order would do,
//! nothing created) and `GET /admin/placements/{id}` (a stored decision in full).

use http::StatusCode;
use serde_json::{json, Value};

use super::orders::CreateRequest;
use super::{json_response, Answer, NativeApi, NativeCall};

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
