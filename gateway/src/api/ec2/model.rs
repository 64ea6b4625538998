//! EC2's view of Skyport's resources: instance states as EC2 numbers them, image ids,
//! account and reservation ids, zones, the `<item>` of an instance (with its addresses and
//! network interface), and the instances a request names in its region.

use serde_json::Value;
use sha2::{Digest, Sha256};
use skyport_domain::inventory::{is_instance_id, InstanceNetwork, InstanceRecord};

use super::networks::{
    attachment_id, interface_id, security_group_id, InstancePlace, RegionNetwork,
};
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

/// The network of an instance's region (always a provider region).
fn network_of<'a>(call: &'a Ec2Call<'_>, record: &InstanceRecord) -> Option<RegionNetwork<'a>> {
    call.services
        .regions
        .get(&record.region)
        .and_then(RegionNetwork::of)
}

/// The availability zone an instance is in: the one its provider reports when its region
/// has that zone, else its region's first zone.
pub(super) fn zone_of(call: &Ec2Call<'_>, record: &InstanceRecord) -> String {
    network_of(call, record)
        .and_then(|n| n.zone_of(record).map(str::to_owned))
        .unwrap_or_else(|| format!("{}a", record.region))
}

/// Where an instance is on its region's network, with its addresses: only while it has
/// addresses and is not terminated (EC2 shows neither VPC, subnet nor addresses then).
pub(super) fn placed<'r>(
    call: &Ec2Call<'_>,
    record: &'r InstanceRecord,
) -> Option<(InstancePlace, &'r InstanceNetwork)> {
    let place = network_of(call, record)?.place(record)?;
    Some((place, record.network.as_ref()?))
}

/// The reservation id an instance is reported in (one reservation per launch; Skyport
/// derives it from the first instance's id).
pub(super) fn reservation_id(instance_id: &str) -> String {
    format!("r-{}", instance_id.trim_start_matches("i-"))
}

/// The `<item>` of instance `r`, in the order EC2 writes its elements.
pub(super) fn write_instance(x: &mut Xml, call: &Ec2Call<'_>, r: &InstanceRecord) {
    let placed = placed(call, r);
    let addresses = placed.as_ref().map(|(_, n)| *n);
    x.leaf("instanceId", &r.id);
    x.leaf("imageId", image_id(&r.image));
    write_state(x, "instanceState", &r.state);
    // EC2 writes both DNS names always, empty when there is none.
    x.leaf(
        "privateDnsName",
        addresses
            .and_then(|n| n.private_dns.as_deref())
            .unwrap_or_default(),
    );
    x.leaf(
        "dnsName",
        addresses
            .and_then(|n| n.public_dns.as_deref())
            .unwrap_or_default(),
    );
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
    if let Some((place, network)) = &placed {
        x.opt("subnetId", place.subnet_id.as_deref());
        x.leaf("vpcId", &place.vpc_id);
        x.opt("privateIpAddress", network.private_ip.as_deref());
        x.opt("ipAddress", network.public_ip.as_deref());
        x.leaf("sourceDestCheck", "true");
    }
    write_groups(x, r, placed.is_some());
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
    if let Some((place, network)) = &placed {
        let owner = owner_id(&call.ctx.tenant);
        x.set("networkInterfaceSet", [()], |x, ()| {
            write_interface(x, r, place, network, &owner, None)
        });
    }
}

/// The `groupSet` of an instance (or its interface): its VPC's default security group
/// while it is on the network, as on EC2 (`DescribeSecurityGroups` describes it).
pub(super) fn write_groups(x: &mut Xml, r: &InstanceRecord, on_network: bool) {
    if !on_network {
        x.elem("groupSet", |_| {});
        return;
    }
    x.set("groupSet", [()], |x, ()| {
        x.leaf("groupId", security_group_id(&r.region));
        x.leaf("groupName", "default");
    });
}

/// The `<item>` of an instance's one network interface (EC2's primary interface, device
/// index 0, created and deleted with the instance). `zone`: given when the interface is
/// described on its own (`DescribeNetworkInterfaces`), which also names its zone and
/// attached instance.
pub(super) fn write_interface(
    x: &mut Xml,
    r: &InstanceRecord,
    place: &InstancePlace,
    network: &InstanceNetwork,
    owner: &str,
    zone: Option<&str>,
) {
    let private_dns = network.private_dns.as_deref().unwrap_or_default();
    let association = |x: &mut Xml| {
        if let Some(public_ip) = network.public_ip.as_deref() {
            x.elem("association", |x| {
                x.leaf("publicIp", public_ip);
                x.leaf(
                    "publicDnsName",
                    network.public_dns.as_deref().unwrap_or_default(),
                );
                // EC2's owner of an address it assigned (rather than an Elastic IP's).
                x.leaf("ipOwnerId", "amazon");
            });
        }
    };
    x.leaf("networkInterfaceId", interface_id(&r.id));
    x.opt("availabilityZone", zone);
    x.opt("subnetId", place.subnet_id.as_deref());
    x.leaf("vpcId", &place.vpc_id);
    x.leaf("description", "");
    x.leaf("ownerId", owner);
    x.leaf("status", "in-use");
    x.opt("macAddress", network.mac.as_deref());
    x.opt("privateIpAddress", network.private_ip.as_deref());
    x.leaf("privateDnsName", private_dns);
    x.leaf("sourceDestCheck", "true");
    write_groups(x, r, true);
    x.elem("attachment", |x| {
        x.leaf("attachmentId", attachment_id(&r.id));
        if zone.is_some() {
            x.leaf("instanceId", &r.id);
            x.leaf("instanceOwnerId", owner);
        }
        x.leaf("deviceIndex", "0");
        x.leaf("status", "attached");
        x.leaf("attachTime", &r.created_at);
        x.leaf("deleteOnTermination", "true");
    });
    association(x);
    if let Some(private_ip) = network.private_ip.as_deref() {
        x.set("privateIpAddressesSet", [()], |x, ()| {
            x.leaf("privateIpAddress", private_ip);
            x.leaf("privateDnsName", private_dns);
            x.leaf("primary", "true");
            association(x);
        });
    }
    x.leaf("interfaceType", "interface");
    if zone.is_some() {
        // Described on its own, an interface lists its tags (it has none).
        x.elem("tagSet", |_| {});
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
