//! The provider logic both EC2 dialects share: configuration, credentials, the mapping of
//! Skyport's names (instance types, images, zones) to the cloud's, and every provider op
//! on top of [`Ec2Client`]. A dialect ([`Dialect`]) is data: path, API version, signing,
//! default region, and the image-id prefix the cloud uses.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::ops::provider::{CreateInstance, FindInstance};
use skyport_plugin_api::{ops, OpCall, PluginError};

use crate::client::{Ec2Client, Secret, Signing};
use crate::xml::Element;

/// The most tags EC2 keeps on one resource.
const EC2_MAX_TAGS: usize = 50;

/// What distinguishes one EC2 dialect from another.
#[derive(Debug, Clone)]
pub struct Dialect {
    /// Plugin name, for logs.
    pub name: &'static str,
    /// Service path (`/`, `/services/compute`); the configuration may override it.
    pub path: &'static str,
    /// API version requested; the configuration may override it.
    pub api_version: &'static str,
    /// Request signing.
    pub signing: Signing,
    /// The cloud's region name when the configuration gives none.
    pub region: &'static str,
    /// The Skyport region for a cloud region (`aws-us-east-1`, `euca-1`).
    pub skyport_region: fn(&str) -> String,
    /// Prefixes the cloud's image ids must carry (`ami-`; `emi-` on Eucalyptus).
    pub image_prefixes: &'static [&'static str],
}

/// The operations every EC2-dialect provider serves (schema version 1).
pub const OPS: [&str; 14] = [
    "health@1",
    "regions@1",
    "instance.create@1",
    "instance.find@1",
    "instance.get@1",
    "instance.list@1",
    "instance.start@1",
    "instance.stop@1",
    "instance.reboot@1",
    "instance.terminate@1",
    "instance.resize@1",
    "instance.console@1",
    "images.list@1",
    "inventory.list@1",
];

/// Configuration (`[[plugins]] config = {...}`), the union of what the dialects accept;
/// each plugin's JSON Schema admits only its own keys. Credentials are never inline: they
/// come from a file or from environment variables named here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Endpoint URL, e.g. `https://ec2.us-east-1.amazonaws.com`, `http://cloud:8773`.
    pub endpoint: String,
    /// Service path (default: the dialect's).
    pub path: Option<String>,
    /// API version (default: the dialect's).
    pub api_version: Option<String>,
    /// The cloud's region (signed into SigV4 requests), e.g. `us-east-1`.
    pub region: Option<String>,
    /// The Skyport region this provider serves (default: the dialect's name for it).
    pub skyport_region: Option<String>,
    /// Skyport zones of that region (default `<skyport_region>a`).
    #[serde(default)]
    pub zones: Vec<String>,
    /// Skyport zone -> the cloud's zone (a Eucalyptus cluster); the first is where
    /// instances are launched.
    #[serde(default)]
    pub clusters: BTreeMap<String, String>,
    /// Where the access key comes from.
    pub credentials: CredentialSource,
    /// Skyport instance type -> the endpoint's instance type.
    pub instance_types: BTreeMap<String, String>,
    /// Skyport image name -> the endpoint's image id.
    pub images: BTreeMap<String, String>,
}

/// Where the endpoint's access key is read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSource {
    /// An AWS shared-credentials file (`aws_access_key_id`, `aws_secret_access_key`).
    pub file: Option<String>,
    /// The profile in that file (default `default`).
    pub profile: Option<String>,
    /// Environment variable holding the access key id.
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
}

impl CredentialSource {
    /// Reads the key; the error names the source, never the secret.
    pub fn load(&self) -> Result<Secret, String> {
        match (
            &self.file,
            &self.access_key_id_env,
            &self.secret_access_key_env,
        ) {
            (Some(file), None, None) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("credentials file {file}: {e}"))?;
                let profile = self.profile.as_deref().unwrap_or("default");
                parse_credentials_file(&text, profile)
                    .ok_or_else(|| format!("credentials file {file}: profile [{profile}] lacks aws_access_key_id or aws_secret_access_key"))
            }
            (None, Some(id_var), Some(secret_var)) => {
                let read = |var: &str| {
                    std::env::var(var)
                        .map_err(|_| format!("environment variable {var} is not set"))
                };
                Ok(Secret {
                    access_key_id: read(id_var)?,
                    secret_access_key: read(secret_var)?,
                })
            }
            _ => Err("credentials: set either file (and profile) or both access_key_id_env and secret_access_key_env".into()),
        }
    }
}

/// The JSON Schema of `credentials`, the same in every dialect.
pub fn credentials_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "file": {"type": "string"},
            "profile": {"type": "string"},
            "access_key_id_env": {"type": "string"},
            "secret_access_key_env": {"type": "string"}
        }
    })
}

/// The `[profile]` section's key pair of an AWS shared-credentials file.
fn parse_credentials_file(text: &str, profile: &str) -> Option<Secret> {
    let mut in_profile = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            in_profile = line[1..line.len() - 1].trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    Some(Secret {
        access_key_id: id?,
        secret_access_key: secret?,
    })
}

fn err(code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, PluginError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| err(error_code::INVALID_INPUT, format!("missing \"{name}\"")))
}

/// One endpoint and region of some EC2 dialect.
pub struct Provider {
    config: ProviderConfig,
    dialect: Dialect,
    client: Ec2Client,
}

impl Provider {
    /// Checks `config` and builds the client; errors are `INVALID_CONFIG` and name the key.
    pub fn new(config: Value, dialect: Dialect) -> Result<Self, PluginError> {
        let config: ProviderConfig = serde_json::from_value(config)
            .map_err(|e| err(error_code::INVALID_CONFIG, e.to_string()))?;
        for (name, id) in &config.images {
            if !dialect.image_prefixes.iter().any(|p| id.starts_with(p)) {
                return Err(err(
                    error_code::INVALID_CONFIG,
                    format!(
                        "images.{name}: '{id}' is not an image id of this cloud (it starts with {})",
                        dialect.image_prefixes.join(" or ")
                    ),
                ));
            }
        }
        let secret = config
            .credentials
            .load()
            .map_err(|e| err(error_code::INVALID_CONFIG, e))?;
        let client = Ec2Client::new(
            &config.endpoint,
            config.path.as_deref().unwrap_or(dialect.path),
            config.region.as_deref().unwrap_or(dialect.region),
            secret,
            dialect.signing,
            config.api_version.as_deref().unwrap_or(dialect.api_version),
        )
        .map_err(|e| err(error_code::INVALID_CONFIG, e))?;
        log::info!(
            "{}: endpoint {} (API {}), {} instance types, {} images",
            dialect.name,
            config.endpoint,
            config.api_version.as_deref().unwrap_or(dialect.api_version),
            config.instance_types.len(),
            config.images.len()
        );
        Ok(Self {
            config,
            dialect,
            client,
        })
    }

    fn skyport_region(&self) -> String {
        self.config.skyport_region.clone().unwrap_or_else(|| {
            (self.dialect.skyport_region)(
                self.config.region.as_deref().unwrap_or(self.dialect.region),
            )
        })
    }

    fn zones(&self) -> Vec<String> {
        if !self.config.clusters.is_empty() {
            self.config.clusters.keys().cloned().collect()
        } else if self.config.zones.is_empty() {
            vec![format!("{}a", self.skyport_region())]
        } else {
            self.config.zones.clone()
        }
    }

    async fn ec2(&self, action: &str, params: &[(&str, &str)]) -> Result<Element, PluginError> {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.client
            .call(action, &owned)
            .await
            .map_err(|e| e.to_plugin_error(action))
    }

    fn native_type(&self, skyport: &str) -> Result<&str, PluginError> {
        self.config
            .instance_types
            .get(skyport)
            .map(String::as_str)
            .ok_or_else(|| {
                err(
                    error_code::INVALID_INPUT,
                    format!("this provider offers no '{skyport}' instance type"),
                )
            })
    }

    /// `{id, state}` of an instance item.
    fn view(item: &Element) -> Value {
        json!({
            "id": item.text_at("instanceId"),
            "state": item.text_at("instanceState/name"),
        })
    }

    /// The instance a create with idempotency key `key` (as tagged: its first 64
    /// characters) launched, if the cloud has it.
    async fn by_key(&self, key: &str) -> Result<Option<Value>, PluginError> {
        let key: String = key.chars().take(64).collect();
        let found = self
            .ec2(
                "DescribeInstances",
                &[
                    ("Filter.1.Name", "tag:skyport:idempotency-key"),
                    ("Filter.1.Value.1", key.as_str()),
                ],
            )
            .await?;
        let view = found
            .items("reservationSet")
            .flat_map(|r| r.items("instancesSet"))
            .next()
            .map(Self::view);
        Ok(view)
    }

    async fn create(&self, params: &Value) -> Result<Value, PluginError> {
        let p: CreateInstance = serde_json::from_value(params.clone())
            .map_err(|e| err(error_code::INVALID_INPUT, format!("instance.create: {e}")))?;
        let ami = self.config.images.get(&p.image).ok_or_else(|| {
            err(
                error_code::INVALID_INPUT,
                format!("this provider offers no image '{}'", p.image),
            )
        })?;
        let native = self.native_type(&p.instance_type)?;
        // A retried create answers the instance the first one launched: found by the
        // idempotency key it was tagged with (clouds that ignore EC2's ClientToken
        // included), and, on EC2 itself, also held by the ClientToken.
        let key: String = p.idempotency_key.chars().take(64).collect();
        if let Some(earlier) = self.by_key(&key).await? {
            return Ok(earlier);
        }
        // The instance carries Skyport's id, the key and the tenant's tags.
        let mut tags: Vec<(String, String)> = vec![
            ("skyport:managed".into(), "true".into()),
            ("skyport:id".into(), p.skyport_id.clone()),
            ("skyport:idempotency-key".into(), key.clone()),
        ];
        // The tenant's tags never stand in for Skyport's own (nor use the cloud's reserved
        // `aws:` prefix), and the whole set stays within EC2's 50 tags per resource.
        tags.extend(
            p.tags
                .iter()
                .filter(|(k, _)| !k.starts_with("skyport:") && !k.starts_with("aws:"))
                .take(EC2_MAX_TAGS - 3)
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let tag_params: Vec<(String, String)> = tags
            .iter()
            .enumerate()
            .flat_map(|(i, (k, v))| {
                [
                    (format!("TagSpecification.1.Tag.{}.Key", i + 1), k.clone()),
                    (format!("TagSpecification.1.Tag.{}.Value", i + 1), v.clone()),
                ]
            })
            .collect();
        let mut run = vec![
            ("ImageId", ami.as_str()),
            ("InstanceType", native),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("ClientToken", key.as_str()),
            ("TagSpecification.1.ResourceType", "instance"),
        ];
        run.extend(tag_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(cluster) = self.config.clusters.values().next() {
            run.push(("Placement.AvailabilityZone", cluster.as_str()));
        }
        let reply = self.ec2("RunInstances", &run).await?;
        let item = reply
            .items("instancesSet")
            .next()
            .ok_or_else(|| err(error_code::UNAVAILABLE, "the provider launched nothing"))?;
        Ok(Self::view(item))
    }

    async fn describe(&self, id: &str) -> Result<Value, PluginError> {
        let reply = self
            .ec2("DescribeInstances", &[("InstanceId.1", id)])
            .await?;
        let found = reply
            .items("reservationSet")
            .flat_map(|r| r.items("instancesSet"))
            .find(|i| i.text_at("instanceId") == Some(id))
            .map(Self::view);
        found.ok_or_else(|| {
            err(
                error_code::NOT_FOUND,
                "the instance does not exist at the provider",
            )
        })
    }

    async fn change(&self, action: &str, id: &str) -> Result<Value, PluginError> {
        let reply = self.ec2(action, &[("InstanceId.1", id)]).await?;
        let state = reply
            .items("instancesSet")
            .next()
            .and_then(|i| i.text_at("currentState/name"))
            .map(str::to_owned);
        match state {
            Some(state) => Ok(json!({"id": id, "state": state})),
            // RebootInstances answers only `return`; the state is unchanged.
            None => self.describe(id).await,
        }
    }

    async fn list(&self) -> Result<Value, PluginError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = vec![("MaxResults", "1000")];
            if let Some(t) = &token {
                params.push(("NextToken", t.as_str()));
            }
            let reply = self.ec2("DescribeInstances", &params).await?;
            for item in reply
                .items("reservationSet")
                .flat_map(|r| r.items("instancesSet"))
            {
                let mut view = Self::view(item);
                view["region"] = json!(self.skyport_region());
                out.push(view);
            }
            token = reply
                .text_at("nextToken")
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(Value::Array(out))
    }

    async fn console(&self, id: &str) -> Result<Value, PluginError> {
        let reply = self.ec2("GetConsoleOutput", &[("InstanceId", id)]).await?;
        let encoded = reply.text_at("output").unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default();
        Ok(json!({"output": String::from_utf8_lossy(&bytes)}))
    }

    async fn health(&self) -> ops::Health {
        match self.ec2("DescribeAvailabilityZones", &[]).await {
            Ok(_) => ops::Health {
                healthy: true,
                reason: None,
            },
            Err(e) => ops::Health {
                healthy: false,
                reason: Some(e.message.to_string()),
            },
        }
    }

    /// Serves one op call.
    pub async fn call(&self, call: OpCall) -> Result<Value, PluginError> {
        let p = &call.params;
        match (call.op.as_str(), call.version) {
            (ops::HEALTH, 1) => Ok(serde_json::to_value(self.health().await).unwrap_or_default()),
            (ops::REGIONS, 1) => {
                Ok(json!([{"name": self.skyport_region(), "zones": self.zones()}]))
            }
            ("instance.create", 1) => self.create(p).await,
            ("instance.find", 1) => {
                let find: FindInstance = serde_json::from_value(p.clone())
                    .map_err(|e| err(error_code::INVALID_INPUT, format!("instance.find: {e}")))?;
                Ok(self
                    .by_key(&find.idempotency_key)
                    .await?
                    .unwrap_or(Value::Null))
            }
            ("instance.get", 1) => self.describe(str_param(p, "id")?).await,
            ("instance.list", 1) | ("inventory.list", 1) => self.list().await,
            ("instance.start", 1) => self.change("StartInstances", str_param(p, "id")?).await,
            ("instance.stop", 1) => self.change("StopInstances", str_param(p, "id")?).await,
            ("instance.reboot", 1) => self.change("RebootInstances", str_param(p, "id")?).await,
            ("instance.terminate", 1) => {
                self.change("TerminateInstances", str_param(p, "id")?).await
            }
            ("instance.resize", 1) => {
                let id = str_param(p, "id")?;
                let native = self.native_type(str_param(p, "instance_type")?)?;
                self.ec2(
                    "ModifyInstanceAttribute",
                    &[("InstanceId", id), ("InstanceType.Value", native)],
                )
                .await?;
                self.describe(id).await
            }
            ("instance.console", 1) => self.console(str_param(p, "id")?).await,
            ("images.list", 1) => Ok(Value::Array(
                self.config
                    .images
                    .keys()
                    .map(|name| json!({"name": name}))
                    .collect(),
            )),
            _ => Err(call.unsupported()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_profiles() {
        let text = "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n\n[other]\naws_access_key_id=A2\naws_secret_access_key=S2\n";
        assert_eq!(
            parse_credentials_file(text, "default")
                .unwrap()
                .access_key_id,
            "A1"
        );
        assert_eq!(
            parse_credentials_file(text, "other")
                .unwrap()
                .secret_access_key,
            "S2"
        );
        assert!(parse_credentials_file(text, "missing").is_none());
        let both = CredentialSource {
            file: Some("x".into()),
            profile: None,
            access_key_id_env: Some("A".into()),
            secret_access_key_env: None,
        };
        assert!(both.load().is_err());
    }
}
