//! Placement on the native API: `POST /v1/placement/explain` (what an order would do,
//! nothing created), `GET /admin/placements/{id}` (a stored decision in full), and the
//! summary a create's response carries.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::instances::CreateRequest;
use super::json_response;
use crate::auth::TenantContext;
use crate::error::GatewayError;
use crate::operations::instances as ops;
use crate::placement::{self, audit::Mode, Decision};
use crate::state::AppState;

/// The summary of placement `id` in a create's response: where the resource went, its
/// price, and the parameter values it was created with.
pub fn summary(id: &str, decision: &Decision) -> Value {
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
pub async fn explain(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let mut req: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("invalid order: {e}")))?;
    let department = ops::department_for(state, ctx, req.department.take())?;
    let order = req.order(department)?;
    let decisions = placement::decide(state, ctx, request_id, &order).await?;
    let mut explained = Vec::with_capacity(decisions.len());
    for decision in &decisions {
        let id = state
            .placements
            .record(&ctx.tenant, request_id, Mode::Explain, decision)
            .await?;
        let mut body = json!(decision);
        body["id"] = json!(id);
        explained.push(body);
    }
    let body = match <[Value; 1]>::try_from(explained) {
        Ok([one]) => one,
        Err(many) => json!({"offering": order.offering, "resources": many}),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /admin/placements/{id}`: the full stored record of one placement decision.
pub async fn placement_record(
    state: &AppState,
    id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let record = state
        .placements
        .get(id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("no placement '{id}'")))?;
    Ok(json_response(StatusCode::OK, &record))
}
