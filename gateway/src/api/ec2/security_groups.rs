//! `DescribeSecurityGroups`: each provider region's default VPC has its default security
//! group, and nothing else. Skyport filters no traffic itself (a provider's network does
//! what it does), so the group says so: every protocol in and out, from and to anywhere.
//! Groups cannot be created or changed through this API.

use super::model::owner_id;
use super::networks::{is_id, security_group_id, RegionNetwork};
use super::vpcs::known_filters;
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

const GROUP_FILTERS: &[&str] = &[
    "group-id",
    "group-name",
    "vpc-id",
    "owner-id",
    "description",
    "tag-key",
    "tag-value",
];

/// What the default group of every VPC is called, and says of itself.
const NAME: &str = "default";
const DESCRIPTION: &str = "default VPC security group";

pub(super) async fn describe_security_groups(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let filters = known_filters(call, GROUP_FILTERS, "security groups")?;
    let ids = call.params.list("GroupId");
    if let Some(bad) = ids.iter().find(|id| !is_id("sg", id)) {
        return Err(Ec2Error::bad_request(
            "InvalidGroupId.Malformed",
            format!("Invalid id: \"{bad}\" (expecting \"sg-...\")"),
        ));
    }
    let names = call.params.list("GroupName");
    let owner = owner_id(&call.ctx.tenant);
    let groups: Vec<(String, String)> = call
        .services
        .regions
        .provider_regions()
        .filter(|r| call.federated() || r.name == call.region.name)
        .filter_map(RegionNetwork::of)
        .map(|network| {
            let vpc = network.vpc();
            (security_group_id(vpc.region), vpc.id)
        })
        .collect();
    for id in &ids {
        if !groups.iter().any(|(g, _)| g == id) {
            return Err(Ec2Error::bad_request(
                "InvalidGroup.NotFound",
                format!("The security group '{id}' does not exist"),
            ));
        }
    }
    if let Some(name) = names.iter().find(|n| *n != NAME) {
        return Err(Ec2Error::bad_request(
            "InvalidGroup.NotFound",
            format!("The security group '{name}' does not exist in default VPC"),
        ));
    }
    let selected: Vec<&(String, String)> = groups
        .iter()
        .filter(|(id, vpc)| {
            (ids.is_empty() || ids.contains(id))
                && filters.iter().all(|f| match f.name.as_str() {
                    "group-id" => f.matches(id),
                    "group-name" => f.matches(NAME),
                    "vpc-id" => f.matches(vpc),
                    "owner-id" => f.matches(&owner),
                    "description" => f.matches(DESCRIPTION),
                    // No group carries tags.
                    _ => false,
                })
        })
        .collect();
    Ok(Xml::response(
        "DescribeSecurityGroups",
        call.request_id,
        |x| {
            x.set("securityGroupInfo", &selected, |x, (id, vpc)| {
                x.leaf("ownerId", &owner);
                x.leaf("groupId", id);
                x.leaf("groupName", NAME);
                x.leaf("groupDescription", DESCRIPTION);
                x.leaf("vpcId", vpc);
                for set in ["ipPermissions", "ipPermissionsEgress"] {
                    x.set(set, [()], |x, ()| {
                        x.leaf("ipProtocol", "-1");
                        x.elem("groups", |_| {});
                        x.set("ipRanges", [()], |x, ()| x.leaf("cidrIp", "0.0.0.0/0"));
                        x.elem("ipv6Ranges", |_| {});
                        x.elem("prefixListIds", |_| {});
                    });
                }
            });
        },
    ))
}
