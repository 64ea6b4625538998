//! The EC2 network describes: `DescribeVpcs` and `DescribeSubnets`, each provider region's
//! default VPC and its zones' default subnets ([`networks`](super::networks)), in the
//! request's region (every provider region in the federated one). Skyport's networks are
//! its providers'; they cannot be created, changed or tagged through this API.

use super::model::{owner_id, placed, region_instances};
use super::networks::{is_id, usable_addresses, RegionNetwork, Subnet, Vpc};
use super::query::Filter;
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

/// The VPC filters Skyport understands (besides `tag:<key>`).
const VPC_FILTERS: &[&str] = &[
    "vpc-id",
    "cidr",
    "cidr-block-association.cidr-block",
    "cidr-block-association.association-id",
    "cidr-block-association.state",
    "dhcp-options-id",
    "is-default",
    "isDefault",
    "owner-id",
    "state",
    "tag-key",
    "tag-value",
];

/// The subnet filters Skyport understands (besides `tag:<key>`); `cidr`/`cidrBlock`,
/// `availabilityZone` and `defaultForAz` are the other names EC2 accepts for three of them.
const SUBNET_FILTERS: &[&str] = &[
    "subnet-id",
    "subnet-arn",
    "vpc-id",
    "availability-zone",
    "availabilityZone",
    "availability-zone-id",
    "cidr-block",
    "cidr",
    "cidrBlock",
    "available-ip-address-count",
    "default-for-az",
    "defaultForAz",
    "map-public-ip-on-launch",
    "owner-id",
    "state",
    "tag-key",
    "tag-value",
];

/// The request's filters, every one of them known (`known` or `tag:<key>`): an unknown
/// filter is refused as `DescribeInstances` refuses one, naming those Skyport has.
pub(super) fn known_filters(
    call: &Ec2Call<'_>,
    known: &[&str],
    resources: &str,
) -> Result<Vec<Filter>, Ec2Error> {
    let filters = call.params.filters()?;
    if let Some(f) = filters
        .iter()
        .find(|f| !known.contains(&f.name.as_str()) && !f.name.starts_with("tag:"))
    {
        return Err(Ec2Error::invalid_value(format!(
            "The filter '{}' is invalid; Skyport filters {resources} by {} and tag:<key>",
            f.name,
            known.join(", ")
        )));
    }
    Ok(filters)
}

/// The networks of the request's region: its own, or every provider region's when it is
/// the federated one.
fn networks_in_scope<'a>(call: &'a Ec2Call<'_>) -> impl Iterator<Item = RegionNetwork<'a>> {
    let federated = call.federated();
    let region = call.region.name.as_str();
    call.services
        .regions
        .provider_regions()
        .filter(move |r| federated || r.name == region)
        .filter_map(RegionNetwork::of)
}

/// Refuses ids in `wanted` that are malformed (not `<prefix>-` + hex) or not among
/// `known`, in EC2's words for resources named `noun` (`vpc`, `subnet`).
fn check_named<'k>(
    wanted: &[String],
    known: impl Iterator<Item = &'k str> + Clone,
    prefix: &str,
    codes: (&'static str, &'static str),
    noun: &str,
) -> Result<(), Ec2Error> {
    let (malformed, not_found) = codes;
    if let Some(bad) = wanted.iter().find(|id| !is_id(prefix, id)) {
        return Err(Ec2Error::bad_request(
            malformed,
            format!("Invalid id: \"{bad}\" (expecting \"{prefix}-...\")"),
        ));
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|id| !known.clone().any(|k| k == id.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let many = missing.len() > 1;
    Err(Ec2Error::bad_request(
        not_found,
        format!(
            "The {noun} ID{} '{}' do{} not exist",
            if many { "s" } else { "" },
            missing.join(", "),
            if many { "" } else { "es" }
        ),
    ))
}

/// One page of `items` (in their order): `MaxResults` (5-1000) of them after the one whose
/// id is `NextToken`, and the token of the next page when more remain. A token that names
/// no item of `items` is refused.
fn page<T>(
    call: &Ec2Call<'_>,
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, Option<String>), Ec2Error> {
    let max = call.params.int("MaxResults", 5..=1000)?.unwrap_or(1000) as usize;
    let start = match call.params.get("NextToken") {
        Some(token) => {
            items
                .iter()
                .position(|item| id(item) == token)
                .ok_or_else(|| Ec2Error::invalid_value("Invalid NextToken"))?
                + 1
        }
        None => 0,
    };
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let next = if rest.len() > max {
        rest.truncate(max);
        rest.last().map(|item| id(item).to_string())
    } else {
        None
    };
    Ok((rest, next))
}

fn vpc_matches(f: &Filter, vpc: &Vpc<'_>, owner: &str) -> bool {
    let cidr = |f: &Filter| vpc.cidr.is_some_and(|c| f.matches(c));
    match f.name.as_str() {
        "vpc-id" => f.matches(&vpc.id),
        "cidr" | "cidr-block-association.cidr-block" => cidr(f),
        "cidr-block-association.association-id" => {
            vpc.cidr.is_some() && f.matches(&vpc.cidr_association_id())
        }
        "cidr-block-association.state" => vpc.cidr.is_some() && f.matches("associated"),
        "dhcp-options-id" => f.matches("default"),
        "is-default" | "isDefault" => f.matches("true"),
        "owner-id" => f.matches(owner),
        "state" => f.matches("available"),
        // Tag filters (any other name was refused): default VPCs carry no tags.
        _ => false,
    }
}

/// `DescribeVpcs`: `VpcId.N`, `Filter.N`, `MaxResults`, `NextToken`.
pub(super) async fn describe_vpcs(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("VpcId");
    let filters = known_filters(call, VPC_FILTERS, "VPCs")?;
    let owner = owner_id(&call.ctx.tenant);
    let vpcs: Vec<Vpc> = networks_in_scope(call).map(|n| n.vpc()).collect();
    check_named(
        &wanted,
        vpcs.iter().map(|v| v.id.as_str()),
        "vpc",
        ("InvalidVpcID.Malformed", "InvalidVpcID.NotFound"),
        "vpc",
    )?;
    let selected: Vec<Vpc> = vpcs
        .into_iter()
        .filter(|v| wanted.is_empty() || wanted.contains(&v.id))
        .filter(|v| filters.iter().all(|f| vpc_matches(f, v, &owner)))
        .collect();
    let (vpcs, next) = page(call, selected, |v| v.id.as_str())?;
    Ok(Xml::response("DescribeVpcs", call.request_id, |x| {
        x.set("vpcSet", &vpcs, |x, vpc| {
            x.leaf("vpcId", &vpc.id);
            x.leaf("ownerId", &owner);
            x.leaf("state", "available");
            if let Some(cidr) = vpc.cidr {
                x.leaf("cidrBlock", cidr);
                x.set("cidrBlockAssociationSet", [cidr], |x, cidr| {
                    x.leaf("associationId", vpc.cidr_association_id());
                    x.leaf("cidrBlock", cidr);
                    x.elem("cidrBlockState", |x| x.leaf("state", "associated"));
                });
            }
            // A VPC created without DHCP options has the id `default`.
            x.leaf("dhcpOptionsId", "default");
            x.leaf("instanceTenancy", "default");
            x.leaf("isDefault", "true");
        });
        x.opt("nextToken", next.as_deref());
    }))
}

/// A subnet with what `DescribeSubnets` says of it.
struct SubnetView<'r> {
    subnet: Subnet<'r>,
    /// Addresses left for instances: the network's usable ones less the tenant's
    /// instances holding one (unknown when the network is).
    available: Option<u64>,
}

fn subnet_matches(f: &Filter, s: &SubnetView<'_>, owner: &str) -> bool {
    let subnet = &s.subnet;
    match f.name.as_str() {
        "subnet-id" => f.matches(&subnet.id),
        "subnet-arn" => f.matches(&subnet.arn(owner)),
        "vpc-id" => f.matches(&subnet.vpc_id),
        "availability-zone" | "availabilityZone" => f.matches(subnet.zone),
        "availability-zone-id" => f.matches(&subnet.zone_id),
        "cidr-block" | "cidr" | "cidrBlock" => subnet.cidr.is_some_and(|c| f.matches(c)),
        "available-ip-address-count" => s.available.is_some_and(|n| f.matches(&n.to_string())),
        "default-for-az" | "defaultForAz" => f.matches("true"),
        "map-public-ip-on-launch" => f.matches("false"),
        "owner-id" => f.matches(owner),
        "state" => f.matches("available"),
        // Tag filters (any other name was refused): default subnets carry no tags.
        _ => false,
    }
}

/// `DescribeSubnets`: `SubnetId.N`, `Filter.N`, `MaxResults`, `NextToken`.
pub(super) async fn describe_subnets(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let wanted = call.params.list("SubnetId");
    let filters = known_filters(call, SUBNET_FILTERS, "subnets")?;
    let owner = owner_id(&call.ctx.tenant);
    let subnets: Vec<Subnet> = networks_in_scope(call).flat_map(|n| n.subnets()).collect();
    check_named(
        &wanted,
        subnets.iter().map(|s| s.id.as_str()),
        "subnet",
        ("InvalidSubnetID.Malformed", "InvalidSubnetID.NotFound"),
        "subnet",
    )?;
    // The tenant's instances holding an address, by subnet (as last recorded: a count,
    // not worth asking every provider for).
    let instances = region_instances(call).await?;
    let holding: Vec<String> = instances
        .iter()
        .filter_map(|r| placed(call, r))
        .filter(|(_, n)| n.private_ip.is_some())
        .filter_map(|(p, _)| p.subnet_id)
        .collect();
    let selected: Vec<SubnetView> = subnets
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&s.id))
        .map(|subnet| SubnetView {
            available: subnet.cidr.and_then(usable_addresses).map(|n| {
                let used = holding.iter().filter(|id| **id == subnet.id).count() as u64;
                n.saturating_sub(used)
            }),
            subnet,
        })
        .filter(|s| filters.iter().all(|f| subnet_matches(f, s, &owner)))
        .collect();
    let (subnets, next) = page(call, selected, |s| s.subnet.id.as_str())?;
    Ok(Xml::response("DescribeSubnets", call.request_id, |x| {
        x.set("subnetSet", &subnets, |x, s| {
            let subnet = &s.subnet;
            x.leaf("subnetId", &subnet.id);
            x.leaf("subnetArn", subnet.arn(&owner));
            x.leaf("state", "available");
            x.leaf("ownerId", &owner);
            x.leaf("vpcId", &subnet.vpc_id);
            x.opt("cidrBlock", subnet.cidr);
            x.elem("ipv6CidrBlockAssociationSet", |_| {});
            x.opt(
                "availableIpAddressCount",
                s.available.map(|n| n.to_string()),
            );
            x.leaf("availabilityZone", subnet.zone);
            x.leaf("availabilityZoneId", &subnet.zone_id);
            x.leaf("defaultForAz", "true");
            x.leaf("mapPublicIpOnLaunch", "false");
            x.leaf("assignIpv6AddressOnCreation", "false");
        });
        x.opt("nextToken", next.as_deref());
    }))
}
