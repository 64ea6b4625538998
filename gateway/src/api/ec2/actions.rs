//! The EC2 actions: each parses its parameters, calls the shared operations and renders
//! the 2016-11-15 response. EC2's rules are enforced here whatever a provider would accept
//! (a resize needs a stopped instance, a terminated instance cannot start, ids must be
//! well formed).

use std::time::SystemTime;

use base64::Engine;
use http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::query::Filter;
use super::xml::Xml;
use super::{Call, Ec2Error};
use crate::catalog::{instance_type, InstanceType, ParamValue, Params, INSTANCE_TYPES, RAW};
use crate::error::ErrorKind;
use crate::inventory::{is_instance_id, InstanceRecord};
use crate::operations::instances::{self as ops, Action, CreateSpec};
use crate::operations::keypairs::KeyType;
use crate::placement;

/// Runs `action` (one of `ACTIONS`) and returns the response document.
pub(super) async fn run(action: &str, call: &Call<'_>) -> Result<String, Ec2Error> {
    match action {
        "RunInstances" => run_instances(call).await,
        "DescribeInstances" => describe_instances(call).await,
        "DescribeInstanceStatus" => describe_instance_status(call).await,
        "StartInstances" => change_state(call, Action::Start, "StartInstances").await,
        "StopInstances" => change_state(call, Action::Stop, "StopInstances").await,
        "TerminateInstances" => change_state(call, Action::Terminate, "TerminateInstances").await,
        "RebootInstances" => reboot_instances(call).await,
        "ModifyInstanceAttribute" => modify_instance_attribute(call).await,
        "GetConsoleOutput" => get_console_output(call).await,
        "DescribeImages" => describe_images(call).await,
        "DescribeInstanceTypes" => describe_instance_types(call),
        "DescribeRegions" => describe_regions(call),
        "DescribeAvailabilityZones" => describe_availability_zones(call),
        "CreateTags" => create_tags(call).await,
        "DeleteTags" => delete_tags(call).await,
        "DescribeTags" => describe_tags(call).await,
        "CreateKeyPair" => create_key_pair(call).await,
        "ImportKeyPair" => import_key_pair(call).await,
        "DescribeKeyPairs" => describe_key_pairs(call).await,
        "DeleteKeyPair" => delete_key_pair(call).await,
        other => Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("The action {other} is not valid for this web service."),
        )),
    }
}

const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";

fn instance_error(err: crate::error::GatewayError) -> Ec2Error {
    if err.kind == ErrorKind::InvalidInput && err.public.contains("is not an instance id") {
        return Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidInstanceID.Malformed",
            err.public,
        );
    }
    Ec2Error::from_gateway(err, INSTANCE_NOT_FOUND)
}

/// EC2's numeric code of a state name.
fn state_code(state: &str) -> u8 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        "stopped" => 80,
        _ => 0,
    }
}

fn write_state(x: &mut Xml, tag: &str, state: &str) {
    x.elem(tag, |x| {
        x.leaf("code", state_code(state).to_string());
        x.leaf("name", state);
    });
}

/// Skyport's image id of image `name`: `ami-` + 17 hex digits of its SHA-256, the same in
/// every region and provider that offers an image of that name.
pub(super) fn image_id(name: &str) -> String {
    format!(
        "ami-{}",
        &hex::encode(Sha256::digest(name.as_bytes()))[..17]
    )
}

fn is_image_id(id: &str) -> bool {
    id.len() == 21
        && id.starts_with("ami-")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The tenant's twelve-digit account number (`ownerId`), stable per tenant.
fn owner_id(tenant: &str) -> String {
    let digest = Sha256::digest(tenant.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % 1_000_000_000_000;
    format!("{n:012}")
}

/// The availability zone an instance is in: its region's first zone.
fn zone_of(call: &Call<'_>, record: &InstanceRecord) -> String {
    call.state
        .regions
        .iter()
        .find(|r| r.name == record.region)
        .and_then(|r| r.zones.first().cloned())
        .unwrap_or_else(|| format!("{}a", record.region))
}

/// The reservation id an instance is reported in (one reservation per launch; Skyport
/// derives it from the first instance's id).
fn reservation_id(instance_id: &str) -> String {
    format!("r-{}", instance_id.trim_start_matches("i-"))
}

fn write_instance(x: &mut Xml, call: &Call<'_>, r: &InstanceRecord) {
    x.leaf("instanceId", &r.id);
    x.leaf("imageId", image_id(&r.image));
    write_state(x, "instanceState", &r.state);
    x.leaf("privateDnsName", "");
    x.leaf("dnsName", "");
    x.leaf("reason", "");
    x.opt("keyName", r.key_name.as_deref());
    x.leaf("amiLaunchIndex", "0");
    x.leaf("instanceType", &r.instance_type);
    x.leaf("launchTime", &r.created_at);
    x.elem("placement", |x| {
        x.leaf("availabilityZone", zone_of(call, r));
        x.leaf("tenancy", "default");
    });
    x.elem("monitoring", |x| x.leaf("state", "disabled"));
    x.leaf("architecture", "x86_64");
    x.leaf("rootDeviceType", "ebs");
    x.leaf("virtualizationType", "hvm");
    x.leaf("hypervisor", "xen");
    let tags: Vec<(&String, &Value)> = r.tags.iter().collect();
    if !tags.is_empty() {
        x.set("tagSet", tags, |x, (k, v)| {
            x.leaf("key", k);
            x.leaf("value", v.as_str().unwrap_or_default());
        });
    }
}

/// The instances `InstanceId.N` names, in this region: malformed ids and ids that are
/// not the tenant's (or not in this region) are refused before anything is done.
async fn named_instances(call: &Call<'_>, ids: &[String]) -> Result<Vec<InstanceRecord>, Ec2Error> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        if !is_instance_id(id) {
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{id}\" (expecting \"i-...\")"),
            ));
        }
        match call.state.inventory.get(&call.ctx.tenant, id).await? {
            Some(r) if call.federated() || r.region == call.region.name => out.push(r),
            _ => missing.push(id.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            INSTANCE_NOT_FOUND,
            format!(
                "The instance ID{} '{}' do{} not exist",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", "),
                if missing.len() > 1 { "" } else { "es" }
            ),
        ));
    }
    Ok(out)
}

/// The tenant's instances in this region (every region when federated), in id order.
async fn region_instances(call: &Call<'_>) -> Result<Vec<InstanceRecord>, Ec2Error> {
    Ok(call
        .state
        .inventory
        .list(&call.ctx.tenant)
        .await?
        .into_iter()
        .filter(|r| call.federated() || r.region == call.region.name)
        .collect())
}

/// The instance filters Skyport understands (besides `tag:<key>`).
const INSTANCE_FILTERS: [&str; 9] = [
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "instance-type",
    "image-id",
    "availability-zone",
    "key-name",
    "tag-key",
    "tag-value",
];

fn instance_filter_matches(
    call: &Call<'_>,
    f: &Filter,
    r: &InstanceRecord,
) -> Result<bool, Ec2Error> {
    Ok(match f.name.as_str() {
        "instance-id" => f.matches(&r.id),
        "instance-state-name" => f.matches(&r.state),
        "instance-state-code" => f.matches(&state_code(&r.state).to_string()),
        "instance-type" => f.matches(&r.instance_type),
        "image-id" => f.matches(&image_id(&r.image)),
        "availability-zone" => f.matches(&zone_of(call, r)),
        "key-name" => r.key_name.as_deref().is_some_and(|k| f.matches(k)),
        "tag-key" => r.tags.keys().any(|k| f.matches(k)),
        "tag-value" => r
            .tags
            .values()
            .any(|v| f.matches(v.as_str().unwrap_or_default())),
        name if name.starts_with("tag:") => r
            .tags
            .get(&name[4..])
            .and_then(Value::as_str)
            .is_some_and(|v| f.matches(v)),
        other => {
            return Err(Ec2Error::invalid_value(format!(
                "The filter '{other}' is invalid"
            )))
        }
    })
}

/// `MaxResults` and `NextToken` of a paged describe (tokens are the last id returned).
fn paging(call: &Call<'_>, ids_given: bool) -> Result<(usize, Option<String>), Ec2Error> {
    let max = call.params.int("MaxResults", 5..=1000)?;
    if max.is_some() && ids_given {
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let token = match call.params.get("NextToken") {
        Some(t) if is_instance_id(t) => Some(t.to_string()),
        Some(_) => return Err(Ec2Error::invalid_value("Invalid NextToken")),
        None => None,
    };
    Ok((max.unwrap_or(1000) as usize, token))
}

/// Refreshed, filtered, paged instances for the describe actions.
async fn select_instances(
    call: &Call<'_>,
    keep: impl Fn(&InstanceRecord) -> Result<bool, Ec2Error>,
) -> Result<(Vec<InstanceRecord>, Option<String>), Ec2Error> {
    let ids = call.params.list("InstanceId");
    let (max, after) = paging(call, !ids.is_empty())?;
    let candidates = if ids.is_empty() {
        region_instances(call).await?
    } else {
        named_instances(call, &ids).await?
    };
    let filters = call.params.filters()?;
    if let Some(f) = filters
        .iter()
        .find(|f| !INSTANCE_FILTERS.contains(&f.name.as_str()) && !f.name.starts_with("tag:"))
    {
        return Err(Ec2Error::invalid_value(format!(
            "The filter '{}' is invalid; Skyport filters instances by {} and tag:<key>",
            f.name,
            INSTANCE_FILTERS.join(", ")
        )));
    }
    let mut out = Vec::new();
    let mut next = None;
    for record in candidates
        .into_iter()
        .filter(|r| after.as_deref().is_none_or(|a| r.id.as_str() > a))
    {
        let record = ops::refresh_for_listing(call.state, call.ctx, call.request_id, record)
            .await
            .map_err(instance_error)?;
        let mut matched = keep(&record)?;
        for f in &filters {
            matched = matched && instance_filter_matches(call, f, &record)?;
        }
        if !matched {
            continue;
        }
        if out.len() == max {
            next = out.last().map(|r: &InstanceRecord| r.id.clone());
            break;
        }
        out.push(record);
    }
    Ok((out, next))
}

async fn describe_instances(call: &Call<'_>) -> Result<String, Ec2Error> {
    let (records, next) = select_instances(call, |_| Ok(true)).await?;
    let owner = owner_id(&call.ctx.tenant);
    Ok(Xml::response("DescribeInstances", call.request_id, |x| {
        x.set("reservationSet", &records, |x, r| {
            x.leaf("reservationId", reservation_id(&r.id));
            x.leaf("ownerId", &owner);
            x.elem("groupSet", |_| {});
            x.set("instancesSet", [r], |x, r| write_instance(x, call, r));
        });
        x.opt("nextToken", next.as_deref());
    }))
}

async fn describe_instance_status(call: &Call<'_>) -> Result<String, Ec2Error> {
    let all = call.params.flag("IncludeAllInstances", false)?;
    let (records, next) = select_instances(call, |r| Ok(all || r.state == "running")).await?;
    Ok(Xml::response(
        "DescribeInstanceStatus",
        call.request_id,
        |x| {
            x.set("instanceStatusSet", &records, |x, r| {
                x.leaf("instanceId", &r.id);
                x.leaf("availabilityZone", zone_of(call, r));
                write_state(x, "instanceState", &r.state);
                let status = if r.state == "running" {
                    "ok"
                } else {
                    "not-applicable"
                };
                for tag in ["systemStatus", "instanceStatus"] {
                    x.elem(tag, |x| {
                        x.leaf("status", status);
                        x.set("details", [()], |x, ()| {
                            x.leaf("name", "reachability");
                            x.leaf(
                                "status",
                                if status == "ok" {
                                    "passed"
                                } else {
                                    "initializing"
                                },
                            );
                        });
                    });
                }
            });
            x.opt("nextToken", next.as_deref());
        },
    ))
}

/// The image `ami` names, as (image name, provider regions offering it).
async fn resolve_image(call: &Call<'_>, ami: &str) -> Result<(String, Vec<String>), Ec2Error> {
    if !is_image_id(ami) {
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidAMIID.Malformed",
            format!("Invalid id: \"{ami}\" (expecting \"ami-...\")"),
        ));
    }
    let images =
        crate::api::images::all_images(call.state, call.ctx, call.request_id, false).await?;
    let mut name = None;
    let mut regions = Vec::new();
    for image in &images {
        let (Some(n), Some(region)) = (image["name"].as_str(), image["region"].as_str()) else {
            continue;
        };
        if image_id(n) == ami && (call.federated() || region == call.region.name) {
            name = Some(n.to_string());
            regions.push(region.to_string());
        }
    }
    name.map(|n| (n, regions)).ok_or_else(|| {
        Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidAMIID.NotFound",
            format!("The image id '[{ami}]' does not exist"),
        )
    })
}

/// The tag that orders an offering through `RunInstances` (federated region only).
const OFFERING_TAG: &str = "skyport:offering";

async fn run_instances(call: &Call<'_>) -> Result<String, Ec2Error> {
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
    if let Some(key) = &key_name {
        if call
            .state
            .key_pairs
            .get(&call.ctx.tenant, key)
            .await?
            .is_none()
        {
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidKeyPair.NotFound",
                format!("The key pair '{key}' does not exist"),
            ));
        }
    }
    let tags = p.tag_specifications("instance")?;
    if tags.len() > ops::MAX_TAGS {
        return Err(Ec2Error::invalid_value(format!(
            "an instance carries at most {} tags",
            ops::MAX_TAGS
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
    let client_token = p.get("ClientToken");
    let earlier = match client_token {
        Some(token) => launched_with(call, token, max).await?,
        None => Vec::new(),
    };
    let launched = if earlier.is_empty() {
        let offering = tags.get(OFFERING_TAG).and_then(Value::as_str);
        let decision = place(call, offering).await?;
        let decided = CreateSpec {
            name,
            tags,
            key_name,
            ..CreateSpec::decided(&decision)?
        };
        launch(call, &decided, client_token, min, max).await?
    } else {
        // A retry of a launch that happened: its instances, placed nowhere again.
        earlier
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

/// The instances an earlier `RunInstances` with `ClientToken` `token` launched, in order.
async fn launched_with(
    call: &Call<'_>,
    token: &str,
    max: i64,
) -> Result<Vec<InstanceRecord>, Ec2Error> {
    let mut earlier = Vec::new();
    for index in 0..max {
        let token = format!("{token}#{index}");
        match call
            .state
            .inventory
            .by_client_token(&call.ctx.tenant, &token)
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
    call: &Call<'_>,
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
        match ops::create(call.state, call.ctx, call.request_id, spec).await {
            Ok(record) => launched.push(record),
            Err(e) if (launched.len() as i64) >= min => {
                tracing::info!(request_id = call.request_id, launched = launched.len(), error = %e.public, "RunInstances launched fewer than MaxCount");
                break;
            }
            Err(e) => {
                // Fewer than MinCount: undo what was launched, then report why.
                for record in &launched {
                    if let Err(undo) = ops::act(
                        call.state,
                        call.ctx,
                        call.request_id,
                        &record.id,
                        Action::Terminate,
                    )
                    .await
                    {
                        tracing::warn!(request_id = call.request_id, instance = %record.id, error = %undo.public, "could not undo a partial launch");
                    }
                }
                return Err(Ec2Error::from_gateway(e, "InvalidParameterValue"));
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
async fn place(call: &Call<'_>, offering: Option<&str>) -> Result<placement::Decision, Ec2Error> {
    if offering.is_some() && !call.federated() {
        return Err(Ec2Error::invalid_value(format!(
            "the {OFFERING_TAG} tag orders an offering; send it to region {}",
            crate::api::native::FEDERATED_REGION
        )));
    }
    let p = call.params;
    let mut preferences = Params::new();
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
        ec2_instance_type(itype)?;
        preferences.insert("instance_type".into(), ParamValue::Text(itype.to_string()));
    }
    let region = match p.get("Placement.AvailabilityZone") {
        Some(zone) => Some(
            call.state
                .regions
                .iter()
                .filter(|r| r.kind == "provider")
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
    let order = placement::OrderRequest {
        offering: offering.unwrap_or(RAW).to_string(),
        preferences,
        department: call.ctx.department.clone(),
        image_regions,
    };
    let decision = placement::decide_one(call.state, call.ctx, call.request_id, &order)
        .await
        .map_err(|e| Ec2Error::from_gateway(e, "InvalidParameterValue"))?;
    call.state
        .placements
        .record(
            &call.ctx.tenant,
            call.request_id,
            placement::audit::Mode::Create,
            &decision,
        )
        .await?;
    Ok(decision)
}

/// A Skyport instance type by name, or EC2's `InvalidParameterValue`.
fn ec2_instance_type(name: &str) -> Result<InstanceType, Ec2Error> {
    instance_type(name).ok_or_else(|| {
        Ec2Error::invalid_value(format!(
            "Invalid value '{name}' for InstanceType; Skyport's types are {}",
            crate::catalog::instance_type_names().join(", ")
        ))
    })
}

async fn change_state(call: &Call<'_>, action: Action, name: &str) -> Result<String, Ec2Error> {
    let ids = call.params.list("InstanceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId"));
    }
    let records = named_instances(call, &ids).await?;
    let mut changes = Vec::new();
    for record in records {
        let record = ops::refresh(call.state, call.ctx, call.request_id, record)
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
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "IncorrectInstanceState",
                format!(
                    "The instance '{}' is not in a state from which it can be {}ed (it is {state}).",
                    record.id,
                    if action == Action::Stop { "stopp" } else { action.as_str() }
                ),
            ));
        }
        let (previous, after) = ops::act(call.state, call.ctx, call.request_id, &record.id, action)
            .await
            .map_err(instance_error)?;
        changes.push((after.id, previous, after.state));
    }
    Ok(Xml::response(name, call.request_id, |x| {
        x.set("instancesSet", &changes, |x, (id, previous, current)| {
            x.leaf("instanceId", id);
            write_state(x, "currentState", current);
            write_state(x, "previousState", previous);
        });
    }))
}

async fn reboot_instances(call: &Call<'_>) -> Result<String, Ec2Error> {
    let ids = call.params.list("InstanceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId"));
    }
    for record in named_instances(call, &ids).await? {
        let record = ops::refresh(call.state, call.ctx, call.request_id, record)
            .await
            .map_err(instance_error)?;
        if record.state != "running" {
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "IncorrectInstanceState",
                format!(
                    "The instance '{}' is not in the 'running' state (it is {}).",
                    record.id, record.state
                ),
            ));
        }
        ops::act(
            call.state,
            call.ctx,
            call.request_id,
            &record.id,
            Action::Reboot,
        )
        .await
        .map_err(instance_error)?;
    }
    Ok(Xml::response("RebootInstances", call.request_id, |x| {
        x.leaf("return", "true")
    }))
}

async fn modify_instance_attribute(call: &Call<'_>) -> Result<String, Ec2Error> {
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
    let itype = instance_type(type_name).ok_or_else(|| {
        Ec2Error::invalid_value(format!("Invalid value '{type_name}' for InstanceType"))
    })?;
    named_instances(call, std::slice::from_ref(&id)).await?;
    ops::resize(call.state, call.ctx, call.request_id, &id, itype)
        .await
        .map_err(|e| {
            if e.kind == ErrorKind::Conflict {
                Ec2Error::new(
                    StatusCode::BAD_REQUEST,
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

async fn get_console_output(call: &Call<'_>) -> Result<String, Ec2Error> {
    let id = call.params.required("InstanceId")?.to_string();
    named_instances(call, std::slice::from_ref(&id)).await?;
    let (record, output) = ops::console(call.state, call.ctx, call.request_id, &id)
        .await
        .map_err(instance_error)?;
    let now = crate::ids::rfc3339_millis(SystemTime::now());
    Ok(Xml::response("GetConsoleOutput", call.request_id, |x| {
        x.leaf("instanceId", &record.id);
        x.leaf("timestamp", &now);
        x.leaf(
            "output",
            base64::engine::general_purpose::STANDARD.encode(output.as_bytes()),
        );
    }))
}

async fn describe_images(call: &Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("ImageId");
    let filters = call.params.filters()?;
    let images =
        crate::api::images::all_images(call.state, call.ctx, call.request_id, false).await?;
    let mut names: Vec<String> = images
        .iter()
        .filter(|i| call.federated() || i["region"].as_str() == Some(call.region.name.as_str()))
        .filter_map(|i| i["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    for ami in &wanted {
        if !names.iter().any(|n| image_id(n) == *ami) {
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                if is_image_id(ami) {
                    "InvalidAMIID.NotFound"
                } else {
                    "InvalidAMIID.Malformed"
                },
                format!("The image id '[{ami}]' does not exist"),
            ));
        }
    }
    let mut selected = Vec::new();
    for name in names {
        let id = image_id(&name);
        if !wanted.is_empty() && !wanted.contains(&id) {
            continue;
        }
        let mut keep = true;
        for f in &filters {
            keep = keep
                && match f.name.as_str() {
                    "name" => f.matches(&name),
                    "image-id" => f.matches(&id),
                    "state" => f.matches("available"),
                    "architecture" => f.matches("x86_64"),
                    other => {
                        return Err(Ec2Error::invalid_value(format!(
                            "The filter '{other}' is invalid"
                        )))
                    }
                };
        }
        if keep {
            selected.push((id, name));
        }
    }
    Ok(Xml::response("DescribeImages", call.request_id, |x| {
        x.set("imagesSet", &selected, |x, (id, name)| {
            x.leaf("imageId", id);
            x.leaf("imageLocation", format!("skyport/{name}"));
            x.leaf("imageState", "available");
            x.leaf("imageOwnerId", "skyport");
            x.leaf("isPublic", "true");
            x.leaf("architecture", "x86_64");
            x.leaf("imageType", "machine");
            x.leaf("name", name);
            x.leaf("rootDeviceType", "ebs");
            x.leaf("virtualizationType", "hvm");
            x.leaf("hypervisor", "xen");
        });
    }))
}

fn describe_instance_types(call: &Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("InstanceType");
    let unknown: Vec<&String> = wanted
        .iter()
        .filter(|w| instance_type(w).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidInstanceType",
            format!(
                "The following supplied instance types do not exist: [{}]",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let filters = call.params.filters()?;
    let mut types = Vec::new();
    for t in INSTANCE_TYPES {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == t.name) {
            continue;
        }
        let mut keep = true;
        for f in &filters {
            keep = keep
                && match f.name.as_str() {
                    "instance-type" => f.matches(t.name),
                    "vcpu-info.default-vcpus" => f.matches(&t.vcpus.to_string()),
                    "memory-info.size-in-mib" => f.matches(&t.memory_mib.to_string()),
                    other => {
                        return Err(Ec2Error::invalid_value(format!(
                            "The filter '{other}' is invalid"
                        )))
                    }
                };
        }
        if keep {
            types.push(t);
        }
    }
    Ok(Xml::response(
        "DescribeInstanceTypes",
        call.request_id,
        |x| {
            x.set("instanceTypeSet", types, |x, t| {
                x.leaf("instanceType", t.name);
                x.leaf("currentGeneration", "true");
                x.elem("vCpuInfo", |x| x.leaf("defaultVCpus", t.vcpus.to_string()));
                x.elem("memoryInfo", |x| {
                    x.leaf("sizeInMiB", t.memory_mib.to_string())
                });
                x.elem("processorInfo", |x| {
                    x.set("supportedArchitectures", ["x86_64"], |x, a| {
                        // `supportedArchitectures` is a list of plain strings.
                        x.leaf("item", a);
                    })
                });
            });
        },
    ))
}

fn describe_regions(call: &Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("RegionName");
    for w in &wanted {
        if !call.state.regions.iter().any(|r| &r.name == w) {
            return Err(Ec2Error::invalid_value(format!("Invalid region: {w}")));
        }
    }
    let endpoint = format!("https://{}/", call.state.config.server.listen);
    let regions: Vec<&String> = call
        .state
        .regions
        .iter()
        .map(|r| &r.name)
        .filter(|n| wanted.is_empty() || wanted.contains(n))
        .collect();
    Ok(Xml::response("DescribeRegions", call.request_id, |x| {
        x.set("regionInfo", regions, |x, name| {
            x.leaf("regionName", name);
            x.leaf("regionEndpoint", &endpoint);
            x.leaf("optInStatus", "opt-in-not-required");
        });
    }))
}

fn describe_availability_zones(call: &Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("ZoneName");
    let zones: Vec<(String, String, usize)> = call
        .state
        .regions
        .iter()
        .filter(|r| r.kind == "provider" && (call.federated() || r.name == call.region.name))
        .flat_map(|r| {
            r.zones
                .iter()
                .enumerate()
                .map(move |(i, z)| (z.clone(), r.name.clone(), i + 1))
        })
        .filter(|(z, _, _)| wanted.is_empty() || wanted.contains(z))
        .collect();
    for w in &wanted {
        if !zones.iter().any(|(z, _, _)| z == w) {
            return Err(Ec2Error::invalid_value(format!(
                "The zone '{w}' does not exist"
            )));
        }
    }
    Ok(Xml::response(
        "DescribeAvailabilityZones",
        call.request_id,
        |x| {
            x.set("availabilityZoneInfo", &zones, |x, (zone, region, n)| {
                x.leaf("zoneName", zone);
                x.leaf("zoneId", format!("{region}-az{n}"));
                x.leaf("zoneState", "available");
                x.leaf("regionName", region);
                x.leaf("groupName", region);
                x.leaf("networkBorderGroup", region);
                x.leaf("zoneType", "availability-zone");
                x.leaf("optInStatus", "opt-in-not-required");
                x.elem("messageSet", |_| {});
            });
        },
    ))
}

/// `ResourceId.N` of the tag actions: only instances carry tags in Skyport.
async fn tag_targets(call: &Call<'_>) -> Result<Vec<InstanceRecord>, Ec2Error> {
    let ids = call.params.list("ResourceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("ResourceId"));
    }
    if let Some(other) = ids.iter().find(|id| !id.starts_with("i-")) {
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidID",
            format!("The ID '{other}' is not valid: only instances carry tags here"),
        ));
    }
    named_instances(call, &ids).await
}

async fn create_tags(call: &Call<'_>) -> Result<String, Ec2Error> {
    let targets = tag_targets(call).await?;
    let tags = call.params.tags("Tag");
    if tags.is_empty() {
        return Err(Ec2Error::missing("Tag.1.Key"));
    }
    let set: Vec<(String, String)> = tags
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    for (key, value) in &set {
        if key.starts_with("aws:") || key.is_empty() || key.len() > 128 || value.len() > 256 {
            return Err(Ec2Error::invalid_value(format!(
                "Tag key '{key}' is invalid: 1-128 characters, not starting with aws:; values at most 256"
            )));
        }
    }
    for record in targets {
        ops::change_tags(call.state, call.ctx, &record.id, &set, &[])
            .await
            .map_err(instance_error)?;
    }
    Ok(Xml::response("CreateTags", call.request_id, |x| {
        x.leaf("return", "true")
    }))
}

async fn delete_tags(call: &Call<'_>) -> Result<String, Ec2Error> {
    let targets = tag_targets(call).await?;
    let named = call.params.tags("Tag");
    for record in targets {
        let remove: Vec<(String, Option<String>)> = if named.is_empty() {
            record.tags.keys().map(|k| (k.clone(), None)).collect()
        } else {
            named.clone()
        };
        ops::change_tags(call.state, call.ctx, &record.id, &[], &remove)
            .await
            .map_err(instance_error)?;
    }
    Ok(Xml::response("DeleteTags", call.request_id, |x| {
        x.leaf("return", "true")
    }))
}

async fn describe_tags(call: &Call<'_>) -> Result<String, Ec2Error> {
    let filters = call.params.filters()?;
    let mut rows = Vec::new();
    for record in region_instances(call).await? {
        for (key, value) in &record.tags {
            let value = value.as_str().unwrap_or_default();
            let mut keep = true;
            for f in &filters {
                keep = keep
                    && match f.name.as_str() {
                        "resource-id" => f.matches(&record.id),
                        "resource-type" => f.matches("instance"),
                        "key" => f.matches(key),
                        "value" => f.matches(value),
                        other => {
                            return Err(Ec2Error::invalid_value(format!(
                                "The filter '{other}' is invalid"
                            )))
                        }
                    };
            }
            if keep {
                rows.push((record.id.clone(), key.clone(), value.to_string()));
            }
        }
    }
    Ok(Xml::response("DescribeTags", call.request_id, |x| {
        x.set("tagSet", &rows, |x, (id, key, value)| {
            x.leaf("resourceId", id);
            x.leaf("resourceType", "instance");
            x.leaf("key", key);
            x.leaf("value", value);
        });
    }))
}

fn key_pair_error(err: crate::error::GatewayError) -> Ec2Error {
    if err.kind == ErrorKind::Conflict {
        return Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidKeyPair.Duplicate",
            err.public,
        );
    }
    Ec2Error::from_gateway(err, "InvalidKeyPair.NotFound")
}

async fn create_key_pair(call: &Call<'_>) -> Result<String, Ec2Error> {
    let name = call.params.required("KeyName")?;
    let key_type = match call.params.get("KeyType").unwrap_or("rsa") {
        "rsa" => KeyType::Rsa,
        "ed25519" => KeyType::Ed25519,
        other => {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid value '{other}' for KeyType: rsa or ed25519"
            )))
        }
    };
    if let Some(format) = call.params.get("KeyFormat").filter(|f| *f != "pem") {
        return Err(Ec2Error::invalid_value(format!(
            "Skyport returns private keys as pem only, not '{format}'"
        )));
    }
    let (pair, private) = call
        .state
        .key_pairs
        .create(&call.ctx.tenant, name, key_type)
        .await
        .map_err(key_pair_error)?;
    Ok(Xml::response("CreateKeyPair", call.request_id, |x| {
        x.leaf("keyName", &pair.name);
        x.leaf("keyFingerprint", &pair.fingerprint);
        x.leaf("keyMaterial", &private);
        x.leaf("keyPairId", &pair.id);
    }))
}

async fn import_key_pair(call: &Call<'_>) -> Result<String, Ec2Error> {
    let name = call.params.required("KeyName")?;
    let material = call.params.required("PublicKeyMaterial")?;
    // SDKs send the key base64-encoded (a blob); a raw OpenSSH line is accepted too.
    let text = base64::engine::general_purpose::STANDARD
        .decode(material)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| material.to_string());
    let pair = call
        .state
        .key_pairs
        .import(&call.ctx.tenant, name, &text)
        .await
        .map_err(key_pair_error)?;
    Ok(Xml::response("ImportKeyPair", call.request_id, |x| {
        x.leaf("keyName", &pair.name);
        x.leaf("keyFingerprint", &pair.fingerprint);
        x.leaf("keyPairId", &pair.id);
    }))
}

async fn describe_key_pairs(call: &Call<'_>) -> Result<String, Ec2Error> {
    let names = call.params.list("KeyName");
    let ids = call.params.list("KeyPairId");
    let filters = call.params.filters()?;
    let include_public = call.params.flag("IncludePublicKey", false)?;
    let all = call.state.key_pairs.list(&call.ctx.tenant).await?;
    for n in &names {
        if !all.iter().any(|k| &k.name == n) {
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidKeyPair.NotFound",
                format!("The key pair '{n}' does not exist"),
            ));
        }
    }
    for i in &ids {
        if !all.iter().any(|k| &k.id == i) {
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidKeyPair.NotFound",
                format!("The key pair ID '{i}' does not exist"),
            ));
        }
    }
    let mut selected = Vec::new();
    for k in all {
        if (!names.is_empty() || !ids.is_empty())
            && !names.contains(&k.name)
            && !ids.contains(&k.id)
        {
            continue;
        }
        let mut keep = true;
        for f in &filters {
            keep = keep
                && match f.name.as_str() {
                    "key-name" => f.matches(&k.name),
                    "key-pair-id" => f.matches(&k.id),
                    "fingerprint" => f.matches(&k.fingerprint),
                    "key-type" => f.matches(&k.key_type),
                    other => {
                        return Err(Ec2Error::invalid_value(format!(
                            "The filter '{other}' is invalid"
                        )))
                    }
                };
        }
        if keep {
            selected.push(k);
        }
    }
    Ok(Xml::response("DescribeKeyPairs", call.request_id, |x| {
        x.set("keySet", &selected, |x, k| {
            x.leaf("keyPairId", &k.id);
            x.leaf("keyName", &k.name);
            x.leaf("keyFingerprint", &k.fingerprint);
            x.leaf("keyType", &k.key_type);
            x.leaf("createTime", &k.created_at);
            if include_public {
                x.leaf("publicKey", &k.public_key);
            }
        });
    }))
}

async fn delete_key_pair(call: &Call<'_>) -> Result<String, Ec2Error> {
    let key = call
        .params
        .get("KeyName")
        .or_else(|| call.params.get("KeyPairId"))
        .ok_or_else(|| Ec2Error::missing("KeyName"))?;
    // As on EC2, deleting a key pair that does not exist succeeds.
    call.state
        .key_pairs
        .delete(&call.ctx.tenant, key)
        .await
        .map_err(key_pair_error)?;
    Ok(Xml::response("DeleteKeyPair", call.request_id, |x| {
        x.leaf("return", "true")
    }))
}
