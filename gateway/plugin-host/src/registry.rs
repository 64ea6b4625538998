//! Loaded plugin instances and calls into them: deadline, cancel on timeout, panic ->
//! unhealthy (circuit open) while the gateway keeps serving everything else.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr};
use skyport_plugin_api::abi::{error_code, HostServices_TO, OpRequest, PluginBox};
use skyport_plugin_api::ops::{self, Health};
use skyport_plugin_api::sdk::{completion_channel, CallContext};

use async_trait::async_trait;
use skyport_core::clock::SharedClock;
use skyport_core::config::PluginConfig;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::metrics::Metrics;

use crate::host::GatewayHost;
use crate::loader::{load_library, ManifestInfo, Refusal};
use crate::plugins::{callable, HealthView, PluginFacts, Plugins};

/// One instantiated plugin.
pub struct PluginHandle {
    /// Instance name (unique).
    pub name: String,
    /// Manifest facts.
    pub manifest: ManifestInfo,
    /// Operations it serves.
    pub ops: Vec<String>,
    /// One-line summary.
    pub summary: String,
    /// sha256 of its file.
    pub sha256: String,
    instance: PluginBox,
    healthy: AtomicBool,
    unhealthy_reason: Mutex<Option<String>>,
}

impl PluginHandle {
    /// Current health.
    pub fn health(&self) -> HealthView {
        HealthView {
            healthy: self.healthy.load(Ordering::SeqCst),
            reason: self
                .unhealthy_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn set_health(&self, healthy: bool, reason: Option<String>, metrics: &Metrics) {
        self.healthy.store(healthy, Ordering::SeqCst);
        *self
            .unhealthy_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = reason;
        metrics
            .plugin_healthy
            .get_or_create(&vec![("plugin", self.name.clone())])
            .set(i64::from(healthy));
    }
}

/// All loaded plugins and the refusals of this start.
pub struct PluginRegistry {
    plugins: Vec<Arc<PluginHandle>>,
    refusals: Vec<Refusal>,
    next_call: AtomicU64,
    metrics: Arc<Metrics>,
    state_dir: std::path::PathBuf,
    host_ops: crate::host::HostOpsSlot,
    clock: SharedClock,
}

/// Default deadline of a plugin call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl PluginRegistry {
    /// An empty registry; call deadlines and durations are read from `clock`.
    pub fn empty(metrics: Arc<Metrics>, clock: SharedClock) -> Self {
        Self {
            plugins: Vec::new(),
            refusals: Vec::new(),
            next_call: AtomicU64::new(1),
            metrics,
            state_dir: std::path::PathBuf::from("plugins"),
            host_ops: Arc::default(),
            clock,
        }
    }

    /// Binds the gateway's host ops (once, after startup); plugins can call them from then on.
    pub fn bind_host_ops(&self, ops: Arc<dyn crate::host::HostOps>) {
        let _ = self.host_ops.set(ops);
    }

    /// Loads every configured plugin. A refused plugin is logged and skipped unless it is
    /// `required`, in which case the refusal is returned and startup must fail.
    pub async fn load_all(
        configs: &[PluginConfig],
        plugin_dir: &std::path::Path,
        state_dir: &std::path::Path,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Result<Self, Refusal> {
        let mut registry = Self::empty(metrics, clock);
        registry.state_dir = state_dir.join("plugins");
        for config in configs {
            let file = if config.file.is_absolute() {
                config.file.clone()
            } else {
                plugin_dir.join(&config.file)
            };
            let fallback = config.name.clone().unwrap_or_else(|| {
                file.file_stem()
                    .map(|s| s.to_string_lossy().trim_start_matches("lib").to_string())
                    .unwrap_or_default()
            });
            if !file.exists() && !config.required {
                tracing::warn!(plugin = %fallback, file = %file.display(), "plugin \"{fallback}\" ({}) skipped: not built or not installed", file.display());
                continue;
            }
            match registry.load_one(config, &file, &fallback).await {
                Ok(handle) => {
                    tracing::info!(plugin = %handle.name, version = %handle.manifest.version, kind = handle.manifest.kind, "plugin loaded");
                    registry.plugins.push(handle);
                }
                Err(refusal) if config.required => return Err(refusal),
                Err(refusal) => {
                    tracing::warn!("{refusal}");
                    registry.refusals.push(refusal);
                }
            }
        }
        Ok(registry)
    }

    async fn load_one(
        &self,
        config: &PluginConfig,
        file: &std::path::Path,
        fallback: &str,
    ) -> Result<Arc<PluginHandle>, Refusal> {
        let library = {
            let (path, name, pin) = (
                file.to_path_buf(),
                fallback.to_string(),
                config.sha256.clone(),
            );
            tokio::task::spawn_blocking(move || load_library(&path, &name, pin.as_deref()))
                .await
                .map_err(|e| Refusal {
                    plugin: fallback.to_string(),
                    version: None,
                    file: file.to_path_buf(),
                    reason: format!("loader task failed: {e}"),
                })??
        };
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| library.manifest.name.clone());
        let refuse = |reason: String| Refusal {
            plugin: name.clone(),
            version: Some(library.manifest.version.clone()),
            file: file.to_path_buf(),
            reason,
        };
        if self.plugins.iter().any(|p| p.name == name) {
            return Err(refuse(format!(
                "duplicate name: a plugin named \"{name}\" is already loaded"
            )));
        }
        let config_json = serde_json::to_value(&config.config)
            .map_err(|e| refuse(format!("config cannot be converted to JSON: {e}")))?;
        validate_config(&library.description.config_schema, &config_json).map_err(refuse)?;
        let host = HostServices_TO::from_value(
            GatewayHost {
                plugin: name.clone(),
                metrics: Arc::clone(&self.metrics),
                state_dir: self.state_dir.join(&name),
                ops: Arc::clone(&self.host_ops),
                runtime: tokio::runtime::Handle::current(),
            },
            TD_Opaque,
        );
        let config_text = config_json.to_string();
        let instance = match (library.module.instantiate())(RStr::from(config_text.as_str()), host)
        {
            RResult::ROk(instance) => instance,
            RResult::RErr(e) => return Err(refuse(format!("init failure: {e}"))),
        };
        let handle = Arc::new(PluginHandle {
            name,
            manifest: library.manifest.clone(),
            ops: library.description.ops.clone(),
            summary: library.description.summary.clone(),
            sha256: library.sha256.clone(),
            instance,
            healthy: AtomicBool::new(true),
            unhealthy_reason: Mutex::new(None),
        });
        handle.set_health(true, None, &self.metrics);
        self.probe(&handle).await;
        Ok(handle)
    }

    /// Asks a plugin for its health and records the answer.
    pub async fn probe(&self, handle: &Arc<PluginHandle>) {
        let result = self
            .call_handle(
                handle,
                ops::HEALTH,
                1,
                "{}".to_string(),
                CallContext::default(),
                Duration::from_secs(10),
            )
            .await;
        match result.map(serde_json::from_value::<Health>) {
            Ok(Ok(health)) => handle.set_health(health.healthy, health.reason, &self.metrics),
            Ok(Err(e)) => handle.set_health(
                false,
                Some(format!("health answer malformed: {e}")),
                &self.metrics,
            ),
            Err(e) => {
                let reason = e.cause.clone().unwrap_or(e.public.clone());
                handle.set_health(
                    false,
                    Some(format!("health check failed: {reason}")),
                    &self.metrics,
                )
            }
        }
    }

    /// Probes every plugin's health every `interval`, until aborted: an unhealthy plugin
    /// (also one whose circuit a panic opened) serves again once it answers healthy.
    pub async fn probe_every(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            for plugin in &self.plugins {
                self.probe(plugin).await;
            }
        }
    }

    /// Loaded plugins.
    pub fn plugins(&self) -> &[Arc<PluginHandle>] {
        &self.plugins
    }

    /// Plugins refused at this start.
    pub fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<PluginHandle>> {
        self.plugins.iter().find(|p| p.name == name)
    }

    async fn call_handle(
        &self,
        handle: &Arc<PluginHandle>,
        op: &str,
        version: u32,
        params: String,
        context: CallContext,
        timeout: Duration,
    ) -> Result<serde_json::Value, GatewayError> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let deadline = self.clock.wall() + timeout;
        let request = OpRequest {
            id,
            op: op.into(),
            version,
            params: params.into(),
            context: serde_json::to_string(&context).unwrap_or_default().into(),
            deadline_unix_ms: deadline
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let (completion, receiver) = completion_channel();
        let started = self.clock.monotonic();
        handle.instance.start(request, completion);
        let outcome = tokio::time::timeout(timeout, receiver).await;
        self.metrics
            .plugin_call_seconds
            .get_or_create(&vec![("plugin", handle.name.clone())])
            .observe(self.clock.monotonic().saturating_sub(started).as_secs_f64());
        let (code, result) = match outcome {
            Err(_elapsed) => {
                handle.instance.cancel(id);
                (
                    error_code::TIMEOUT.to_string(),
                    Err(GatewayError::new(
                        ErrorKind::Timeout,
                        format!(
                            "plugin '{}' did not answer {op} within {timeout:?}",
                            handle.name
                        ),
                    )),
                )
            }
            Ok(Err(_dropped)) => (
                error_code::INTERNAL.to_string(),
                Err(GatewayError::internal(format!(
                    "plugin '{}' dropped the completion of {op}",
                    handle.name
                ))),
            ),
            Ok(Ok(RResult::ROk(json))) => match serde_json::from_str(json.as_str()) {
                Ok(value) => ("ok".to_string(), Ok(value)),
                Err(e) => (
                    error_code::INTERNAL.to_string(),
                    Err(GatewayError::internal(format!(
                        "plugin '{}' returned invalid JSON for {op}: {e}",
                        handle.name
                    ))),
                ),
            },
            Ok(Ok(RResult::RErr(err))) => {
                if err.code.as_str() == error_code::PANICKED {
                    tracing::error!(plugin = %handle.name, op, error = %err, "plugin panicked; marked unhealthy");
                    handle.set_health(false, Some(format!("panicked in {op}")), &self.metrics);
                }
                (
                    err.code.to_string(),
                    Err(map_plugin_error(&handle.name, op, &err)),
                )
            }
        };
        self.metrics
            .plugin_calls
            .get_or_create(&vec![
                ("plugin", handle.name.clone()),
                ("op", op.to_string()),
                ("outcome", code),
            ])
            .inc();
        result
    }

    /// Shuts every instance down (outside the async workers).
    pub async fn shutdown(&self) {
        for handle in &self.plugins {
            let handle = Arc::clone(handle);
            let name = handle.name.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || handle.instance.shutdown()).await {
                tracing::warn!(plugin = %name, error = %e, "plugin shutdown failed");
            }
        }
    }
}

#[async_trait]
impl Plugins for PluginRegistry {
    fn loaded(&self) -> Vec<PluginFacts> {
        self.plugins
            .iter()
            .map(|p| PluginFacts {
                name: p.name.clone(),
                kind: p.manifest.kind,
                ops: p.ops.clone(),
                health: p.health(),
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
        timeout: Duration,
    ) -> Result<serde_json::Value, GatewayError> {
        let handle = callable(name, self.get(name).map(|h| (Arc::clone(h), h.health())))?;
        self.call_handle(&handle, op, version, params, context, timeout)
            .await
    }
}

/// Maps a plugin's typed error to a gateway error. Messages are shown for the codes whose
/// messages plugins write for callers (see `PluginError::message`).
fn map_plugin_error(plugin: &str, op: &str, err: &skyport_plugin_api::PluginError) -> GatewayError {
    let shown = err.message.to_string();
    let mapped = match err.code.as_str() {
        error_code::INVALID_INPUT => GatewayError::invalid(shown),
        error_code::NOT_FOUND => GatewayError::not_found(shown),
        error_code::CONFLICT => GatewayError::new(ErrorKind::Conflict, shown),
        error_code::LIMIT_EXCEEDED => GatewayError::new(ErrorKind::Conflict, shown),
        error_code::UNAVAILABLE => GatewayError::new(ErrorKind::Unavailable, shown),
        error_code::THROTTLED => GatewayError::new(
            ErrorKind::Unavailable,
            format!("provider '{plugin}' is throttling; retry later"),
        ),
        error_code::TIMEOUT => {
            GatewayError::new(ErrorKind::Timeout, format!("provider '{plugin}' timed out"))
        }
        error_code::UNSUPPORTED_OP => GatewayError::new(
            ErrorKind::NotImplemented,
            format!("plugin '{plugin}' does not support {op}"),
        ),
        error_code::PANICKED => GatewayError::new(
            ErrorKind::Internal,
            format!("plugin '{plugin}' failed while serving {op}; it is now marked unhealthy"),
        ),
        _ => GatewayError::new(
            ErrorKind::Upstream,
            format!("plugin '{plugin}' failed while serving {op}"),
        ),
    };
    let mut mapped = mapped.with_cause(format!("{plugin}: {err}"));
    mapped.retryable = err.retryable;
    mapped
}

/// Validates plugin configuration against the plugin's JSON Schema; the error names the
/// key path.
fn validate_config(schema: &serde_json::Value, config: &serde_json::Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("its config schema is invalid: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(config)
        .map(|e| {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() {
                "config".to_string()
            } else {
                format!("config{}", path.replace('/', "."))
            };
            format!("{path}: {e}")
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid config: {}", errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use skyport_plugin_api::PluginError;

    use super::*;

    #[test]
    fn plugin_errors_map_to_gateway_kinds_keeping_the_cause_for_the_log() {
        let cases = [
            (
                error_code::INVALID_INPUT,
                ErrorKind::InvalidInput,
                "bad size",
            ),
            (error_code::NOT_FOUND, ErrorKind::NotFound, "bad size"),
            (error_code::CONFLICT, ErrorKind::Conflict, "bad size"),
            (error_code::UNAVAILABLE, ErrorKind::Unavailable, "bad size"),
            (
                error_code::THROTTLED,
                ErrorKind::Unavailable,
                "is throttling",
            ),
            (error_code::TIMEOUT, ErrorKind::Timeout, "timed out"),
            (
                error_code::UNSUPPORTED_OP,
                ErrorKind::NotImplemented,
                "does not support",
            ),
            (
                error_code::PANICKED,
                ErrorKind::Internal,
                "marked unhealthy",
            ),
            ("SOMETHING_NEW", ErrorKind::Upstream, "failed while serving"),
        ];
        for (code, kind, shown) in cases {
            let mapped = map_plugin_error(
                "vmm",
                "instance.create",
                &PluginError::new(code, "bad size"),
            );
            assert_eq!(mapped.kind, kind, "{code}");
            assert!(mapped.public.contains(shown), "{code}: {}", mapped.public);
            assert!(
                mapped.cause.as_deref().unwrap().starts_with("vmm: "),
                "{code}"
            );
        }
        let internal = map_plugin_error("vmm", "x", &PluginError::new("OOPS", "secret path /etc"));
        assert!(!internal.public.contains("secret"), "{}", internal.public);
    }

    #[test]
    fn plugin_configuration_is_checked_against_its_schema_naming_the_key() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"region": {"type": "string"}},
            "required": ["region"],
            "additionalProperties": false
        });
        assert!(validate_config(&schema, &serde_json::json!({"region": "r1"})).is_ok());
        let wrong = validate_config(&schema, &serde_json::json!({"region": 7})).unwrap_err();
        assert!(wrong.contains("config.region"), "{wrong}");
        let extra = validate_config(&schema, &serde_json::json!({"region": "r", "x": 1}));
        assert!(extra.unwrap_err().starts_with("invalid config: config:"));
    }
}
