//! The host side of the ABI's `HostServices`: plugin logs into `tracing`, plugin metrics
//! into the Prometheus registry, and generic host calls.

use std::sync::Arc;

use abi_stable::std_types::{RResult, RStr, RString};
use skyport_plugin_api::abi::{
    error_code, CompletionBox, HostServices, LogLevel, MetricKind, OpRequest, PluginError,
};

use crate::metrics::Metrics;

/// Host services handed to one plugin instance.
pub struct GatewayHost {
    /// Instance name, attached to every log line and metric.
    pub plugin: String,
    /// Where plugin metrics go.
    pub metrics: Arc<Metrics>,
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
        let labels = vec![
            ("plugin", self.plugin.clone()),
            ("name", name.as_str().to_string()),
            ("labels", labels.as_str().to_string()),
        ];
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
        let result = match (request.op.as_str(), request.version) {
            ("host.info", 1) => RResult::ROk(RString::from(
                serde_json::json!({
                    "gateway": "skyport",
                    "gateway_version": env!("CARGO_PKG_VERSION"),
                    "plugin_api": format!("{}.{}", skyport_plugin_api::API_MAJOR, skyport_plugin_api::API_MINOR),
                    "caller": self.plugin,
                })
                .to_string(),
            )),
            (op, version) => RResult::RErr(PluginError::new(
                error_code::UNSUPPORTED_OP,
                format!("the host does not serve {op}@{version}"),
            )),
        };
        completion.complete(result);
    }
}
