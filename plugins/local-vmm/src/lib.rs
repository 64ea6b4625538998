//! `local-vmm`: a Skyport provider plugin that runs real virtual machines on this host with
//! QEMU (KVM when usable, else TCG) and drives them over QMP.
//!
//! Operations (schema version 1):
//! - `health`, `regions`
//! - `instance.create` `{image, instance_type, vcpus, memory_mib}` -> the instance, `pending`;
//!   it becomes `running` when the guest prints its ready marker
//! - `instance.get` / `instance.stop` / `instance.start` / `instance.terminate` `{id}`
//! - `instance.console` `{id, tail_bytes?}` -> `{output}`
//! - `instance.list` -> every VM with its state; `inventory.list` -> the same plus orphan
//!   QEMU processes
//! - `images.list`, `images.register` `{name, kernel, initrd, disk?}`, `images.remove`
//!   `{name}`
#![forbid(unsafe_code)]

mod images;
mod qmp;
mod vm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::{export_plugin, ops, Description, Host, OpCall, Plugin, PluginError};
use tokio::sync::Semaphore;

use images::{ImageFiles, ImageLibrary};
use vm::{Launcher, VmDir, VmSpec, VmState};

/// Configuration (`[[plugins]] config = {...}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmmConfig {
    /// Directory of images: `<library>/<image>/{vmlinuz,initramfs.gz,disk.qcow2}`.
    #[serde(default = "default_library")]
    image_library: String,
    /// Images registered in place: `[{name, kernel, initrd, disk}]`.
    #[serde(default)]
    images: Vec<ImageFiles>,
    /// State directory; default: the one the host assigns (`<state-dir>/plugins/<name>`).
    state_dir: Option<String>,
    /// `auto`, `tcg` or `kvm`.
    #[serde(default = "default_accel")]
    accelerator: String,
    /// Region name.
    #[serde(default = "default_region")]
    region: String,
    /// VMs booting at the same time.
    #[serde(default = "default_boots")]
    max_concurrent_boots: usize,
    /// Seconds a boot may take before the VM is marked failed.
    #[serde(default = "default_ready_timeout")]
    ready_timeout_secs: u64,
    /// QEMU binary.
    #[serde(default = "default_qemu")]
    qemu: String,
    /// qemu-img binary.
    #[serde(default = "default_qemu_img")]
    qemu_img: String,
}

fn default_library() -> String {
    "var/images".into()
}
fn default_accel() -> String {
    "auto".into()
}
fn default_region() -> String {
    "local-1".into()
}
fn default_boots() -> usize {
    2
}
fn default_ready_timeout() -> u64 {
    90
}
fn default_qemu() -> String {
    "qemu-system-x86_64".into()
}
fn default_qemu_img() -> String {
    "qemu-img".into()
}

/// The default image, built by `plugins/local-vmm/prepare-guest.sh`.
const DEFAULT_IMAGE: &str = "skyport-tiny";

struct LocalVmm {
    config: VmmConfig,
    launcher: Launcher,
    images: ImageLibrary,
    state_dir: PathBuf,
    boots: Arc<Semaphore>,
    vms: Arc<Mutex<HashMap<String, VmSpec>>>,
}

fn err(code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

/// `kvm` only when /dev/kvm opens and the host is not a nested kvm_pvm host (where an
/// unmodified kernel barely boots); `tcg` with a bounded translation cache otherwise.
fn choose_accelerator(configured: &str) -> String {
    let wanted = std::env::var("SKYPORT_VMM_ACCEL").unwrap_or_else(|_| configured.to_string());
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
        && !Path::new("/sys/module/kvm_pvm").exists();
    match wanted.as_str() {
        "kvm" => "kvm".into(),
        "tcg" => "tcg,tb-size=64".into(),
        _ if kvm_usable => "kvm".into(),
        _ => "tcg,tb-size=64".into(),
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl LocalVmm {
    fn health(&self) -> ops::Health {
        let reason = if find_program(&self.config.qemu).is_none() {
            Some(format!(
                "{} not found; install qemu-system-x86",
                self.config.qemu
            ))
        } else if find_program(&self.config.qemu_img).is_none() {
            Some(format!(
                "{} not found; install qemu-utils",
                self.config.qemu_img
            ))
        } else if self.images.list().is_empty() {
            Some(format!(
                "no image in {}; run plugins/local-vmm/prepare-guest.sh {}",
                self.images.root().display(),
                self.images.root().join(DEFAULT_IMAGE).display()
            ))
        } else {
            None
        };
        ops::Health {
            healthy: reason.is_none(),
            reason,
        }
    }

    fn dir(&self, id: &str) -> VmDir {
        VmDir(vm::vms_root(&self.state_dir).join(id))
    }

    fn view(&self, spec: &VmSpec) -> Value {
        json!({
            "id": spec.id,
            "state": spec.state,
            "image": spec.image,
            "instance_type": spec.instance_type,
            "vcpus": spec.vcpus,
            "memory_mib": spec.memory_mib,
            "region": self.config.region,
        })
    }

    /// The VM's spec. A `running` VM whose QEMU has died (killed, crashed, or powered off
    /// from inside the guest) is reported, and recorded, as `stopped`: its disk is kept and
    /// it can be started again (the policy EC2 applies to an instance-initiated shutdown).
    fn get(&self, id: &str) -> Result<VmSpec, PluginError> {
        let spec = self
            .vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| err(error_code::NOT_FOUND, format!("no VM {id}")))?;
        if spec.state == VmState::Running && !spec.pid.is_some_and(|pid| vm::is_our_qemu(pid, id)) {
            log::warn!("VM {id}: QEMU is gone; marked stopped");
            self.set_state(id, VmState::Stopped, None);
            return Ok(VmSpec {
                state: VmState::Stopped,
                pid: None,
                ..spec
            });
        }
        Ok(spec)
    }

    fn set_state(&self, id: &str, state: VmState, pid: Option<u32>) {
        let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(spec) = vms.get_mut(id) {
            spec.state = state;
            spec.pid = pid;
            if let Err(e) = self.dir(id).save(spec) {
                log::error!("VM {id}: {e}");
            }
        }
    }

    /// VMs that were still `pending` when the previous gateway stopped: a launched one's
    /// ready marker is waited for again (the task that waited for it died with that
    /// gateway), one never launched is booted.
    fn resume_pending_boots(self: &Arc<Self>) {
        let booting: Vec<(String, Option<u32>)> = self
            .vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|spec| spec.state == VmState::Pending)
            .map(|spec| (spec.id.clone(), spec.pid))
            .collect();
        for (id, pid) in booting {
            match pid {
                Some(pid) => {
                    let this = Arc::clone(self);
                    tokio::spawn(async move { this.await_ready(&id, pid).await });
                }
                None => self.boot(id),
            }
        }
    }

    /// Boots `id` in the background: wait for a boot slot, launch, wait for the marker.
    fn boot(self: &Arc<Self>, id: String) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let Ok(_slot) = this.boots.clone().acquire_owned().await else {
                return;
            };
            let Ok(spec) = this.get(&id) else { return };
            let launched = match this.images.get(&spec.image) {
                Some(image) => this.launcher.launch(&this.dir(&id), &spec, &image).await,
                None => Err(format!("image {} is no longer in the library", spec.image)),
            };
            match launched {
                Ok(pid) => {
                    this.set_state(&id, VmState::Pending, Some(pid));
                    this.await_ready(&id, pid).await;
                }
                Err(e) => {
                    log::warn!("VM {id} failed to start: {e}");
                    this.set_state(&id, VmState::Stopped, None);
                }
            }
        });
    }

    /// Waits for the guest's ready marker: `running` then, else powered off and `stopped`.
    async fn await_ready(&self, id: &str, pid: u32) {
        let dir = self.dir(id);
        let timeout = Duration::from_secs(self.config.ready_timeout_secs);
        match vm::wait_ready(&dir, pid, id, timeout).await {
            Ok(()) => {
                log::info!("VM {id} running (pid {pid})");
                self.set_state(id, VmState::Running, Some(pid));
            }
            Err(e) => {
                log::warn!("VM {id} failed to boot: {e}");
                let _ = vm::power_off(&dir, pid, id, Duration::from_secs(1)).await;
                self.set_state(id, VmState::Stopped, None);
            }
        }
    }

    async fn create(self: &Arc<Self>, params: &Value) -> Result<Value, PluginError> {
        #[derive(Deserialize)]
        struct Create {
            image: String,
            instance_type: String,
            vcpus: u32,
            memory_mib: u32,
        }
        let p: Create = serde_json::from_value(params.clone())
            .map_err(|e| err(error_code::INVALID_INPUT, format!("instance.create: {e}")))?;
        let health = self.health();
        if !health.healthy {
            return Err(err(
                error_code::UNAVAILABLE,
                health.reason.unwrap_or_default(),
            ));
        }
        if self.images.get(&p.image).is_none() {
            let known: Vec<String> = self.images.list().into_iter().map(|i| i.name).collect();
            return Err(err(
                error_code::INVALID_INPUT,
                format!(
                    "unknown image '{}'; choose one of {}",
                    p.image,
                    known.join(", ")
                ),
            ));
        }
        if p.memory_mib < 96 || !(1..=16).contains(&p.vcpus) {
            return Err(err(
                error_code::INVALID_INPUT,
                "memory_mib must be at least 96 and vcpus 1-16",
            ));
        }
        let id = format!("vm-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let dir = self.dir(&id);
        std::fs::create_dir_all(&dir.0).map_err(|e| err(error_code::INTERNAL, e.to_string()))?;
        let spec = VmSpec {
            id: id.clone(),
            image: p.image,
            instance_type: p.instance_type,
            vcpus: p.vcpus,
            memory_mib: p.memory_mib,
            state: VmState::Pending,
            pid: None,
        };
        dir.save(&spec).map_err(|e| err(error_code::INTERNAL, e))?;
        let view = self.view(&spec);
        self.vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), spec);
        self.boot(id);
        Ok(view)
    }

    async fn stop(&self, id: &str) -> Result<Value, PluginError> {
        let spec = self.get(id)?;
        if spec.state != VmState::Running {
            return Err(err(
                error_code::CONFLICT,
                format!("instance is {:?}, not running", spec.state).to_lowercase(),
            ));
        }
        self.set_state(id, VmState::Stopping, spec.pid);
        if let Some(pid) = spec.pid {
            vm::power_off(&self.dir(id), pid, id, Duration::from_secs(10))
                .await
                .map_err(|e| err(error_code::INTERNAL, e))?;
        }
        self.set_state(id, VmState::Stopped, None);
        Ok(self.view(&self.get(id)?))
    }

    async fn start(self: &Arc<Self>, id: &str) -> Result<Value, PluginError> {
        let spec = self.get(id)?;
        if spec.state != VmState::Stopped {
            return Err(err(
                error_code::CONFLICT,
                format!("instance is {:?}, not stopped", spec.state).to_lowercase(),
            ));
        }
        self.set_state(id, VmState::Pending, None);
        self.boot(id.to_string());
        Ok(self.view(&self.get(id)?))
    }

    async fn terminate(&self, id: &str) -> Result<Value, PluginError> {
        let spec = self.get(id)?;
        self.set_state(id, VmState::ShuttingDown, spec.pid);
        if let Some(pid) = spec.pid {
            vm::power_off(&self.dir(id), pid, id, Duration::from_secs(2))
                .await
                .map_err(|e| err(error_code::INTERNAL, e))?;
        }
        let mut spec = self.get(id)?;
        spec.state = VmState::Terminated;
        spec.pid = None;
        // Forgotten first: a background task still watching this VM (its boot or readiness
        // wait, which sees QEMU exit) saves its spec only while it is known, so nothing
        // writes into the directory while it is being removed.
        self.vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let dir = self.dir(id).0;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("VM {id}: removing {}: {e}", dir.display());
            }
        }
        Ok(self.view(&spec))
    }

    /// Changes vCPU and memory of a stopped VM; the next start uses them.
    fn resize(&self, params: &Value) -> Result<Value, PluginError> {
        let id = id_param(params)?;
        let spec = self.get(&id)?;
        if spec.state != VmState::Stopped {
            return Err(err(
                error_code::CONFLICT,
                "an instance must be stopped to be resized",
            ));
        }
        let field = |name: &str| {
            params
                .get(name)
                .and_then(Value::as_u64)
                .map(|v| v as u32)
                .ok_or_else(|| err(error_code::INVALID_INPUT, format!("missing \"{name}\"")))
        };
        let (vcpus, memory_mib) = (field("vcpus")?, field("memory_mib")?);
        let instance_type = params
            .get("instance_type")
            .and_then(Value::as_str)
            .unwrap_or(&spec.instance_type)
            .to_string();
        let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        let entry = vms
            .get_mut(&id)
            .ok_or_else(|| err(error_code::NOT_FOUND, "gone"))?;
        entry.vcpus = vcpus;
        entry.memory_mib = memory_mib;
        entry.instance_type = instance_type;
        self.dir(&id)
            .save(entry)
            .map_err(|e| err(error_code::INTERNAL, e))?;
        Ok(self.view(entry))
    }

    /// Images: name, whether it has a disk template, and where it was registered.
    fn images(&self) -> Value {
        Value::Array(
            self.images
                .list()
                .into_iter()
                .map(|i| {
                    json!({
                        "name": i.name,
                        "kind": "kernel+initrd",
                        "disk_template": i.disk.is_some(),
                        "source": i.source,
                    })
                })
                .collect(),
        )
    }

    /// Removes an image no VM uses (a VM's disk is an overlay on its template).
    fn remove_image(&self, name: &str) -> Result<Value, PluginError> {
        let users = self
            .vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|spec| spec.image == name)
            .count();
        if users > 0 {
            return Err(err(
                error_code::CONFLICT,
                format!("image {name} is used by {users} VM(s); terminate them first"),
            ));
        }
        self.images.remove(name)?;
        Ok(json!({"name": name, "removed": true}))
    }

    /// Resets a running VM (QMP `system_reset`); it stays `running`.
    async fn reboot(&self, id: &str) -> Result<Value, PluginError> {
        let spec = self.get(id)?;
        if spec.state != VmState::Running {
            return Err(err(
                error_code::CONFLICT,
                "an instance must be running to be rebooted",
            ));
        }
        qmp::execute(
            &self.dir(id).qmp(),
            "system_reset",
            None,
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| err(error_code::INTERNAL, e))?;
        Ok(self.view(&spec))
    }

    /// QMP on a running VM: `query-status`, `stop` (pause) or `cont` (resume). A paused VM
    /// stays `running` in EC2's terms (EC2 has no paused state); its QMP status says
    /// `paused`. Returns the QMP status after the command.
    async fn qmp_control(&self, id: &str, command: &str) -> Result<Value, PluginError> {
        let spec = self.get(id)?;
        if spec.state != VmState::Running {
            return Err(err(
                error_code::CONFLICT,
                format!("instance is {:?}, not running", spec.state).to_lowercase(),
            ));
        }
        let qmp = self.dir(id).qmp();
        let timeout = Duration::from_secs(5);
        if command != "query-status" {
            qmp::execute(&qmp, command, None, timeout)
                .await
                .map_err(|e| err(error_code::INTERNAL, e))?;
        }
        let status = qmp::execute(&qmp, "query-status", None, timeout)
            .await
            .map_err(|e| err(error_code::INTERNAL, e))?;
        Ok(json!({"id": id, "state": spec.state, "qmp_status": status["status"]}))
    }

    /// The QEMU command line of a running VM (to check what a start used).
    fn command_line(&self, id: &str) -> Result<Value, PluginError> {
        let spec = self.get(id)?;
        let pid = spec
            .pid
            .ok_or_else(|| err(error_code::CONFLICT, "not running"))?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Ok(json!({"args": args}))
    }

    fn console(&self, id: &str, tail: usize) -> Result<Value, PluginError> {
        self.get(id)?;
        let bytes = std::fs::read(self.dir(id).serial()).unwrap_or_default();
        let start = bytes.len().saturating_sub(tail);
        Ok(json!({"output": String::from_utf8_lossy(&bytes[start..])}))
    }

    /// Every managed VM, its liveness checked (a dead QEMU shows as `stopped`).
    fn list(&self) -> Value {
        let ids: Vec<String> = self
            .vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut list: Vec<Value> = ids
            .iter()
            .filter_map(|id| self.get(id).ok())
            .map(|spec| self.view(&spec))
            .collect();
        list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        Value::Array(list)
    }

    /// [`list`](Self::list) plus orphans: QEMU processes launched from this state
    /// directory that no VM directory accounts for (its directory was removed, or its spec
    /// names another pid). They are reported, `"orphan": true`, never touched: an operator
    /// decides whether to kill them or restore their directory.
    fn inventory(&self) -> Value {
        let mut list = self.list();
        let orphans = self.orphans();
        if let Value::Array(items) = &mut list {
            items.extend(orphans.iter().map(|(pid, id)| {
                json!({"id": id, "state": "running", "region": self.config.region, "orphan": true, "pid": pid})
            }));
        }
        list
    }

    fn orphans(&self) -> Vec<(u32, String)> {
        let vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        vm::qemus_under(&vm::vms_root(&self.state_dir))
            .into_iter()
            .filter(|(pid, id)| {
                vms.get(id)
                    .is_none_or(|spec| spec.pid.is_some_and(|known| known != *pid))
            })
            .collect()
    }

    /// Loads every VM directory: live QEMUs are re-attached, dead ones become `stopped`.
    fn reattach(&self) {
        let root = vm::vms_root(&self.state_dir);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        // A QEMU launched just before the previous gateway died may not have its pid in
        // the spec yet: it is found by its pid file's place and its `-name`.
        let launched: HashMap<String, u32> = vm::qemus_under(&root)
            .into_iter()
            .map(|(pid, id)| (id, pid))
            .collect();
        let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries.flatten() {
            let dir = VmDir(entry.path());
            let Ok(mut spec) = dir.load() else {
                log::warn!("orphan VM directory {} (no readable spec)", dir.0.display());
                continue;
            };
            let live_pid = spec
                .pid
                .filter(|pid| vm::is_our_qemu(*pid, &spec.id))
                .or_else(|| launched.get(&spec.id).copied());
            if live_pid.is_some() && live_pid != spec.pid {
                spec.pid = live_pid;
                let _ = dir.save(&spec);
            }
            if live_pid.is_some() {
                // init runs inside the plugin's runtime context, outside any task.
                let answer = tokio::runtime::Handle::current().block_on(qmp::execute(
                    &dir.qmp(),
                    "query-status",
                    None,
                    Duration::from_secs(5),
                ));
                match answer {
                    Ok(status) => log::info!(
                        "VM {} re-attached (pid {:?}, QMP status {})",
                        spec.id,
                        spec.pid,
                        status["status"].as_str().unwrap_or("unknown")
                    ),
                    Err(e) => {
                        // Ours (its command line names it) but unreachable: it cannot be
                        // controlled, so it is stopped rather than left running unbilled.
                        log::warn!(
                            "VM {}: QEMU alive but QMP silent ({e}); stopping it",
                            spec.id
                        );
                        if let Some(pid) = spec.pid {
                            let _ = tokio::runtime::Handle::current().block_on(vm::power_off(
                                &dir,
                                pid,
                                &spec.id,
                                Duration::from_secs(1),
                            ));
                        }
                        spec.state = VmState::Stopped;
                        spec.pid = None;
                        let _ = dir.save(&spec);
                    }
                }
            } else if spec.state == VmState::Pending {
                // Asked to run but never launched: resume_pending_boots boots it.
                log::info!("VM {} was not launched yet; booting it", spec.id);
            } else if matches!(spec.state, VmState::Running | VmState::Stopping) {
                log::warn!("VM {} found dead; marked stopped", spec.id);
                spec.state = VmState::Stopped;
                spec.pid = None;
                let _ = dir.save(&spec);
            }
            vms.insert(spec.id.clone(), spec);
        }
        drop(vms);
        for (pid, id) in self.orphans() {
            log::warn!(
                "orphan QEMU pid {pid} (VM {id}): no VM directory accounts for it; \
                 kill it or restore {}",
                self.dir(&id).0.display()
            );
        }
    }
}

fn id_param(params: &Value) -> Result<String, PluginError> {
    params
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| err(error_code::INVALID_INPUT, "missing \"id\""))
}

/// The plugin as the SDK sees it: a shared handle, because boots run in background tasks.
struct LocalVmmPlugin(Arc<LocalVmm>);

impl Plugin for LocalVmmPlugin {
    fn describe() -> Description {
        Description {
            name: "local-vmm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "provider".into(),
            summary: "virtual machines on this host through QEMU".into(),
            ops: [
                "health@1",
                "regions@1",
                "instance.create@1",
                "instance.get@1",
                "instance.list@1",
                "instance.stop@1",
                "instance.start@1",
                "instance.terminate@1",
                "instance.console@1",
                "instance.resize@1",
                "images.list@1",
                "images.register@1",
                "images.remove@1",
                "instance.reboot@1",
                "instance.status@1",
                "instance.pause@1",
                "instance.resume@1",
                "instance.debug.cmdline@1",
                "inventory.list@1",
            ]
            .map(String::from)
            .to_vec(),
            config_schema: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "image_library": {"type": "string"},
                    "images": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["name", "kernel", "initrd"],
                            "properties": {
                                "name": {"type": "string"},
                                "kernel": {"type": "string"},
                                "initrd": {"type": "string"},
                                "disk": {"type": "string"}
                            }
                        }
                    },
                    "state_dir": {"type": "string"},
                    "accelerator": {"enum": ["auto", "tcg", "kvm"]},
                    "region": {"type": "string"},
                    "max_concurrent_boots": {"type": "integer", "minimum": 1},
                    "ready_timeout_secs": {"type": "integer", "minimum": 1},
                    "qemu": {"type": "string"},
                    "qemu_img": {"type": "string"}
                }
            }),
        }
    }

    fn init(config: Value, host: Host) -> Result<Self, PluginError> {
        let config: VmmConfig = serde_json::from_value(config)
            .map_err(|e| err(error_code::INVALID_CONFIG, e.to_string()))?;
        let state_dir = match &config.state_dir {
            Some(dir) => PathBuf::from(dir),
            None => host.state_dir()?,
        };
        std::fs::create_dir_all(vm::vms_root(&state_dir)).map_err(|e| {
            err(
                error_code::INVALID_CONFIG,
                format!("{}: {e}", state_dir.display()),
            )
        })?;
        let launcher = Launcher {
            qemu: config.qemu.clone(),
            qemu_img: config.qemu_img.clone(),
            accel: choose_accelerator(&config.accelerator),
        };
        log::info!(
            "local-vmm: accelerator {}, state in {}",
            launcher.accel,
            state_dir.display()
        );
        let images = ImageLibrary::new(
            PathBuf::from(&config.image_library),
            &config.images,
            config.qemu_img.clone(),
        )
        .map_err(|e| err(error_code::INVALID_CONFIG, e))?;
        let vmm = LocalVmm {
            images,
            boots: Arc::new(Semaphore::new(config.max_concurrent_boots.max(1))),
            config,
            launcher,
            state_dir,
            vms: Arc::default(),
        };
        vmm.reattach();
        let vmm = Arc::new(vmm);
        vmm.resume_pending_boots();
        Ok(LocalVmmPlugin(vmm))
    }

    async fn call(self: Arc<Self>, call: OpCall) -> Result<Value, PluginError> {
        let vmm = &self.0;
        match (call.op.as_str(), call.version) {
            (ops::HEALTH, 1) => Ok(serde_json::to_value(vmm.health()).unwrap_or_default()),
            (ops::REGIONS, 1) => Ok(
                json!([{"name": vmm.config.region, "zones": [format!("{}a", vmm.config.region)]}]),
            ),
            ("instance.create", 1) => vmm.create(&call.params).await,
            ("instance.get", 1) => Ok(vmm.view(&vmm.get(&id_param(&call.params)?)?)),
            ("instance.list", 1) => Ok(vmm.list()),
            ("inventory.list", 1) => Ok(vmm.inventory()),
            ("instance.stop", 1) => vmm.stop(&id_param(&call.params)?).await,
            ("instance.start", 1) => vmm.start(&id_param(&call.params)?).await,
            ("instance.terminate", 1) => vmm.terminate(&id_param(&call.params)?).await,
            ("instance.resize", 1) => vmm.resize(&call.params),
            ("images.list", 1) => Ok(vmm.images()),
            ("images.register", 1) => {
                let files: ImageFiles = serde_json::from_value(call.params.clone())
                    .map_err(|e| err(error_code::INVALID_INPUT, format!("images.register: {e}")))?;
                let image = vmm.images.register(&files).await?;
                log::info!("image {} registered", image.name);
                Ok(
                    json!({"name": image.name, "disk_template": image.disk.is_some(), "source": image.source}),
                )
            }
            ("images.remove", 1) => {
                let name = call
                    .params
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                vmm.remove_image(name)
            }
            ("instance.reboot", 1) => vmm.reboot(&id_param(&call.params)?).await,
            ("instance.status", 1) => {
                vmm.qmp_control(&id_param(&call.params)?, "query-status")
                    .await
            }
            ("instance.pause", 1) => vmm.qmp_control(&id_param(&call.params)?, "stop").await,
            ("instance.resume", 1) => vmm.qmp_control(&id_param(&call.params)?, "cont").await,
            ("instance.debug.cmdline", 1) => vmm.command_line(&id_param(&call.params)?),
            ("instance.console", 1) => {
                let tail = call
                    .params
                    .get("tail_bytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(64 * 1024);
                vmm.console(&id_param(&call.params)?, tail as usize)
            }
            _ => Err(call.unsupported()),
        }
    }
}

export_plugin!(LocalVmmPlugin, name = "local-vmm", kind = Provider);
