//! The host ops plugins may call once the gateway runs (see [`HostOps`]):
//!
//! - `inventory.instances@1` (metering plugins): what every provider reports running,
//!   joined with the inventory, so that usage can be reconciled by Skyport instance id and
//!   tenant. A provider that does not answer is listed with `ok: false`, and its instances
//!   must not be taken as gone.

use std::sync::Weak;

use serde_json::{json, Value};
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::PluginError;

use skyport_plugin_host::host::{HostOpFuture, HostOps};

use super::sync::InventorySync;

/// The gateway's host ops; holds the inventory sync weakly, so that the plugin registry
/// (which holds these ops) and the services (which hold the registry) form no cycle.
pub struct GatewayHostOps(pub Weak<InventorySync>);

impl HostOps for GatewayHostOps {
    fn call(&self, caller: &str, op: &str, version: u32, _params: Value) -> Option<HostOpFuture> {
        match (op, version) {
            ("inventory.instances", 1) => {
                let sync = self.0.clone();
                let caller = caller.to_string();
                Some(Box::pin(async move {
                    let sync = sync.upgrade().ok_or_else(|| {
                        PluginError::new(error_code::UNAVAILABLE, "the gateway is stopping")
                    })?;
                    if !sync.is_metering(&caller) {
                        return Err(PluginError::new(
                            error_code::UNSUPPORTED_OP,
                            "inventory.instances@1 is served to metering plugins only",
                        ));
                    }
                    provider_instances(&sync).await
                }))
            }
            _ => None,
        }
    }
}

/// Every healthy provider's `inventory.list`, each VM the inventory knows mapped to its
/// Skyport id, tenant and department.
async fn provider_instances(sync: &InventorySync) -> Result<Value, PluginError> {
    let mut providers = Vec::new();
    for plugin in sync.listing_providers() {
        if !plugin.health.healthy {
            providers.push(json!({"name": plugin.name, "ok": false, "reason": "unhealthy"}));
            continue;
        }
        let joined = match sync.join_listing(&plugin.name).await {
            Ok(joined) => joined,
            Err(e) => {
                providers.push(json!({"name": plugin.name, "ok": false, "reason": e.public}));
                continue;
            }
        };
        let instances: Vec<Value> = joined
            .records
            .iter()
            .filter_map(|(record, reported)| {
                let mut attributes = record.meter_attributes();
                attributes.insert("tenant".into(), json!(record.tenant));
                attributes.insert("department".into(), json!(record.department));
                attributes.insert("state".into(), json!(reported.as_deref()?));
                Some(Value::Object(attributes))
            })
            .collect();
        providers.push(
            json!({"name": plugin.name, "ok": true, "instances": instances,
                              "unmanaged": joined.unmanaged.len()}),
        );
    }
    Ok(json!({ "providers": providers }))
}
