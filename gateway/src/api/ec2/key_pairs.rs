//! The EC2 key pair actions: SSH key pairs per tenant (the private half of a created key
//! is returned once, never stored).

use base64::Engine;
use skyport_domain::operations::key_pairs::KeyType;

use super::xml::Xml;
use super::{Ec2Call, Ec2Error};

pub(super) async fn create(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let name = call.params.required("KeyName")?;
    let key_type = match call.params.get("KeyType").unwrap_or("rsa") {
        "rsa" => KeyType::Rsa,
        "ed25519" => KeyType::Ed25519,
        other => {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid value '{other}' for KeyType: rsa or ed25519"
            )))
        }
    };
    if let Some(format) = call.params.get("KeyFormat").filter(|f| *f != "pem") {
        return Err(Ec2Error::invalid_value(format!(
            "Skyport returns private keys as pem only, not '{format}'"
        )));
    }
    let (pair, private) = call
        .services
        .key_pairs
        .create(&call.ctx.tenant, name, key_type)
        .await?;
    Ok(Xml::response("CreateKeyPair", call.request_id, |x| {
        x.leaf("keyName", &pair.name);
        x.leaf("keyFingerprint", &pair.fingerprint);
        x.leaf("keyMaterial", &private);
        x.leaf("keyPairId", &pair.id);
    }))
}

pub(super) async fn import(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let name = call.params.required("KeyName")?;
    let material = call.params.required("PublicKeyMaterial")?;
    // SDKs send the key base64-encoded (a blob); a raw OpenSSH line is accepted too.
    let text = base64::engine::general_purpose::STANDARD
        .decode(material)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| material.to_string());
    let pair = call
        .services
        .key_pairs
        .import(&call.ctx.tenant, name, &text)
        .await?;
    Ok(Xml::response("ImportKeyPair", call.request_id, |x| {
        x.leaf("keyName", &pair.name);
        x.leaf("keyFingerprint", &pair.fingerprint);
        x.leaf("keyPairId", &pair.id);
    }))
}

pub(super) async fn describe(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let names = call.params.list("KeyName");
    let ids = call.params.list("KeyPairId");
    let filters = call.params.filters()?;
    let include_public = call.params.flag("IncludePublicKey", false)?;
    let all = call.services.key_pairs.list(&call.ctx.tenant).await?;
    for n in &names {
        if !all.iter().any(|k| &k.name == n) {
            return Err(Ec2Error::bad_request(
                "InvalidKeyPair.NotFound",
                format!("The key pair '{n}' does not exist"),
            ));
        }
    }
    for i in &ids {
        if !all.iter().any(|k| &k.id == i) {
            return Err(Ec2Error::bad_request(
                "InvalidKeyPair.NotFound",
                format!("The key pair ID '{i}' does not exist"),
            ));
        }
    }
    let mut selected = Vec::new();
    for k in all {
        if (!names.is_empty() || !ids.is_empty())
            && !names.contains(&k.name)
            && !ids.contains(&k.id)
        {
            continue;
        }
        let mut keep = true;
        for f in &filters {
            keep = keep
                && match f.name.as_str() {
                    "key-name" => f.matches(&k.name),
                    "key-pair-id" => f.matches(&k.id),
                    "fingerprint" => f.matches(&k.fingerprint),
                    "key-type" => f.matches(&k.key_type),
                    other => {
                        return Err(Ec2Error::invalid_value(format!(
                            "The filter '{other}' is invalid"
                        )))
                    }
                };
        }
        if keep {
            selected.push(k);
        }
    }
    Ok(Xml::response("DescribeKeyPairs", call.request_id, |x| {
        x.set("keySet", &selected, |x, k| {
            x.leaf("keyPairId", &k.id);
            x.leaf("keyName", &k.name);
            x.leaf("keyFingerprint", &k.fingerprint);
            x.leaf("keyType", &k.key_type);
            x.leaf("createTime", &k.created_at);
            if include_public {
                x.leaf("publicKey", &k.public_key);
            }
        });
    }))
}

pub(super) async fn delete(call: &Ec2Call<'_>) -> Result<String, Ec2Error> {
    let key = call
        .params
        .get("KeyName")
        .or_else(|| call.params.get("KeyPairId"))
        .ok_or_else(|| Ec2Error::missing("KeyName"))?;
    // As on EC2, deleting a key pair that does not exist succeeds.
    call.services
        .key_pairs
        .delete(&call.ctx.tenant, key)
        .await?;
    Ok(Xml::response("DeleteKeyPair", call.request_id, |x| {
        x.leaf("return", "true")
    }))
}
