//! The EC2 tag actions: only instances carry tags in Skyport.

use skyport_domain::inventory::InstanceRecord;

use super::errors::instance_error;
use super::model::{named_instances, region_instances};
use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

/// `ResourceId.N` of the tag actions: only instances carry tags in Skyport.
async fn tag_targets(call: &Ec2Call<'_>) -> Result<Vec<InstanceRecord>, Ec2Error> {
    let ids = call.params.list("ResourceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("ResourceId"));
    }
    if let Some(other) = ids.iter().find(|id| !id.starts_with("i-")) {
        return Err(Ec2Error::bad_request(
            "InvalidID",
            format!("The ID '{other}' is not valid: only instances carry tags here"),
        ));
    }
    named_instances(call, &ids).await
}

pub(super) async fn create_tags(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let targets = tag_targets(call).await?;
    let tags = call.params.tags("Tag");
    if tags.is_empty() {
        return Err(Ec2Error::missing("Tag.1.Key"));
    }
    let set: Vec<(String, String)> = tags
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    for (key, value) in &set {
        if key.starts_with("aws:") || key.is_empty() || key.len() > 128 || value.len() > 256 {
            return Err(Ec2Error::invalid_value(format!(
                "Tag key '{key}' is invalid: 1-128 characters, not starting with aws:; values at most 256"
            )));
        }
    }
    for record in targets {
        call.services
            .instances
            .change_tags(call.ctx, &record.id, &set, &[])
            .await
            .map_err(instance_error)?;
    }
    Ok(Xml::response("CreateTags", call.request_id, |x| {
        x.leaf("return", "true")
    }))
}

pub(super) async fn delete_tags(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let targets = tag_targets(call).await?;
    let named = call.params.tags("Tag");
    for record in targets {
        let remove: Vec<(String, Option<String>)> = if named.is_empty() {
            record.tags.keys().map(|k| (k.clone(), None)).collect()
        } else {
            named.clone()
        };
        call.services
            .instances
            .change_tags(call.ctx, &record.id, &[], &remove)
            .await
            .map_err(instance_error)?;
    }
    Ok(Xml::response("DeleteTags", call.request_id, |x| {
        x.leaf("return", "true")
    }))
}

pub(super) async fn describe_tags(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let filters = call.params.filters()?;
    let mut rows = Vec::new();
    for record in region_instances(call).await? {
        for (key, value) in &record.tags {
            let value = value.as_str().unwrap_or_default();
            let mut keep = true;
            for f in &filters {
                keep = keep
                    && match f.name.as_str() {
                        "resource-id" => f.matches(&record.id),
                        "resource-type" => f.matches("instance"),
                        "key" => f.matches(key),
                        "value" => f.matches(value),
                        other => {
                            return Err(Ec2Error::invalid_value(format!(
                                "The filter '{other}' is invalid"
                            )))
                        }
                    };
            }
            if keep {
                rows.push((record.id.clone(), key.clone(), value.to_string()));
            }
        }
    }
    Ok(Xml::response("DescribeTags", call.request_id, |x| {
        x.set("tagSet", &rows, |x, (id, key, value)| {
            x.leaf("resourceId", id);
            x.leaf("resourceType", "instance");
            x.leaf("key", key);
            x.leaf("value", value);
        });
    }))
}
