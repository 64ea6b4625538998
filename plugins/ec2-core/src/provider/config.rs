//! A provider's configuration (`[[plugins]] config = {...}`) and its credentials, never
//! inline: from a file (with profiles) or from environment variables it names.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::Dialect;
use crate::client::Secret;

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
pub(super) fn parse_credentials_file(text: &str, profile: &str) -> Option<Secret> {
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

/// The Skyport region a provider serves: the configured one, else the dialect's name for
/// the cloud's region.
pub(super) fn skyport_region(config: &ProviderConfig, dialect: &Dialect) -> String {
    config.skyport_region.clone().unwrap_or_else(|| {
        (dialect.skyport_region)(config.region.as_deref().unwrap_or(dialect.region))
    })
}

/// The Skyport zones of `skyport_region`: the clusters' zones, else the configured zones,
/// else `<skyport_region>a`.
pub(super) fn skyport_zones(config: &ProviderConfig, skyport_region: &str) -> Vec<String> {
    if !config.clusters.is_empty() {
        config.clusters.keys().cloned().collect()
    } else if config.zones.is_empty() {
        vec![format!("{skyport_region}a")]
    } else {
        config.zones.clone()
    }
}
