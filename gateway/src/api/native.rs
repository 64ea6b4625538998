//! The native JSON API (`/v1/*`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::json_response;
use crate::auth::TenantContext;
use crate::state::AppState;

/// A region as listed by `GET /v1/regions`.
#[derive(Debug, Clone, Serialize)]
pub struct RegionView {
    /// Region name.
    pub name: String,
    /// `federated` (the union of all providers) or `provider`.
    pub kind: &'static str,
    /// Serving providers.
    pub providers: Vec<String>,
    /// Zones.
    pub zones: Vec<String>,
}

/// Name of the federated region that spans every provider.
pub const FEDERATED_REGION: &str = "skyport";

/// `GET /v1/whoami`.
pub fn whoami(ctx: &TenantContext) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "tenant": &*ctx.tenant,
            "department": ctx.department,
            "roles": ctx.roles,
            "subject": ctx.subject,
            "identity_source": ctx.source.as_str(),
        }),
    )
}

/// `GET /v1/providers`.
pub fn providers(state: &AppState) -> Response<Full<Bytes>> {
    let providers: Vec<_> = state
        .plugins
        .plugins()
        .iter()
        .filter(|p| p.manifest.kind == "provider")
        .map(|p| {
            let regions: Vec<&str> = state
                .regions
                .iter()
                .filter(|r| r.kind == "provider" && r.providers.contains(&p.name))
                .map(|r| r.name.as_str())
                .collect();
            serde_json::json!({
                "name": p.name,
                "plugin": p.manifest.name,
                "version": p.manifest.version,
                "kind": p.manifest.kind,
                "health": p.health(),
                "regions": regions,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "providers": providers }),
    )
}

/// `GET /v1/regions`.
pub fn regions(state: &AppState) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "regions": state.regions }),
    )
}
