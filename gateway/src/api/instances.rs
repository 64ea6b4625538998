//! The native instance API (`/v1/instances`, `/v1/instance-types`): JSON in, JSON out,
//! over the shared instance operations (`operations::instances`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};

use super::json_response;
use crate::auth::TenantContext;
use crate::catalog::{instance_type, ParamValue, Params, INSTANCE_TYPES, RAW};
use crate::error::GatewayError;
use crate::inventory::{is_instance_id, InstanceRecord};
use crate::operations::instances::{self as ops, Action, CreateSpec};
use crate::placement;
use crate::placement::audit::Mode;
use crate::state::AppState;

/// `POST /v1/instances` body (also `POST /v1/placement/explain`'s).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    /// An offering to order; its choices go in `params`. None: a raw request, placed as
    /// the built-in offering `raw`.
    offering: Option<String>,
    /// Choices for the offering (its `user_params`).
    #[serde(default)]
    params: Params,
    image: Option<String>,
    instance_type: Option<String>,
    region: Option<String>,
    provider: Option<String>,
    name: Option<String>,
    #[serde(default)]
    tags: serde_json::Map<String, Value>,
    pub(super) department: Option<String>,
}

impl CreateRequest {
    /// The order: the offering named, else the built-in `raw` (which needs `image` and
    /// `instance_type`). Top-level `image`, `instance_type`, `region` and `provider` are
    /// choices for it, like `params`.
    pub(super) fn order(
        &mut self,
        department: Option<String>,
    ) -> Result<placement::OrderRequest, GatewayError> {
        let offering = match self.offering.take() {
            Some(offering) => offering,
            None => {
                let missing = [
                    ("image", &self.image),
                    ("instance_type", &self.instance_type),
                ]
                .into_iter()
                .find(|(field, value)| value.is_none() && !self.params.contains_key(*field));
                if let Some((field, _)) = missing {
                    return Err(GatewayError::invalid(format!(
                        "invalid instance request: missing field `{field}` (or order an offering)"
                    )));
                }
                RAW.to_string()
            }
        };
        let mut preferences = std::mem::take(&mut self.params);
        for (name, value) in [
            ("image", self.image.take()),
            ("instance_type", self.instance_type.take()),
            ("region", self.region.take()),
            ("provider", self.provider.take()),
        ] {
            let Some(value) = value else { continue };
            if preferences.contains_key(name) {
                return Err(GatewayError::invalid(format!(
                    "'{name}' is given twice, at the top level and in params"
                )));
            }
            preferences.insert(name.to_string(), ParamValue::Text(value));
        }
        Ok(placement::OrderRequest {
            offering,
            preferences,
            department,
            image_regions: None,
        })
    }
}

/// The JSON view of an instance.
pub fn view(record: &InstanceRecord) -> Value {
    let t = instance_type(&record.instance_type);
    json!({
        "id": record.id,
        "state": record.state,
        "provider": record.provider,
        "region": record.region,
        "image": record.image,
        "instance_type": record.instance_type,
        "vcpus": t.map(|t| t.vcpus),
        "memory_mib": t.map(|t| t.memory_mib),
        "name": record.name,
        "tags": record.tags,
        "department": record.department,
        "created_at": record.created_at,
    })
}

/// `GET /v1/instance-types`.
pub fn instance_types() -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &json!({ "instance_types": INSTANCE_TYPES }))
}

async fn wait_for(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    record: InstanceRecord,
    wait: Option<&str>,
) -> Result<InstanceRecord, GatewayError> {
    match wait {
        None => Ok(record),
        Some(target) => ops::wait_for(state, ctx, request_id, record, target).await,
    }
}

/// `POST /v1/instances`.
pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    body: Bytes,
    wait: Option<&str>,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let mut req: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("invalid instance request: {e}")))?;
    let department = ops::department_for(state, ctx, req.department.take())?;
    let order = req.order(department.clone())?;
    let decision = placement::decide_one(state, ctx, request_id, &order).await?;
    let id = state
        .placements
        .record(&ctx.tenant, request_id, Mode::Create, &decision)
        .await?;
    let spec = CreateSpec {
        name: req.name,
        tags: req.tags,
        department,
        ..CreateSpec::decided(&decision)?
    };
    let record = ops::create(state, ctx, request_id, spec).await?;
    let record = wait_for(state, ctx, request_id, record, wait).await?;
    let mut body = view(&record);
    body["placement"] = super::placement::summary(&id, &decision);
    Ok(json_response(StatusCode::ACCEPTED, &body))
}

/// `GET /v1/instances/{id}`.
pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
    wait: Option<&str>,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let record = ops::get(state, ctx, request_id, id).await?;
    let record = wait_for(state, ctx, request_id, record, wait).await?;
    Ok(json_response(StatusCode::OK, &view(&record)))
}

/// Largest page of `GET /v1/instances`.
const MAX_PAGE: usize = 1000;

/// `GET /v1/instances`: filters `state`, `region`, `tag:<key>` (all must match), pages of
/// `limit` (default 100, at most 1,000) in id order, continued with `next_token`.
pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    query: &[(String, String)],
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let mut limit = 100;
    let mut after: Option<&str> = None;
    for (key, value) in query {
        match key.as_str() {
            "state" | "region" => {}
            k if k.starts_with("tag:") && k.len() > 4 => {}
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        GatewayError::invalid(format!("limit must be 1-{MAX_PAGE}, not '{value}'"))
                    })?
            }
            "next_token" if is_instance_id(value) => after = Some(value),
            "next_token" => {
                return Err(GatewayError::invalid(format!(
                    "next_token '{value}' is not one this API returned"
                )))
            }
            other => {
                return Err(GatewayError::invalid(format!(
                    "unknown query parameter '{other}'; use state, region, tag:<key>, limit, next_token"
                )))
            }
        }
    }
    let mut out = Vec::new();
    let mut next_token = None;
    let records = state.inventory.list(&ctx.tenant).await?;
    for record in records
        .into_iter()
        .filter(|r| after.is_none_or(|a| r.id.as_str() > a))
    {
        let record = ops::refresh_for_listing(state, ctx, request_id, record).await?;
        let keep = query.iter().all(|(k, v)| match k.as_str() {
            "state" => record.state == *v,
            "region" => record.region == *v,
            k if k.starts_with("tag:") => {
                record.tags.get(&k[4..]).and_then(Value::as_str) == Some(v.as_str())
            }
            _ => true,
        });
        if !keep {
            continue;
        }
        if out.len() == limit {
            next_token = out
                .last()
                .and_then(|v: &Value| v["id"].as_str().map(str::to_owned));
            break;
        }
        out.push(view(&record));
    }
    let mut body = json!({ "instances": out });
    if let Some(token) = next_token {
        body["next_token"] = json!(token);
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/instances/{id}/{start|stop|reboot}` and `DELETE /v1/instances/{id}`.
pub async fn action(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
    action: &str,
    wait: Option<&str>,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let action = Action::parse(action)
        .ok_or_else(|| GatewayError::not_found(format!("no action '{action}'")))?;
    let (_, record) = ops::act(state, ctx, request_id, id, action).await?;
    let record = wait_for(state, ctx, request_id, record, wait).await?;
    let status = if action == Action::Terminate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_response(status, &view(&record)))
}

/// `PATCH /v1/instances/{id}` `{"instance_type"}`: resize a stopped instance.
pub async fn resize(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Patch {
        instance_type: String,
    }
    let patch: Patch = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("invalid patch: {e}")))?;
    let itype = ops::parse_instance_type(&patch.instance_type)?;
    let record = ops::resize(state, ctx, request_id, id, itype).await?;
    Ok(json_response(StatusCode::OK, &view(&record)))
}

/// `GET /v1/instances/{id}/console`: the tail of the serial console.
pub async fn console(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let (record, output) = ops::console(state, ctx, request_id, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": record.id, "output": output}),
    ))
}
