//! The EC2 describe actions of instances, images, instance types, regions and zones:
//! filters (`Filter.N`, `*` and `?` wildcards), pages (`MaxResults`, `NextToken`).

use serde_json::Value;
use skyport_domain::catalog::{instance_type, INSTANCE_TYPES};
use skyport_domain::inventory::{is_instance_id, InstanceNetwork, InstanceRecord};

use super::errors::instance_error;
use super::model::{
    image_id, is_image_id, named_instances, owner_id, placed, region_instances, reservation_id,
    state_code, write_instance, write_state, zone_of,
};
use super::networks::{interface_id, zone_id};
use super::query::Filter;
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

/// The instance filters Skyport understands (besides `tag:<key>`).
const INSTANCE_FILTERS: &[&str] = &[
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "instance-type",
    "image-id",
    "availability-zone",
    "key-name",
    "tag-key",
    "tag-value",
    "vpc-id",
    "subnet-id",
    "private-ip-address",
    "ip-address",
    "private-dns-name",
    "dns-name",
    "network-interface.network-interface-id",
    "network-interface.vpc-id",
    "network-interface.subnet-id",
    "network-interface.mac-address",
    "network-interface.private-dns-name",
    "network-interface.addresses.private-ip-address",
    "network-interface.association.public-ip",
    "network-interface.addresses.association.public-ip",
];

fn instance_filter_matches(
    call: &Ec2Call<'_>,
    f: &Filter,
    r: &InstanceRecord,
) -> Result<bool, Ec2Error> {
    // Network filters match only what the instance shows: nothing before its addresses
    // are assigned nor once it is terminated.
    let placed = placed(call, r);
    let network = |field: fn(&InstanceNetwork) -> Option<&str>| {
        placed
            .as_ref()
            .and_then(|(_, n)| field(n))
            .is_some_and(|v| f.matches(v))
    };
    Ok(match f.name.as_str() {
        "instance-id" => f.matches(&r.id),
        "instance-state-name" => f.matches(&r.state),
        "instance-state-code" => f.matches(&state_code(&r.state).to_string()),
        "instance-type" => f.matches(&r.instance_type),
        "image-id" => f.matches(&image_id(&r.image)),
        "availability-zone" => f.matches(&zone_of(call, r)),
        "key-name" => r.key_name.as_deref().is_some_and(|k| f.matches(k)),
        "vpc-id" | "network-interface.vpc-id" => {
            placed.as_ref().is_some_and(|(p, _)| f.matches(&p.vpc_id))
        }
        "subnet-id" | "network-interface.subnet-id" => placed
            .as_ref()
            .and_then(|(p, _)| p.subnet_id.as_deref())
            .is_some_and(|s| f.matches(s)),
        "network-interface.network-interface-id" => {
            placed.is_some() && f.matches(&interface_id(&r.id))
        }
        "private-ip-address" | "network-interface.addresses.private-ip-address" => {
            network(|n| n.private_ip.as_deref())
        }
        "ip-address"
        | "network-interface.association.public-ip"
        | "network-interface.addresses.association.public-ip" => {
            network(|n| n.public_ip.as_deref())
        }
        "private-dns-name" | "network-interface.private-dns-name" => {
            network(|n| n.private_dns.as_deref())
        }
        "dns-name" => network(|n| n.public_dns.as_deref()),
        "network-interface.mac-address" => network(|n| n.mac.as_deref()),
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
fn paging(call: &Ec2Call<'_>, ids_given: bool) -> Result<(usize, Option<String>), Ec2Error> {
    let max = call.params.int("MaxResults", 5..=1000)?;
    if max.is_some() && ids_given {
        return Err(Ec2Error::bad_request(
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
    call: &Ec2Call<'_>,
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
    let candidates: Vec<InstanceRecord> = candidates
        .into_iter()
        .filter(|r| after.as_deref().is_none_or(|a| r.id.as_str() > a))
        .collect();
    let keep = |record: &InstanceRecord| -> Result<bool, Ec2Error> {
        let mut matched = keep(record)?;
        for f in &filters {
            matched = matched && instance_filter_matches(call, f, record)?;
        }
        Ok(matched)
    };
    call.services
        .instances
        .listing_page(
            call.ctx,
            call.request_id,
            candidates,
            max,
            keep,
            instance_error,
        )
        .await
}

pub(super) async fn instances(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
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

pub(super) async fn instance_status(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
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

/// The owner alias every image Skyport offers has: they are the platform's, public to
/// every tenant, as Amazon's own images are on EC2.
const IMAGE_OWNER_ALIAS: &str = "amazon";
/// The owner id every image shows.
const IMAGE_OWNER_ID: &str = "skyport";

pub(super) async fn images(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("ImageId");
    // `Owner.N`: images of those owners. No tenant owns an image; the platform owns all.
    let owners = call.params.list("Owner");
    if !owners.is_empty()
        && !owners
            .iter()
            .any(|o| o == IMAGE_OWNER_ALIAS || o == IMAGE_OWNER_ID)
    {
        return Ok(Xml::response("DescribeImages", call.request_id, |x| {
            x.elem("imagesSet", |_| {});
        }));
    }
    let filters = call.params.filters()?;
    let images = call.services.images.list(call.ctx, call.request_id).await?;
    let mut names: Vec<String> = images
        .into_iter()
        .filter(|i| call.federated() || i.region == call.region.name)
        .map(|i| i.name)
        .collect();
    names.sort();
    names.dedup();
    for ami in &wanted {
        if !names.iter().any(|n| image_id(n) == *ami) {
            return Err(Ec2Error::bad_request(
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
                    "owner-alias" => f.matches(IMAGE_OWNER_ALIAS),
                    "owner-id" => f.matches(IMAGE_OWNER_ID),
                    "is-public" => f.matches("true"),
                    "image-type" => f.matches("machine"),
                    "root-device-type" => f.matches("ebs"),
                    "virtualization-type" => f.matches("hvm"),
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
            x.leaf("imageOwnerId", IMAGE_OWNER_ID);
            x.leaf("imageOwnerAlias", IMAGE_OWNER_ALIAS);
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

pub(super) async fn instance_types(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("InstanceType");
    let unknown: Vec<&String> = wanted
        .iter()
        .filter(|w| instance_type(w).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(Ec2Error::bad_request(
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

pub(super) async fn regions(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("RegionName");
    // Every region, then each alias of a served one (`[ec2] region_aliases`).
    let aliases = call
        .services
        .config
        .ec2
        .region_aliases
        .iter()
        .filter(|(_, region)| call.services.regions.serves(region))
        .map(|(alias, _)| alias);
    let known: Vec<&String> = call
        .services
        .regions
        .all()
        .iter()
        .map(|r| &r.name)
        .chain(aliases)
        .collect();
    for w in &wanted {
        if !known.contains(&w) {
            return Err(Ec2Error::invalid_value(format!("Invalid region: {w}")));
        }
    }
    let endpoint = format!("https://{}/", call.services.config.server.listen);
    let regions: Vec<&String> = known
        .into_iter()
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

pub(super) async fn availability_zones(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("ZoneName");
    let zones: Vec<(String, String, String)> = call
        .services
        .regions
        .provider_regions()
        .filter(|r| call.federated() || r.name == call.region.name)
        .flat_map(|r| {
            r.zones
                .iter()
                .enumerate()
                .map(move |(i, z)| (z.clone(), r.name.clone(), zone_id(&r.name, i)))
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
            x.set("availabilityZoneInfo", &zones, |x, (zone, region, id)| {
                x.leaf("zoneName", zone);
                x.leaf("zoneId", id);
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
