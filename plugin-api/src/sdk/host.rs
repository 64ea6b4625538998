//! The plugin's handle on the host: logs, metrics and generic calls, plus the `log` bridge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abi_stable::std_types::{RResult, RStr};

use super::completion::completion_channel;
use super::CallContext;
use crate::abi::{error_code, HostBox, LogLevel, MetricKind, OpRequest, PluginError};

/// Host services as a plugin author uses them. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostBox>,
}

static NEXT_HOST_CALL: AtomicU64 = AtomicU64::new(1);

impl Host {
    pub(crate) fn new(inner: HostBox) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Writes a line into the host's log.
    pub fn log(&self, level: LogLevel, target: &str, message: &str) {
        self.inner
            .log(level, RStr::from(target), RStr::from(message));
    }

    /// Adds `value` to the counter `name` with `labels`.
    pub fn counter(&self, name: &str, value: f64, labels: &serde_json::Value) {
        let labels = labels.to_string();
        self.inner.metric(
            MetricKind::Counter,
            name.into(),
            value,
            labels.as_str().into(),
        );
    }

    /// Sets the gauge `name` with `labels` to `value`.
    pub fn gauge(&self, name: &str, value: f64, labels: &serde_json::Value) {
        let labels = labels.to_string();
        self.inner.metric(
            MetricKind::Gauge,
            name.into(),
            value,
            labels.as_str().into(),
        );
    }

    /// Calls the host: `op@version` with `params`. Resolves when the host completes.
    pub async fn call(
        &self,
        op: &str,
        version: u32,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, PluginError> {
        let (completion, receiver) = completion_channel();
        let request = OpRequest {
            id: NEXT_HOST_CALL.fetch_add(1, Ordering::Relaxed),
            op: op.into(),
            version,
            params: params.to_string().into(),
            context: serde_json::to_string(&CallContext::default())
                .unwrap_or_default()
                .into(),
            deadline_unix_ms: 0,
        };
        self.inner.call(request, completion);
        match receiver.await {
            Ok(RResult::ROk(json)) => serde_json::from_str(json.as_str()).map_err(|e| {
                PluginError::new(error_code::INTERNAL, format!("host returned bad JSON: {e}"))
            }),
            Ok(RResult::RErr(err)) => Err(err),
            Err(_) => Err(PluginError::new(
                error_code::INTERNAL,
                "host dropped the call without completing it",
            )),
        }
    }
}

impl Host {
    /// The directory the host gives this plugin instance for its own state
    /// (`<state-dir>/plugins/<instance>`; `host.info@1`'s `state_dir`). It blocks until the
    /// host answers, so call it from [`Plugin::init`](super::Plugin::init), not from an op.
    /// Since 1.1.
    pub fn state_dir(&self) -> Result<std::path::PathBuf, PluginError> {
        let info = futures::executor::block_on(self.call("host.info", 1, serde_json::json!({})))?;
        info.get("state_dir")
            .and_then(serde_json::Value::as_str)
            .map(std::path::PathBuf::from)
            .ok_or_else(|| {
                PluginError::new(
                    error_code::INVALID_CONFIG,
                    "the host did not name a state directory (host.info@1 without state_dir)",
                )
            })
    }

    /// Resolves a path from the plugin's configuration as the gateway resolves every
    /// relative path in its configuration: an absolute path as is, a relative one against
    /// the gateway's state directory (`host.info@1`'s `base_dir`), so a plugin finds its
    /// files wherever the gateway was started. Blocks like [`Host::state_dir`]. Since 1.4;
    /// a host older than 1.4 names no `base_dir`, and the path is then taken as given.
    pub fn resolve_config_path(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<std::path::PathBuf, PluginError> {
        let path = path.as_ref();
        if path.is_absolute() {
            return Ok(path.to_path_buf());
        }
        let info = futures::executor::block_on(self.call("host.info", 1, serde_json::json!({})))?;
        Ok(
            match info.get("base_dir").and_then(serde_json::Value::as_str) {
                Some(base) => std::path::Path::new(base).join(path),
                None => path.to_path_buf(),
            },
        )
    }
}

/// Forwards the plugin's `log` records to the host (each cdylib has its own `log` statics).
pub(crate) struct LogBridge {
    pub(crate) host: Host,
}

impl log::Log for LogBridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        };
        self.host
            .log(level, record.target(), &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Installs the bridge once per library; later instances reuse the first host handle.
pub(crate) fn install_log_bridge(host: &Host) {
    if log::set_boxed_logger(Box::new(LogBridge { host: host.clone() })).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}
