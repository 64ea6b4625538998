//! The provider logic both EC2 dialects share: configuration, credentials, the mapping of
//! Skyport's names (instance types, images, zones) to the cloud's, and every provider op
//! on top of [`Ec2Client`]. A dialect ([`Dialect`]) is data: path, API version, signing,
//! default region, and the image-id prefix the cloud uses.
//!
//! Every instance view carries the addresses the cloud reports for it (see
//! [`crate::network`]), `regions@1` the cloud's default VPC and its default subnets, and a
//! create hands the cloud the tenant's user data and SSH key (imported as the cloud's own
//! key pair).

use std::sync::Mutex;
use std::time::Instant;

use base64::Engine;
use serde_json::{json, Value};
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::ops::provider::{CreateInstance, FindInstance, MAX_USER_DATA_BYTES};
use skyport_plugin_api::ops::Region;
use skyport_plugin_api::{ops, OpCall, PluginError};

use crate::client::{CallError, Ec2Client, Signing};
use crate::network::{self, ZoneMap};
use crate::xml::Element;

/// The most tags EC2 keeps on one resource.
const EC2_MAX_TAGS: usize = 50;

mod config;
mod region_network;

pub use config::{credentials_schema, CredentialSource, ProviderConfig};
use config::{skyport_region, skyport_zones};
use region_network::RegionNetwork;

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

/// Whether the cloud refused a call for good (it answered, with a client error other than
/// throttling: an action it does not serve, say), rather than failing to answer.
fn refuses(e: &CallError) -> bool {
    match e {
        CallError::Remote(remote) => {
            remote.status < 500
                && !matches!(
                    remote.code.as_str(),
                    "RequestLimitExceeded" | "Throttling" | "ThrottlingException"
                )
        }
        CallError::Transport(_) => false,
    }
}

/// Checks a create's user data: base64, at most [`MAX_USER_DATA_BYTES`] once decoded.
fn check_user_data(user_data: &str) -> Result<(), PluginError> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(user_data)
        .map_err(|_| err(error_code::INVALID_INPUT, "user_data is not base64"))?;
    if decoded.len() > MAX_USER_DATA_BYTES {
        return Err(err(
            error_code::INVALID_INPUT,
            format!("user_data is larger than {MAX_USER_DATA_BYTES} bytes"),
        ));
    }
    Ok(())
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
    /// The region's Skyport zones and how the cloud's zones map to them.
    zones: ZoneMap,
    /// The last answer about the region's network, and when it was had.
    region_network: Mutex<Option<(Instant, RegionNetwork)>>,
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
        let cloud_region = config.region.as_deref().unwrap_or(dialect.region);
        let skyport_region = skyport_region(&config, &dialect);
        let zones = ZoneMap::new(
            skyport_zones(&config, &skyport_region),
            &config.clusters,
            cloud_region,
            &skyport_region,
        );
        Ok(Self {
            config,
            dialect,
            client,
            zones,
            region_network: Mutex::new(None),
        })
    }

    fn skyport_region(&self) -> String {
        skyport_region(&self.config, &self.dialect)
    }

    fn zones(&self) -> Vec<String> {
        self.zones.zones().to_vec()
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

    /// `{id, state, network}` of an instance item (an `InstanceView`): the addresses as
    /// the cloud reports them, none once the instance is terminated.
    fn view(&self, item: &Element) -> Value {
        let mut view = json!({
            "id": item.text_at("instanceId"),
            "state": item.text_at("instanceState/name"),
        });
        if let Some(network) = network::instance_network(item, &self.zones) {
            view["network"] = json!(network);
        }
        view
    }

    /// The instance item of `id` in a `DescribeInstances` reply.
    async fn describe_item(&self, id: &str) -> Result<Element, PluginError> {
        let reply = self
            .ec2("DescribeInstances", &[("InstanceId.1", id)])
            .await?;
        let found = reply
            .items("reservationSet")
            .flat_map(|r| r.items("instancesSet"))
            .find(|i| i.text_at("instanceId") == Some(id))
            .cloned();
        found.ok_or_else(|| {
            err(
                error_code::NOT_FOUND,
                "the instance does not exist at the provider",
            )
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
            .map(|item| self.view(item));
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
        if let Some(user_data) = &p.user_data {
            check_user_data(user_data)?;
        }
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
        // The cloud's key pairs are its own: the tenant's key is imported there first. EC2
        // launches an instance with one key pair at most (RunInstances takes a single
        // KeyName), so only the first key is authorised; any others are not passed on.
        let key_name = match p.ssh_public_keys.first() {
            Some(key) => Some(self.import_key(key).await?),
            None => None,
        };
        if p.ssh_public_keys.len() > 1 {
            log::info!(
                "{}: {} SSH keys given for {}; EC2 takes one key pair, only the first is used",
                self.dialect.name,
                p.ssh_public_keys.len(),
                p.skyport_id
            );
        }
        if let Some(key_name) = &key_name {
            run.push(("KeyName", key_name.as_str()));
        }
        // Already base64, as RunInstances wants it.
        if let Some(user_data) = &p.user_data {
            run.push(("UserData", user_data.as_str()));
        }
        let reply = self.ec2("RunInstances", &run).await?;
        let item = reply
            .items("instancesSet")
            .next()
            .ok_or_else(|| err(error_code::UNAVAILABLE, "the provider launched nothing"))?;
        Ok(self.view(item))
    }

    /// Imports the OpenSSH public key `key` as one of the cloud's key pairs and returns
    /// its name there ([`network::key_pair_name`]); a key imported before (the cloud
    /// answers `InvalidKeyPair.Duplicate`) is simply used again.
    async fn import_key(&self, key: &str) -> Result<String, PluginError> {
        let line = key.trim();
        if line.is_empty() || line.contains(['\n', '\r']) {
            return Err(err(
                error_code::INVALID_INPUT,
                "an SSH public key is one non-empty line",
            ));
        }
        let name = network::key_pair_name(line);
        let material = base64::engine::general_purpose::STANDARD.encode(line);
        let params = [
            ("KeyName".to_string(), name.clone()),
            ("PublicKeyMaterial".to_string(), material),
        ];
        match self.client.try_call("ImportKeyPair", &params).await {
            Ok(_) => Ok(name),
            Err(CallError::Remote(remote)) if remote.code == "InvalidKeyPair.Duplicate" => Ok(name),
            Err(e) => {
                log::warn!(
                    "{}: importing key pair {name} failed: {e:?}",
                    self.dialect.name
                );
                Err(e.to_plugin_error("ImportKeyPair"))
            }
        }
    }

    async fn describe(&self, id: &str) -> Result<Value, PluginError> {
        let item = self.describe_item(id).await?;
        Ok(self.view(&item))
    }

    async fn change(&self, action: &str, id: &str) -> Result<Value, PluginError> {
        let reply = self.ec2(action, &[("InstanceId.1", id)]).await?;
        let state = reply
            .items("instancesSet")
            .next()
            .and_then(|i| i.text_at("currentState/name"))
            .map(str::to_owned);
        let Some(state) = state else {
            // RebootInstances answers only `return`; the state is unchanged.
            return self.describe(id).await;
        };
        let mut view = json!({"id": id, "state": state});
        if state == "terminated" {
            return Ok(view);
        }
        // The state change answers no addresses: they are read back. The change is done
        // either way, so a failed read answers the new state without them.
        match self.describe_item(id).await {
            Ok(item) => {
                if let Some(network) = network::instance_network(&item, &self.zones) {
                    view["network"] = json!(network);
                }
            }
            Err(e) => log::warn!(
                "{}: {action} done, but the addresses could not be read back: {}",
                self.dialect.name,
                e.message
            ),
        }
        Ok(view)
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
                out.push(json!({
                    "id": item.text_at("instanceId"),
                    "state": item.text_at("instanceState/name"),
                    "region": self.skyport_region(),
                }));
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
                notes: Vec::new(),
            },
            Err(e) => ops::Health {
                healthy: false,
                reason: Some(e.message.to_string()),
                notes: Vec::new(),
            },
        }
    }

    /// Serves one op call.
    pub async fn call(&self, call: OpCall) -> Result<Value, PluginError> {
        let p = &call.params;
        match (call.op.as_str(), call.version) {
            (ops::HEALTH, 1) => Ok(serde_json::to_value(self.health().await).unwrap_or_default()),
            (ops::REGIONS, 1) => {
                let network = self.region_network().await;
                let region = Region {
                    name: self.skyport_region(),
                    zones: self.zones(),
                    cidr: network.cidr,
                    subnets: network.subnets,
                };
                Ok(json!([region]))
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
mod tests;
