//! `DescribeInstanceAttribute`: one attribute of one instance, as EC2 answers it. Tools ask
//! after every launch (Ansible's `ec2_instance` reads `instanceType`,
//! `disableApiTermination`, `ebsOptimized` and `groupSet`). Skyport's answers are what is
//! true of its instances: termination and stop are never disabled, no instance is
//! EBS-optimised or in a security group, and `userData` is what the instance was created
//! with.

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
                // kernel, ramdisk, sriovNetSupport: none; the sets: empty.
                other => x.elem(other, |_| {}),
            }
        },
    ))
}
