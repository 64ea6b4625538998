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

/// `skyport plugins test`: loads `file` as the gateway would (with `config_file`'s table
/// as its configuration) and runs the provider conformance kit; prints the report.
pub(super) fn conformance(
    file: &Path,
    config_file: Option<&Path>,
    isolation: &str,
    state_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<i32> {
    use skyport_core::config::{Isolation, PluginConfig};
    let isolation = match isolation {
        "process" => Isolation::Process,
        "in-process" => Isolation::InProcess,
        other => anyhow::bail!("--isolation must be process or in-process, not {other}"),
    };
    let config = match config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            toml::from_str::<toml::Value>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?
        }
        None => toml::Value::Table(Default::default()),
    };
    let temporary = state_dir.is_none();
    let state_dir = state_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("skyport-plugins-test-{}", std::process::id()))
    });
    std::fs::create_dir_all(&state_dir)?;
    let entry = PluginConfig {
        name: None,
        file: file.to_path_buf(),
        required: true,
        sha256: None,
        config,
        isolation,
        remote: None,
        max_memory_mib: None,
        max_open_files: None,
        user: None,
        env: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(async {
        let registry = match skyport_plugin_host::PluginRegistry::load_all(
            &[entry],
            Path::new("."),
            &state_dir,
            &super::serve::plugin_host_exe()?,
            std::sync::Arc::new(skyport_core::metrics::Metrics::new()),
            skyport_core::clock::SystemClock::shared(),
        )
        .await
        {
            Ok(registry) => registry,
            Err(refusal) => {
                println!("{refusal}");
                return Ok::<i32, anyhow::Error>(1);
            }
        };
        let name = registry.plugins()[0].name.clone();
        let report = skyport_plugin_host::conformance::run(
            &registry,
            &name,
            skyport_core::clock::SystemClock::shared(),
        )
        .await;
        print!("{}", report.render());
        registry.shutdown().await;
        Ok(if report.passed() { 0 } else { 1 })
    })?;
    if temporary {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    Ok(code)
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
