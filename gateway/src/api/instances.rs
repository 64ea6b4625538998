//! The native instance API (`/v1/instances`, `/v1/instance-types`): tenant-scoped, with
//! the inventory as the map from Skyport ids to provider VMs.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};
use skyport_plugin_api::sdk::CallContext;

use super::json_response;
use crate::auth::TenantContext;
use crate::catalog::{instance_type, instance_type_names, INSTANCE_TYPES};
use crate::error::{ErrorKind, GatewayError};
use crate::inventory::lifecycle::{emit, Initiator};
use crate::inventory::{is_instance_id, new_instance_id, sync, InstanceRecord};
use crate::state::AppState;

/// Longest `?wait=` a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// Deadline of one provider call.
pub(crate) const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);

/// `POST /v1/instances` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    image: String,
    instance_type: String,
    region: Option<String>,
    provider: Option<String>,
    name: Option<String>,
    #[serde(default)]
    tags: serde_json::Map<String, Value>,
    department: Option<String>,
}

/// The plugin-call context of a tenant's request.
pub(crate) fn context(ctx: &TenantContext, request_id: &str) -> CallContext {
    CallContext {
        request_id: request_id.to_string(),
        tenant: Some(ctx.tenant.to_string()),
        department: ctx.department.clone(),
    }
}

fn view(record: &InstanceRecord) -> Value {
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

/// Refuses a create that would exceed the tenant's quotas (409 with limit and use).
async fn check_quota(
    state: &AppState,
    ctx: &TenantContext,
    adding: crate::catalog::InstanceType,
) -> Result<(), GatewayError> {
    let Some(tenant) = state.tenants.get(&ctx.tenant) else {
        return Ok(());
    };
    let live: Vec<InstanceRecord> = state
        .inventory
        .list(&ctx.tenant)
        .await?
        .into_iter()
        .filter(|r| r.state != "terminated")
        .collect();
    let used_vcpus: u32 = live
        .iter()
        .filter_map(|r| instance_type(&r.instance_type))
        .map(|t| t.vcpus)
        .sum();
    let used_mib: u32 = live
        .iter()
        .filter_map(|r| instance_type(&r.instance_type))
        .map(|t| t.memory_mib)
        .sum();
    let checks = [
        ("max_instances", tenant.max_instances, live.len() as u32, 1),
        ("max_vcpus", tenant.max_vcpus, used_vcpus, adding.vcpus),
        (
            "max_memory_mib",
            tenant.max_memory_mib,
            used_mib,
            adding.memory_mib,
        ),
    ];
    for (name, limit, used, add) in checks {
        if let Some(limit) = limit {
            if used + add > limit {
                return Err(GatewayError::new(
                    ErrorKind::Conflict,
                    format!("quota exceeded: {name} is {limit}, {used} in use, this request needs {add} more"),
                ));
            }
        }
    }
    Ok(())
}

/// The instance type `name`, or 400 naming the valid choices.
fn parse_instance_type(name: &str) -> Result<crate::catalog::InstanceType, GatewayError> {
    instance_type(name).ok_or_else(|| {
        GatewayError::invalid(format!(
            "unknown instance_type '{name}'; choose one of {}",
            instance_type_names().join(", ")
        ))
    })
}

/// `GET /v1/instance-types`.
pub fn instance_types() -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &json!({ "instance_types": INSTANCE_TYPES }))
}

/// `POST /v1/instances`.
pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    body: Bytes,
    wait: Option<&str>,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let req: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("invalid instance request: {e}")))?;
    let itype = parse_instance_type(&req.instance_type)?;
    let department = match (&ctx.department, req.department) {
        (Some(own), Some(asked)) if *own != asked => {
            return Err(GatewayError::forbidden(format!(
                "a token of department '{own}' cannot create for department '{asked}'"
            )))
        }
        (own, asked) => asked.or_else(|| own.clone()),
    };
    if let Some(dept) = &department {
        let known = state
            .tenants
            .get(&ctx.tenant)
            .is_some_and(|t| t.departments.contains(dept));
        if !known {
            return Err(GatewayError::invalid(format!(
                "department '{dept}' does not belong to tenant '{}'",
                ctx.tenant
            )));
        }
    }
    let (provider, region) = place(state, req.provider.as_deref(), req.region.as_deref())?;
    check_quota(state, ctx, itype).await?;
    let mut record = InstanceRecord {
        id: new_instance_id(),
        tenant: ctx.tenant.to_string(),
        department,
        provider: provider.clone(),
        region,
        remote_id: None,
        image: req.image.clone(),
        instance_type: itype.name.to_string(),
        name: req.name,
        tags: req.tags,
        state: "pending".into(),
        created_at: crate::pipeline::rfc3339_millis(SystemTime::now()),
    };
    // The row exists before the provider is asked, so a crash in between is visible.
    state.inventory.insert(record.clone()).await?;
    let created = state
        .plugins
        .call(
            &provider,
            "instance.create",
            1,
            json!({
                "image": req.image,
                "instance_type": itype.name,
                "vcpus": itype.vcpus,
                "memory_mib": itype.memory_mib,
            }),
            context(ctx, request_id),
            PROVIDER_TIMEOUT,
        )
        .await;
    let created = match created {
        Ok(v) => v,
        Err(e) => {
            state.inventory.delete(&record.id).await?;
            return Err(e);
        }
    };
    record.remote_id = created["id"].as_str().map(str::to_owned);
    record.state = created["state"].as_str().unwrap_or("pending").to_string();
    state
        .inventory
        .update(&record.id, record.remote_id.clone(), &record.state, None)
        .await?;
    emit(state, &record, "run", Initiator::Api).await;
    let record = wait_for(state, ctx, request_id, record, wait).await?;
    Ok(json_response(StatusCode::ACCEPTED, &view(&record)))
}

/// Chooses the provider: by name, by region, or the first provider region.
fn place(
    state: &AppState,
    provider: Option<&str>,
    region: Option<&str>,
) -> Result<(String, String), GatewayError> {
    let provider_regions = state.regions.iter().filter(|r| r.kind == "provider");
    let candidates: Vec<(String, String)> = provider_regions
        .flat_map(|r| r.providers.iter().map(move |p| (p.clone(), r.name.clone())))
        .filter(|(p, r)| {
            provider.is_none_or(|want| want == p) && region.is_none_or(|want| want == r)
        })
        .collect();
    if let Some((p, r)) = candidates.first() {
        return Ok((p.clone(), r.clone()));
    }
    let known: Vec<&str> = state
        .regions
        .iter()
        .filter(|r| r.kind == "provider")
        .map(|r| r.name.as_str())
        .collect();
    Err(GatewayError::invalid(match (provider, region) {
        (Some(p), _) => format!("no provider '{p}' serves that request"),
        (None, Some(r)) => format!("unknown region '{r}'; choose one of {}", known.join(", ")),
        (None, None) => "no provider is loaded".to_string(),
    }))
}

async fn lookup(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<InstanceRecord, GatewayError> {
    if !is_instance_id(id) {
        return Err(GatewayError::invalid(format!(
            "'{id}' is not an instance id (i- and 17 hex digits)"
        )));
    }
    state
        .inventory
        .get(&ctx.tenant, id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("instance {id} not found")))
}

/// Refreshes the state from the provider (the source of truth for running VMs).
async fn refresh(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    record: InstanceRecord,
) -> Result<InstanceRecord, GatewayError> {
    let Some(remote) = record.remote_id.clone() else {
        return Ok(record);
    };
    if record.state == "terminated" {
        return Ok(record);
    }
    let live = state
        .plugins
        .call(
            &record.provider,
            "instance.get",
            1,
            json!({"id": remote}),
            context(ctx, request_id),
            PROVIDER_TIMEOUT,
        )
        .await;
    let observed = match live {
        Ok(v) => v["state"].as_str().unwrap_or(&record.state).to_string(),
        Err(e) if e.kind == ErrorKind::NotFound => "terminated".to_string(),
        Err(e) => return Err(e),
    };
    sync::observe(state, record, &observed).await
}

async fn wait_for(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    mut record: InstanceRecord,
    wait: Option<&str>,
) -> Result<InstanceRecord, GatewayError> {
    let Some(target) = wait else {
        return Ok(record);
    };
    if !matches!(target, "running" | "stopped" | "terminated") {
        return Err(GatewayError::invalid(
            "wait must be running, stopped or terminated",
        ));
    }
    let deadline = Instant::now() + MAX_WAIT;
    while record.state != target {
        if Instant::now() > deadline {
            return Err(GatewayError::new(
                ErrorKind::Timeout,
                format!(
                    "instance {} did not reach {target} within {MAX_WAIT:?}",
                    record.id
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        record = refresh(state, ctx, request_id, record).await?;
    }
    Ok(record)
}

/// `GET /v1/instances/{id}`.
pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
    wait: Option<&str>,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let record = refresh(state, ctx, request_id, lookup(state, ctx, id).await?).await?;
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
        let record = refresh(state, ctx, request_id, record).await?;
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

/// `POST /v1/instances/{id}/{start|stop}` and `DELETE /v1/instances/{id}`.
pub async fn action(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
    action: &str,
    wait: Option<&str>,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let record = refresh(state, ctx, request_id, lookup(state, ctx, id).await?).await?;
    let op = match action {
        "start" => "instance.start",
        "stop" => "instance.stop",
        "reboot" => "instance.reboot",
        "terminate" => "instance.terminate",
        other => return Err(GatewayError::not_found(format!("no action '{other}'"))),
    };
    if record.state == "terminated" {
        return Err(GatewayError::new(
            ErrorKind::Conflict,
            format!("instance {id} is terminated"),
        ));
    }
    let remote = record.remote_id.clone().ok_or_else(|| {
        GatewayError::new(
            ErrorKind::Conflict,
            format!("instance {id} is still being created"),
        )
    })?;
    let claim = state.inventory.claim(&record.id)?;
    let result = state
        .plugins
        .call(
            &record.provider,
            op,
            1,
            json!({"id": remote}),
            context(ctx, request_id),
            PROVIDER_TIMEOUT,
        )
        .await?;
    let new_state = result["state"]
        .as_str()
        .unwrap_or(&record.state)
        .to_string();
    state
        .inventory
        .update(&record.id, None, &new_state, None)
        .await?;
    let record = InstanceRecord {
        state: new_state,
        ..record
    };
    emit(state, &record, action, Initiator::Api).await;
    drop(claim);
    let record = wait_for(state, ctx, request_id, record, wait).await?;
    let status = if action == "terminate" {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_response(status, &view(&record)))
}

/// `PATCH /v1/instances/{id}` `{"instance_type"}`: resize a stopped instance (409 otherwise,
/// whatever the provider would accept); the next start uses the new size.
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
    let itype = parse_instance_type(&patch.instance_type)?;
    let record = refresh(state, ctx, request_id, lookup(state, ctx, id).await?).await?;
    if record.state != "stopped" {
        return Err(GatewayError::new(
            ErrorKind::Conflict,
            format!(
                "instance {id} is {}; stop it before changing its type",
                record.state
            ),
        ));
    }
    let remote = record.remote_id.clone().unwrap_or_default();
    let _claim = state.inventory.claim(&record.id)?;
    state
        .plugins
        .call(
            &record.provider,
            "instance.resize",
            1,
            json!({"id": remote, "instance_type": itype.name, "vcpus": itype.vcpus, "memory_mib": itype.memory_mib}),
            context(ctx, request_id),
            PROVIDER_TIMEOUT,
        )
        .await?;
    state
        .inventory
        .update(
            &record.id,
            None,
            &record.state,
            Some(itype.name.to_string()),
        )
        .await?;
    let record = InstanceRecord {
        instance_type: itype.name.to_string(),
        ..record
    };
    emit(state, &record, "resize", Initiator::Api).await;
    Ok(json_response(StatusCode::OK, &view(&record)))
}

/// `GET /v1/instances/{id}/console`: the tail of the serial console.
pub async fn console(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let record = lookup(state, ctx, id).await?;
    let remote = record.remote_id.clone().ok_or_else(|| {
        GatewayError::new(
            ErrorKind::Conflict,
            format!("instance {id} is still being created"),
        )
    })?;
    let out = state
        .plugins
        .call(
            &record.provider,
            "instance.console",
            1,
            json!({"id": remote, "tail_bytes": 65536}),
            context(ctx, request_id),
            PROVIDER_TIMEOUT,
        )
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": record.id, "output": out["output"]}),
    ))
}
