//! Images: every provider's bootable images for tenants (`GET /v1/images`), and their
//! registration by operators (`/admin/images`).

use http::StatusCode;
use serde_json::{json, Value};
use skyport_core::error::GatewayError;
use skyport_domain::operations::images::Image;

use super::{json_response, Answer, NativeApi, NativeCall};

/// An image as tenants see it; `detail` adds what operators need.
fn view(image: &Image, detail: bool) -> Value {
    let mut view = json!({"name": image.name, "provider": image.provider, "region": image.region});
    if detail {
        view["disk_template"] = image.disk_template.clone();
        view["source"] = image.source.clone();
    }
    view
}

/// `GET /v1/images`: name, provider and region of every image a tenant may boot.
pub(super) async fn list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let images = api.services.images.list(call.ctx, call.request_id).await?;
    let views: Vec<Value> = images.iter().map(|i| view(i, false)).collect();
    Ok(json_response(StatusCode::OK, &json!({ "images": views })))
}

/// `GET /admin/images`: the same with disk template and source.
pub(super) async fn admin_list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let images = api.services.images.list(call.ctx, call.request_id).await?;
    let views: Vec<Value> = images.iter().map(|i| view(i, true)).collect();
    Ok(json_response(StatusCode::OK, &json!({ "images": views })))
}

/// `POST /admin/images` `{"name", "kernel", "initrd", "disk"?, "cmdline"?, "provider"?}`: copies the
/// files (absolute paths on the Skyport host) into the provider's image library -> 201.
pub(super) async fn register(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let mut params: serde_json::Map<String, Value> = call.json("image registration")?;
    let provider = match params.remove("provider") {
        Some(Value::String(p)) => Some(p),
        None => None,
        Some(other) => {
            return Err(GatewayError::invalid(format!(
                "provider must be a string, not {other}"
            )))
        }
    };
    let done = api
        .services
        .images
        .register(call.ctx, call.request_id, provider.as_deref(), params)
        .await?;
    let image = &done.image;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"name": image["name"], "provider": done.provider, "disk_template": image["disk_template"], "source": image["source"]}),
    ))
}

/// `DELETE /admin/images/{name}[?provider=]`: 409 while a VM uses it or when it is
/// registered in the configuration.
pub(super) async fn remove(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let name = call.param(0);
    let provider = call.query_value("provider");
    let provider = api
        .services
        .images
        .remove(call.ctx, call.request_id, name, provider.as_deref())
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"name": name, "provider": provider, "removed": true}),
    ))
}
