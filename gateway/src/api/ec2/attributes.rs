//! `DescribeInstanceAttribute`: one attribute of one instance, as EC2 answers it. Tools ask
//! after every launch (Ansible's `ec2_instance` reads `instanceType`,
//! `disableApiTermination`, `ebsOptimized` and `groupSet`). Skyport's answers are what is
//! true of its instances: termination and stop are never disabled, no instance is
//! EBS-optimised, an instance on its region's network is in that VPC's default security
//! group, and `userData` is what the instance was created with.

use super::model::named_instances;
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

/// Every attribute EC2 defines, in its wire names.
const ATTRIBUTES: &[&str] = &[
    "instanceType",
    "kernel",
    "ramdisk",
    "userData",
    "disableApiTermination",
    "disableApiStop",
    "instanceInitiatedShutdownBehavior",
    "rootDeviceName",
    "blockDeviceMapping",
    "productCodes",
    "sourceDestCheck",
    "groupSet",
    "ebsOptimized",
    "sriovNetSupport",
    "enaSupport",
    "enclaveOptions",
];

pub(super) async fn describe_instance_attribute(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let id = call.params.required("InstanceId")?.to_string();
    let attribute = call.params.required("Attribute")?.to_string();
    if !ATTRIBUTES.contains(&attribute.as_str()) {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({attribute}) for parameter attribute is invalid. Unknown attribute."
        )));
    }
    let record = named_instances(call, std::slice::from_ref(&id))
        .await?
        .remove(0);
    Ok(Xml::response(
        "DescribeInstanceAttribute",
        call.request_id,
        |x| {
            x.leaf("instanceId", &record.id);
            let value = |x: &mut Xml, name: &str, value: &str| {
                x.elem(name, |x| x.leaf("value", value));
            };
            match attribute.as_str() {
                "instanceType" => value(x, "instanceType", &record.instance_type),
                "userData" => match &record.user_data {
                    Some(data) => value(x, "userData", data),
                    None => x.elem("userData", |_| {}),
                },
                "disableApiTermination" | "disableApiStop" | "ebsOptimized" | "enaSupport" => {
                    value(x, &attribute, "false")
                }
                "sourceDestCheck" => value(x, "sourceDestCheck", "true"),
                "instanceInitiatedShutdownBehavior" => value(x, &attribute, "stop"),
                "rootDeviceName" => value(x, "rootDeviceName", "/dev/vda"),
                "enclaveOptions" => x.elem("enclaveOptions", |x| x.leaf("enabled", "false")),
                "groupSet" => super::model::write_groups(
                    x,
                    &record,
                    super::model::placed(call, &record).is_some(),
                ),
                // kernel, ramdisk, sriovNetSupport: none; the sets: empty.
                other => x.elem(other, |_| {}),
            }
        },
    ))
}

/// Every image attribute EC2 defines, in its wire names.
const IMAGE_ATTRIBUTES: &[&str] = &[
    "description",
    "kernel",
    "ramdisk",
    "launchPermission",
    "productCodes",
    "blockDeviceMapping",
    "sriovNetSupport",
    "bootMode",
    "tpmSupport",
    "uefiData",
    "lastLaunchedTime",
    "imdsSupport",
    "deregistrationProtection",
];

/// `DescribeImageAttribute`: an image Skyport offers in this region. Every image is
/// public to every tenant (`launchPermission`: group `all`) and says nothing else of
/// itself.
pub(super) async fn describe_image_attribute(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let ami = call.params.required("ImageId")?.to_string();
    let attribute = call.params.required("Attribute")?.to_string();
    if !IMAGE_ATTRIBUTES.contains(&attribute.as_str()) {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({attribute}) for parameter attribute is invalid. Unknown attribute."
        )));
    }
    let images = call.services.images.list(call.ctx, call.request_id).await?;
    let offered = images.iter().any(|i| {
        super::model::image_id(&i.name) == ami && (call.federated() || i.region == call.region.name)
    });
    if !offered {
        return Err(Ec2Error::bad_request(
            if super::model::is_image_id(&ami) {
                "InvalidAMIID.NotFound"
            } else {
                "InvalidAMIID.Malformed"
            },
            format!("The image id '[{ami}]' does not exist"),
        ));
    }
    Ok(Xml::response(
        "DescribeImageAttribute",
        call.request_id,
        |x| {
            x.leaf("imageId", &ami);
            match attribute.as_str() {
                "launchPermission" => {
                    x.set("launchPermission", [()], |x, ()| x.leaf("group", "all"))
                }
                "bootMode" => x.elem("bootMode", |x| x.leaf("value", "legacy-bios")),
                "deregistrationProtection" => {
                    x.elem("deregistrationProtection", |x| x.leaf("value", "disabled"))
                }
                other => x.elem(other, |_| {}),
            }
        },
    ))
}

/// `DescribeVpcAttribute`: a default VPC's DNS settings. Its network resolves names
/// (`enableDnsSupport`) and names its instances (`enableDnsHostnames`), as a default VPC's
/// does; no usage metrics are kept.
pub(super) async fn describe_vpc_attribute(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let vpc = call.params.required("VpcId")?.to_string();
    let attribute = call.params.required("Attribute")?.to_string();
    let value = match attribute.as_str() {
        "enableDnsSupport" | "enableDnsHostnames" => "true",
        "enableNetworkAddressUsageMetrics" => "false",
        other => {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({other}) for parameter attribute is invalid. Unknown attribute."
            )))
        }
    };
    let known = call
        .services
        .regions
        .provider_regions()
        .filter(|r| call.federated() || r.name == call.region.name)
        .filter_map(super::networks::RegionNetwork::of)
        .any(|network| network.vpc().id == vpc);
    if !known {
        return Err(Ec2Error::bad_request(
            "InvalidVpcID.NotFound",
            format!("The vpc ID '{vpc}' does not exist"),
        ));
    }
    Ok(Xml::response(
        "DescribeVpcAttribute",
        call.request_id,
        |x| {
            x.leaf("vpcId", &vpc);
            x.elem(&attribute, |x| x.leaf("value", value));
        },
    ))
}
