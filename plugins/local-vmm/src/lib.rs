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
//! - `images.list`, `images.register` `{name, kernel, initrd, disk?, cmdline?,
//!   snapshot_boot?}`, `images.remove` `{name}`
//! - `snapshots.list` -> the booted snapshots VMs start from (`snapshot.rs`)
#![forbid(unsafe_code)]

mod config;
mod images;
mod inventory;
mod network;
mod plugin;
mod programs;
mod qmp;
mod seed;
mod snapshot;
mod vm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::ops::provider::{CreateInstance, FindInstance};
use skyport_plugin_api::{export_plugin, ops, Description, Host, OpCall, Plugin, PluginError};
use tokio::sync::Semaphore;

use config::{choose_accelerator, VmmConfig};
use images::{Image, ImageFiles, ImageLibrary};
use network::{HostNetwork, Nic};
use plugin::id_param;
use programs::find_program;
use snapshot::Snapshots;
use vm::{Boot, BootKind, Launcher, VmDir, VmSpec, VmState};
/// The default image, built by `plugins/local-vmm/prepare-guest.sh`.
const DEFAULT_IMAGE: &str = "skyport-tiny";

struct LocalVmm {
    config: VmmConfig,
    launcher: Launcher,
    images: ImageLibrary,
    state_dir: PathBuf,
    boots: Arc<Semaphore>,
    vms: Arc<Mutex<HashMap<String, VmSpec>>>,
    network: HostNetwork,
    snapshots: Snapshots,
}

/// How long a VM restored from a snapshot may take to say so before it boots cold instead.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

fn err(code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

/// `kvm` only when /dev/kvm opens and the host is not a nested kvm_pvm host (where an
/// unmodified kernel barely boots); `tcg` with a bounded translation cache otherwise.
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
        } else if find_program("genisoimage").is_none() {
            Some(
                "genisoimage not found (it makes each VM's first-boot seed); install genisoimage"
                    .into(),
            )
        } else if let Some(reason) = self.network.unusable() {
            Some(reason)
        } else if self.images.list().is_empty() {
            Some(format!(
                "no image in {}; run `plugins/local-vmm/prepare-guest.sh {}` from the Skyport \
                 source tree (`make run` does)",
                self.images.root().display(),
                self.images.root().join(DEFAULT_IMAGE).display()
            ))
        } else {
            None
        };
        ops::Health {
            healthy: reason.is_none(),
            reason,
            notes: vec![format!("network: {}", self.network.describe())],
        }
    }

    fn dir(&self, id: &str) -> VmDir {
        VmDir(vm::vms_root(&self.state_dir).join(id))
    }

    fn view(&self, spec: &VmSpec) -> Value {
        let mut view = json!({
            "id": spec.id,
            "state": spec.state,
            "image": spec.image,
            "instance_type": spec.instance_type,
            "vcpus": spec.vcpus,
            "memory_mib": spec.memory_mib,
            "region": self.config.region,
            "boot": spec.boot,
        });
        if let Some(nic) = spec
            .nic
            .as_ref()
            .filter(|_| spec.state != VmState::Terminated)
        {
            view["network"] = json!({
                "private_ip": nic.ip.to_string(),
                "mac": nic.mac,
                "zone": self.zone(),
                "ssh_endpoint": nic.ssh_port.map(|port| format!("127.0.0.1:{port}")),
            });
        }
        view
    }

    /// The region's one zone.
    fn zone(&self) -> String {
        format!("{}a", self.config.region)
    }

    /// Every VM's NIC, for the DHCP hosts file.
    fn nics(&self) -> Vec<(String, Nic)> {
        self.vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|spec| spec.nic.clone().map(|nic| (spec.id.clone(), nic)))
            .collect()
    }

    /// The QEMU network arguments of VM `spec`, its network set up first.
    fn network_args(&self, spec: &VmSpec) -> Result<Vec<String>, String> {
        let Some(nic) = &spec.nic else {
            return Ok(Vec::new());
        };
        self.network.prepare(&self.nics())?;
        self.network.qemu_args(&spec.id, nic)
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
            let launched = match (this.images.get(&spec.image), this.network_args(&spec)) {
                (Some(image), Ok(network)) => this.launch(&spec, &image, &network).await,
                (None, _) => Err(format!("image {} is no longer in the library", spec.image)),
                (_, Err(e)) => Err(format!("its network: {e}")),
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

    /// Starts `spec`'s QEMU: restored from its image's snapshot when there is one for its
    /// shape (taken first, in this boot slot, when missing or stale), else booted cold.
    /// Returns its pid, recorded (with how it started) while it is `pending`.
    async fn launch(
        &self,
        spec: &VmSpec,
        image: &Image,
        network: &[String],
    ) -> Result<u32, String> {
        let id = &spec.id;
        let dir = self.dir(id);
        if let Some(state) = self.snapshot_state(spec, image, network).await {
            let mac = spec.nic.as_ref().map_or("", |nic| nic.mac.as_str());
            let boot = Boot::Restore { state: &state, mac };
            match self.launcher.launch(&dir, spec, image, network, boot).await {
                Ok(pid) => {
                    self.set_boot(id, pid, BootKind::Snapshot);
                    let restored = ("restored", snapshot::shows_restored as fn(&[u8]) -> bool);
                    match vm::wait_console(&dir, pid, id, RESTORE_TIMEOUT, restored).await {
                        Ok(()) => return Ok(pid),
                        Err(e) => {
                            log::warn!(
                                "VM {id}: restoring it from its snapshot failed ({e}); it boots \
                                 cold, and the snapshot is taken again when next needed"
                            );
                            let _ = vm::power_off(&dir, pid, id, Duration::ZERO).await;
                            self.snapshots
                                .discard(&image.name, spec.memory_mib, spec.vcpus)
                                .await;
                        }
                    }
                }
                Err(e) => log::warn!("VM {id}: restoring it from its snapshot: {e}"),
            }
        }
        let pid = self
            .launcher
            .launch(&dir, spec, image, network, Boot::Cold)
            .await?;
        self.set_boot(id, pid, BootKind::Cold);
        Ok(pid)
    }

    /// The snapshot `spec` may start from: its image supports snapshots (and they are on),
    /// it has a NIC and a seed of the size every seed has.
    async fn snapshot_state(
        &self,
        spec: &VmSpec,
        image: &Image,
        network: &[String],
    ) -> Option<PathBuf> {
        let seed_fits =
            std::fs::metadata(self.dir(&spec.id).seed()).is_ok_and(|m| m.len() == seed::SEED_BYTES);
        if !self.config.snapshots || !image.snapshot_boot || network.is_empty() || !seed_fits {
            return None;
        }
        let timeout = Duration::from_secs(self.config.ready_timeout_secs);
        self.snapshots
            .state_for(&self.launcher, image, spec.memory_mib, spec.vcpus, timeout)
            .await
            .map_err(|e| log::debug!("VM {}: boots cold: no snapshot: {e}", spec.id))
            .ok()
    }

    /// Records that `id`'s QEMU `pid` started as `boot`; the VM is `pending`.
    fn set_boot(&self, id: &str, pid: u32, boot: BootKind) {
        let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(spec) = vms.get_mut(id) {
            spec.state = VmState::Pending;
            spec.pid = Some(pid);
            spec.boot = Some(boot);
            if let Err(e) = self.dir(id).save(spec) {
                log::error!("VM {id}: {e}");
            }
        }
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

    /// The view of the VM a create with idempotency `key` made, if this host has it.
    fn by_key(&self, key: &str) -> Option<Value> {
        self.vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|vm| vm.idempotency_key.as_deref() == Some(key))
            .map(|vm| self.view(vm))
    }

    /// `instance.find@1`: the VM a create with this key made, or `null`.
    fn find(&self, params: &Value) -> Result<Value, PluginError> {
        let p: FindInstance = serde_json::from_value(params.clone())
            .map_err(|e| err(error_code::INVALID_INPUT, format!("instance.find: {e}")))?;
        Ok(self.by_key(&p.idempotency_key).unwrap_or(Value::Null))
    }

    async fn create(self: &Arc<Self>, params: &Value) -> Result<Value, PluginError> {
        let p: CreateInstance = serde_json::from_value(params.clone())
            .map_err(|e| err(error_code::INVALID_INPUT, format!("instance.create: {e}")))?;
        // A create seen before (a retry after a timeout) answers the VM it made.
        if let Some(existing) = self.by_key(&p.idempotency_key) {
            return Ok(existing);
        }
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
        let genisoimage = find_program("genisoimage").ok_or_else(|| {
            err(
                error_code::UNAVAILABLE,
                "genisoimage not found; install genisoimage",
            )
        })?;
        let seeded = seed::write(
            &dir.0,
            &seed::Seed {
                instance_id: &p.skyport_id,
                hostname: &p.skyport_id,
                ssh_public_keys: &p.ssh_public_keys,
                user_data: p.user_data.as_deref(),
            },
            &genisoimage,
        );
        if let Err(e) = seeded {
            let _ = std::fs::remove_dir_all(&dir.0);
            return Err(err(error_code::INVALID_INPUT, e));
        }
        // The address is chosen and the VM recorded under one lock: two creates never
        // get the same address.
        let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        let taken: Vec<std::net::Ipv4Addr> = vms
            .values()
            .filter_map(|spec| spec.nic.as_ref().map(|nic| nic.ip))
            .collect();
        let nic = match self.network.allocate(&taken) {
            Ok(nic) => nic,
            Err(e) => {
                drop(vms);
                let _ = std::fs::remove_dir_all(&dir.0);
                return Err(err(error_code::LIMIT_EXCEEDED, e));
            }
        };
        let spec = VmSpec {
            id: id.clone(),
            image: p.image,
            instance_type: p.instance_type,
            vcpus: p.vcpus,
            memory_mib: p.memory_mib,
            state: VmState::Pending,
            pid: None,
            skyport_id: Some(p.skyport_id),
            idempotency_key: Some(p.idempotency_key),
            nic: Some(nic),
            boot: None,
        };
        if let Err(e) = dir.save(&spec) {
            drop(vms);
            let _ = std::fs::remove_dir_all(&dir.0);
            return Err(err(error_code::INTERNAL, e));
        }
        let view = self.view(&spec);
        vms.insert(id.clone(), spec);
        drop(vms);
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
        // Its address is free again: its tap goes, and DHCP forgets its MAC.
        self.network.release(id);
        self.network.publish(&self.nics());
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

    /// Images: name, whether it has a disk template, whether its VMs may start from a
    /// snapshot, and where it was registered.
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
                        "snapshot_boot": i.snapshot_boot,
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
        self.snapshots.forget(name);
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
}
