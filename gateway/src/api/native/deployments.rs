//! `/v1/deployments`: orders for offerings of several resources (e.g. a primary and a
//! standby), created all or none.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use skyport_domain::catalog::Params;
use skyport_domain::operations::deployments::DeploymentSpec;
use skyport_domain::placement::OrderRequest;

use super::{json_response, Answer, NativeApi, NativeCall};

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
pub(super) async fn create(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let req: DeploymentRequest = call.json("deployment request")?;
    let services = &api.services;
    let department = services
        .instances
        .department_for(call.ctx, req.department)?;
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
    let (deployment, decisions) = services
        .deployments
        .create(call.ctx, call.request_id, &order, spec)
        .await?;
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
        resource["placement"] = super::orders::summary(&id, decision);
    }
    Ok(json_response(StatusCode::ACCEPTED, &body))
}

/// `GET /v1/deployments/{id}`: the caller's deployment (another tenant's is not found),
/// each resource with its instance's state now.
pub(super) async fn get(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let body = api
        .services
        .deployments
        .get(call.ctx, call.request_id, call.param(0))
        .await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v1/deployments`: the caller's deployments, oldest first.
pub(super) async fn list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let views = api
        .services
        .deployments
        .list(call.ctx, call.request_id)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "deployments": views }),
    ))
}
