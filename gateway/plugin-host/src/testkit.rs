//! [`FakePlugins`]: a [`Plugins`] made of closures, for unit tests of the services that
//! sit above the plugin host. Never loaded by the gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_plugin_api::sdk::CallContext;

use crate::plugins::{callable, HealthView, PluginFacts, Plugins};

/// How a fake plugin answers: `(op, params) -> result`.
pub type Handler = Arc<dyn Fn(&str, &Value) -> Result<Value, GatewayError> + Send + Sync>;

/// One call a fake plugin received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedCall {
    /// The plugin called.
    pub plugin: String,
    /// `op@version`.
    pub op: String,
    /// The params.
    pub params: Value,
    /// The call's tenant.
    pub tenant: Option<String>,
}

struct Fake {
    facts: PluginFacts,
    handler: Handler,
}

/// Plugins that answer with closures and remember every call.
#[derive(Default)]
pub struct FakePlugins {
    plugins: Vec<Fake>,
    health: Mutex<HashMap<String, HealthView>>,
    withdrawn: Mutex<Vec<(String, String)>>,
    calls: Mutex<Vec<ReceivedCall>>,
}

impl FakePlugins {
    /// No plugins.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plugin of `kind` serving `ops` (`op@version`), answering with `handler`.
    pub fn with(
        mut self,
        name: &str,
        kind: &'static str,
        ops: &[&str],
        handler: impl Fn(&str, &Value) -> Result<Value, GatewayError> + Send + Sync + 'static,
    ) -> Self {
        self.plugins.push(Fake {
            facts: PluginFacts {
                name: name.to_string(),
                kind,
                ops: ops.iter().map(|o| o.to_string()).collect(),
                health: HealthView {
                    healthy: true,
                    reason: None,
                    notes: Vec::new(),
                },
            },
            handler: Arc::new(handler),
        });
        self
    }

    /// Marks plugin `name` healthy or not (with `reason`).
    pub fn set_health(&self, name: &str, healthy: bool, reason: Option<&str>) {
        self.health.lock().unwrap().insert(
            name.to_string(),
            HealthView {
                healthy,
                reason: reason.map(str::to_owned),
                notes: Vec::new(),
            },
        );
    }

    /// Plugin `name` no longer lists `op_at_version` among its ops.
    pub fn withdraw_op(&self, name: &str, op_at_version: &str) {
        self.withdrawn
            .lock()
            .unwrap()
            .push((name.to_string(), op_at_version.to_string()));
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<ReceivedCall> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls of `op@version` received so far.
    pub fn calls_of(&self, op_at_version: &str) -> Vec<ReceivedCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.op == op_at_version)
            .collect()
    }

    fn health_of(&self, fake: &Fake) -> HealthView {
        self.health
            .lock()
            .unwrap()
            .get(&fake.facts.name)
            .cloned()
            .unwrap_or_else(|| fake.facts.health.clone())
    }
}

#[async_trait]
impl Plugins for FakePlugins {
    fn loaded(&self) -> Vec<PluginFacts> {
        self.plugins
            .iter()
            .map(|p| {
                let withdrawn = self.withdrawn.lock().unwrap();
                PluginFacts {
                    health: self.health_of(p),
                    ops: p
                        .facts
                        .ops
                        .iter()
                        .filter(|op| {
                            !withdrawn
                                .iter()
                                .any(|(n, o)| *n == p.facts.name && o == *op)
                        })
                        .cloned()
                        .collect(),
                    ..p.facts.clone()
                }
            })
            .collect()
    }

    async fn call_json(
        &self,
        name: &str,
        op: &str,
        version: u32,
        params: String,
        context: CallContext,
        _timeout: Duration,
    ) -> Result<Value, GatewayError> {
        let found = self.plugins.iter().find(|p| p.facts.name == name);
        let fake = callable(name, found.map(|f| (f, self.health_of(f))))?;
        let params: Value = serde_json::from_str(&params).map_err(GatewayError::internal)?;
        let op = format!("{op}@{version}");
        self.calls.lock().unwrap().push(ReceivedCall {
            plugin: name.to_string(),
            op: op.clone(),
            params: params.clone(),
            tenant: context.tenant,
        });
        (fake.handler)(&op, &params)
    }
}
