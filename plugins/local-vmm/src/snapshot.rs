//! Booted snapshots: a VM of an image whose guest supports it (`skyport-tiny`'s does) starts
//! from a QEMU migration stream taken once per image and machine shape, instead of booting
//! its kernel. The guest goes on from its snapshot point as its own machine: its own disk,
//! seed (instance id, hostname, keys, user data), MAC and DHCP lease, clock, and a new
//! VM generation id (so its kernel reseeds its random numbers).
//!
//! `<state>/snapshots/<image>@<memory>m-<vcpus>cpu/` holds `state` (the stream),
//! `snapshot.json` (what it was taken of, and when) and the template's `serial.log`. The
//! key is the image's files (size and modification time), its kernel arguments, QEMU's
//! binary (size and modification time) and version, the accelerator, the shape and [`FORMAT`]: when any of them changes, the
//! snapshot is taken again before it is used. One that could not be taken is recorded in
//! `failed.json` with its key, so that VMs of that shape boot cold without trying again
//! for ten minutes, or until something in the key changes.
//!
//! Taking one: a template VM with an instance's devices (an overlay disk, a seed of the
//! same fixed size, a NIC on a hub port that reaches no network) boots with the kernel
//! argument `skyport.snapshot`. Its guest stops at the snapshot point and says so on the
//! console; QEMU then migrates it into `state` and quits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::images::Image;
use crate::network::nic_device;
use crate::programs::find_program;
use crate::vm::{self, Boot, Launcher, Machine, VmDir};
use crate::{qmp, seed};

/// The version of the template/guest protocol: a new one retakes every snapshot.
pub(crate) const FORMAT: u32 = 2;
/// What the guest prints at its snapshot point.
pub(crate) const SNAPSHOT_POINT_MARKER: &str = "SKYPORT-GUEST-SNAPSHOT-POINT";
/// What a guest restored from a snapshot prints once it has its own MAC.
pub(crate) const RESTORED_MARKER: &str = "SKYPORT-GUEST-RESTORED";
/// The template's MAC (a VM restored from the snapshot sets its own).
const TEMPLATE_NIC_MAC: &str = "52:54:00:00:00:00";
/// How long the migration into `state` may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after a failure to take a snapshot VMs boot cold without trying again (unless
/// what the snapshot depends on changes first).
const RETRY_AFTER_SECS: u64 = 600;

/// Whether a console shows a guest restored from a snapshot.
pub(crate) fn shows_restored(console: &[u8]) -> bool {
    contains(console, RESTORED_MARKER)
}

fn contains(console: &[u8], marker: &str) -> bool {
    console
        .windows(marker.len())
        .any(|window| window == marker.as_bytes())
}

/// Everything a snapshot depends on: when this differs, it is taken again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SnapshotKey {
    format: u32,
    image: String,
    files: Vec<FileStamp>,
    cmdline: Option<String>,
    /// The QEMU binary: an upgrade that keeps the version line is still another QEMU.
    qemu_binary: FileStamp,
    qemu: String,
    accel: String,
    memory_mib: u32,
    vcpus: u32,
}

/// A file as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileStamp {
    path: PathBuf,
    bytes: u64,
    modified_ns: u128,
}

impl FileStamp {
    fn of(path: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            path: path.to_path_buf(),
            bytes: meta.len(),
            modified_ns,
        })
    }
}

/// `snapshot.json`: a snapshot that was taken.
#[derive(Debug, Serialize, Deserialize)]
struct Taken {
    key: SnapshotKey,
    /// Seconds since the Unix epoch.
    taken_at: u64,
    /// From the template's launch to the end of the migration.
    took_ms: u64,
}

/// `failed.json`: a snapshot that could not be taken.
#[derive(Debug, Serialize, Deserialize)]
struct Failed {
    key: SnapshotKey,
    reason: String,
    /// Seconds since the Unix epoch.
    failed_at: u64,
}

/// The snapshots of one plugin instance.
pub(crate) struct Snapshots {
    root: PathBuf,
    /// One taker at a time per snapshot: VMs that need it meanwhile wait for it.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// QEMU's `--version` line, with the binary it was asked of.
    qemu_version: tokio::sync::Mutex<Option<(FileStamp, String)>>,
}

/// The directory name of `image`'s snapshot for a shape.
fn dir_name(image: &str, memory_mib: u32, vcpus: u32) -> String {
    format!("{image}@{memory_mib}m-{vcpus}cpu")
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes `value` to `path` whole or not at all (a temporary file renamed over it).
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Snapshots {
    /// Snapshots kept under `state_dir/snapshots`. A template left from a previous run
    /// (its plugin stopped while taking a snapshot) is killed and its directory removed.
    pub(crate) fn new(state_dir: &Path) -> Self {
        let root = state_dir.join("snapshots");
        for (pid, name) in vm::qemus_under(&root) {
            log::warn!(
                "local-vmm: killing template QEMU pid {pid} ({name}) left by a previous run"
            );
            vm::kill(pid);
        }
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".t-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Self {
            root,
            locks: Mutex::default(),
            qemu_version: tokio::sync::Mutex::default(),
        }
    }

    fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(name.to_string()).or_default())
    }

    /// The QEMU binary as it is now, and its `--version` line: asked again only when the
    /// binary changed (one `stat` a boot otherwise).
    async fn qemu(&self, launcher: &Launcher) -> Result<(FileStamp, String), String> {
        let binary = find_program(&launcher.qemu)
            .ok_or_else(|| format!("{} is not installed", launcher.qemu))?;
        let stamp = FileStamp::of(&binary)?;
        let mut known = self.qemu_version.lock().await;
        if let Some((asked, version)) = known.as_ref() {
            if *asked == stamp {
                return Ok((stamp, version.clone()));
            }
        }
        let out = tokio::process::Command::new(&binary)
            .arg("--version")
            .output()
            .await
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next().unwrap_or("").trim().to_string();
        if !out.status.success() || line.is_empty() {
            return Err(format!("{} --version failed", binary.display()));
        }
        *known = Some((stamp.clone(), line.clone()));
        Ok((stamp, line))
    }

    /// What `image`'s snapshot for this shape depends on, as things are now.
    async fn key(
        &self,
        launcher: &Launcher,
        image: &Image,
        memory_mib: u32,
        vcpus: u32,
    ) -> Result<SnapshotKey, String> {
        let files = [
            Some(&image.kernel),
            Some(&image.initrd),
            image.disk.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|path| FileStamp::of(path))
        .collect::<Result<_, _>>()?;
        let (qemu_binary, qemu) = self.qemu(launcher).await?;
        Ok(SnapshotKey {
            format: FORMAT,
            image: image.name.clone(),
            files,
            cmdline: image.cmdline.clone(),
            qemu_binary,
            qemu,
            accel: launcher.accel.clone(),
            memory_mib,
            vcpus,
        })
    }

    /// The migration stream to restore a VM of `image` with this shape from: the snapshot
    /// as it is when its key still holds, else taken now (the caller waits; others that
    /// need the same snapshot wait for this one). An error says why there is none: the VM
    /// then boots cold.
    pub(crate) async fn state_for(
        &self,
        launcher: &Launcher,
        image: &Image,
        memory_mib: u32,
        vcpus: u32,
        timeout: Duration,
    ) -> Result<PathBuf, String> {
        let name = dir_name(&image.name, memory_mib, vcpus);
        let lock = self.lock(&name);
        let _taking = lock.lock().await;
        let key = self.key(launcher, image, memory_mib, vcpus).await?;
        let dir = self.root.join(&name);
        let state = dir.join("state");
        if read_json::<Taken>(&dir.join("snapshot.json")).is_some_and(|t| t.key == key)
            && state.is_file()
        {
            return Ok(state);
        }
        if let Some(failed) = read_json::<Failed>(&dir.join("failed.json")) {
            if failed.key == key && now_secs() < failed.failed_at + RETRY_AFTER_SECS {
                return Err(format!("it could not be taken: {}", failed.reason));
            }
        }
        log::info!("local-vmm: taking the snapshot {name}");
        match self.take(launcher, image, &key, &name, timeout).await {
            Ok(took) => {
                log::info!(
                    "local-vmm: snapshot {name} taken in {} ms",
                    took.as_millis()
                );
                Ok(state)
            }
            Err(reason) => {
                log::warn!("local-vmm: snapshot {name} could not be taken: {reason}");
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::remove_file(dir.join("snapshot.json"));
                let _ = std::fs::remove_file(&state);
                let failed = Failed {
                    key,
                    reason: reason.clone(),
                    failed_at: now_secs(),
                };
                let _ = write_json(&dir.join("failed.json"), &failed);
                Err(reason)
            }
        }
    }

    /// Boots a template, saves it at its snapshot point, and puts the snapshot in place.
    async fn take(
        &self,
        launcher: &Launcher,
        image: &Image,
        key: &SnapshotKey,
        name: &str,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let started = std::time::Instant::now();
        std::fs::create_dir_all(&self.root).map_err(|e| format!("{}: {e}", self.root.display()))?;
        // Short: QMP's socket path in it must fit a Unix socket address (108 bytes).
        let work = VmDir(self.root.join(format!(".t-{:08x}", rand::random::<u32>())));
        let _ = std::fs::remove_dir_all(&work.0);
        std::fs::create_dir_all(&work.0).map_err(|e| format!("{}: {e}", work.0.display()))?;
        let result = self
            .take_in(launcher, image, key, name, &work, timeout)
            .await;
        let result = result.and_then(|()| {
            for leftover in ["disk.qcow2", "seed.iso", "qmp.sock", "pid"] {
                let _ = std::fs::remove_file(work.0.join(leftover));
            }
            let _ = std::fs::remove_dir_all(work.0.join("seed"));
            let taken = Taken {
                key: key.clone(),
                taken_at: now_secs(),
                took_ms: started.elapsed().as_millis() as u64,
            };
            write_json(&work.0.join("snapshot.json"), &taken)?;
            let dir = self.root.join(name);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&work.0, &dir).map_err(|e| format!("{}: {e}", dir.display()))
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&work.0);
        }
        result.map(|()| started.elapsed())
    }

    async fn take_in(
        &self,
        launcher: &Launcher,
        image: &Image,
        key: &SnapshotKey,
        name: &str,
        work: &VmDir,
        timeout: Duration,
    ) -> Result<(), String> {
        let genisoimage = find_program("genisoimage").ok_or("genisoimage not found")?;
        seed::write(
            &work.0,
            &seed::Seed {
                instance_id: "template",
                hostname: "template",
                ssh_public_keys: &[],
                user_data: None,
            },
            &genisoimage,
        )?;
        launcher.create_disk(work, image).await?;
        let network = [
            "-netdev".to_string(),
            "hubport,id=net0,hubid=0".to_string(),
            "-device".to_string(),
            nic_device(TEMPLATE_NIC_MAC),
        ];
        let qemu_name = format!("snapshot-{name}");
        let machine = Machine {
            name: &qemu_name,
            memory_mib: key.memory_mib,
            vcpus: key.vcpus,
            image,
            network: &network,
        };
        let pid = launcher.spawn(work, &machine, Boot::Template)?;
        let result = save_at_snapshot_point(work, pid, &qemu_name, timeout).await;
        let _ = vm::power_off(work, pid, &qemu_name, Duration::ZERO).await;
        result
    }

    /// Drops the snapshot of `image` for this shape (a VM failed to restore from it): the
    /// next VM that needs it takes it again.
    pub(crate) async fn discard(&self, image: &str, memory_mib: u32, vcpus: u32) {
        let name = dir_name(image, memory_mib, vcpus);
        let lock = self.lock(&name);
        let _taking = lock.lock().await;
        let _ = std::fs::remove_dir_all(self.root.join(name));
    }

    /// Drops every snapshot of `image` (it was removed).
    pub(crate) fn forget(&self, image: &str) {
        let prefix = format!("{image}@");
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// `snapshots.list@1`: every snapshot taken or that failed, by name.
    pub(crate) fn list(&self) -> serde_json::Value {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let list: Vec<serde_json::Value> = names
            .into_iter()
            .filter_map(|name| {
                let dir = self.root.join(&name);
                if let Some(taken) = read_json::<Taken>(&dir.join("snapshot.json")) {
                    let bytes = std::fs::metadata(dir.join("state")).map_or(0, |m| m.len());
                    Some(json!({
                        "name": name,
                        "image": taken.key.image,
                        "memory_mib": taken.key.memory_mib,
                        "vcpus": taken.key.vcpus,
                        "qemu": taken.key.qemu,
                        "taken_at": taken.taken_at,
                        "took_ms": taken.took_ms,
                        "bytes": bytes,
                    }))
                } else {
                    let failed = read_json::<Failed>(&dir.join("failed.json"))?;
                    Some(json!({
                        "name": name,
                        "image": failed.key.image,
                        "memory_mib": failed.key.memory_mib,
                        "vcpus": failed.key.vcpus,
                        "qemu": failed.key.qemu,
                        "failed": failed.reason,
                        "failed_at": failed.failed_at,
                    }))
                }
            })
            .collect();
        json!(list)
    }
}

/// Waits for the template's guest to reach its snapshot point, then migrates the machine
/// into `work/state`.
async fn save_at_snapshot_point(
    work: &VmDir,
    pid: u32,
    qemu_name: &str,
    timeout: Duration,
) -> Result<(), String> {
    fn there(console: &[u8]) -> bool {
        contains(console, SNAPSHOT_POINT_MARKER) || vm::shows_ready(console)
    }
    vm::wait_console(
        work,
        pid,
        qemu_name,
        timeout,
        ("at its snapshot point", there),
    )
    .await?;
    let console = std::fs::read(work.serial()).unwrap_or_default();
    if !contains(&console, SNAPSHOT_POINT_MARKER) {
        return Err(
            "the guest booted without stopping at a snapshot point: this image does not \
             support snapshot boots"
                .into(),
        );
    }
    let uri = format!("exec:cat > {}", vm::shell_quoted(&work.0.join("state"))?);
    let step = Duration::from_secs(10);
    qmp::execute(&work.qmp(), "migrate", Some(json!({ "uri": uri })), step).await?;
    let deadline = tokio::time::Instant::now() + SAVE_TIMEOUT;
    loop {
        let status = qmp::execute(&work.qmp(), "query-migrate", None, step).await?;
        match status["status"].as_str() {
            Some("completed") => return Ok(()),
            Some("failed") | Some("cancelled") => {
                return Err(format!(
                    "saving the template failed: {}",
                    status["error-desc"].as_str().unwrap_or("no reason given")
                ))
            }
            _ if tokio::time::Instant::now() > deadline => {
                return Err(format!("saving the template took over {SAVE_TIMEOUT:?}"))
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::Source;

    fn image(dir: &Path) -> Image {
        for file in ["vmlinuz", "initramfs.gz"] {
            std::fs::write(dir.join(file), b"x").unwrap();
        }
        Image {
            name: "tiny".into(),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initramfs.gz"),
            disk: None,
            cmdline: None,
            snapshot_boot: true,
            source: Source::Library,
        }
    }

    /// A stand-in QEMU at `path` that answers `--version` with `version`.
    fn fake_qemu(path: &Path, version: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, format!("#!/bin/sh\necho '{version}'\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn the_key_changes_with_the_image_files_qemu_and_the_shape() {
        let dir = std::env::temp_dir().join(format!("snapshot-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = image(&dir);
        let qemu = dir.join("qemu-system-x86_64");
        fake_qemu(&qemu, "QEMU emulator version 7.2.0");
        let launcher = Launcher {
            qemu: qemu.to_string_lossy().into_owned(),
            qemu_img: "qemu-img".into(),
            accel: "tcg".into(),
        };
        let snapshots = Snapshots::new(&dir);
        let key = snapshots.key(&launcher, &image, 128, 1).await.unwrap();
        assert_eq!(key.qemu, "QEMU emulator version 7.2.0");
        assert_eq!(key, snapshots.key(&launcher, &image, 128, 1).await.unwrap());
        assert_ne!(key, snapshots.key(&launcher, &image, 256, 1).await.unwrap());
        assert_ne!(key, snapshots.key(&launcher, &image, 128, 2).await.unwrap());
        // A new initrd (another size, or only another modification time) is another key.
        std::fs::write(&image.initrd, b"xy").unwrap();
        let rebuilt = snapshots.key(&launcher, &image, 128, 1).await.unwrap();
        assert_ne!(key, rebuilt);
        let file = std::fs::File::options()
            .write(true)
            .open(&image.initrd)
            .unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(1))
            .unwrap();
        let touched = snapshots.key(&launcher, &image, 128, 1).await.unwrap();
        assert_ne!(rebuilt, touched);
        // QEMU upgraded under the running plugin: its version is asked again.
        fake_qemu(&qemu, "QEMU emulator version 8.0.0 (Debian 1:8.0.0+dfsg-1)");
        let upgraded = snapshots.key(&launcher, &image, 128, 1).await.unwrap();
        assert_eq!(
            upgraded.qemu,
            "QEMU emulator version 8.0.0 (Debian 1:8.0.0+dfsg-1)"
        );
        // A rebuild that keeps the version line is still another QEMU.
        // (Read-only, and closed before it runs: a file open for writing cannot be run.)
        std::fs::File::open(&qemu)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(2))
            .unwrap();
        let rebuilt_qemu = snapshots.key(&launcher, &image, 128, 1).await.unwrap();
        assert_eq!(rebuilt_qemu.qemu, upgraded.qemu);
        assert_ne!(rebuilt_qemu, upgraded);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn snapshots_of_one_image_are_forgotten_and_not_those_of_another_with_its_prefix() {
        let dir = std::env::temp_dir().join(format!("snapshot-forget-{}", std::process::id()));
        let snapshots = Snapshots::new(&dir);
        for name in ["tiny@128m-1cpu", "tiny@256m-2cpu", "tiny-2@128m-1cpu"] {
            std::fs::create_dir_all(dir.join("snapshots").join(name)).unwrap();
        }
        snapshots.forget("tiny");
        let mut left: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["tiny-2@128m-1cpu"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_restored_guest_is_recognised_by_its_marker() {
        assert!(shows_restored(
            b"SKYPORT-GUEST-RESTORED 52:54:00:0a:00:0b\nSKYPORT-GUEST-SEED"
        ));
        assert!(!shows_restored(b"SKYPORT-GUEST-SNAPSHOT-POINT\n"));
    }
}
