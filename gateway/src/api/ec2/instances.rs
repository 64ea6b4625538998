//! The EC2 instance actions: `RunInstances` (placed like any order, `ClientToken`
//! idempotent, all or at least `MinCount`), state changes, `ModifyInstanceAttribute`
//! (instance type, stopped instances only, as on EC2) and `GetConsoleOutput`. EC2's rules
//! are enforced here whatever a provider would accept.

use base64::Engine;
use serde_json::Value;
use skyport_core::error::ErrorKind;
use skyport_core::ids::rfc3339_millis;
use skyport_domain::budgets::OrderItem;
use skyport_domain::catalog::{instance_type, instance_type_names, InstanceType, ParamValue};
use skyport_domain::catalog::{Params as OrderParams, RAW};
use skyport_domain::inventory::InstanceRecord;
use skyport_domain::operations::instances::{
    Action, CreateSpec, FirstBoot, InstanceService, MAX_TAGS,
};
use skyport_domain::placement;
use skyport_domain::regions::FEDERATED_REGION;

use super::errors::instance_error;
use super::model::{image_id, is_image_id, named_instances, owner_id, reservation_id};
use super::model::{write_instance, write_state};
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

/// The image `ami` names, as (image name, provider regions offering it).
async fn resolve_image(call: &Ec2Call<'_>, ami: &str) -> Result<(String, Vec<String>), Ec2Error> {
    if !is_image_id(ami) {
        return Err(Ec2Error::bad_request(
            "InvalidAMIID.Malformed",
            format!("Invalid id: \"{ami}\" (expecting \"ami-...\")"),
        ));
    }
    let images = call.services.images.list(call.ctx, call.request_id).await?;
    let mut name = None;
    let mut regions = Vec::new();
    for image in images {
        if image_id(&image.name) == ami && (call.federated() || image.region == call.region.name) {
            name = Some(image.name);
            regions.push(image.region);
        }
    }
    name.map(|n| (n, regions)).ok_or_else(|| {
        Ec2Error::bad_request(
            "InvalidAMIID.NotFound",
            format!("The image id '[{ami}]' does not exist"),
        )
    })
}

/// The tag that orders an offering through `RunInstances` (federated region only).
const OFFERING_TAG: &str = "skyport:offering";

/// A `RunInstances` request, checked: counts, key pair, user data and tags.
struct RunRequest {
    min: i64,
    max: i64,
    key_name: Option<String>,
    first_boot: FirstBoot,
    name: Option<String>,
    tags: serde_json::Map<String, Value>,
}

/// Checks everything `RunInstances` is asked, short of placing it: the request, and the
/// image, type and zone it names. What `DryRun` answers for.
pub(super) async fn check_run(call: &Ec2Call<'_>) -> Result<(), Ec2Error> {
    let request = run_request(call).await?;
    let offering = request.tags.get(OFFERING_TAG).and_then(Value::as_str);
    order(call, offering).await.map(|_| ())
}

pub(super) async fn run_instances(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let RunRequest {
        min,
        max,
        key_name,
        first_boot,
        name,
        tags,
    } = run_request(call).await?;
    let client_token = call.params.get("ClientToken");
    let earlier = match client_token {
        Some(token) => launched_with(call, token, max).await?,
        None => Vec::new(),
    };
    if let Some(first) = earlier.first() {
        same_launch(call, first, &first_boot)?;
    }
    let launched = if earlier.is_empty() {
        let offering = tags.get(OFFERING_TAG).and_then(Value::as_str);
        let decision = place(call, offering).await?;
        if call
            .services
            .instances
            .requires_approval(&decision.offering)
        {
            return Err(InstanceService::approval_refusal(&decision.offering).into());
        }
        let item = OrderItem {
            instance_type: decision.instance_type().to_string(),
            provider: decision.provider.clone(),
            lease_secs: call
                .services
                .instances
                .lease_terms(&decision.offering, None)
                .map(|l| l.duration_secs),
        };
        // Every instance the launch may make is priced.
        let items = vec![item; usize::try_from(max).unwrap_or(1)];
        let why = call
            .services
            .instances
            .budget_approval(
                call.ctx,
                call.request_id,
                call.ctx.department.as_deref(),
                &items,
            )
            .await?;
        if let Some(why) = why {
            return Err(InstanceService::budget_approval_refusal(&why).into());
        }
        let decided = CreateSpec {
            name,
            tags,
            key_name,
            first_boot,
            lease: call
                .services
                .instances
                .lease_terms(&decision.offering, None),
            ..CreateSpec::decided(&decision)?
        };
        launch(call, &decided, client_token, min, max).await?
    } else {
        // A retry of a launch that happened: its instances, placed nowhere again. A create
        // whose replica died before the provider answered is resumed here.
        let mut resumed = Vec::with_capacity(earlier.len());
        for record in earlier {
            resumed.push(
                call.services
                    .instances
                    .resume(call.ctx, call.request_id, record, &first_boot)
                    .await?,
            );
        }
        resumed
    };
    let owner = owner_id(&call.ctx.tenant);
    let reservation = reservation_id(&launched[0].id);
    Ok(Xml::response("RunInstances", call.request_id, |x| {
        x.leaf("reservationId", &reservation);
        x.leaf("ownerId", &owner);
        x.elem("groupSet", |_| {});
        x.set("instancesSet", &launched, |x, r| write_instance(x, call, r));
    }))
}

async fn run_request(call: &Ec2Call<'_>) -> Result<RunRequest, Ec2Error> {
    let p = call.params;
    let min = p
        .int("MinCount", 1..=20)?
        .ok_or_else(|| Ec2Error::missing("MinCount"))?;
    let max = p
        .int("MaxCount", 1..=20)?
        .ok_or_else(|| Ec2Error::missing("MaxCount"))?;
    if min > max {
        return Err(Ec2Error::invalid_value(
            "MinCount must be less than or equal to MaxCount",
        ));
    }
    let key_name = p.get("KeyName").map(str::to_owned);
    let mut first_boot = FirstBoot::default();
    if let Some(key) = &key_name {
        let Some(pair) = call.services.key_pairs.get(&call.ctx.tenant, key).await? else {
            return Err(Ec2Error::bad_request(
                "InvalidKeyPair.NotFound",
                format!("The key pair '{key}' does not exist"),
            ));
        };
        first_boot.ssh_public_keys.push(pair.public_key);
    }
    if let Some(encoded) = p.get("UserData") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| Ec2Error::invalid_value("Invalid BASE64 encoding of user data."))?;
        first_boot = first_boot
            .with_user_data(&bytes)
            .map_err(|e| Ec2Error::invalid_value(e.public))?;
    }
    // Volumes and network interfaces are part of their instance on Skyport: their tag
    // specifications (Ansible always sends them) are checked and accepted.
    let tags = p.tag_specifications("instance", &["volume", "network-interface"])?;
    if tags.len() > MAX_TAGS {
        return Err(Ec2Error::invalid_value(format!(
            "an instance carries at most {} tags",
            MAX_TAGS
        )));
    }
    let name = tags
        .iter()
        .find(|(k, _)| k == "Name")
        .map(|(_, v)| v.clone());
    let tags: serde_json::Map<String, Value> = tags
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(RunRequest {
        min,
        max,
        key_name,
        first_boot,
        name,
        tags,
    })
}

/// Refuses a `RunInstances` whose `ClientToken` launched `earlier` with another image,
/// instance type, key pair or user data (EC2's `IdempotentParameterMismatch`): a token
/// names one request, and a retry that asks for something else is a mistake, not that
/// request. Tags are not compared: the instance's may have changed since its launch.
fn same_launch(
    call: &Ec2Call<'_>,
    earlier: &InstanceRecord,
    first_boot: &FirstBoot,
) -> Result<(), Ec2Error> {
    let p = call.params;
    let differs = p
        .get("ImageId")
        .is_some_and(|ami| ami != image_id(&earlier.image))
        || p.get("InstanceType")
            .is_some_and(|itype| itype != earlier.instance_type)
        || p.get("KeyName") != earlier.key_name.as_deref()
        || first_boot.user_data != earlier.user_data;
    if differs {
        return Err(Ec2Error::bad_request(
            "IdempotentParameterMismatch",
            "The client token you have provided is associated with a request with other \
             parameters (image, instance type, key pair or user data); use a new token for a new request",
        ));
    }
    Ok(())
}

/// The instances an earlier `RunInstances` with `ClientToken` `token` launched, in order.
async fn launched_with(
    call: &Ec2Call<'_>,
    token: &str,
    max: i64,
) -> Result<Vec<InstanceRecord>, Ec2Error> {
    let mut earlier = Vec::new();
    for index in 0..max {
        let token = format!("{token}#{index}");
        match call
            .services
            .instances
            .by_client_token(call.ctx, &token)
            .await?
        {
            Some(record) => earlier.push(record),
            None => break,
        }
    }
    Ok(earlier)
}

/// Launches up to `max` instances as `decided`; fewer than `min` undoes them all.
async fn launch(
    call: &Ec2Call<'_>,
    decided: &CreateSpec,
    client_token: Option<&str>,
    min: i64,
    max: i64,
) -> Result<Vec<InstanceRecord>, Ec2Error> {
    let mut launched: Vec<InstanceRecord> = Vec::new();
    for index in 0..max {
        let spec = CreateSpec {
            client_token: client_token.map(|t| format!("{t}#{index}")),
            ..decided.clone()
        };
        match call
            .services
            .instances
            .create(call.ctx, call.request_id, spec)
            .await
        {
            Ok(record) => launched.push(record),
            Err(e) if (launched.len() as i64) >= min => {
                tracing::info!(request_id = call.request_id, launched = launched.len(), error = %e.public, "RunInstances launched fewer than MaxCount");
                break;
            }
            Err(e) => {
                // Fewer than MinCount: undo what was launched, then report why.
                for record in &launched {
                    if let Err(undo) = call
                        .services
                        .instances
                        .act(call.ctx, call.request_id, &record.id, Action::Terminate)
                        .await
                    {
                        tracing::warn!(request_id = call.request_id, instance = %record.id, error = %undo.public, "could not undo a partial launch");
                    }
                }
                return Err(Ec2Error::from(e));
            }
        }
    }
    Ok(launched)
}

/// Places a launch: by offering (the `skyport:offering` tag, federated region only), else
/// as the built-in offering `raw` (`ImageId` required, `InstanceType` `sp.micro` when not
/// given). `ImageId`, `InstanceType` and the zone's region are the caller's preferences;
/// outside the federated region the request's region is. Only regions that hold the image
/// are candidates. The same placement as the native API decides, and the decision is
/// stored for the audit.
async fn place(
    call: &Ec2Call<'_>,
    offering: Option<&str>,
) -> Result<placement::Decision, Ec2Error> {
    let order = order(call, offering).await?;
    let (_, decision) = call
        .services
        .placement
        .place(call.ctx, call.request_id, &order)
        .await?;
    Ok(decision)
}

/// The order a launch makes ([`place`]): its image, type and zone resolved and checked.
async fn order(
    call: &Ec2Call<'_>,
    offering: Option<&str>,
) -> Result<placement::OrderRequest, Ec2Error> {
    if offering.is_some() && !call.federated() {
        return Err(Ec2Error::invalid_value(format!(
            "the {OFFERING_TAG} tag orders an offering; send it to region {}",
            FEDERATED_REGION
        )));
    }
    let p = call.params;
    let mut preferences = OrderParams::new();
    let ami = match offering {
        Some(_) => p.get("ImageId"),
        None => Some(p.required("ImageId")?),
    };
    let mut image_regions = None;
    if let Some(ami) = ami {
        let (image, regions) = resolve_image(call, ami).await?;
        preferences.insert("image".into(), ParamValue::Text(image));
        image_regions = Some(regions);
    }
    let default_type = offering.is_none().then_some("sp.micro");
    if let Some(itype) = p.get("InstanceType").or(default_type) {
        let itype = skyport_type_name(call, itype);
        ec2_instance_type(itype)?;
        preferences.insert("instance_type".into(), ParamValue::Text(itype.to_string()));
    }
    let region = match p.get("Placement.AvailabilityZone") {
        Some(zone) => Some(
            call.services
                .regions
                .provider_regions()
                .filter(|r| call.federated() || r.name == call.region.name)
                .find(|r| r.zones.iter().any(|z| z == zone))
                .map(|r| r.name.clone())
                .ok_or_else(|| {
                    Ec2Error::invalid_value(format!("Invalid availability zone: [{zone}]"))
                })?,
        ),
        None if !call.federated() => Some(call.region.name.clone()),
        None => None,
    };
    if let Some(region) = region {
        preferences.insert("region".into(), ParamValue::Text(region));
    }
    Ok(placement::OrderRequest {
        offering: offering.unwrap_or(RAW).to_string(),
        preferences,
        department: call.ctx.department.clone(),
        image_regions,
    })
}

/// The Skyport name of instance type `name`: itself, or what `[ec2]
/// instance_type_aliases` maps it to.
fn skyport_type_name<'a>(call: &'a Ec2Call<'_>, name: &'a str) -> &'a str {
    call.services
        .config
        .ec2
        .instance_type_aliases
        .get(name)
        .map_or(name, String::as_str)
}

/// A Skyport instance type by name, or EC2's `InvalidParameterValue`.
fn ec2_instance_type(name: &str) -> Result<InstanceType, Ec2Error> {
    instance_type(name).ok_or_else(|| {
        Ec2Error::invalid_value(format!(
            "Invalid value '{name}' for InstanceType; Skyport's types are {}",
            instance_type_names().join(", ")
        ))
    })
}

/// `StartInstances`.
pub(super) async fn start_instances(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    change_state(call, Action::Start, "StartInstances").await
}

/// `StopInstances`.
pub(super) async fn stop_instances(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    change_state(call, Action::Stop, "StopInstances").await
}

/// `TerminateInstances`.
pub(super) async fn terminate_instances(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    change_state(call, Action::Terminate, "TerminateInstances").await
}

async fn change_state(call: &Ec2Call<'_>, action: Action, name: &str) -> Result<String, Ec2Error> {
    let ids = call.params.list("InstanceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId"));
    }
    let records = named_instances(call, &ids).await?;
    let mut changes = Vec::new();
    for record in records {
        let record = call
            .services
            .instances
            .refresh(call.ctx, call.request_id, record)
            .await
            .map_err(instance_error)?;
        let state = record.state.as_str();
        let unchanged = match action {
            Action::Terminate => state == "terminated",
            Action::Stop => matches!(state, "stopped" | "stopping"),
            Action::Start => matches!(state, "running" | "pending"),
            Action::Reboot => false,
        };
        if unchanged {
            changes.push((
                record.id.clone(),
                record.state.clone(),
                record.state.clone(),
            ));
            continue;
        }
        let allowed = match action {
            Action::Start => state == "stopped",
            Action::Stop => matches!(state, "running" | "pending"),
            _ => true,
        };
        if !allowed {
            return Err(Ec2Error::bad_request(
                "IncorrectInstanceState",
                format!(
                    "The instance '{}' is not in a state from which it can be {}ed (it is {state}).",
                    record.id,
                    if action == Action::Stop { "stopp" } else { action.as_str() }
                ),
            ));
        }
        let (previous, after) = call
            .services
            .instances
            .act(call.ctx, call.request_id, &record.id, action)
            .await
            .map_err(instance_error)?;
        let reported = transitional(action, &after.state).to_string();
        changes.push((after.id, previous, reported));
    }
    Ok(Xml::response(name, call.request_id, |x| {
        x.set("instancesSet", &changes, |x, (id, previous, current)| {
            x.leaf("instanceId", id);
            write_state(x, "currentState", current);
            write_state(x, "previousState", previous);
        });
    }))
}

/// The state EC2 answers a state change with: the change's transitional state (`pending`,
/// `stopping`, `shutting-down`), also when the provider finished it at once; the next
/// `DescribeInstances` shows where it stands. Tools wait on these answers (Libcloud's
/// `stop_node` is true only for `stopping`).
fn transitional(action: Action, now: &str) -> &str {
    match (action, now) {
        (Action::Start, "running") => "pending",
        (Action::Stop, "stopped") => "stopping",
        (Action::Terminate, "terminated") => "shutting-down",
        _ => now,
    }
}

pub(super) async fn reboot_instances(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let ids = call.params.list("InstanceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId"));
    }
    for record in named_instances(call, &ids).await? {
        let record = call
            .services
            .instances
            .refresh(call.ctx, call.request_id, record)
            .await
            .map_err(instance_error)?;
        if record.state != "running" {
            return Err(Ec2Error::bad_request(
                "IncorrectInstanceState",
                format!(
                    "The instance '{}' is not in the 'running' state (it is {}).",
                    record.id, record.state
                ),
            ));
        }
        call.services
            .instances
            .act(call.ctx, call.request_id, &record.id, Action::Reboot)
            .await
            .map_err(instance_error)?;
    }
    Ok(Xml::response("RebootInstances", call.request_id, |x| {
        x.leaf("return", "true")
    }))
}

pub(super) async fn modify_instance_attribute(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let p = call.params;
    let id = p.required("InstanceId")?.to_string();
    for (name, _) in p.iter() {
        if !matches!(
            name,
            "InstanceId" | "InstanceType.Value" | "Attribute" | "Value"
        ) {
            return Err(Ec2Error::invalid_value(format!(
                "Skyport can only change instanceType; '{name}' is not supported"
            )));
        }
    }
    let type_name = match (
        p.get("InstanceType.Value"),
        p.get("Attribute"),
        p.get("Value"),
    ) {
        (Some(t), None, None) => t,
        (None, Some("instanceType"), Some(t)) => t,
        (None, Some(other), _) if other != "instanceType" => {
            return Err(Ec2Error::invalid_value(format!(
                "Skyport can only change instanceType, not '{other}'"
            )))
        }
        _ => return Err(Ec2Error::missing("InstanceType.Value")),
    };
    let type_name = skyport_type_name(call, type_name);
    let itype = instance_type(type_name).ok_or_else(|| {
        Ec2Error::invalid_value(format!("Invalid value '{type_name}' for InstanceType"))
    })?;
    named_instances(call, std::slice::from_ref(&id)).await?;
    call.services
        .instances
        .resize(call.ctx, call.request_id, &id, itype)
        .await
        .map_err(|e| {
            if e.kind == ErrorKind::Conflict {
                Ec2Error::bad_request(
                    "IncorrectInstanceState",
                    format!("The instance '{id}' is not in the 'stopped' state."),
                )
            } else {
                instance_error(e)
            }
        })?;
    Ok(Xml::response(
        "ModifyInstanceAttribute",
        call.request_id,
        |x| x.leaf("return", "true"),
    ))
}

pub(super) async fn get_console_output(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let id = call.params.required("InstanceId")?.to_string();
    named_instances(call, std::slice::from_ref(&id)).await?;
    let (record, output) = call
        .services
        .instances
        .console(call.ctx, call.request_id, &id)
        .await
        .map_err(instance_error)?;
    let now = rfc3339_millis(call.services.clock.wall());
    Ok(Xml::response("GetConsoleOutput", call.request_id, |x| {
        x.leaf("instanceId", &record.id);
        x.leaf("timestamp", &now);
        x.leaf(
            "output",
            base64::engine::general_purpose::STANDARD.encode(output.as_bytes()),
        );
    }))
}
