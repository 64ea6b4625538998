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
    for plugin in state.plugins.plugins() {
        if !plugin.ops.iter().any(|op| op == "inventory.list@1") {
            continue;
        }
        if !plugin.health().healthy {
            providers.push(json!({"name": plugin.name, "ok": false, "reason": "unhealthy"}));
            continue;
        }
        let known = state
            .inventory
            .active_for_provider(&plugin.name)
            .await
            .map_err(|e| PluginError::new(error_code::INTERNAL, e.public))?;
        let listed = state
            .plugins
            .call(
                &plugin.name,
                "inventory.list",
                1,
                json!({}),
                Default::default(),
                std::time::Duration::from_secs(30),
            )
            .await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) => {
                providers.push(json!({"name": plugin.name, "ok": false, "reason": e.public}));
                continue;
            }
        };
        let mut instances = Vec::new();
        let mut unmanaged = 0;
        for vm in listed.as_array().into_iter().flatten() {
            let record = known
                .iter()
                .find(|r| r.remote_id.as_deref() == vm["id"].as_str());
            let Some(record) = record.filter(|_| vm["orphan"].as_bool() != Some(true)) else {
                unmanaged += 1;
                continue;
            };
            let itype = crate::catalog::instance_type(&record.instance_type);
            instances.push(json!({
                "instance_id": record.id,
                "tenant": record.tenant,
                "department": record.department,
                "provider": record.provider,
                "region": record.region,
                "instance_type": record.instance_type,
                "vcpus": itype.map(|t| t.vcpus),
                "memory_mib": itype.map(|t| t.memory_mib),
                "state": vm["state"],
            }));
        }
        providers.push(json!({"name": plugin.name, "ok": true, "instances": instances, "unmanaged": unmanaged}));
    }
    Ok(json!({ "providers": providers }))
}
