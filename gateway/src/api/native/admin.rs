//! Operators' view of the gateway: `GET /admin/plugins`, `GET /admin/tenants`, and
//! `POST /admin/plugins/{name}/ops/{op}` (any op of any plugin, for diagnostics).

use http::StatusCode;
use serde_json::json;

use super::{json_response, Answer, NativeApi, NativeCall};
use skyport_core::error::GatewayError;

/// `GET /admin/plugins`: loaded plugins with health, and this start's refusals.
pub(super) async fn plugins(api: &NativeApi, _call: NativeCall<'_>) -> Answer {
    let registry = &api.services.plugins;
    let loaded: Vec<_> = registry
        .plugins()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "plugin": p.manifest.name,
                "version": p.manifest.version,
                "kind": p.manifest.kind,
                "api_version": p.manifest.api_version,
                "target": p.manifest.target,
                "summary": p.summary,
                "ops": p.ops,
                "sha256": p.sha256,
                "health": p.health(),
            })
        })
        .collect();
    let refused: Vec<_> = registry
        .refusals()
        .iter()
        .map(|r| json!({"plugin": r.plugin, "reason": r.reason, "message": r.to_string()}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "plugins": loaded, "refused": refused }),
    ))
}

/// `GET /admin/tenants`: each tenant's departments and rate limit.
pub(super) async fn tenants(api: &NativeApi, _call: NativeCall<'_>) -> Answer {
    let limits = &api.services.config.limits;
    let tenants: Vec<_> = api
        .services
        .tenants
        .iter()
        .map(|(id, t)| {
            json!({
                "id": id,
                "departments": t.departments,
                "requests_per_second": t.requests_per_second.unwrap_or(limits.default_requests_per_second),
                "burst": t.burst.unwrap_or(limits.default_burst),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "tenants": tenants }),
    ))
}

/// `POST /admin/plugins/{name}/ops/{op[@version]}` with JSON params as the body.
pub(super) async fn call_plugin(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let params: serde_json::Value = if call.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&call.body)
            .map_err(|e| GatewayError::invalid(format!("body is not JSON: {e}")))?
    };
    let result = api
        .services
        .diagnostics
        .call(
            call.ctx,
            call.request_id,
            call.param(0),
            call.param(1),
            params,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "result": result })))
}
