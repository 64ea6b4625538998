//! What the gateway's services need of the loaded plugins: which are loaded, how each is,
//! and a call. [`PluginRegistry`](crate::PluginRegistry) implements it over real libraries;
//! a unit test implements it with a few closures.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_plugin_api::sdk::CallContext;

use serde::Serialize;

/// Health as shown by the APIs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HealthView {
    /// Whether it serves.
    pub healthy: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the plugin says of how it serves (`health@1`'s `notes`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One loaded plugin instance, as the services see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFacts {
    /// Instance name (unique).
    pub name: String,
    /// `provider` or `metering` (the manifest's kind).
    pub kind: &'static str,
    /// The operations it serves, as `op@version`.
    pub ops: Vec<String>,
    /// Its health now.
    pub health: HealthView,
}

impl PluginFacts {
    /// Whether it serves `op@version` (e.g. `images.list@1`).
    pub fn serves(&self, op_at_version: &str) -> bool {
        self.ops.iter().any(|o| o == op_at_version)
    }

    /// Those of `wanted` (each `op@version`) it does not serve.
    pub fn missing<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        wanted
            .iter()
            .copied()
            .filter(|op| !self.serves(op))
            .collect()
    }

    /// Whether it is a provider.
    pub fn is_provider(&self) -> bool {
        self.kind == "provider"
    }

    /// Whether it is a metering plugin.
    pub fn is_metering(&self) -> bool {
        self.kind == "metering"
    }
}

/// Plugin `name`, as `found` with its health, if it may be called now: 404 when it is not
/// loaded, 503 with the reason while it is unhealthy (its circuit is open). Every
/// [`Plugins`] refuses the same way.
pub fn callable<T>(name: &str, found: Option<(T, HealthView)>) -> Result<T, GatewayError> {
    let (plugin, health) = found
        .ok_or_else(|| GatewayError::not_found(format!("no plugin named '{name}' is loaded")))?;
    if health.healthy {
        return Ok(plugin);
    }
    Err(GatewayError::new(
        skyport_core::error::ErrorKind::Unavailable,
        format!(
            "plugin '{name}' is unhealthy: {}",
            health.reason.as_deref().unwrap_or("no reason given")
        ),
    ))
}

/// The loaded plugins.
#[async_trait]
pub trait Plugins: Send + Sync {
    /// Every loaded instance, in configuration order.
    fn loaded(&self) -> Vec<PluginFacts>;

    /// Calls `op@version` on instance `name` with `params` already written as JSON text
    /// (a caller sending one payload to several plugins writes it once). An unknown
    /// instance is 404, an unhealthy one 503 at once (circuit open); past `timeout` the
    /// call is cancelled (504).
    async fn call_json(
        &self,
        name: &str,
        op: &str,
        version: u32,
        params: String,
        context: CallContext,
        timeout: Duration,
    ) -> Result<Value, GatewayError>;

    /// [`Plugins::call_json`] with `params` as a JSON value.
    async fn call(
        &self,
        name: &str,
        op: &str,
        version: u32,
        params: Value,
        context: CallContext,
        timeout: Duration,
    ) -> Result<Value, GatewayError> {
        self.call_json(name, op, version, params.to_string(), context, timeout)
            .await
    }

    /// [`Plugins::call`] that reaches an unhealthy instance too: for what a plugin says of
    /// itself rather than work it does, such as its regions, which exist while it cannot
    /// serve (a provider that starts without an image still serves its region once it
    /// has one).
    async fn describe(
        &self,
        name: &str,
        op: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, GatewayError> {
        self.call(name, op, 1, params, CallContext::default(), timeout)
            .await
    }

    /// Instance `name`, if loaded.
    fn facts(&self, name: &str) -> Option<PluginFacts> {
        self.loaded().into_iter().find(|p| p.name == name)
    }
}
