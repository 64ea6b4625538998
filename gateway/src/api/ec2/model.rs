//! EC2's view of Skyport's resources: instance states as EC2 numbers them, image ids,
//! account and reservation ids, zones, the `<item>` of an instance, and the instances a
//! request names in its region.

use serde_json::Value;
use sha2::{Digest, Sha256};
use skyport_domain::inventory::{is_instance_id, InstanceRecord};

use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

/// EC2's code for an unknown instance id.
pub(super) const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";

/// EC2's numeric code of a state name.
pub(super) fn state_code(state: &str) -> u8 {
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

pub(super) fn write_state(x: &mut Xml, tag: &str, state: &str) {
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

pub(super) fn is_image_id(id: &str) -> bool {
    id.len() == 21
        && id.starts_with("ami-")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The tenant's twelve-digit account number (`ownerId`), stable per tenant.
pub(super) fn owner_id(tenant: &str) -> String {
    let digest = Sha256::digest(tenant.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % 1_000_000_000_000;
    format!("{n:012}")
}

/// The availability zone an instance is in: its region's first zone.
pub(super) fn zone_of(call: &Ec2Call<'_>, record: &InstanceRecord) -> String {
    call.services
        .regions
        .get(&record.region)
        .and_then(|r| r.zones.first().cloned())
        .unwrap_or_else(|| format!("{}a", record.region))
}

/// The reservation id an instance is reported in (one reservation per launch; Skyport
/// derives it from the first instance's id).
pub(super) fn reservation_id(instance_id: &str) -> String {
    format!("r-{}", instance_id.trim_start_matches("i-"))
}

pub(super) fn write_instance(x: &mut Xml, call: &Ec2Call<'_>, r: &InstanceRecord) {
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
pub(super) async fn named_instances(
    call: &Ec2Call<'_>,
    ids: &[String],
) -> Result<Vec<InstanceRecord>, Ec2Error> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        if !is_instance_id(id) {
            return Err(Ec2Error::bad_request(
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{id}\" (expecting \"i-...\")"),
            ));
        }
        match call.services.instances.find(call.ctx, id).await? {
            Some(r) if call.federated() || r.region == call.region.name => out.push(r),
            _ => missing.push(id.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(Ec2Error::bad_request(
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
pub(super) async fn region_instances(call: &Ec2Call<'_>) -> Result<Vec<InstanceRecord>, Ec2Error> {
    Ok(call
        .services
        .instances
        .records(call.ctx)
        .await?
        .into_iter()
        .filter(|r| call.federated() || r.region == call.region.name)
        .collect())
}
