//! The admin API (`/admin/*`): allowed for the `admin` role claim or an admin mTLS identity.

use skyport_plugin_host::Plugins as _;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::json_response;
use crate::auth::TenantContext;
use crate::error::GatewayError;
use crate::state::AppState;
use skyport_plugin_api::sdk::CallContext;

/// `GET /admin/plugins`: loaded plugins with health, and this start's refusals.
pub fn plugins(state: &AppState) -> Response<Full<Bytes>> {
    let loaded: Vec<_> = state
        .plugins
        .plugins()
        .iter()
        .map(|p| {
            serde_json::json!({
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
    let refused: Vec<_> = state
        .plugins
        .refusals()
        .iter()
        .map(|r| serde_json::json!({"plugin": r.plugin, "reason": r.reason, "message": r.to_string()}))
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "plugins": loaded, "refused": refused }),
    )
}

/// `GET /admin/tenants`.
pub fn tenants(state: &AppState) -> Response<Full<Bytes>> {
    let config = &state.config;
    let tenants: Vec<_> = state
        .tenants
        .iter()
        .map(|(id, t)| {
            serde_json::json!({
                "id": id,
                "departments": t.departments,
                "requests_per_second": t.requests_per_second.unwrap_or(config.limits.default_requests_per_second),
                "burst": t.burst.unwrap_or(config.limits.default_burst),
            })
        })
        .collect();
    json_response(StatusCode::OK, &serde_json::json!({ "tenants": tenants }))
}

/// `POST /admin/plugins/{name}/ops/{op[@version]}` with JSON params as the body.
pub async fn call_plugin(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    plugin: &str,
    op: &str,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let (op, version) = match op.split_once('@') {
        Some((op, v)) => (
            op,
            v.parse::<u32>()
                .map_err(|_| GatewayError::invalid(format!("bad op version '{v}'")))?,
        ),
        None => (op, 1),
    };
    let params: serde_json::Value = if body.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| GatewayError::invalid(format!("body is not JSON: {e}")))?
    };
    let context = CallContext {
        request_id: request_id.to_string(),
        tenant: Some(ctx.tenant.to_string()),
        department: ctx.department.clone(),
    };
    let result = state
        .plugins
        .call(
            plugin,
            op,
            version,
            params,
            context,
            Duration::from_secs(30),
        )
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "result": result }),
    ))
}
