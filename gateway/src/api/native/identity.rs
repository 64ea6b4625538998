//! Who am I, and where can I go: `GET /v1/whoami`, `/v1/providers`, `/v1/regions`.

use http::StatusCode;
use serde_json::json;

use super::{json_response, Answer, NativeApi, NativeCall};

/// `GET /v1/whoami`.
pub(super) async fn whoami(_api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let ctx = call.ctx;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "tenant": &*ctx.tenant,
            "department": ctx.department,
            "roles": ctx.roles,
            "subject": ctx.subject,
            "identity_source": ctx.source.as_str(),
        }),
    ))
}

/// `GET /v1/providers`: each provider with its version, health and regions.
pub(super) async fn providers(api: &NativeApi, _call: NativeCall<'_>) -> Answer {
    let services = &api.services;
    let providers: Vec<_> = services
        .plugins
        .plugins()
        .iter()
        .filter(|p| p.running().manifest.kind == "provider")
        .map(|p| {
            let running = p.running();
            let regions: Vec<&str> = services
                .regions
                .provider_regions()
                .filter(|r| r.providers.contains(&p.name))
                .map(|r| r.name.as_str())
                .collect();
            json!({
                "name": p.name,
                "plugin": running.manifest.name,
                "version": running.manifest.version,
                "kind": running.manifest.kind,
                "health": p.health(),
                "regions": regions,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "providers": providers }),
    ))
}

/// `GET /v1/regions`.
pub(super) async fn regions(api: &NativeApi, _call: NativeCall<'_>) -> Answer {
    Ok(json_response(
        StatusCode::OK,
        &json!({ "regions": api.services.regions.all() }),
    ))
}
