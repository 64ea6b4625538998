//! `DescribeVolumes`: each instance's root volume. On Skyport a disk is part of its
//! instance (created, stopped and deleted with it), so a volume is shown attached to its
//! instance as `/dev/vda`, `in-use` while the instance exists; providers report no disk
//! size yet, so `size` is the 1 GiB every `skyport-tiny` disk has. Volumes cannot be
//! created, attached or deleted through this API.

use skyport_domain::inventory::InstanceRecord;

use super::model::{region_instances, zone_of};
use super::networks::{is_id, volume_id};
use super::vpcs::known_filters;
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

/// What every root volume says of its size, GiB.
const ROOT_VOLUME_GIB: &str = "1";

const VOLUME_FILTERS: &[&str] = &[
    "volume-id",
    "attachment.instance-id",
    "attachment.device",
    "attachment.status",
    "attachment.delete-on-termination",
    "availability-zone",
    "status",
    "size",
    "volume-type",
    "encrypted",
    "create-time",
    "multi-attach-enabled",
];

pub(super) async fn describe_volumes(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let filters = known_filters(call, VOLUME_FILTERS, "volumes")?;
    let wanted = call.params.list("VolumeId");
    if let Some(bad) = wanted.iter().find(|id| !is_id("vol", id)) {
        return Err(Ec2Error::bad_request(
            "InvalidVolumeID.Malformed",
            format!("Invalid id: \"{bad}\" (expecting \"vol-...\")"),
        ));
    }
    let records: Vec<InstanceRecord> = region_instances(call)
        .await?
        .into_iter()
        .filter(|r| r.state != "terminated")
        .collect();
    if let Some(missing) = wanted
        .iter()
        .find(|w| !records.iter().any(|r| volume_id(&r.id) == **w))
    {
        return Err(Ec2Error::bad_request(
            "InvalidVolume.NotFound",
            format!("The volume '{missing}' does not exist."),
        ));
    }
    let mut found = Vec::new();
    for record in &records {
        let id = volume_id(&record.id);
        let zone = zone_of(call, record);
        let value = |name: &str| -> &str {
            match name {
                "volume-id" => &id,
                "attachment.instance-id" => &record.id,
                "attachment.device" => "/dev/vda",
                "attachment.status" => "attached",
                "attachment.delete-on-termination" => "true",
                "availability-zone" => &zone,
                "status" => "in-use",
                "size" => ROOT_VOLUME_GIB,
                "volume-type" => "standard",
                "encrypted" | "multi-attach-enabled" => "false",
                "create-time" => &record.created_at,
                _ => "",
            }
        };
        if (wanted.is_empty() || wanted.contains(&id))
            && filters.iter().all(|f| f.matches(value(&f.name)))
        {
            found.push((record, id, zone));
        }
    }
    Ok(Xml::response("DescribeVolumes", call.request_id, |x| {
        x.set("volumeSet", &found, |x, (record, id, zone)| {
            x.leaf("volumeId", id);
            x.leaf("size", ROOT_VOLUME_GIB);
            x.leaf("snapshotId", "");
            x.leaf("availabilityZone", zone);
            x.leaf("status", "in-use");
            x.leaf("createTime", &record.created_at);
            x.set("attachmentSet", [()], |x, ()| {
                x.leaf("volumeId", id);
                x.leaf("instanceId", &record.id);
                x.leaf("device", "/dev/vda");
                x.leaf("status", "attached");
                x.leaf("attachTime", &record.created_at);
                x.leaf("deleteOnTermination", "true");
            });
            x.leaf("volumeType", "standard");
            x.leaf("encrypted", "false");
            x.leaf("multiAttachEnabled", "false");
        });
    }))
}
