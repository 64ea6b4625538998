//! The native instance API (`/v1/instances`, `/v1/instance-types`): JSON in, JSON out,
//! over the shared instance operations.

use std::collections::HashMap;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use skyport_core::error::GatewayError;
use skyport_core::tenancy::TenantContext;
use skyport_domain::budgets::OrderItem;
use skyport_domain::catalog::{instance_type, parse_instance_type, INSTANCE_TYPES};
use skyport_domain::instance_leases::{ms_text, InstanceLease};
use skyport_domain::inventory::{is_instance_id, InstanceRecord};
use skyport_domain::operations::instances::{Action, CreateSpec, FirstBoot};

use super::orders::CreateRequest;
use super::{json_response, Answer, NativeApi, NativeCall};

/// The JSON view of an instance, with its lease when it has one.
pub(super) fn view(record: &InstanceRecord, lease: Option<&InstanceLease>) -> Value {
    let t = instance_type(&record.instance_type);
    let lease = lease.map(|l| {
        json!({
            "expires_at": ms_text(l.expires_ms),
            "warn_at": ms_text(l.warn_ms),
            "on_expiry": l.on_expiry,
            "warned": l.warned,
            "expired": l.expired,
        })
    });
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
        "key_name": record.key_name,
        "network": record.network,
        "lease": lease,
    })
}

/// [`view`] of the caller's `record`, with its lease looked up.
async fn viewed(
    api: &NativeApi,
    call: &NativeCall<'_>,
    record: &InstanceRecord,
) -> Result<Value, GatewayError> {
    let lease = api
        .services
        .instances
        .lease_of(call.ctx, &record.id)
        .await?;
    Ok(view(record, lease.as_ref()))
}

/// `POST /v1/instances/{id}/lease` `{"extend_secs": N}`: extends the instance's lease
/// within the plan's limit; 200 with the instance.
pub(super) async fn extend_lease(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Extension {
        extend_secs: u64,
    }
    let extension: Extension = call.json("lease extension")?;
    let instances = &api.services.instances;
    instances
        .extend_lease(
            call.ctx,
            call.request_id,
            call.param(0),
            extension.extend_secs,
        )
        .await?;
    let record = instances
        .get(call.ctx, call.request_id, call.param(0))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &viewed(api, &call, &record).await?,
    ))
}

/// `GET /v1/instance-types`.
pub(super) async fn instance_types(_api: &NativeApi, _call: NativeCall<'_>) -> Answer {
    Ok(json_response(
        StatusCode::OK,
        &json!({ "instance_types": INSTANCE_TYPES }),
    ))
}

/// `record` once it reached the state `wait` names, if any.
async fn waited_for(
    api: &NativeApi,
    ctx: &TenantContext,
    request_id: &str,
    record: InstanceRecord,
    wait: Option<&str>,
) -> Result<InstanceRecord, GatewayError> {
    match wait {
        None => Ok(record),
        Some(target) => {
            api.services
                .instances
                .wait_for(ctx, request_id, record, target)
                .await
        }
    }
}

/// `record` once it reached the state `?wait=` names, if any.
async fn waited(
    api: &NativeApi,
    call: &NativeCall<'_>,
    record: InstanceRecord,
) -> Result<InstanceRecord, GatewayError> {
    let wait = call.query_value("wait");
    waited_for(api, call.ctx, call.request_id, record, wait.as_deref()).await
}

/// Whether an order of an offering that requires approval waits for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Approval {
    /// As its offering says: kept as `pending_approval` when the offering requires it.
    AsOffering,
    /// Given (an approver approved it): created now.
    Given,
}

/// `POST /v1/instances[?wait=running]`: placed like any order (by offering, or raw as the
/// built-in offering `raw`), then created; 202 with the placement's summary. An order of
/// an offering that requires approval is kept as `pending_approval` instead (202 with
/// the order).
pub(super) async fn create(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let body: Value = call.json("instance request")?;
    let wait = call.query_value("wait");
    let created = create_instance(
        api,
        call.ctx,
        call.request_id,
        body,
        Approval::AsOffering,
        wait.as_deref(),
    )
    .await?;
    Ok(json_response(StatusCode::ACCEPTED, &created))
}

/// Orders the instance `body` describes (`POST /v1/instances`'s body) for `ctx`: its
/// view with the placement's summary, or the order kept for approval (`{"order"}`).
pub(super) async fn create_instance(
    api: &NativeApi,
    ctx: &TenantContext,
    request_id: &str,
    body: Value,
    approval: Approval,
    wait: Option<&str>,
) -> Result<Value, GatewayError> {
    let mut req: CreateRequest = serde_json::from_value(body.clone())
        .map_err(|e| GatewayError::invalid(format!("invalid instance request: {e}")))?;
    let services = &api.services;
    let department = services
        .instances
        .department_for(ctx, req.department.take())?;
    let mut first_boot = FirstBoot::default();
    if let Some(key_name) = &req.key_name {
        first_boot.ssh_public_keys.push(
            services
                .key_pairs
                .get(&ctx.tenant, key_name)
                .await?
                .ok_or_else(|| {
                    GatewayError::invalid(format!("key pair '{key_name}' does not exist"))
                })?
                .public_key,
        );
    }
    if let Some(user_data) = &req.user_data {
        first_boot = first_boot.with_user_data(user_data.as_bytes())?;
    }
    let client_token = req.client_token.take();
    if let Some(token) = &client_token {
        if token.is_empty() || token.len() > 64 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(GatewayError::invalid(
                "client_token must be 1-64 printable ASCII characters",
            ));
        }
        if let Some(earlier) = services.instances.by_client_token(ctx, token).await? {
            let lease = services.instances.lease_of(ctx, &earlier.id).await?;
            return Ok(view(&earlier, lease.as_ref()));
        }
    }
    let order = req.order(department.clone())?;
    if approval == Approval::AsOffering && services.instances.requires_approval(&order.offering) {
        let pending = services
            .approvals
            .submit(ctx, &order.offering, department, body, None)
            .await?;
        return Ok(json!({ "order": pending }));
    }
    let (placement_id, decision) = services.placement.place(ctx, request_id, &order).await?;
    let lease = services
        .instances
        .lease_terms(&decision.offering, req.lease.take());
    if approval == Approval::AsOffering {
        let item = OrderItem {
            instance_type: decision.instance_type().to_string(),
            provider: decision.provider.clone(),
            lease_secs: lease.as_ref().map(|l| l.duration_secs),
        };
        let why = services
            .instances
            .budget_approval(ctx, request_id, department.as_deref(), &[item])
            .await?;
        if let Some(why) = why {
            let pending = services
                .approvals
                .submit(ctx, &order.offering, department, body, Some(why))
                .await?;
            return Ok(json!({ "order": pending }));
        }
    }
    let spec = CreateSpec {
        name: req.name,
        tags: req.tags,
        department,
        key_name: req.key_name,
        first_boot,
        lease,
        client_token,
        ..CreateSpec::decided(&decision)?
    };
    let record = services.instances.create(ctx, request_id, spec).await?;
    let record = waited_for(api, ctx, request_id, record, wait).await?;
    let lease = services.instances.lease_of(ctx, &record.id).await?;
    let mut body = view(&record, lease.as_ref());
    body["placement"] = super::orders::summary(&placement_id, &decision);
    Ok(body)
}

/// `GET /v1/instances/{id}[?wait=state]`.
pub(super) async fn get(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let record = api
        .services
        .instances
        .get(call.ctx, call.request_id, call.param(0))
        .await?;
    let record = waited(api, &call, record).await?;
    Ok(json_response(
        StatusCode::OK,
        &viewed(api, &call, &record).await?,
    ))
}

/// Largest page of `GET /v1/instances`.
const MAX_PAGE: usize = 1000;

/// `GET /v1/instances`: filters `state`, `region`, `tag:<key>` (all must match), pages of
/// `limit` (default 100, at most 1,000) in id order, continued with `next_token`.
pub(super) async fn list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    let mut limit = 100;
    let mut after: Option<&str> = None;
    for (key, value) in &query {
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
    let instances = &api.services.instances;
    let leases: HashMap<String, InstanceLease> = instances
        .leases_of(call.ctx)
        .await?
        .into_iter()
        .map(|l| (l.instance_id.clone(), l))
        .collect();
    let candidates: Vec<_> = instances
        .records(call.ctx)
        .await?
        .into_iter()
        .filter(|r| after.is_none_or(|a| r.id.as_str() > a))
        .collect();
    let keep = |record: &InstanceRecord| -> Result<bool, GatewayError> {
        Ok(query.iter().all(|(k, v)| match k.as_str() {
            "state" => record.state == *v,
            "region" => record.region == *v,
            k if k.starts_with("tag:") => {
                record.tags.get(&k[4..]).and_then(Value::as_str) == Some(v.as_str())
            }
            _ => true,
        }))
    };
    let (page, next_token) = instances
        .listing_page(call.ctx, call.request_id, candidates, limit, keep, |e| e)
        .await?;
    let out: Vec<Value> = page
        .iter()
        .map(|record| view(record, leases.get(&record.id)))
        .collect();
    let mut body = json!({ "instances": out });
    if let Some(token) = next_token {
        body["next_token"] = json!(token);
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// Runs `action` on the instance `{id}`; `status` on success.
async fn run_action(
    api: &NativeApi,
    call: NativeCall<'_>,
    action: Action,
    status: StatusCode,
) -> Answer {
    let (_, record) = api
        .services
        .instances
        .act(call.ctx, call.request_id, call.param(0), action)
        .await?;
    let record = waited(api, &call, record).await?;
    Ok(json_response(status, &viewed(api, &call, &record).await?))
}

/// `POST /v1/instances/{id}/{start|stop|reboot}` -> 202.
pub(super) async fn act(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let action = Action::parse(call.param(1))
        .ok_or_else(|| GatewayError::not_found(format!("no action '{}'", call.param(1))))?;
    run_action(api, call, action, StatusCode::ACCEPTED).await
}

/// `DELETE /v1/instances/{id}` -> 200.
pub(super) async fn terminate(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    run_action(api, call, Action::Terminate, StatusCode::OK).await
}

/// `PATCH /v1/instances/{id}` `{"instance_type"}`: resize a stopped instance.
pub(super) async fn resize(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Patch {
        instance_type: String,
    }
    let patch: Patch = call.json("patch")?;
    let itype = parse_instance_type(&patch.instance_type)?;
    let record = api
        .services
        .instances
        .resize(call.ctx, call.request_id, call.param(0), itype)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &viewed(api, &call, &record).await?,
    ))
}

/// `PUT /v1/instances/{id}/tags` `{"tags": {"key": "value"}}`: the instance's tags become
/// exactly these (400 for a value that is not a string, or tags past the limits); the
/// instance.
pub(super) async fn put_tags(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tags {
        tags: std::collections::BTreeMap<String, String>,
    }
    let wanted: Tags = call.json("tags")?;
    let tags = wanted
        .tags
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let record = api
        .services
        .instances
        .replace_tags(call.ctx, call.param(0), tags)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &viewed(api, &call, &record).await?,
    ))
}

/// `GET /v1/instances/{id}/console`: the tail of the serial console.
pub(super) async fn console(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let (record, output) = api
        .services
        .instances
        .console(call.ctx, call.request_id, call.param(0))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": record.id, "output": output}),
    ))
}
