//! Loaded plugin instances and calls into them: deadline, cancel on timeout, panic ->
//! unhealthy (circuit open) while the gateway keeps serving everything else.
//!
//! Each instance runs where its configuration says ([`Isolation`]): in a supervised
//! process of its own (the default; see [`crate::isolation`]) or inside the gateway. In
//! both, its library is first checked in a child process, so a library that crashes
//! while loading never takes the gateway down, and it is loaded from an in-memory copy of
//! the bytes that were checked.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr};
use arc_swap::ArcSwap;
use skyport_plugin_api::abi::{error_code, HostServices_TO, OpRequest, OpResult, PluginBox};
use skyport_plugin_api::ops::{self, Health};
use skyport_plugin_api::sdk::{completion_channel, CallContext, CompletionReceiver};

use async_trait::async_trait;
use skyport_core::clock::SharedClock;
use skyport_core::config::{Isolation, PluginConfig};
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::metrics::Metrics;

use crate::health::HealthCell;
use crate::host::GatewayHost;
use crate::isolation::remote::RemotePlugin;
use crate::isolation::supervisor::{check_in_child, ChildSpec, ProcessPlugin, START_TIMEOUT};
use crate::isolation::wire::Limits;
use crate::loader::{load_library, pin_copy, validate_config, ManifestInfo, Refusal};
use crate::plugins::{callable, HealthView, PluginFacts, Plugins};

mod call_series;
mod calls;
mod reload;
mod remote;
mod state_dir;

pub use reload::{ReloadError, Reloaded, DRAIN_LIMIT};
use state_dir::own_state_dir;

/// Where a loaded instance's code runs.
enum Backend {
    /// Inside the gateway, through the ABI directly.
    InProcess(PluginBox),
    /// In a supervised process of its own.
    Process(Arc<ProcessPlugin>),
    /// In a plugin host on another machine.
    Remote(Arc<RemotePlugin>),
}

/// One running version of a plugin instance: what it loaded and where it runs. A reload
/// replaces it as a whole.
pub struct Running {
    /// Manifest facts.
    pub manifest: ManifestInfo,
    /// Operations it serves.
    pub ops: Vec<String>,
    /// One-line summary.
    pub summary: String,
    /// sha256 of the library bytes it runs.
    pub sha256: String,
    backend: Backend,
    /// Calls started on it and not yet answered (a replaced version drains them).
    in_flight: AtomicUsize,
}

impl Running {
    /// The id of the process serving it: its own (process isolation, while running) or
    /// the gateway's.
    pub fn pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::InProcess(_) => Some(std::process::id()),
            Backend::Process(process) => process.pid(),
            Backend::Remote(_) => None,
        }
    }

    /// Stops it (in-process ones outside the async workers).
    async fn shutdown(self: Arc<Self>, name: &str) {
        match &self.backend {
            Backend::InProcess(_) => {
                let running = Arc::clone(&self);
                let stopped = tokio::task::spawn_blocking(move || {
                    if let Backend::InProcess(instance) = &running.backend {
                        instance.shutdown();
                    }
                });
                if let Err(e) = stopped.await {
                    tracing::warn!(plugin = %name, error = %e, "plugin shutdown failed");
                }
            }
            Backend::Process(process) => process.shutdown().await,
            Backend::Remote(remote) => remote.shutdown().await,
        }
    }
}

/// A call counted in its version's `in_flight` until it is dropped (answered or
/// abandoned), so a replaced version drains exactly the calls it still owes.
struct InFlight(Arc<Running>);

impl InFlight {
    /// Counts a call on the version current now. The count is taken before the version is
    /// confirmed current: a reload that replaces it afterwards sees the call and waits for
    /// it, and a call that lost the race moves on to the new version.
    fn on_current(handle: &PluginHandle) -> Self {
        loop {
            let running = handle.running();
            running.in_flight.fetch_add(1, Ordering::SeqCst);
            if Arc::ptr_eq(&running, &handle.running.load()) {
                return Self(running);
            }
            running.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One configured plugin instance; the version running can be replaced by a reload.
pub struct PluginHandle {
    /// Instance name (unique).
    pub name: String,
    /// Where its code runs.
    pub isolation: Isolation,
    /// Its configuration entry.
    config: PluginConfig,
    /// The configured library file.
    file: PathBuf,
    running: ArcSwap<Running>,
    health: Arc<HealthCell>,
    /// Held while a reload of this instance is under way.
    reloading: tokio::sync::Mutex<()>,
}

impl PluginHandle {
    /// Current health.
    pub fn health(&self) -> HealthView {
        self.health.view()
    }

    /// The version running now.
    pub fn running(&self) -> Arc<Running> {
        self.running.load_full()
    }
}

/// All loaded plugins and the refusals of this start.
pub struct PluginRegistry {
    plugins: Vec<Arc<PluginHandle>>,
    refusals: Vec<Refusal>,
    next_call: AtomicU64,
    metrics: Arc<Metrics>,
    call_series: call_series::CallSeries,
    state_dir: PathBuf,
    host_exe: PathBuf,
    host_ops: crate::host::HostOpsSlot,
    clock: SharedClock,
}

/// Default deadline of a plugin call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl PluginRegistry {
    /// How many times plugin `name`'s process has been restarted after a crash since the
    /// gateway started (0 for a plugin in the gateway's own process).
    pub fn restarts(&self, name: &str) -> u64 {
        self.metrics
            .plugin_restarts
            .get_or_create(&vec![("plugin", name.to_string())])
            .get()
    }

    /// An empty registry; call deadlines and durations are read from `clock`.
    pub fn empty(metrics: Arc<Metrics>, clock: SharedClock) -> Self {
        Self {
            plugins: Vec::new(),
            refusals: Vec::new(),
            next_call: AtomicU64::new(1),
            call_series: call_series::CallSeries::new(Arc::clone(&metrics)),
            metrics,
            state_dir: PathBuf::from("plugins"),
            host_exe: PathBuf::from("skyport"),
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
    /// `host_exe` is the `skyport` executable, which hosts plugin processes
    /// (`skyport plugin-host`) and checks libraries before they are loaded.
    pub async fn load_all(
        configs: &[PluginConfig],
        plugin_dir: &Path,
        state_dir: &Path,
        host_exe: &Path,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Result<Self, Refusal> {
        let mut registry = Self::empty(metrics, clock);
        registry.state_dir = state_dir.join("plugins");
        registry.host_exe = host_exe.to_path_buf();
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
            // A remote plugin's library is on its plugin host's machine, not this one.
            if !file.exists() && !config.required && config.isolation != Isolation::Remote {
                tracing::warn!(plugin = %fallback, file = %file.display(), "plugin \"{fallback}\" ({}) skipped: not built or not installed", file.display());
                continue;
            }
            match registry.load_one(config, &file, &fallback).await {
                Ok(handle) => {
                    let running = handle.running();
                    tracing::info!(plugin = %handle.name, version = %running.manifest.version, kind = running.manifest.kind, isolation = ?handle.isolation, "plugin loaded");
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
        file: &Path,
        fallback: &str,
    ) -> Result<Arc<PluginHandle>, Refusal> {
        let name = match &config.name {
            Some(name) => name.clone(),
            // The instance is named after the plugin: its manifest is read first, in a
            // child, as every library is.
            None => {
                let spec = ChildSpec {
                    exe: self.host_exe.clone(),
                    name: fallback.to_string(),
                    file: file.to_path_buf(),
                    library: file.to_path_buf(),
                    sha256: config.sha256.clone(),
                    config: "{}".into(),
                    state_dir: self.state_dir.clone(),
                    limits: Limits::default(),
                    user: None,
                    env: Vec::new(),
                };
                check_in_child(&spec).await?.manifest.name
            }
        };
        if self.plugins.iter().any(|p| p.name == name) {
            return Err(Refusal {
                plugin: name.clone(),
                version: None,
                file: file.to_path_buf(),
                reason: format!("duplicate name: a plugin named \"{name}\" is already loaded"),
            });
        }
        let health = Arc::new(HealthCell::new(&name, Arc::clone(&self.metrics)));
        let running = self.start_version(&name, config, file, &health).await?;
        let handle = Arc::new(PluginHandle {
            name,
            isolation: config.isolation,
            config: config.clone(),
            file: file.to_path_buf(),
            running: ArcSwap::new(running),
            health,
            reloading: tokio::sync::Mutex::new(()),
        });
        self.probe(&handle).await;
        Ok(handle)
    }

    /// Checks, starts and instantiates `file` for instance `name` as `config` says.
    async fn start_version(
        &self,
        name: &str,
        config: &PluginConfig,
        file: &Path,
        health: &Arc<HealthCell>,
    ) -> Result<Arc<Running>, Refusal> {
        let refuse = |version: Option<String>, reason: String| Refusal {
            plugin: name.to_string(),
            version,
            file: file.to_path_buf(),
            reason,
        };
        if config.isolation == Isolation::Remote {
            return self.start_remote(name, config, file, health).await;
        }
        let config_json = serde_json::to_value(&config.config)
            .map_err(|e| refuse(None, format!("config cannot be converted to JSON: {e}")))?;
        let pinned = {
            let (file, sha256, dir) = (
                file.to_path_buf(),
                config.sha256.clone(),
                self.state_dir.join(".pinned"),
            );
            tokio::task::spawn_blocking(move || pin_copy(&file, sha256.as_deref(), &dir))
                .await
                .map_err(|e| e.to_string())
                .and_then(|pinned| pinned)
                .map_err(|reason| refuse(None, reason))?
        };
        if let Some(user) = &config.user {
            // The gateway's state directory: `self.state_dir` is its `plugins/`.
            let root = self.state_dir.parent().unwrap_or(&self.state_dir);
            own_state_dir(&self.state_dir.join(name), root, user).map_err(|e| refuse(None, e))?;
        }
        let spec = ChildSpec {
            exe: self.host_exe.clone(),
            name: name.to_string(),
            file: file.to_path_buf(),
            library: pinned.path.clone(),
            sha256: Some(pinned.sha256.clone()),
            config: config_json.to_string(),
            state_dir: self.state_dir.join(name),
            limits: Limits {
                max_memory_mib: config.max_memory_mib,
                max_open_files: config.max_open_files,
            },
            user: config.user.clone(),
            env: config.env.clone(),
        };
        let host = self.gateway_host(name);
        let (backend, manifest, description, sha256) = match config.isolation {
            Isolation::Process => {
                let (plugin, loaded) = ProcessPlugin::start(spec, Arc::clone(health), host).await?;
                (
                    Backend::Process(plugin),
                    loaded.manifest,
                    loaded.description,
                    loaded.sha256,
                )
            }
            Isolation::Remote => unreachable!("started by start_remote"),
            Isolation::InProcess => {
                // Checked in a child first: a library that crashes while loading takes
                // only that child down. Then these same bytes are loaded here.
                let checked = check_in_child(&spec).await?;
                let (path, fallback, pin) = (pinned.path, name.to_string(), checked.sha256.clone());
                let library =
                    tokio::task::spawn_blocking(move || load_library(&path, &fallback, Some(&pin)))
                        .await
                        .map_err(|e| refuse(None, format!("loader task failed: {e}")))?
                        .map_err(|refusal| Refusal {
                            file: file.to_path_buf(),
                            ..refusal
                        })?;
                let version = Some(library.manifest.version.clone());
                validate_config(&library.description.config_schema, &config_json)
                    .map_err(|r| refuse(version.clone(), r))?;
                let instance = instantiate_bounded(&library, config_json.to_string(), host)
                    .await
                    .map_err(|r| refuse(version, r))?;
                (
                    Backend::InProcess(instance),
                    library.manifest,
                    library.description,
                    library.sha256,
                )
            }
        };
        Ok(Self::running(name, manifest, description, sha256, backend))
    }

    /// The host services plugin instance `name` gets.
    fn gateway_host(&self, name: &str) -> GatewayHost {
        GatewayHost {
            plugin: name.to_string(),
            metrics: Arc::clone(&self.metrics),
            state_dir: self.state_dir.join(name),
            base_dir: self.base_dir().to_path_buf(),
            ops: Arc::clone(&self.host_ops),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The gateway's state directory (`self.state_dir` is its `plugins/`), against which
    /// relative paths in a plugin's entry resolve.
    fn base_dir(&self) -> &Path {
        self.state_dir.parent().unwrap_or(&self.state_dir)
    }

    /// A running version of instance `name`.
    fn running(
        name: &str,
        manifest: ManifestInfo,
        description: skyport_plugin_api::Description,
        sha256: String,
        backend: Backend,
    ) -> Arc<Running> {
        warn_if_newer(name, &manifest);
        Arc::new(Running {
            manifest,
            ops: description.ops,
            summary: description.summary,
            sha256,
            backend,
            in_flight: AtomicUsize::new(0),
        })
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
            Ok(Ok(health)) => {
                handle.health.set_notes(health.notes);
                handle.health.set(health.healthy, health.reason)
            }
            Ok(Err(e)) => handle
                .health
                .set(false, Some(format!("health answer malformed: {e}"))),
            Err(e) => {
                let reason = e.cause.clone().unwrap_or(e.public.clone());
                handle
                    .health
                    .set(false, Some(format!("health check failed: {reason}")))
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

    /// Shuts every instance down.
    pub async fn shutdown(&self) {
        for handle in &self.plugins {
            handle.running().shutdown(&handle.name).await;
        }
    }
}

/// Logs a warning when the plugin was built against a newer plugin-api minor than this
/// gateway implements: it loads, but ops or fields it relies on may be missing.
fn warn_if_newer(name: &str, manifest: &ManifestInfo) {
    let minor = manifest
        .api_version
        .split_once('.')
        .and_then(|(_, minor)| minor.parse::<u32>().ok());
    if let Some(minor) = minor.filter(|m| *m > skyport_plugin_api::API_MINOR) {
        tracing::warn!(
            plugin = %name,
            "plugin \"{name}\" was built against plugin-api 1.{minor}; this gateway implements 1.{}: ops or fields it relies on may be missing (upgrade the gateway)",
            skyport_plugin_api::API_MINOR
        );
    }
}

/// Runs a library's `instantiate` (the plugin's `init`) on a thread of its own, so that
/// no plugin code runs on a gateway thread; gives up after [`START_TIMEOUT`] (the thread
/// is then left to finish or hang on its own).
async fn instantiate_bounded(
    library: &crate::loader::LoadedLibrary,
    config: String,
    host: GatewayHost,
) -> Result<PluginBox, String> {
    let module = library.module;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("init-{}", host.plugin))
        .spawn(move || {
            let host = HostServices_TO::from_value(host, TD_Opaque);
            let result = match (module.instantiate())(RStr::from(config.as_str()), host) {
                RResult::ROk(instance) => Ok(instance),
                RResult::RErr(e) => Err(format!("init failure: {e}")),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| format!("cannot start a thread for its init: {e}"))?;
    match tokio::time::timeout(START_TIMEOUT, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("init failure: its init thread ended without an answer".into()),
        Err(_) => Err(format!("its init did not finish within {START_TIMEOUT:?}")),
    }
}

#[async_trait]
impl Plugins for PluginRegistry {
    fn loaded(&self) -> Vec<PluginFacts> {
        self.plugins
            .iter()
            .map(|p| PluginFacts {
                name: p.name.clone(),
                kind: p.running().manifest.kind,
                ops: p.running().ops.clone(),
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

    async fn describe(
        &self,
        name: &str,
        op: &str,
        params: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, GatewayError> {
        let handle = self.get(name).map(Arc::clone).ok_or_else(|| {
            GatewayError::not_found(format!("no plugin named '{name}' is loaded"))
        })?;
        self.call_handle(
            &handle,
            op,
            1,
            params.to_string(),
            CallContext::default(),
            timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests;
