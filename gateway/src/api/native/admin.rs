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
            let running = p.running();
            json!({
                "name": p.name,
                "plugin": running.manifest.name,
                "version": running.manifest.version,
                "kind": running.manifest.kind,
                "api_version": running.manifest.api_version,
                "target": running.manifest.target,
                "summary": running.summary,
                "ops": running.ops,
                "sha256": running.sha256,
                "isolation": p.isolation,
                "pid": running.pid(),
                "health": p.health(),
                "restarts": registry.restarts(&p.name),
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

/// `POST /admin/plugins/{name}/reload`: the plugin's configured file, as it is now, takes
/// over from the running version once it answers healthy; the old one drains. 409 with
/// the refusal when the new version is refused or unhealthy (the old keeps serving).
pub(super) async fn reload_plugin(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    use skyport_plugin_host::registry::{ReloadError, Reloaded};
    let name = call.param(0);
    match api.services.plugins.reload(name, false).await {
        Ok(Reloaded::Replaced { version, sha256 }) => Ok(json_response(
            StatusCode::OK,
            &json!({"name": name, "reloaded": true, "version": version, "sha256": sha256}),
        )),
        Ok(Reloaded::Unchanged) => Ok(json_response(
            StatusCode::OK,
            &json!({"name": name, "reloaded": false}),
        )),
        Err(ReloadError::NotLoaded(name)) => Err(GatewayError::not_found(format!(
            "no plugin named '{name}' is loaded"
        ))),
        Err(e) => Err(GatewayError::new(
            skyport_core::error::ErrorKind::Conflict,
            format!("reload refused; the running version keeps serving: {e}"),
        )),
    }
}

/// `GET /admin/providers/{name}/unmanaged`: the VMs the provider runs that are no
/// instance of Skyport's.
pub(super) async fn unmanaged(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let provider = call.param(0);
    let vms = api.services.sync.unmanaged(provider).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"provider": provider, "unmanaged": vms}),
    ))
}

/// `POST /admin/providers/{name}/unmanaged/{id}/adopt` with `{"tenant", "department"?,
/// "image"?, "instance_type"?, "region"?, "name"?}`: 201 with the instance it became.
pub(super) async fn adopt(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let request = call.json("adoption")?;
    let record = api
        .services
        .sync
        .adopt(
            call.ctx,
            call.request_id,
            call.param(0),
            call.param(1),
            request,
        )
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &super::instances::view(&record, None),
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

/// `POST /admin/plugins/{name}/ops/{op[@version]}[?timeout_secs=N]` with JSON params as
/// the body.
pub(super) async fn call_plugin(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let timeout = match call.query_value("timeout_secs") {
        Some(secs) => Some(std::time::Duration::from_secs(secs.parse().map_err(
            |_| GatewayError::invalid(format!("timeout_secs must be a whole number, not '{secs}'")),
        )?)),
        None => None,
    };
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
            timeout,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "result": result })))
}
