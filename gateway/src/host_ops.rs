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

use crate::inventory::sync::{join_listing, listing_providers};
use crate::plugins::host::{HostOpFuture, HostOps};
use crate::state::AppState;

/// The gateway's host ops; holds the state weakly so that shutdown can drop it.
pub struct GatewayHostOps(pub Weak<AppState>);

impl HostOps for GatewayHostOps {
    fn call(&self, caller: &str, op: &str, version: u32, _params: Value) -> Option<HostOpFuture> {
        match (op, version) {
            ("inventory.instances", 1) => {
                let state = self.0.clone();
                let caller = caller.to_string();
                Some(Box::pin(async move {
                    let state = state.upgrade().ok_or_else(|| {
                        PluginError::new(error_code::UNAVAILABLE, "the gateway is stopping")
                    })?;
                    let metering = state
                        .plugins
                        .get(&caller)
                        .is_some_and(|p| p.manifest.kind == "metering");
                    if !metering {
                        return Err(PluginError::new(
                            error_code::UNSUPPORTED_OP,
                            "inventory.instances@1 is served to metering plugins only",
                        ));
                    }
                    provider_instances(&state).await
                }))
            }
            _ => None,
        }
    }
}

/// Every healthy provider's `inventory.list`, each VM the inventory knows mapped to its
/// Skyport id, tenant and department.
async fn provider_instances(state: &AppState) -> Result<Value, PluginError> {
    let mut providers = Vec::new();
    for plugin in listing_providers(state) {
        if !plugin.health().healthy {
            providers.push(json!({"name": plugin.name, "ok": false, "reason": "unhealthy"}));
            continue;
        }
        let joined = match join_listing(state, &plugin.name).await {
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
