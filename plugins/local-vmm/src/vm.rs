//! One VM: its state directory (the source of truth), its QEMU process and its lifecycle.
//!
//! `<state>/vms/<id>/` holds `spec.json` (written via tmp + rename), `disk.qcow2` (kept
//! across stop/start), `qmp.sock`, `serial.log`, `stderr.log` and `pid`. QEMU runs in its
//! own process group, so VMs outlive a gateway restart.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::images::Image;
use crate::network::Nic;
use crate::qmp;

/// Serial-console line the guest prints when booted.
pub const READY_MARKER: &str = "SKYPORT-GUEST-READY";

/// Whether a serial console shows a booted guest: `skyport-tiny`'s ready marker, or the
/// line cloud-init prints when it has finished (`Cloud-init v. 22.4.2 finished at ...`),
/// so that any cloud-init image is `running` once its first boot is done.
pub fn shows_ready(console: &[u8]) -> bool {
    let text = String::from_utf8_lossy(console);
    text.contains(READY_MARKER)
        || text
            .lines()
            .any(|line| line.contains("Cloud-init v.") && line.contains(" finished at "))
}

/// EC2-named states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// Booting.
    Pending,
    /// Guest ready.
    Running,
    /// Powering down.
    Stopping,
    /// No process; disk kept.
    Stopped,
    /// Being removed.
    ShuttingDown,
    /// Gone.
    Terminated,
}

/// What is persisted about a VM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmSpec {
    /// Plugin-side id (`vm-` + 12 hex).
    pub id: String,
    /// Image name in the library.
    pub image: String,
    /// Skyport instance type, as given by the gateway.
    pub instance_type: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Current state.
    pub state: VmState,
    /// Pid of the running QEMU, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Skyport's id of the instance, as its create said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skyport_id: Option<String>,
    /// The create's idempotency key: a create with the same key answers this VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Its network interface and address, kept until it is terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<Nic>,
    /// How its QEMU last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootKind>,
}

/// How a VM's QEMU started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootKind {
    /// Its guest booted from its kernel.
    Cold,
    /// Restored from its image's snapshot.
    Snapshot,
}

/// Paths inside a VM's state directory.
#[derive(Debug, Clone)]
pub struct VmDir(pub PathBuf);

impl VmDir {
    /// `spec.json`.
    pub fn spec(&self) -> PathBuf {
        self.0.join("spec.json")
    }
    /// `disk.qcow2`.
    pub fn disk(&self) -> PathBuf {
        self.0.join("disk.qcow2")
    }
    /// `qmp.sock`.
    pub fn qmp(&self) -> PathBuf {
        self.0.join("qmp.sock")
    }
    /// `serial.log`.
    pub fn serial(&self) -> PathBuf {
        self.0.join("serial.log")
    }
    /// `pid`.
    pub fn pid(&self) -> PathBuf {
        self.0.join("pid")
    }
    /// `seed.iso`: the NoCloud seed, when the VM has one.
    pub fn seed(&self) -> PathBuf {
        self.0.join("seed.iso")
    }

    /// Writes `spec` atomically.
    pub fn save(&self, spec: &VmSpec) -> Result<(), String> {
        let tmp = self.0.join("spec.json.tmp");
        let text = serde_json::to_vec_pretty(spec).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, self.spec()).map_err(|e| format!("saving spec: {e}"))
    }

    /// Reads the spec.
    pub fn load(&self) -> Result<VmSpec, String> {
        let text = std::fs::read(self.spec()).map_err(|e| format!("reading spec: {e}"))?;
        serde_json::from_slice(&text).map_err(|e| format!("parsing spec: {e}"))
    }
}

/// How to launch QEMU.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// `qemu-system-x86_64` (name or path).
    pub qemu: String,
    /// `qemu-img`.
    pub qemu_img: String,
    /// `-accel` argument, e.g. `tcg,tb-size=64`.
    pub accel: String,
}

impl Launcher {
    /// Creates the VM's disk if missing: a qcow2 overlay on the image's disk template, or a
    /// blank 1 GiB qcow2 for an image without one. The disk outlives stop and start.
    pub(crate) async fn create_disk(&self, dir: &VmDir, image: &Image) -> Result<(), String> {
        if dir.disk().exists() {
            return Ok(());
        }
        let mut command = tokio::process::Command::new(&self.qemu_img);
        command.args(["create", "-q", "-f", "qcow2"]);
        if let Some(template) = &image.disk {
            let template = template
                .canonicalize()
                .map_err(|e| format!("disk template {}: {e}", template.display()))?;
            command.arg("-b").arg(template).args(["-F", "qcow2"]);
        }
        command.arg(dir.disk());
        if image.disk.is_none() {
            command.arg("1G");
        }
        let out = command
            .output()
            .await
            .map_err(|e| format!("{}: {e}", self.qemu_img))?;
        if !out.status.success() {
            return Err(format!(
                "qemu-img create failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Creates the disk if missing and starts QEMU with `network` (its NIC's arguments)
    /// and the VM's NoCloud seed when it has one, booting as `boot` says; returns its pid.
    pub async fn launch(
        &self,
        dir: &VmDir,
        spec: &VmSpec,
        image: &Image,
        network: &[String],
        boot: Boot<'_>,
    ) -> Result<u32, String> {
        self.create_disk(dir, image).await?;
        let machine = Machine {
            name: &spec.id,
            memory_mib: spec.memory_mib,
            vcpus: spec.vcpus,
            image,
            network,
        };
        self.spawn(dir, &machine, boot)
    }

    /// Starts QEMU for `machine` in `dir` (disk, seed, console, QMP and pid files there).
    pub(crate) fn spawn(
        &self,
        dir: &VmDir,
        machine: &Machine<'_>,
        boot: Boot<'_>,
    ) -> Result<u32, String> {
        let _ = std::fs::remove_file(dir.qmp());
        let _ = std::fs::remove_file(dir.pid());
        // The previous boot's console holds its ready marker; QEMU truncates the file only
        // once it opens it, so a readiness check in between would see the old marker.
        let _ = std::fs::remove_file(dir.serial());
        let stderr = std::fs::File::create(dir.0.join("stderr.log")).map_err(|e| e.to_string())?;
        let image = machine.image;
        let mut append = "console=ttyS0 quiet panic=-1".to_string();
        if let Some(extra) = &image.cmdline {
            append = format!("{append} {extra}");
        }
        if matches!(boot, Boot::Template) {
            append.push_str(" skyport.snapshot");
        }
        let mut command = std::process::Command::new(&self.qemu);
        command
            .arg("-name")
            .arg(machine.name)
            .args(["-machine", "q35", "-accel", &self.accel])
            .args([
                "-m",
                &machine.memory_mib.to_string(),
                "-smp",
                &machine.vcpus.to_string(),
            ])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-serial")
            .arg(format!("file:{}", dir.serial().display()))
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .arg("-append")
            .arg(append)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", dir.qmp().display()))
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=qcow2",
                dir.disk().display()
            ))
            .args(["-device", "virtio-balloon-pci"])
            .args(machine.network)
            .arg("-pidfile")
            .arg(dir.pid())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        if dir.seed().exists() {
            command.arg("-drive").arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                dir.seed().display()
            ));
        }
        match boot {
            Boot::Cold => {}
            Boot::Template => {
                command.args(["-device", "vmgenid", "-fw_cfg"]);
                command.arg(format!("name={MAC_FW_CFG},string={TEMPLATE_MAC}"));
            }
            Boot::Restore { state, mac } => {
                command.args(["-device", "vmgenid", "-fw_cfg"]);
                command.arg(format!("name={MAC_FW_CFG},string={mac}"));
                command.arg("-incoming").arg(restore_uri(state)?);
            }
        }
        let mut child = tokio::process::Command::from(command)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.qemu))?;
        let pid = child.id().ok_or("QEMU exited at once")?;
        // Reap it when it exits (no zombies); never kill on drop: VMs outlive us.
        let exit_file = dir.0.join("exit-status");
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = std::fs::write(exit_file, format!("{status}\n"));
            }
        });
        Ok(pid)
    }
}

/// What a QEMU process runs: one VM, or a snapshot's template.
pub(crate) struct Machine<'a> {
    /// `-name`: the VM's id.
    pub(crate) name: &'a str,
    /// Memory in MiB.
    pub(crate) memory_mib: u32,
    /// vCPUs.
    pub(crate) vcpus: u32,
    /// What it boots.
    pub(crate) image: &'a Image,
    /// Its NIC's arguments (`-netdev ... -device virtio-net-pci,...`).
    pub(crate) network: &'a [String],
}

/// How a VM starts.
#[derive(Debug, Clone, Copy)]
pub enum Boot<'a> {
    /// The guest boots from its kernel.
    Cold,
    /// A snapshot's template: the guest stops at its snapshot point and waits there for
    /// the fw_cfg file `opt/skyport/mac` to hold anything but [`TEMPLATE_MAC`].
    Template,
    /// Restored from the migration stream `state`, taken of a template with the same
    /// devices; `mac` (the VM's own) in fw_cfg tells the guest to go on.
    Restore {
        /// The snapshot's migration stream.
        state: &'a Path,
        /// The VM's MAC address.
        mac: &'a str,
    },
}

/// The fw_cfg file a snapshot's guest waits on (and reads its MAC from).
pub const MAC_FW_CFG: &str = "opt/skyport/mac";
/// What that file holds in a template: a template has no identity yet.
pub const TEMPLATE_MAC: &str = "00:00:00:00:00:00";

/// `-incoming`'s URI for reading `state`: QEMU 7.2 has no `file:` migration, so `exec:`
/// (a shell command) with the path single-quoted.
fn restore_uri(state: &Path) -> Result<String, String> {
    Ok(format!("exec:cat {}", shell_quoted(state)?))
}

/// `path` single-quoted for `/bin/sh`; a path with a quote in it is refused.
pub(crate) fn shell_quoted(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .filter(|text| !text.contains('\''))
        .ok_or_else(|| format!("{}: not a path a shell command can carry", path.display()))?;
    Ok(format!("'{text}'"))
}

/// Whether process `pid` exists and has not exited (a zombie has exited).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether `pid` is alive and is the QEMU of VM `id` (guards against pid reuse).
pub fn is_our_qemu(pid: u32, id: &str) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = format!("-name\0{id}\0");
    cmdline
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every live QEMU process whose pid file lies under `root` (so one this plugin launched,
/// from this state directory), as (pid, VM id from its `-name`).
pub fn qemus_under(root: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            let after = |flag: &str| {
                args.windows(2)
                    .find(|w| w[0] == flag.as_bytes())
                    .map(|w| String::from_utf8_lossy(w[1]).into_owned())
            };
            let pidfile = after("-pidfile")?;
            let name = after("-name")?;
            (Path::new(&pidfile).starts_with(root) && is_alive(pid)).then_some((pid, name))
        })
        .collect()
}

/// Waits until the serial console shows the ready marker, the process dies, or `timeout`.
pub async fn wait_ready(dir: &VmDir, pid: u32, id: &str, timeout: Duration) -> Result<(), String> {
    wait_console(dir, pid, id, timeout, ("ready", shows_ready)).await
}

/// Waits until the serial console shows what `shown` looks for (`what` names it in the
/// error), the process dies, or `timeout`.
pub async fn wait_console(
    dir: &VmDir,
    pid: u32,
    id: &str,
    timeout: Duration,
    (what, shown): (&str, fn(&[u8]) -> bool),
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if std::fs::read(dir.serial()).is_ok_and(|text| shown(&text)) {
            return Ok(());
        }
        // Only liveness here: right after spawn the cmdline may not show QEMU's arguments yet.
        if !is_alive(pid) {
            let stderr = std::fs::read_to_string(dir.0.join("stderr.log")).unwrap_or_default();
            let status = std::fs::read_to_string(dir.0.join("exit-status")).unwrap_or_default();
            return Err(format!(
                "QEMU {id} exited before the guest was {what} ({}): {}",
                status.trim(),
                stderr.lines().last().unwrap_or("")
            ));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("guest not {what} within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILL to `pid`, which the caller has verified is one of the plugin's QEMUs.
pub fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Stops QEMU: ACPI power-down, then `quit`, then SIGKILL. Returns once the process is gone.
pub async fn power_off(dir: &VmDir, pid: u32, id: &str, grace: Duration) -> Result<(), String> {
    if !is_our_qemu(pid, id) {
        return Ok(());
    }
    let _ = qmp::execute(&dir.qmp(), "system_powerdown", None, Duration::from_secs(5)).await;
    if wait_gone(pid, id, grace).await {
        return Ok(());
    }
    let _ = qmp::execute(&dir.qmp(), "quit", None, Duration::from_secs(5)).await;
    if wait_gone(pid, id, Duration::from_secs(5)).await {
        return Ok(());
    }
    // On a pid we verified is this VM's QEMU.
    kill(pid);
    if wait_gone(pid, id, Duration::from_secs(5)).await {
        Ok(())
    } else {
        Err(format!("QEMU pid {pid} did not exit"))
    }
}

async fn wait_gone(pid: u32, id: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if !is_our_qemu(pid, id) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !is_our_qemu(pid, id)
}

/// Where VMs live under the plugin's state directory.
pub fn vms_root(state_dir: &Path) -> PathBuf {
    state_dir.join("vms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_is_ready_at_the_tiny_marker_or_when_cloud_init_has_finished() {
        assert!(shows_ready(b"...\nSKYPORT-GUEST-READY\n"));
        assert!(shows_ready(
            b"[  OK  ] Started\nCloud-init v. 22.4.2 finished at Sat, 05 Dec 2026 10:00:00 +0000. Datasource DataSourceNoCloud [seed=/dev/vdb].  Up 41.20 seconds\n"
        ));
        assert!(!shows_ready(
            b"Cloud-init v. 22.4.2 running 'modules:final'\n"
        ));
        assert!(!shows_ready(b"SKYPORT-GUEST-NET eth0 10.213.0.10/24\n"));
    }
}
