//! Images: every provider's bootable images for tenants (`GET /v1/images`), and their
//! registration by operators (`/admin/images`). Providers keep the images; the gateway
//! only routes to whichever provider serves the `images.*` ops.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use skyport_plugin_host::Plugins as _;

use super::json_response;
use crate::auth::TenantContext;
use crate::error::GatewayError;
use crate::operations::{context, PROVIDER_TIMEOUT};
use crate::state::AppState;

/// Every (provider, region) whose provider serves `op@1`.
fn providers_serving<'a>(state: &'a AppState, op: &str) -> Vec<(&'a str, &'a str)> {
    let wanted = format!("{op}@1");
    state
        .regions
        .iter()
        .filter(|r| r.kind == "provider")
        .flat_map(|r| {
            r.providers
                .iter()
                .map(move |p| (p.as_str(), r.name.as_str()))
        })
        .filter(|(p, _)| {
            state
                .plugins
                .get(p)
                .is_some_and(|h| h.ops.contains(&wanted))
        })
        .collect()
}

/// Every provider's `images.list`, each image tagged with provider and region; `detail`
/// adds what operators need (disk template, where it was registered).
pub(crate) async fn all_images(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    detail: bool,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    for (provider, region) in providers_serving(state, "images.list") {
        // An unhealthy provider offers nothing now; the others still list theirs.
        if state
            .plugins
            .get(provider)
            .is_some_and(|p| !p.health().healthy)
        {
            continue;
        }
        let list = state
            .plugins
            .call(
                provider,
                "images.list",
                1,
                json!({}),
                context(ctx, request_id),
                PROVIDER_TIMEOUT,
            )
            .await?;
        for image in list.as_array().into_iter().flatten() {
            let mut view = json!({"name": image["name"], "provider": provider, "region": region});
            if detail {
                view["disk_template"] = image["disk_template"].clone();
                view["source"] = image["source"].clone();
            }
            out.push(view);
        }
    }
    Ok(out)
}

/// `GET /v1/images`: name, provider and region of every image a tenant may boot.
pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let images = all_images(state, ctx, request_id, false).await?;
    Ok(json_response(StatusCode::OK, &json!({ "images": images })))
}

/// `GET /admin/images`: the same with disk template and source.
pub async fn admin_list(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let images = all_images(state, ctx, request_id, true).await?;
    Ok(json_response(StatusCode::OK, &json!({ "images": images })))
}

/// The provider an image operation goes to: the one named, or the only one serving `op`.
fn target_provider<'a>(
    state: &'a AppState,
    op: &str,
    named: Option<&str>,
) -> Result<&'a str, GatewayError> {
    let serving = providers_serving(state, op);
    let mut names: Vec<&str> = serving.iter().map(|(p, _)| *p).collect();
    names.sort_unstable();
    names.dedup();
    match (named, names.as_slice()) {
        (Some(want), _) => names.iter().copied().find(|p| *p == want).ok_or_else(|| {
            GatewayError::invalid(format!(
                "provider '{want}' does not register images; choose one of: {}",
                names.join(", ")
            ))
        }),
        (None, [only]) => Ok(only),
        (None, []) => Err(GatewayError::invalid("no loaded provider registers images")),
        (None, _) => Err(GatewayError::invalid(format!(
            "several providers register images; name one with \"provider\": {}",
            names.join(", ")
        ))),
    }
}

/// `POST /admin/images` `{"name", "kernel", "initrd", "disk"?, "provider"?}`: copies the
/// files (absolute paths on the Skyport host) into the provider's image library -> 201.
pub async fn register(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let mut params: serde_json::Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("invalid image registration: {e}")))?;
    let named = match params.remove("provider") {
        Some(Value::String(p)) => Some(p),
        None => None,
        Some(other) => {
            return Err(GatewayError::invalid(format!(
                "provider must be a string, not {other}"
            )))
        }
    };
    let provider = target_provider(state, "images.register", named.as_deref())?;
    let image = state
        .plugins
        .call(
            provider,
            "images.register",
            1,
            Value::Object(params),
            context(ctx, request_id),
            PROVIDER_TIMEOUT,
        )
        .await?;
    tracing::info!(provider, image = %image["name"], "image registered");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"name": image["name"], "provider": provider, "disk_template": image["disk_template"], "source": image["source"]}),
    ))
}

/// `DELETE /admin/images/{name}[?provider=]`: 409 while a VM uses it or when it is
/// registered in the configuration.
pub async fn remove(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    name: &str,
    named_provider: Option<&str>,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let provider = target_provider(state, "images.remove", named_provider)?;
    state
        .plugins
        .call(
            provider,
            "images.remove",
            1,
            json!({"name": name}),
            context(ctx, request_id),
            PROVIDER_TIMEOUT,
        )
        .await?;
    tracing::info!(provider, image = name, "image removed");
    Ok(json_response(
        StatusCode::OK,
        &json!({"name": name, "provider": provider, "removed": true}),
    ))
}
