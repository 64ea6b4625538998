//! `skyport plugins check` and `skyport config check`.

use std::path::Path;

use skyport_plugin_host::isolation::supervisor::{check_in_child, ChildSpec};

/// Runs the loader's checks on `file` in a child process (a library that crashes while
/// loading takes only the child down); prints one line.
pub(super) fn plugin(file: &Path, sha256: Option<&str>) -> anyhow::Result<i32> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().trim_start_matches("lib").to_string())
        .unwrap_or_default();
    let spec = ChildSpec {
        exe: super::serve::plugin_host_exe()?,
        name,
        file: file.to_path_buf(),
        library: file.to_path_buf(),
        sha256: sha256.map(str::to_owned),
        config: "{}".into(),
        state_dir: std::env::temp_dir(),
        limits: Default::default(),
        user: None,
        env: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(check_in_child(&spec)) {
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
