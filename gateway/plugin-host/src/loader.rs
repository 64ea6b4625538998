//! The plugin loader (DESIGN §6). Only configured paths; every refusal is one line naming
//! the plugin, the file and the reason.
//!
//! Order of checks: file ownership and permissions -> the file read once into an anonymous
//! in-memory file (`memfd`), which is what is hashed and opened, so that a copy over the
//! installed path never changes a loaded plugin -> optional sha256 pin -> `dlopen`
//! (`RTLD_NOW | RTLD_LOCAL`) -> the plain `#[repr(C)]` manifest (magic, API major, abi_stable
//! minor, target, panic strategy, kind) -> abi_stable's layout check through
//! `lib_header_from_path` + `init_root_module` (never `load_from_file`, which caches the
//! first library per interface type) -> `describe()`.

use std::fmt;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::RResult;
use sha2::{Digest, Sha256};
use skyport_plugin_api::abi::{
    PluginKind, PluginManifest, PluginModuleRef, MANIFEST_MAGIC, MANIFEST_SYMBOL,
};
use skyport_plugin_api::{Description, ABI_STABLE_MINOR, API_MAJOR, BUILD_TARGET};

/// Why a plugin was not loaded: one line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Refusal {
    /// Plugin name (from its manifest when readable, else the configured name or file stem).
    pub plugin: String,
    /// Plugin version, when the manifest was readable.
    pub version: Option<String>,
    /// The file.
    pub file: PathBuf,
    /// The reason.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin \"{}\"", self.plugin)?;
        if let Some(v) = &self.version {
            write!(f, " {v}")?;
        }
        write!(f, " ({}) refused: {}", self.file.display(), self.reason)
    }
}

/// What the manifest says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManifestInfo {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// `provider` or `metering`.
    pub kind: &'static str,
    /// plugin-api version the plugin was built against, `major.minor`.
    pub api_version: String,
    /// Target triple.
    pub target: String,
}

/// [`ManifestInfo`] as a child process reports it, its kind as text.
#[derive(serde::Deserialize)]
struct ManifestText {
    name: String,
    version: String,
    kind: String,
    api_version: String,
    target: String,
}

impl<'de> serde::Deserialize<'de> for ManifestInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::try_from(ManifestText::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<ManifestText> for ManifestInfo {
    type Error = String;

    fn try_from(text: ManifestText) -> Result<Self, String> {
        let kind = [PluginKind::Provider, PluginKind::Metering]
            .into_iter()
            .map(PluginKind::as_str)
            .find(|k| *k == text.kind)
            .ok_or_else(|| format!("unknown plugin kind {}", text.kind))?;
        Ok(Self {
            name: text.name,
            version: text.version,
            kind,
            api_version: text.api_version,
            target: text.target,
        })
    }
}

/// A library that passed every check.
pub struct LoadedLibrary {
    /// Its manifest.
    pub manifest: ManifestInfo,
    /// Its description.
    pub description: Description,
    /// Its root module.
    pub module: PluginModuleRef,
    /// The file.
    pub file: PathBuf,
    /// sha256 of the file, hex.
    pub sha256: String,
}

/// Loads and checks `file`. `fallback_name` names the plugin in refusals that happen before
/// its manifest is read.
pub fn load_library(
    file: &Path,
    fallback_name: &str,
    pinned_sha256: Option<&str>,
) -> Result<LoadedLibrary, Refusal> {
    let refuse = |plugin: &str, version: Option<&str>, reason: String| Refusal {
        plugin: plugin.to_string(),
        version: version.map(str::to_owned),
        file: file.to_path_buf(),
        reason,
    };
    check_file_security(file).map_err(|r| refuse(fallback_name, None, r))?;
    let (pinned, sha256) =
        pin_content(file).map_err(|e| refuse(fallback_name, None, format!("cannot read: {e}")))?;
    if let Some(pin) = pinned_sha256 {
        if !pin.eq_ignore_ascii_case(&sha256) {
            return Err(refuse(
                fallback_name,
                None,
                format!("sha256 {sha256} does not match the pinned {pin}"),
            ));
        }
    }
    // The in-memory copy stays open for the life of the process, as the library does.
    let opened = format!("/proc/self/fd/{}", pinned.as_raw_fd());
    let opened = Path::new(&opened);
    std::mem::forget(pinned);

    // SAFETY: loading a library runs its initialisers; only configured, permission-checked
    // files reach this point (DESIGN §6).
    #[allow(unsafe_code)]
    let library = unsafe {
        libloading::os::unix::Library::open(
            Some(opened),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
        )
    }
    .map_err(|e| {
        refuse(
            fallback_name,
            None,
            format!(
                "cannot be loaded: {}",
                one_line(
                    &e.to_string()
                        .replace(&*opened.to_string_lossy(), "the file")
                )
            ),
        )
    })?;

    // SAFETY: the symbol, when present, is the `PluginManifest` static that
    // `export_plugin!` emits; its layout is versioned by `layout_version`.
    #[allow(unsafe_code)]
    let manifest: PluginManifest = unsafe {
        match library.get::<*const PluginManifest>(MANIFEST_SYMBOL) {
            Ok(symbol) => **symbol,
            Err(_) => {
                return Err(refuse(
                    fallback_name,
                    None,
                    "not a Skyport plugin (no SKYPORT_PLUGIN_MANIFEST symbol)".into(),
                ))
            }
        }
    };
    // The library stays loaded for the life of the process: no unloading (DESIGN §6).
    std::mem::forget(library);

    if manifest.magic != MANIFEST_MAGIC || manifest.layout_version == 0 {
        return Err(refuse(
            fallback_name,
            None,
            "not a Skyport plugin (bad manifest magic)".into(),
        ));
    }
    let name = manifest.name.to_string_lossy();
    let version = manifest.version.to_string_lossy();
    let refuse_named = |reason: String| refuse(&name, Some(&version), reason);
    let kind = check_manifest(&manifest).map_err(refuse_named)?;
    let target = manifest.target.to_string_lossy();

    let header = lib_header_from_path(opened).map_err(|e| refuse_named(summarise(&e)))?;
    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(|e| refuse_named(summarise(&e)))?;
    let description = match (module.describe())() {
        RResult::ROk(json) => serde_json::from_str::<Description>(json.as_str())
            .map_err(|e| refuse_named(format!("describe() returned invalid JSON: {e}")))?,
        RResult::RErr(e) => return Err(refuse_named(format!("describe() failed: {e}"))),
    };
    Ok(LoadedLibrary {
        manifest: ManifestInfo {
            name,
            version,
            kind: kind.as_str(),
            api_version: format!("{}.{}", manifest.api_major, manifest.api_minor),
            target,
        },
        description,
        module,
        file: file.to_path_buf(),
        sha256,
    })
}

/// Checks a manifest's API major, abi_stable minor, target, panic strategy and kind.
pub fn check_manifest(manifest: &PluginManifest) -> Result<PluginKind, String> {
    if manifest.api_major != API_MAJOR {
        return Err(format!(
            "targets plugin-api {}.x; this gateway supports {API_MAJOR}.x",
            manifest.api_major
        ));
    }
    if manifest.abi_stable_minor != ABI_STABLE_MINOR {
        return Err(format!(
            "built with abi_stable 0.{}; this gateway uses 0.{ABI_STABLE_MINOR}",
            manifest.abi_stable_minor
        ));
    }
    let target = manifest.target.to_string_lossy();
    if target != BUILD_TARGET {
        return Err(format!(
            "built for {target}; this gateway runs on {BUILD_TARGET}"
        ));
    }
    if manifest.panic_unwind != 1 {
        return Err(
            "built with panic = \"abort\"; plugins must unwind so that a panic cannot stop the gateway"
                .into(),
        );
    }
    PluginKind::from_raw(manifest.kind)
        .ok_or_else(|| format!("unknown plugin kind {}", manifest.kind))
}

/// Refuses files that someone other than root or this user could have replaced.
fn check_file_security(file: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(format!(
            "owned by uid {}, not root or the gateway's user",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o}); chmod go-w it",
            meta.mode() & 0o777
        ));
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dmeta =
            std::fs::metadata(dir).map_err(|e| format!("cannot read its directory: {e}"))?;
        if dmeta.mode() & 0o002 != 0 && dmeta.mode() & 0o1000 == 0 {
            return Err(format!("its directory {} is world-writable", dir.display()));
        }
    }
    Ok(())
}

/// A private copy of a configured library, named by its content.
#[derive(Debug, Clone)]
pub struct PinnedCopy {
    /// The copy (`<dir>/<sha256>.so`).
    pub path: PathBuf,
    /// sha256 of its bytes, hex.
    pub sha256: String,
}

/// Checks `file` as the loader does (ownership, permissions, the optional sha256 pin) and
/// keeps a copy of its bytes in `dir`, named by their sha256. Plugins are started (and
/// restarted) from the copy, so a file copied over the installed path changes nothing
/// until the operator reloads the plugin.
pub fn pin_copy(
    file: &Path,
    pinned_sha256: Option<&str>,
    dir: &Path,
) -> Result<PinnedCopy, String> {
    use std::os::unix::fs::PermissionsExt;
    check_file_security(file)?;
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    let sha256 = sha256_hex(&bytes);
    if let Some(pin) = pinned_sha256 {
        if !pin.eq_ignore_ascii_case(&sha256) {
            return Err(format!("sha256 {sha256} does not match the pinned {pin}"));
        }
    }
    let path = dir.join(format!("{sha256}.so"));
    if !path.exists() {
        let keep = |e: std::io::Error| format!("cannot keep a copy in {}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(keep)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(keep)?;
        // Unique per copy under way: two loads of one file never write one partial file.
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let copy = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let partial = dir.join(format!(".{sha256}.{}.{copy}", std::process::id()));
        std::fs::write(&partial, &bytes).map_err(keep)?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).map_err(keep)?;
        std::fs::rename(&partial, &path).map_err(keep)?;
    }
    Ok(PinnedCopy { path, sha256 })
}

/// sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `file`'s bytes, read once into an anonymous in-memory file, and their sha256 (hex).
fn pin_content(file: &Path) -> std::io::Result<(OwnedFd, String)> {
    let bytes = std::fs::read(file)?;
    let sha256 = sha256_hex(&bytes);
    let fd = rustix::fs::memfd_create("skyport-plugin", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut copy = std::fs::File::from(fd);
    copy.write_all(&bytes)?;
    Ok((OwnedFd::from(copy), sha256))
}

/// abi_stable's errors can run to over a thousand lines: one line for the refusal, the
/// whole text at debug level.
fn summarise(err: &LibraryError) -> String {
    let full = err.to_string();
    tracing::debug!(error = %full, "abi_stable load error (full)");
    let summary = match err {
        LibraryError::AbiInstability(_) => {
            "ABI layout mismatch with this gateway's plugin-api (rebuild the plugin against skyport-plugin-api 1.x)"
                .to_string()
        }
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => format!(
            "root module version {actual_version} is incompatible with {expected_version}"
        ),
        _ => format!("abi_stable refused it: {}", one_line(&full)),
    };
    summary
}

fn one_line(s: &str) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.len() > 200 {
        format!(
            "{}...",
            &line[..line.char_indices().nth(200).map_or(line.len(), |(i, _)| i)]
        )
    } else {
        line.to_string()
    }
}

/// Validates plugin configuration against the plugin's JSON Schema; the error names the
/// key path.
pub fn validate_config(
    schema: &serde_json::Value,
    config: &serde_json::Value,
) -> Result<(), String> {
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
    use super::*;
    use skyport_plugin_api::abi::FixedStr;

    fn manifest() -> PluginManifest {
        PluginManifest::current("t", "1.0.0", PluginKind::Provider)
    }

    #[test]
    fn current_manifest_passes() {
        assert_eq!(check_manifest(&manifest()), Ok(PluginKind::Provider));
    }

    #[test]
    fn each_manifest_refusal_is_one_clear_line() {
        let cases = [
            (
                PluginManifest {
                    api_major: 2,
                    ..manifest()
                },
                "targets plugin-api 2.x; this gateway supports 1.x",
            ),
            (
                PluginManifest {
                    abi_stable_minor: 12,
                    ..manifest()
                },
                "built with abi_stable 0.12; this gateway uses 0.11",
            ),
            (
                PluginManifest {
                    target: FixedStr::new("aarch64-apple-darwin"),
                    ..manifest()
                },
                "built for aarch64-apple-darwin; this gateway runs on",
            ),
            (
                PluginManifest {
                    panic_unwind: 0,
                    ..manifest()
                },
                "built with panic = \"abort\"",
            ),
            (
                PluginManifest {
                    kind: 9,
                    ..manifest()
                },
                "unknown plugin kind 9",
            ),
        ];
        for (m, expected) in cases {
            let reason = check_manifest(&m).unwrap_err();
            assert!(reason.starts_with(expected), "{reason}");
            assert_eq!(reason.lines().count(), 1);
        }
    }
}
