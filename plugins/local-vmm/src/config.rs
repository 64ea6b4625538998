//! The plugin's configuration (`[[plugins]] config = {...}`) and what it resolves to on
//! this host: the accelerator and the QEMU programs.

use super::*;
use crate::network::NetworkConfig;

/// Configuration (`[[plugins]] config = {...}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VmmConfig {
    /// Directory of images: `<library>/<image>/{vmlinuz,initramfs.gz,disk.qcow2}`.
    #[serde(default = "default_library")]
    pub(crate) image_library: String,
    /// Images registered in place: `[{name, kernel, initrd, disk}]`.
    #[serde(default)]
    pub(crate) images: Vec<ImageFiles>,
    /// State directory; default: the one the host assigns (`<state-dir>/plugins/<name>`).
    pub(crate) state_dir: Option<String>,
    /// `auto`, `tcg` or `kvm`.
    #[serde(default = "default_accel")]
    pub(crate) accelerator: String,
    /// Region name.
    #[serde(default = "default_region")]
    pub(crate) region: String,
    /// VMs booting at the same time.
    #[serde(default = "default_boots")]
    pub(crate) max_concurrent_boots: usize,
    /// Seconds a boot may take before the VM is marked failed.
    #[serde(default = "default_ready_timeout")]
    pub(crate) ready_timeout_secs: u64,
    /// QEMU binary.
    #[serde(default = "default_qemu")]
    pub(crate) qemu: String,
    /// qemu-img binary.
    #[serde(default = "default_qemu_img")]
    pub(crate) qemu_img: String,
    /// Whether VMs of images that support it start from a snapshot (see `snapshot.rs`);
    /// `false` boots every VM cold.
    #[serde(default = "default_snapshots")]
    pub(crate) snapshots: bool,
    /// The region's private network.
    #[serde(default)]
    pub(crate) network: NetworkConfig,
}

fn default_library() -> String {
    "images".into()
}
fn default_accel() -> String {
    "auto".into()
}
fn default_region() -> String {
    "local-1".into()
}
fn default_snapshots() -> bool {
    true
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

pub(crate) fn choose_accelerator(configured: &str) -> String {
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
