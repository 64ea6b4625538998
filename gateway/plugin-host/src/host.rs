//! The host side of the ABI's `HostServices`: plugin logs into `tracing`, plugin metrics
//! into the Prometheus registry, and generic host calls.
//!
//! Host calls are `host.info@1`, answered here, and the ops of [`HostOps`], which need the
//! running gateway (its inventory, the other plugins) and are bound once it is built.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use abi_stable::std_types::{RResult, RStr, RString};
use skyport_plugin_api::abi::{
    error_code, CompletionBox, HostServices, LogLevel, MetricKind, OpRequest, PluginError,
};

use skyport_core::metrics::Metrics;

/// A host op's answer: JSON, or a plugin-style error.
pub type HostOpFuture =
    Pin<Box<dyn Future<Output = Result<serde_json::Value, PluginError>> + Send>>;

/// Host operations that need the running gateway.
pub trait HostOps: Send + Sync {
    /// Serves `op@version` with `params` for plugin `caller`; `None` if not a host op.
    fn call(
        &self,
        caller: &str,
        op: &str,
        version: u32,
        params: serde_json::Value,
    ) -> Option<HostOpFuture>;
}

/// Where the gateway binds its [`HostOps`] after startup; shared by every plugin's host.
pub type HostOpsSlot = Arc<OnceLock<Arc<dyn HostOps>>>;

/// Host services handed to one plugin instance.
pub struct GatewayHost {
    /// Instance name, attached to every log line and metric.
    pub plugin: String,
    /// Where plugin metrics go.
    pub metrics: Arc<Metrics>,
    /// The plugin's own state directory (`<state-dir>/plugins/<name>`), told by `host.info`.
    pub state_dir: std::path::PathBuf,
    /// The gateway's state directory, against which relative paths in the plugin's
    /// configuration resolve, as every relative path in the configuration does; told by
    /// `host.info` as `base_dir`.
    pub base_dir: std::path::PathBuf,
    /// Gateway-wide host ops, once bound.
    pub ops: HostOpsSlot,
    /// The gateway's runtime, where host ops run.
    pub runtime: tokio::runtime::Handle,
}

impl HostServices for GatewayHost {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let (plugin, target, message) = (&self.plugin, target.as_str(), message.as_str());
        match level {
            LogLevel::Error => {
                tracing::error!(target: "plugin", plugin, plugin_target = target, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "plugin", plugin, plugin_target = target, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "plugin", plugin, plugin_target = target, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "plugin", plugin, plugin_target = target, "{message}")
            }
            LogLevel::Trace => {
                tracing::trace!(target: "plugin", plugin, plugin_target = target, "{message}")
            }
        }
    }

    fn metric(&self, kind: MetricKind, name: RStr<'_>, value: f64, labels: RStr<'_>) {
        let mut labels_out = vec![
            ("plugin".to_string(), self.plugin.clone()),
            ("name".to_string(), sanitize_label_value(name.as_str())),
        ];
        labels_out.extend(plugin_labels(labels.as_str()));
        let labels = labels_out;
        let gauge = self.metrics.plugin_reported.get_or_create(&labels);
        match kind {
            MetricKind::Counter => {
                gauge.inc_by(value);
            }
            MetricKind::Gauge => {
                gauge.set(value);
            }
        }
    }

    fn call(&self, request: OpRequest, completion: CompletionBox) {
        if let Some(ops) = self.ops.get() {
            let params = serde_json::from_str(request.params.as_str()).unwrap_or_default();
            if let Some(answer) =
                ops.call(&self.plugin, request.op.as_str(), request.version, params)
            {
                self.runtime.spawn(async move {
                    let result = match answer.await {
                        Ok(value) => RResult::ROk(RString::from(value.to_string())),
                        Err(e) => RResult::RErr(e),
                    };
                    completion.complete(result);
                });
                return;
            }
        }
        let result = match (request.op.as_str(), request.version) {
            ("host.info", 1) => RResult::ROk(RString::from(host_info(
                "skyport",
                &self.plugin,
                &self.state_dir,
                &self.base_dir,
            ))),
            (op, version) => RResult::RErr(PluginError::new(
                error_code::UNSUPPORTED_OP,
                format!("the host does not serve {op}@{version}"),
            )),
        };
        completion.complete(result);
    }
}

/// `host.info@1`'s answer from host `host` (the gateway, or a plugin host) to plugin
/// `caller`, whose state directory is `state_dir` and whose relative paths resolve
/// against `base_dir`.
pub fn host_info(
    host: &str,
    caller: &str,
    state_dir: &std::path::Path,
    base_dir: &std::path::Path,
) -> String {
    serde_json::json!({
        "gateway": host,
        "gateway_version": env!("CARGO_PKG_VERSION"),
        "plugin_api": format!("{}.{}", skyport_plugin_api::API_MAJOR, skyport_plugin_api::API_MINOR),
        "caller": caller,
        "state_dir": state_dir,
        "base_dir": base_dir,
    })
    .to_string()
}

/// The plugin's labels: a JSON object of string (or scalar) values. Keys are reduced to
/// Prometheus label-name characters; values lose quotes, backslashes and newlines.
fn plugin_labels(json: &str) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(json) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(key, value)| {
            let key: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if key.is_empty()
                || key.starts_with(|c: char| c.is_ascii_digit())
                || key == "plugin"
                || key == "name"
            {
                return None;
            }
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            Some((key, sanitize_label_value(&value)))
        })
        .collect()
}

fn sanitize_label_value(value: &str) -> String {
    value
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | '\n'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_labels_become_separate_safe_labels() {
        let labels =
            plugin_labels(r#"{"region":"hello-1","bad key":"a\"b","plugin":"spoof","n":3}"#);
        assert_eq!(
            labels,
            vec![
                ("bad_key".to_string(), "ab".to_string()),
                ("n".to_string(), "3".to_string()),
                ("region".to_string(), "hello-1".to_string()),
            ]
        );
        assert!(plugin_labels("not json").is_empty());
    }
}
