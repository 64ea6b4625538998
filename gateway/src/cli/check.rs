//! `skyport plugins check` and `skyport config check`.

use std::path::Path;

use skyport_plugin_host::load_library;

/// Runs the loader's checks on `file`; prints one line.
pub(super) fn plugin(file: &Path, sha256: Option<&str>) -> anyhow::Result<i32> {
    let fallback = file
        .file_stem()
        .map(|s| s.to_string_lossy().trim_start_matches("lib").to_string())
        .unwrap_or_default();
    match load_library(file, &fallback, sha256) {
        Ok(lib) => {
            println!(
                "plugin \"{}\" {} ({}) ok: {} for plugin-api {}, {}, ops {}",
                lib.manifest.name,
                lib.manifest.version,
                file.display(),
                lib.manifest.kind,
                lib.manifest.api_version,
                lib.manifest.target,
                lib.description.ops.join(", ")
            );
            Ok(0)
        }
        Err(refusal) => {
            println!("{refusal}");
            Ok(1)
        }
    }
}

/// Validates a configuration file; prints every error with its key path.
pub(super) fn config(file: &Path) -> anyhow::Result<i32> {
    match skyport_domain::config_check::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            Ok(0)
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{}: {e}", file.display());
            }
            Ok(1)
        }
    }
}
