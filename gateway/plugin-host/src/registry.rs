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
use crate::isolation::supervisor::{check_in_child, ChildSpec, ProcessPlugin, START_TIMEOUT};
use crate::isolation::wire::Limits;
use crate::loader::{load_library, pin_copy, validate_config, ManifestInfo, Refusal};
use crate::plugins::{callable, HealthView, PluginFacts, Plugins};

/// Where a loaded instance's code runs.
enum Backend {
    /// Inside the gateway, through the ABI directly.
    InProcess(PluginBox),
    /// In a supervised process of its own.
    Process(Arc<ProcessPlugin>),
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
        }
    }
}

/// Creates an instance's state directory and gives it to `user`, who runs its process.
///
/// The gateway's own directories on the way (`root`, the private state directory, and
/// below it) are opened to others for search only (`o+x`: a path through, no listing);
/// a directory above `root` that `user` cannot pass is refused by name.
fn own_state_dir(dir: &Path, root: &Path, user: &str) -> Result<(), String> {
    let (uid, gid) = crate::isolation::supervisor::lookup_user(user)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot make its state directory {}: {e}", dir.display()))?;
    rustix::fs::chown(
        dir,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|e| format!("cannot give {} to user {user}: {e}", dir.display()))?;
    for ancestor in dir.ancestors().skip(1) {
        if ancestor.starts_with(root) {
            searchable_by_others(ancestor).map_err(|e| {
                format!("cannot let user {user} through {}: {e}", ancestor.display())
            })?;
            continue;
        }
        searchable_by(ancestor, uid, gid).map_err(|mode| {
            format!(
                "user {user} cannot reach its state directory: {} (mode {mode:o}) is not \
                 searchable by it; allow it (chmod o+x) or run the plugin without `user`",
                ancestor.display()
            )
        })?;
    }
    Ok(())
}

/// Adds search permission for others to directory `dir` (nothing else), when it lacks it.
fn searchable_by_others(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o001 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))?;
    }
    Ok(())
}

/// Whether `uid`/`gid` may pass through directory `dir`; its mode when not.
fn searchable_by(dir: &Path, uid: u32, gid: u32) -> Result<(), u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(()); // what cannot be inspected is left to the kernel to refuse
    };
    let mode = meta.mode() & 0o7777;
    let bit = if meta.uid() == uid {
        0o100
    } else if meta.gid() == gid {
        0o010
    } else {
        0o001
    };
    if uid == 0 || mode & bit != 0 {
        Ok(())
    } else {
        Err(mode)
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
    state_dir: PathBuf,
    host_exe: PathBuf,
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
            if !file.exists() && !config.required {
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
        let host = GatewayHost {
            plugin: name.to_string(),
            metrics: Arc::clone(&self.metrics),
            state_dir: self.state_dir.join(name),
            // `self.state_dir` is the gateway state directory's `plugins/`.
            base_dir: self
                .state_dir
                .parent()
                .unwrap_or(&self.state_dir)
                .to_path_buf(),
            ops: Arc::clone(&self.host_ops),
            runtime: tokio::runtime::Handle::current(),
        };
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
        warn_if_newer(name, &manifest);
        Ok(Arc::new(Running {
            manifest,
            ops: description.ops,
            summary: description.summary,
            sha256,
            backend,
            in_flight: AtomicUsize::new(0),
        }))
    }

    /// Replaces instance `name`'s running version with its configured file, as it is now
    /// (`if_changed`: only when the file's bytes differ from what runs). The new version
    /// starts beside the old and must answer `health@1` healthy; only then does it take new
    /// calls, while the old finishes its calls in flight (at most [`DRAIN_LIMIT`]) and
    /// stops. A new version that is refused or unhealthy is stopped, and the old keeps
    /// serving.
    pub async fn reload(&self, name: &str, if_changed: bool) -> Result<Reloaded, ReloadError> {
        let handle = self
            .get(name)
            .ok_or_else(|| ReloadError::NotLoaded(name.to_string()))?;
        let _one_at_a_time = handle.reloading.lock().await;
        let old = handle.running();
        if if_changed {
            let file = handle.file.clone();
            let unchanged = tokio::task::spawn_blocking(move || std::fs::read(&file))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|bytes| crate::loader::sha256_hex(&bytes) == old.sha256)
                .unwrap_or(true);
            if unchanged {
                return Ok(Reloaded::Unchanged);
            }
        }
        // The new version reports to a health cell of its own until it has proved itself.
        let trial = Arc::new(HealthCell::detached(name));
        let new = self
            .start_version(name, &handle.config, &handle.file, &trial)
            .await
            .map_err(ReloadError::Refused)?;
        let trial_health = Arc::new(HealthCell::detached(name));
        let answer = self
            .call_running(
                name,
                &new,
                &trial_health,
                ops::HEALTH,
                1,
                "{}".into(),
                CallContext::default(),
                Duration::from_secs(10),
            )
            .await;
        let unhealthy = match answer.map(serde_json::from_value::<Health>) {
            Ok(Ok(Health { healthy: true, .. })) => None,
            Ok(Ok(Health { reason, .. })) => {
                Some(reason.unwrap_or_else(|| "no reason given".into()))
            }
            Ok(Err(e)) => Some(format!("health answer malformed: {e}")),
            Err(e) => Some(e.cause.clone().unwrap_or(e.public.clone())),
        };
        if let Some(reason) = unhealthy {
            Arc::clone(&new).shutdown(name).await;
            return Err(ReloadError::Unhealthy(reason));
        }
        if let Err(changed) = self.same_regions(name, &old, &new, &trial_health).await {
            Arc::clone(&new).shutdown(name).await;
            return Err(changed);
        }
        if let Backend::Process(process) = &new.backend {
            process.report_health_to(Arc::clone(&handle.health));
        }
        handle.running.store(Arc::clone(&new));
        handle.health.set(true, None);
        if let Backend::Process(process) = &old.backend {
            process.retire();
        }
        tracing::info!(plugin = %name, from = %old.manifest.version, to = %new.manifest.version, sha256 = %new.sha256, "plugin reloaded; the old version drains");
        let name = name.to_string();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
            while old.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            old.shutdown(&name).await;
        });
        Ok(Reloaded::Replaced {
            version: new.manifest.version.clone(),
            sha256: new.sha256.clone(),
        })
    }

    /// Whether `new` serves the regions `old` does (both asked `regions@1`; a plugin that
    /// serves neither has none).
    async fn same_regions(
        &self,
        name: &str,
        old: &Running,
        new: &Running,
        health: &HealthCell,
    ) -> Result<(), ReloadError> {
        let regions_op = format!("{}@1", ops::REGIONS);
        let mut answers = Vec::new();
        for (which, running) in [("old", old), ("new", new)] {
            if !running.ops.contains(&regions_op) {
                answers.push("none".to_string());
                continue;
            }
            let answer = self
                .call_running(
                    name,
                    running,
                    health,
                    ops::REGIONS,
                    1,
                    "{}".into(),
                    CallContext::default(),
                    Duration::from_secs(10),
                )
                .await;
            let answer = match (which, answer) {
                (_, Ok(answer)) => answer,
                // A running version that cannot answer (crashed, down for good) is what a
                // reload is there to replace: nothing to compare with.
                ("old", Err(e)) => {
                    tracing::warn!(plugin = %name, error = %e.public,
                        "the running version did not answer regions@1; the new one is not compared with it");
                    return Ok(());
                }
                (_, Err(e)) => {
                    return Err(ReloadError::Unhealthy(format!(
                        "regions@1 failed: {}",
                        e.cause.clone().unwrap_or(e.public.clone())
                    )))
                }
            };
            let regions: Vec<ops::Region> = serde_json::from_value(answer)
                .map_err(|e| ReloadError::Unhealthy(format!("regions@1 answer malformed: {e}")))?;
            let mut names: Vec<String> = regions
                .iter()
                .map(|r| format!("{} ({})", r.name, r.zones.join(", ")))
                .collect();
            names.sort();
            answers.push(format!("[{}]", names.join(", ")));
        }
        if answers[0] == answers[1] {
            Ok(())
        } else {
            Err(ReloadError::RegionsChanged {
                old: answers.remove(0),
                new: answers.remove(0),
            })
        }
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

    async fn call_handle(
        &self,
        handle: &Arc<PluginHandle>,
        op: &str,
        version: u32,
        params: String,
        context: CallContext,
        timeout: Duration,
    ) -> Result<serde_json::Value, GatewayError> {
        let running = InFlight::on_current(handle);
        self.call_running(
            &handle.name,
            &running.0,
            &handle.health,
            op,
            version,
            params,
            context,
            timeout,
        )
        .await
    }

    /// Calls `op@version` on one running version of plugin `name`; a panic marks `health`.
    #[allow(clippy::too_many_arguments)]
    async fn call_running(
        &self,
        name: &str,
        running: &Running,
        health: &HealthCell,
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
        let started = self.clock.monotonic();
        let receiver: CompletionReceiver = match &running.backend {
            Backend::InProcess(instance) => {
                let (completion, receiver) = completion_channel();
                instance.start(request, completion);
                receiver
            }
            Backend::Process(process) => match process.start_call(&request, timeout) {
                Ok(receiver) => receiver,
                Err(refused) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let _ = tx.send(OpResult::RErr(refused));
                    rx
                }
            },
        };
        let outcome = tokio::time::timeout(timeout, receiver).await;
        self.metrics
            .plugin_call_seconds
            .get_or_create(&vec![("plugin", name.to_string())])
            .observe(self.clock.monotonic().saturating_sub(started).as_secs_f64());
        let (code, result) = match outcome {
            Err(_elapsed) => {
                match &running.backend {
                    Backend::InProcess(instance) => instance.cancel(id),
                    Backend::Process(process) => process.cancel(id),
                }
                (
                    error_code::TIMEOUT.to_string(),
                    Err(GatewayError::new(
                        ErrorKind::Timeout,
                        format!("plugin '{}' did not answer {op} within {timeout:?}", name),
                    )),
                )
            }
            Ok(Err(_dropped)) => (
                error_code::INTERNAL.to_string(),
                Err(GatewayError::internal(format!(
                    "plugin '{}' dropped the completion of {op}",
                    name
                ))),
            ),
            Ok(Ok(RResult::ROk(json))) => match serde_json::from_str(json.as_str()) {
                Ok(value) => ("ok".to_string(), Ok(value)),
                Err(e) => (
                    error_code::INTERNAL.to_string(),
                    Err(GatewayError::internal(format!(
                        "plugin '{}' returned invalid JSON for {op}: {e}",
                        name
                    ))),
                ),
            },
            Ok(Ok(RResult::RErr(err))) => {
                if err.code.as_str() == error_code::PANICKED {
                    tracing::error!(plugin = %name, op, error = %err, "plugin panicked; marked unhealthy");
                    health.set(false, Some(format!("panicked in {op}")));
                }
                (err.code.to_string(), Err(map_plugin_error(name, op, &err)))
            }
        };
        self.metrics
            .plugin_calls
            .get_or_create(&vec![
                ("plugin", name.to_string()),
                ("op", op.to_string()),
                ("outcome", code),
            ])
            .inc();
        result
    }

    /// Shuts every instance down.
    pub async fn shutdown(&self) {
        for handle in &self.plugins {
            handle.running().shutdown(&handle.name).await;
        }
    }
}

/// How long a replaced version may take to finish its calls in flight before it is
/// stopped anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new version took over.
    Replaced {
        /// Its version.
        version: String,
        /// sha256 of its library.
        sha256: String,
    },
    /// The file holds the bytes already running (only when asked to reload on change).
    Unchanged,
}

/// Why a reload left the running version in place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// No instance has that name.
    #[error("no plugin named '{0}' is loaded")]
    NotLoaded(String),
    /// The new version was refused (the loader's one line).
    #[error("{0}")]
    Refused(Refusal),
    /// The new version started but did not answer healthy.
    #[error("the new version is not healthy: {0}")]
    Unhealthy(String),
    /// The new version serves other regions than the running one: inventory, placement
    /// and the region list were built on the old set, so such a change needs a restart.
    #[error("the new version serves regions {new}, the running one {old}: a change of regions takes a restart of the gateway")]
    RegionsChanged {
        /// What the running version serves.
        old: String,
        /// What the new one serves.
        new: String,
    },
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

#[cfg(test)]
mod tests {
    use skyport_plugin_api::PluginError;

    use super::*;

    #[test]
    fn a_directory_is_searchable_by_owner_group_or_others_as_its_mode_says() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("skyport-searchable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = |mode| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        set(0o700).unwrap();
        // Owned by root here: another uid in another group needs the others' bit.
        assert_eq!(searchable_by(&dir, 65534, 65534), Err(0o700));
        assert_eq!(searchable_by(&dir, 0, 0), Ok(()));
        set(0o711).unwrap();
        assert_eq!(searchable_by(&dir, 65534, 65534), Ok(()));
        set(0o750).unwrap();
        assert_eq!(searchable_by(&dir, 65534, 0), Ok(()), "group");
        assert_eq!(searchable_by(&dir, 65534, 65534), Err(0o750));
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
