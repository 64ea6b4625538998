//! Placement on the native API: `POST /v1/placement/explain` (what an order would do,
//! nothing created) and `GET /admin/placements/{id}` (a stored decision in full).

use http::StatusCode;
use serde_json::{json, Value};

use super::orders::CreateRequest;
use skyport_core::error::GatewayError;
use skyport_domain::placement::audit::{AuditFilter, MAX_SEARCH_LIMIT};

use super::{check_params, json_response, param, Answer, NativeApi, NativeCall};

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

/// `GET /admin/placements[?tenant=&offering=&provider=&region=&mode=&request_id=&since=
/// &until=&limit=]`: stored decisions, newest first (`limit` 1-500, 50 by default).
pub(super) async fn search(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    const FIELDS: [&str; 9] = [
        "tenant",
        "offering",
        "provider",
        "region",
        "mode",
        "request_id",
        "since",
        "until",
        "limit",
    ];
    let query = call.query();
    check_params(&query, &FIELDS)?;
    let get = |name: &str| {
        param(&query, name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let limit = match get("limit") {
        None => 50,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_SEARCH_LIMIT).contains(n))
            .ok_or_else(|| {
                GatewayError::invalid(format!(
                    "limit must be a number from 1 to {MAX_SEARCH_LIMIT}"
                ))
            })?,
    };
    if let Some(mode) = get("mode").filter(|m| m != "explain" && m != "create") {
        return Err(GatewayError::invalid(format!(
            "mode '{mode}' is not one of explain, create"
        )));
    }
    // Times as stored (RFC 3339 in UTC, milliseconds), so that they compare as text.
    let time = |name: &str| -> Result<Option<String>, GatewayError> {
        get(name)
            .map(|text| {
                humantime::parse_rfc3339_weak(&text)
                    .map(skyport_core::ids::rfc3339_millis)
                    .map_err(|_| {
                        GatewayError::invalid(format!(
                            "{name} must be an RFC 3339 time in UTC, e.g. 2026-12-01T00:00:00Z"
                        ))
                    })
            })
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    let filter = AuditFilter {
        tenant: get("tenant"),
        offering: get("offering"),
        provider: get("provider"),
        region: get("region"),
        mode: get("mode"),
        request_id: get("request_id"),
        since,
        until,
        limit,
    };
    let found = api.services.placement.audit_search(&filter).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "placements": found }),
    ))
}

/// `GET /admin/placements/{id}`: the full stored record of one placement decision.
pub(super) async fn record(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let record = api.services.placement.audit_record(call.param(0)).await?;
    Ok(json_response(StatusCode::OK, &record))
}
