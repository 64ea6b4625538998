//! The image library: what a VM boots. An image is a kernel, an initrd and, optionally, a
//! qcow2 disk template that every VM's disk is an overlay on.
//!
//! Images come from two places:
//! - the library directory, `<library>/<name>/{vmlinuz,initramfs.gz,disk.qcow2}`, where
//!   `prepare-guest.sh` puts `skyport-tiny` and where [`ImageLibrary::register`] copies
//!   images registered through the admin API (so they survive restarts and the source
//!   files may go away);
//! - the plugin configuration (`images = [{name, kernel, initrd, disk}]`), used in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::PluginError;

/// Files of an image in the library directory.
const KERNEL: &str = "vmlinuz";
const INITRD: &str = "initramfs.gz";
const DISK: &str = "disk.qcow2";
/// The image's extra kernel arguments, one line.
const CMDLINE: &str = "cmdline";
/// Present when the image's guest stops at a snapshot point (see `snapshot.rs`).
const SNAPSHOT_BOOT: &str = "snapshot-boot";

/// One image as configured or as asked for by `images.register`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFiles {
    /// Image name: 1-63 of `[a-z0-9.-]`, starting with a letter or digit.
    pub name: String,
    /// Kernel (bzImage).
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: PathBuf,
    /// Disk template (qcow2 or raw); without one, each VM gets a blank 1 GiB disk.
    #[serde(default)]
    pub disk: Option<PathBuf>,
    /// Kernel arguments after `console=ttyS0` (e.g. `root=/dev/vda1` for an image whose
    /// root file system is on its disk).
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Whether the guest stops at a snapshot point when booted with `skyport.snapshot`
    /// (as `skyport-tiny`'s does), so that VMs may start from a snapshot.
    #[serde(default)]
    pub snapshot_boot: bool,
}

/// Where an image was registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A directory in the image library.
    Library,
    /// The plugin configuration.
    Config,
}

/// A bootable image.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    /// Name.
    pub name: String,
    /// Kernel path.
    pub kernel: PathBuf,
    /// Initrd path.
    pub initrd: PathBuf,
    /// qcow2 disk template, if any.
    pub disk: Option<PathBuf>,
    /// Extra kernel arguments, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Whether its VMs may start from a snapshot (its guest supports it).
    pub snapshot_boot: bool,
    /// Where it was registered.
    pub source: Source,
}

/// The images this plugin can boot.
pub struct ImageLibrary {
    root: PathBuf,
    configured: BTreeMap<String, Image>,
    qemu_img: String,
}

fn err(code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

/// Whether `name` is a valid image name (also safe as a directory name).
pub fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

impl ImageLibrary {
    /// The library in `root` plus the configured images, whose files must exist.
    pub fn new(root: PathBuf, configured: &[ImageFiles], qemu_img: String) -> Result<Self, String> {
        let mut images = BTreeMap::new();
        for files in configured {
            if !valid_name(&files.name) {
                return Err(format!(
                    "image name '{}': use 1-63 of [a-z0-9.-]",
                    files.name
                ));
            }
            for path in [
                Some(&files.kernel),
                Some(&files.initrd),
                files.disk.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                if !path.is_file() {
                    return Err(format!(
                        "image {}: {} is not a file",
                        files.name,
                        path.display()
                    ));
                }
            }
            let image = Image {
                name: files.name.clone(),
                kernel: files.kernel.clone(),
                initrd: files.initrd.clone(),
                disk: files.disk.clone(),
                cmdline: files.cmdline.clone(),
                snapshot_boot: files.snapshot_boot,
                source: Source::Config,
            };
            if images.insert(files.name.clone(), image).is_some() {
                return Err(format!("image {} is configured twice", files.name));
            }
        }
        Ok(Self {
            root,
            configured: images,
            qemu_img,
        })
    }

    /// The library directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Image `name`, configured ones first.
    pub fn get(&self, name: &str) -> Option<Image> {
        if let Some(image) = self.configured.get(name) {
            return Some(image.clone());
        }
        if !valid_name(name) {
            return None;
        }
        let dir = self.root.join(name);
        let (kernel, initrd, disk) = (dir.join(KERNEL), dir.join(INITRD), dir.join(DISK));
        (kernel.is_file() && initrd.is_file()).then(|| Image {
            name: name.to_string(),
            kernel,
            initrd,
            disk: disk.is_file().then_some(disk),
            cmdline: std::fs::read_to_string(dir.join(CMDLINE))
                .ok()
                .map(|text| text.trim().to_string())
                .filter(|text| !text.is_empty()),
            snapshot_boot: dir.join(SNAPSHOT_BOOT).is_file(),
            source: Source::Library,
        })
    }

    /// Every image, by name.
    pub fn list(&self) -> Vec<Image> {
        let mut names: Vec<String> = self.configured.keys().cloned().collect();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            names.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned)),
            );
        }
        names.sort();
        names.dedup();
        names.iter().filter_map(|n| self.get(n)).collect()
    }

    /// Copies an image into the library: kernel and initrd as they are, the disk template
    /// converted to a self-contained qcow2. The image appears whole or not at all (it is
    /// assembled in a temporary directory and renamed into place).
    pub async fn register(&self, files: &ImageFiles) -> Result<Image, PluginError> {
        if !valid_name(&files.name) {
            return Err(err(
                error_code::INVALID_INPUT,
                format!(
                    "image name '{}': use 1-63 of [a-z0-9.-], starting with a letter or digit",
                    files.name
                ),
            ));
        }
        if self.get(&files.name).is_some() || self.root.join(&files.name).exists() {
            return Err(err(
                error_code::CONFLICT,
                format!("image {} already exists", files.name),
            ));
        }
        for (what, path) in [
            ("kernel", Some(&files.kernel)),
            ("initrd", Some(&files.initrd)),
        ]
        .into_iter()
        .chain([("disk", files.disk.as_ref())])
        {
            if let Some(path) = path {
                if !path.is_absolute() || !path.is_file() {
                    return Err(err(
                        error_code::INVALID_INPUT,
                        format!(
                            "{what}: {} is not an absolute path to a file on the Skyport host",
                            path.display()
                        ),
                    ));
                }
            }
        }
        std::fs::create_dir_all(&self.root)
            .map_err(|e| err(error_code::INTERNAL, e.to_string()))?;
        let staging = self.root.join(format!(
            ".register-{}-{:08x}",
            files.name,
            rand::random::<u32>()
        ));
        let result = self.assemble(files, &staging).await;
        let result = match result {
            Ok(()) => std::fs::rename(&staging, self.root.join(&files.name))
                .map_err(|e| err(error_code::CONFLICT, format!("image {}: {e}", files.name))),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result?;
        self.get(&files.name)
            .ok_or_else(|| err(error_code::INTERNAL, "registered image vanished"))
    }

    async fn assemble(&self, files: &ImageFiles, staging: &Path) -> Result<(), PluginError> {
        let io = |e: std::io::Error| err(error_code::INTERNAL, e.to_string());
        tokio::fs::create_dir(staging).await.map_err(io)?;
        tokio::fs::copy(&files.kernel, staging.join(KERNEL))
            .await
            .map_err(io)?;
        tokio::fs::copy(&files.initrd, staging.join(INITRD))
            .await
            .map_err(io)?;
        if let Some(cmdline) = &files.cmdline {
            tokio::fs::write(staging.join(CMDLINE), cmdline)
                .await
                .map_err(io)?;
        }
        if files.snapshot_boot {
            tokio::fs::write(staging.join(SNAPSHOT_BOOT), b"")
                .await
                .map_err(io)?;
        }
        if let Some(disk) = &files.disk {
            // `convert` reads qcow2 or raw (probed), flattens any backing chain and writes a
            // fresh qcow2; an unreadable file fails here, not at the first boot.
            let out = tokio::process::Command::new(&self.qemu_img)
                .args(["convert", "-q", "-O", "qcow2"])
                .arg(disk)
                .arg(staging.join(DISK))
                .output()
                .await
                .map_err(|e| err(error_code::UNAVAILABLE, format!("{}: {e}", self.qemu_img)))?;
            if !out.status.success() {
                return Err(err(
                    error_code::INVALID_INPUT,
                    format!(
                        "disk: {} is not a disk image qemu-img can read: {}",
                        disk.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Removes a library image. Configured images are removed from the configuration.
    pub fn remove(&self, name: &str) -> Result<(), PluginError> {
        match self.get(name) {
            None => Err(err(error_code::NOT_FOUND, format!("no image {name}"))),
            Some(image) if image.source == Source::Config => Err(err(
                error_code::CONFLICT,
                format!("image {name} is registered in the configuration; remove it there"),
            )),
            Some(_) => std::fs::remove_dir_all(self.root.join(name))
                .map_err(|e| err(error_code::INTERNAL, format!("removing image {name}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_directory_names() {
        assert!(valid_name("skyport-tiny"));
        assert!(valid_name("debian-12.7"));
        for bad in ["", "../x", "a/b", ".hidden", "UPPER", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn configured_images_must_exist_and_come_first() {
        let dir = std::env::temp_dir().join(format!("images-{}", std::process::id()));
        let lib = dir.join("lib/tiny");
        std::fs::create_dir_all(&lib).unwrap();
        for f in [KERNEL, INITRD] {
            std::fs::write(lib.join(f), b"x").unwrap();
        }
        let configured = ImageFiles {
            name: "custom".into(),
            kernel: lib.join(KERNEL),
            initrd: lib.join(INITRD),
            disk: None,
            cmdline: Some("root=/dev/vda1".into()),
            snapshot_boot: false,
        };
        let images = ImageLibrary::new(
            dir.join("lib"),
            std::slice::from_ref(&configured),
            "qemu-img".into(),
        )
        .unwrap();
        let names: Vec<_> = images
            .list()
            .into_iter()
            .map(|i| (i.name, i.source))
            .collect();
        assert_eq!(
            names,
            [
                ("custom".into(), Source::Config),
                ("tiny".into(), Source::Library)
            ]
        );
        assert!(images.get("tiny").unwrap().disk.is_none());
        assert_eq!(
            images.get("custom").unwrap().cmdline.as_deref(),
            Some("root=/dev/vda1")
        );
        assert!(images.remove("custom").is_err());
        let missing = ImageFiles {
            kernel: dir.join("nope"),
            ..configured
        };
        let refusal = ImageLibrary::new(dir.join("lib"), &[missing], "qemu-img".into())
            .err()
            .unwrap();
        assert!(refusal.contains("is not a file"), "{refusal}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
