//! `ec2`: a Skyport provider plugin for any EC2-compatible endpoint (AWS itself, or a
//! compatible cloud), speaking the EC2 Query API `2016-11-15` signed with SigV4.
//!
//! Skyport's generic names are mapped here: instance types (`sp.micro` -> `t3.micro`)
//! and images (`skyport-tiny` -> `ami-...`) come from the configuration; the endpoint's
//! ids never leave the plugin except as the opaque `id` the gateway stores. The logic is
//! `skyport-ec2-core`'s, shared with the `eucalyptus` plugin.
#![forbid(unsafe_code)]

use std::sync::Arc;

use serde_json::{json, Value};
use skyport_ec2_core::client::Signing;
use skyport_ec2_core::{Dialect, Provider, OPS};
use skyport_plugin_api::{export_plugin, Description, Host, OpCall, Plugin, PluginError};

/// The EC2 dialect: `/`, `2016-11-15`, SigV4, Skyport region `aws-<region>`.
pub fn dialect() -> Dialect {
    Dialect {
        name: "ec2",
        path: "/",
        api_version: "2016-11-15",
        signing: Signing::V4,
        region: "us-east-1",
        skyport_region: |region| format!("aws-{region}"),
        image_prefixes: &["ami-"],
    }
}

/// The plugin.
pub struct Ec2Plugin(Provider);

impl Plugin for Ec2Plugin {
    fn describe() -> Description {
        Description {
            name: "ec2".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "provider".into(),
            summary: "any EC2-compatible endpoint, over the EC2 Query API with SigV4".into(),
            ops: OPS.map(String::from).to_vec(),
            config_schema: json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["endpoint", "region", "credentials", "instance_types", "images"],
                "properties": {
                    "endpoint": {"type": "string"},
                    "region": {"type": "string"},
                    "skyport_region": {"type": "string"},
                    "zones": {"type": "array", "items": {"type": "string"}},
                    "credentials": skyport_ec2_core::provider::credentials_schema(),
                    "instance_types": {"type": "object", "additionalProperties": {"type": "string"}},
                    "images": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }),
        }
    }

    fn init(config: Value, _host: Host) -> Result<Self, PluginError> {
        Provider::new(config, dialect()).map(Self)
    }

    async fn call(self: Arc<Self>, call: OpCall) -> Result<Value, PluginError> {
        self.0.call(call).await
    }
}

export_plugin!(Ec2Plugin, name = "ec2", kind = Provider);
