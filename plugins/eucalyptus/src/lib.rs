//! `eucalyptus`: a Skyport provider plugin for a Eucalyptus-style private cloud, speaking
//! its EC2 dialect as euca2ools 3.x did: `http://<clc>:8773/services/compute` (the path is
//! configurable; `/services/Eucalyptus` on old clouds), API `2014-06-15` (configurable),
//! SigV2 (`HmacSHA256`) query signing, replies in any namespace, `emi-` image ids, and
//! clusters as availability zones. The logic is `skyport-ec2-core`'s, shared with `ec2`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use serde_json::{json, Value};
use skyport_ec2_core::client::Signing;
use skyport_ec2_core::{Dialect, Provider, OPS};
use skyport_plugin_api::{export_plugin, Description, Host, OpCall, Plugin, PluginError};

/// The Eucalyptus dialect: `/services/compute`, `2014-06-15`, SigV2, Skyport region
/// `euca-1`, image ids `emi-` (kernels `eki-`, ramdisks `eri-`).
pub fn dialect() -> Dialect {
    Dialect {
        name: "eucalyptus",
        path: "/services/compute",
        api_version: "2014-06-15",
        signing: Signing::V2,
        region: "eucalyptus",
        skyport_region: |_| "euca-1".to_string(),
        image_prefixes: &["emi-"],
    }
}

/// The plugin.
pub struct EucalyptusPlugin(Provider);

impl Plugin for EucalyptusPlugin {
    fn describe() -> Description {
        Description {
            name: "eucalyptus".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "provider".into(),
            summary: "a Eucalyptus-style private cloud (EC2 Query API 2014-06-15, SigV2)".into(),
            ops: OPS.map(String::from).to_vec(),
            config_schema: json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["endpoint", "credentials", "instance_types", "images"],
                "properties": {
                    "endpoint": {"type": "string"},
                    "path": {"type": "string", "pattern": "^/"},
                    "api_version": {"type": "string"},
                    "skyport_region": {"type": "string"},
                    "clusters": {"type": "object", "additionalProperties": {"type": "string"}},
                    "credentials": skyport_ec2_core::provider::credentials_schema(),
                    "instance_types": {"type": "object", "additionalProperties": {"type": "string"}},
                    "images": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^emi-"}}
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

export_plugin!(EucalyptusPlugin, name = "eucalyptus", kind = Provider);
