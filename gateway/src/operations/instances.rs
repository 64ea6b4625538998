//! Instance operations: create, read, list, start/stop/reboot/terminate, resize, console
//! and tags, tenant-scoped, with the inventory as the map from Skyport ids to provider VMs.
//! Every state change an operation causes is metered here (`inventory::lifecycle::emit`).

use skyport_plugin_host::Plugins as _;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use super::context;
use crate::auth::TenantContext;
use crate::catalog::{instance_type, instance_type_names, InstanceType, PlanConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::inventory::lifecycle::{emit, Initiator};
use crate::inventory::{is_instance_id, new_instance_id, sync, InstanceRecord};
use crate::placement::Decision;
use crate::state::AppState;

/// Longest wait for a state a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// Deadline of one provider call.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);

/// What a create asks for, whichever front end it came through.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// Image name.
    pub image: String,
    /// Instance type.
    pub instance_type: InstanceType,
    /// Provider instance, as placement decided.
    pub provider: String,
    /// Region, as placement decided.
    pub region: String,
    /// Name.
    pub name: Option<String>,
    /// Tags.
    pub tags: Map<String, Value>,
    /// Department asked for (checked against the credential's).
    pub department: Option<String>,
    /// Key pair (checked by the caller).
    pub key_name: Option<String>,
    /// Idempotency token.
    pub client_token: Option<String>,
}

impl CreateSpec {
    /// What placement `decision` decided (image, instance type, provider, region), with no
    /// name, tags, department, key pair or idempotency token yet.
    pub fn decided(decision: &Decision) -> Result<Self, GatewayError> {
        Ok(Self {
            image: decision
                .params
                .text("image")
                .unwrap_or_default()
                .to_string(),
            instance_type: parse_instance_type(decision.instance_type())?,
            provider: decision.provider.clone(),
            region: decision.region.clone(),
            name: None,
            tags: Map::new(),
            department: None,
            key_name: None,
            client_token: None,
        })
    }
}

/// A state-changing instance action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a stopped instance.
    Start,
    /// Stop a running instance.
    Stop,
    /// Reboot a running instance.
    Reboot,
    /// Terminate (irreversible).
    Terminate,
}

impl Action {
    /// `start`, `stop`, `reboot` or `terminate` (also the lifecycle event's action).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Reboot => "reboot",
            Self::Terminate => "terminate",
        }
    }

    /// The action named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "reboot" => Some(Self::Reboot),
            "terminate" => Some(Self::Terminate),
            _ => None,
        }
    }

    fn op(self) -> &'static str {
        match self {
            Self::Start => "instance.start",
            Self::Stop => "instance.stop",
            Self::Reboot => "instance.reboot",
            Self::Terminate => "instance.terminate",
        }
    }
}

/// The instance type `name`, or 400 naming the valid choices.
pub fn parse_instance_type(name: &str) -> Result<InstanceType, GatewayError> {
    instance_type(name).ok_or_else(|| {
        GatewayError::invalid(format!(
            "unknown instance type '{name}'; choose one of {}",
            instance_type_names().join(", ")
        ))
    })
}

/// The department a create bills: the credential's own, or one the caller asks for when
/// the credential names none; it must belong to the tenant.
pub fn department_for(
    state: &AppState,
    ctx: &TenantContext,
    asked: Option<String>,
) -> Result<Option<String>, GatewayError> {
    let department = match (&ctx.department, asked) {
        (Some(own), Some(asked)) if *own != asked => {
            return Err(GatewayError::forbidden(format!(
                "a credential of department '{own}' cannot create for department '{asked}'"
            )))
        }
        (own, asked) => asked.or_else(|| own.clone()),
    };
    state
        .tenants
        .check_member(&ctx.tenant, department.as_deref())?;
    Ok(department)
}

/// Refuses creating the instances `adding` (all of them together) when that would exceed
/// the tenant's quotas (the tighter of its own and its plan's), naming the limit and the
/// use.
pub async fn check_quota(
    state: &AppState,
    ctx: &TenantContext,
    adding: &[InstanceType],
) -> Result<(), GatewayError> {
    let Some(tenant) = state.tenants.get(&ctx.tenant) else {
        return Ok(());
    };
    // The tighter of the tenant's own limit and its plan's.
    let catalog = state.catalog.load();
    let plan = catalog.plan(state.config.plan_name(&ctx.tenant));
    let limit = |own: Option<u32>, of_plan: fn(&PlanConfig) -> Option<u32>| {
        let planned = plan.and_then(|(_, p)| of_plan(p));
        own.into_iter().chain(planned).min()
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
        (
            "max_instances",
            limit(tenant.max_instances, |p| p.max_instances),
            live.len() as u32,
            adding.len() as u32,
        ),
        (
            "max_vcpus",
            limit(tenant.max_vcpus, |p| p.max_vcpus),
            used_vcpus,
            adding.iter().map(|t| t.vcpus).sum(),
        ),
        (
            "max_memory_mib",
            limit(tenant.max_memory_mib, |p| p.max_memory_mib),
            used_mib,
            adding.iter().map(|t| t.memory_mib).sum(),
        ),
    ];
    for (name, limit, used, add) in checks {
        if let Some(limit) = limit {
            if used + add > limit {
                return Err(GatewayError::new(
                    ErrorKind::QuotaExceeded,
                    format!("quota exceeded: {name} is {limit}, {used} in use, this request needs {add} more"),
                ));
            }
        }
    }
    Ok(())
}

/// Creates an instance where placement decided ([`CreateSpec::decided`]), within the
/// tenant's quotas: the inventory row first (so a crash in between is visible), then the
/// provider call, then the `run` lifecycle event. A repeated `client_token` returns
/// the instance it created.
pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    spec: CreateSpec,
) -> Result<InstanceRecord, GatewayError> {
    if let Some(token) = &spec.client_token {
        if let Some(existing) = state.inventory.by_client_token(&ctx.tenant, token).await? {
            return Ok(existing);
        }
    }
    let department = department_for(state, ctx, spec.department)?;
    check_quota(state, ctx, &[spec.instance_type]).await?;
    let itype = spec.instance_type;
    let mut record = InstanceRecord {
        id: new_instance_id(),
        tenant: ctx.tenant.to_string(),
        department,
        provider: spec.provider,
        region: spec.region,
        remote_id: None,
        image: spec.image.clone(),
        instance_type: itype.name.to_string(),
        name: spec.name,
        tags: spec.tags,
        state: "pending".into(),
        created_at: crate::ids::rfc3339_millis(SystemTime::now()),
        key_name: spec.key_name,
        client_token: spec.client_token,
    };
    state.inventory.insert(record.clone()).await?;
    let created = state
        .plugins
        .call(
            &record.provider,
            "instance.create",
            1,
            json!({
                "image": spec.image,
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
    Ok(record)
}

/// The tenant's instance `id`: 400 for a malformed id, 404 for an unknown one (also for
/// another tenant's).
pub async fn lookup(
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
pub async fn refresh(
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

/// [`refresh`] for listings: when the provider cannot answer now (unhealthy, unreachable,
/// timing out), the inventory's last known state is shown instead of failing the whole
/// listing, so one cloud being down never hides the others.
pub async fn refresh_for_listing(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    record: InstanceRecord,
) -> Result<InstanceRecord, GatewayError> {
    match refresh(state, ctx, request_id, record.clone()).await {
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Upstream
            ) =>
        {
            tracing::debug!(request_id, instance = %record.id, provider = %record.provider, error = %e.public, "listing shows the last known state");
            Ok(record)
        }
        other => other,
    }
}

/// The tenant's instance `id`, refreshed from its provider.
pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
) -> Result<InstanceRecord, GatewayError> {
    let record = lookup(state, ctx, id).await?;
    refresh(state, ctx, request_id, record).await
}

/// Polls until `record` reaches `target` (`running`, `stopped` or `terminated`), at most
/// [`MAX_WAIT`].
pub async fn wait_for(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    mut record: InstanceRecord,
    target: &str,
) -> Result<InstanceRecord, GatewayError> {
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

/// Every instance of the tenant in id order, each refreshed from its provider.
pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
) -> Result<Vec<InstanceRecord>, GatewayError> {
    let mut out = Vec::new();
    for record in state.inventory.list(&ctx.tenant).await? {
        out.push(refresh_for_listing(state, ctx, request_id, record).await?);
    }
    Ok(out)
}

/// Runs `action` on the tenant's instance `id`; returns the state before and the record
/// after. A terminated instance refuses every action (409).
pub async fn act(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
    action: Action,
) -> Result<(String, InstanceRecord), GatewayError> {
    let record = get(state, ctx, request_id, id).await?;
    let previous = record.state.clone();
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
            action.op(),
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
    emit(state, &record, action.as_str(), Initiator::Api).await;
    drop(claim);
    Ok((previous, record))
}

/// Changes the type of a stopped instance (409 otherwise, whatever the provider would
/// accept); the next start uses the new size.
pub async fn resize(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
    itype: InstanceType,
) -> Result<InstanceRecord, GatewayError> {
    let record = get(state, ctx, request_id, id).await?;
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
    Ok(record)
}

/// The tail of the instance's serial console.
pub async fn console(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    id: &str,
) -> Result<(InstanceRecord, String), GatewayError> {
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
    let output = out["output"].as_str().unwrap_or_default().to_string();
    Ok((record, output))
}

/// Most tags an instance may carry (as on EC2).
pub const MAX_TAGS: usize = 50;

/// Adds or overwrites `set` and removes `remove` (a key, optionally only when its value
/// matches) on the tenant's instance `id`.
pub async fn change_tags(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    set: &[(String, String)],
    remove: &[(String, Option<String>)],
) -> Result<InstanceRecord, GatewayError> {
    let mut record = lookup(state, ctx, id).await?;
    for (key, value) in set {
        record
            .tags
            .insert(key.clone(), Value::String(value.clone()));
    }
    for (key, value) in remove {
        let matches = match value {
            None => true,
            Some(v) => record.tags.get(key).and_then(Value::as_str) == Some(v.as_str()),
        };
        if matches {
            record.tags.remove(key);
        }
    }
    if record.tags.len() > MAX_TAGS {
        return Err(GatewayError::invalid(format!(
            "an instance carries at most {MAX_TAGS} tags"
        )));
    }
    state
        .inventory
        .set_tags(&record.id, record.tags.clone())
        .await?;
    Ok(record)
}
