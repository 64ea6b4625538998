//! `DescribeAddresses`: Elastic IP addresses. Skyport allocates none (an instance's public
//! address, where its provider gives one, is its own, shown on the instance), so the
//! answer is always an empty set; naming an address or allocation is `NotFound`, as EC2
//! answers for one that does not exist. Tools that list nodes ask for it (Libcloud does).

use super::vpcs::known_filters;
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

/// The filters EC2 documents for addresses: accepted, and matching nothing.
const ADDRESS_FILTERS: &[&str] = &[
    "allocation-id",
    "association-id",
    "domain",
    "instance-id",
    "network-border-group",
    "network-interface-id",
    "network-interface-owner-id",
    "private-ip-address",
    "public-ip",
    "tag-key",
];

pub(super) async fn describe_addresses(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    known_filters(call, ADDRESS_FILTERS, "addresses")?;
    if let Some(ip) = call.params.list("PublicIp").first() {
        return Err(Ec2Error::bad_request(
            "InvalidAddress.NotFound",
            format!("Address '{ip}' not found."),
        ));
    }
    if let Some(id) = call.params.list("AllocationId").first() {
        return Err(Ec2Error::bad_request(
            "InvalidAllocationID.NotFound",
            format!("The allocation ID '{id}' does not exist"),
        ));
    }
    Ok(Xml::response("DescribeAddresses", call.request_id, |x| {
        x.elem("addressesSet", |_| {});
    }))
}
