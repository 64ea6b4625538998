//! `/v1/deployments`: orders for offerings of several resources (e.g. a primary and a
//! standby), created all or none.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};

use super::json_response;
use crate::auth::TenantContext;
use crate::catalog::Params;
use crate::error::GatewayError;
use crate::operations::deployments::{self as ops, Deployment, DeploymentSpec};
use crate::operations::instances as instance_ops;
use crate::placement::OrderRequest;
use crate::state::AppState;

/// `POST /v1/deployments` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentRequest {
    /// The offering.
    offering: String,
    /// Choices for it (its `user_params`), applied to every resource.
    #[serde(default)]
    params: Params,
    /// Name prefix: instances are named `<name>-<resource>`.
    name: Option<String>,
    /// Tags for every instance.
    #[serde(default)]
    tags: serde_json::Map<String, Value>,
    /// Department to charge.
    department: Option<String>,
}

/// `POST /v1/deployments`: places and creates every resource of the offering; 202 with the
/// deployment, each resource's instance and its placement summary. A failure part-way
/// terminates what was created and says so.
pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let req: DeploymentRequest = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("invalid deployment request: {e}")))?;
    let department = instance_ops::department_for(state, ctx, req.department)?;
    let order = OrderRequest {
        offering: req.offering,
        preferences: req.params,
        department,
        image_regions: None,
    };
    let spec = DeploymentSpec {
        name: req.name,
        tags: req.tags,
    };
    let (deployment, decisions) = ops::create(state, ctx, request_id, &order, spec).await?;
    let mut body = json!(deployment);
    for (resource, decision) in body["resources"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .zip(&decisions)
    {
        let id = resource["placement"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        resource["placement"] = super::placement::summary(&id, decision);
    }
    Ok(json_response(StatusCode::ACCEPTED, &body))
}

/// The view of a deployment: as stored, each resource with its instance's state now.
async fn view(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    deployment: &Deployment,
) -> Value {
    let mut body = json!(deployment);
    for resource in body["resources"].as_array_mut().into_iter().flatten() {
        let id = resource["instance"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let now = instance_ops::get(state, ctx, request_id, &id)
            .await
            .map(|r| r.state)
            .unwrap_or_else(|_| "unknown".into());
        resource["state"] = json!(now);
    }
    body
}

/// `GET /v1/deployments/{id}`: the caller's deployment (another tenant's is not found).
pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let deployment = state
        .deployments
        .get(&ctx.tenant, id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("no deployment '{id}'")))?;
    let body = view(state, ctx, request_id, &deployment).await;
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v1/deployments`: the caller's deployments, oldest first.
pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let mut views = Vec::new();
    for deployment in state.deployments.list(&ctx.tenant).await? {
        views.push(view(state, ctx, request_id, &deployment).await);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "deployments": views }),
    ))
}
