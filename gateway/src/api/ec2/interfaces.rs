//! `DescribeNetworkInterfaces`: each instance's one network interface, the one
//! `DescribeInstances` shows in its `networkInterfaceSet` (same id, addresses, subnet and
//! VPC), described on its own. Interfaces exist while their instance has addresses; they
//! cannot be created or moved through this API.

use super::model::{owner_id, placed, region_instances, zone_of};
use super::networks::{interface_id, is_id};
use super::vpcs::known_filters;
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

const INTERFACE_FILTERS: &[&str] = &[
    "network-interface-id",
    "attachment.instance-id",
    "attachment.status",
    "availability-zone",
    "mac-address",
    "private-ip-address",
    "addresses.private-ip-address",
    "association.public-ip",
    "subnet-id",
    "vpc-id",
    "status",
    "owner-id",
    "interface-type",
];

pub(super) async fn describe_network_interfaces(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let filters = known_filters(call, INTERFACE_FILTERS, "network interfaces")?;
    let wanted = call.params.list("NetworkInterfaceId");
    if let Some(bad) = wanted.iter().find(|id| !is_id("eni", id)) {
        return Err(Ec2Error::bad_request(
            "InvalidNetworkInterfaceID.Malformed",
            format!("Invalid id: \"{bad}\" (expecting \"eni-...\")"),
        ));
    }
    let owner = owner_id(&call.ctx.tenant);
    let records = region_instances(call).await?;
    let mut found = Vec::new();
    for record in &records {
        let Some((place, network)) = placed(call, record) else {
            continue;
        };
        let id = interface_id(&record.id);
        let zone = zone_of(call, record);
        let value = |name: &str| -> Option<&str> {
            Some(match name {
                "network-interface-id" => &id,
                "attachment.instance-id" => &record.id,
                "attachment.status" => "attached",
                "availability-zone" => &zone,
                "mac-address" => network.mac.as_deref()?,
                "private-ip-address" | "addresses.private-ip-address" => {
                    network.private_ip.as_deref()?
                }
                "association.public-ip" => network.public_ip.as_deref()?,
                "subnet-id" => place.subnet_id.as_deref()?,
                "vpc-id" => &place.vpc_id,
                "status" => "in-use",
                "owner-id" => &owner,
                "interface-type" => "interface",
                _ => return None,
            })
        };
        let selected = (wanted.is_empty() || wanted.contains(&id))
            && filters
                .iter()
                .all(|f| value(&f.name).is_some_and(|v| f.matches(v)));
        if selected {
            found.push((record, place, network, zone.clone()));
        }
    }
    if let Some(missing) = wanted.iter().find(|w| {
        !records
            .iter()
            .any(|r| interface_id(&r.id) == **w && placed(call, r).is_some())
    }) {
        return Err(Ec2Error::bad_request(
            "InvalidNetworkInterfaceID.NotFound",
            format!("The networkInterface ID '{missing}' does not exist"),
        ));
    }
    Ok(Xml::response(
        "DescribeNetworkInterfaces",
        call.request_id,
        |x| {
            x.set(
                "networkInterfaceSet",
                &found,
                |x, (record, place, network, zone)| {
                    super::model::write_interface(x, record, place, network, &owner, Some(zone))
                },
            );
        },
    ))
}
