//! `[[plugins]]`: which libraries are loaded, with what configuration, and where their
//! code runs.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Instance name; defaults to the plugin's own name.
    pub name: Option<String>,
    /// Library file; relative names resolve against the executable's directory.
    pub file: PathBuf,
    /// Refuse to start when this plugin cannot be loaded.
    #[serde(default)]
    pub required: bool,
    /// Expected sha256 of the file, hex.
    pub sha256: Option<String>,
    /// Plugin configuration, validated against the plugin's schema.
    #[serde(default = "empty_table")]
    pub config: toml::Value,
    /// Where the plugin's code runs: its own supervised process (the default), inside
    /// the gateway, or a plugin host on another machine (`remote`).
    #[serde(default)]
    pub isolation: Isolation,
    /// The plugin host to reach (isolation = "remote").
    pub remote: Option<RemotePluginConfig>,
    /// Largest heap (data segment) of the plugin's process, MiB (process isolation).
    pub max_memory_mib: Option<u64>,
    /// Most descriptors the plugin's process may hold open (process isolation).
    pub max_open_files: Option<u64>,
    /// The user the plugin's process runs as (process isolation; the gateway must be
    /// root to switch). None: the gateway's own user.
    pub user: Option<String>,
    /// Names of the gateway's environment variables passed to the plugin's process, on
    /// top of `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ` and `TMPDIR` (everything else is
    /// scrubbed).
    #[serde(default)]
    pub env: Vec<String>,
}

/// Where a plugin's code runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// A child process of its own, supervised and restarted: a crash, a blocked thread or
    /// a leak stays in it.
    #[default]
    Process,
    /// Inside the gateway process (the lowest latency, for plugins the operator trusts).
    InProcess,
    /// In a plugin host on another machine (`skyport plugin-host --serve`), reached over
    /// TCP with mutual TLS; every replica connects to the same host.
    Remote,
}

/// How to reach a plugin host (`[[plugins]] remote = {...}`). Relative paths resolve
/// against the gateway's state directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemotePluginConfig {
    /// `host:port` the plugin host listens on.
    pub address: String,
    /// The name its certificate must carry; default: the host part of `address`.
    pub server_name: Option<String>,
    /// The CA that issued the plugin host's certificate (PEM).
    pub ca: PathBuf,
    /// This gateway's client certificate (PEM), which the plugin host verifies.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

fn empty_table() -> toml::Value {
    toml::Value::Table(Default::default())
}

/// Every problem with the `[[plugins]]` entries, each with its key path.
pub(super) fn check(plugins: &[PluginConfig]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: &str| {
        errors.push(ConfigError {
            path,
            message: message.to_string(),
        })
    };
    for (i, plugin) in plugins.iter().enumerate() {
        if let Some(sha) = &plugin.sha256 {
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                err(format!("plugins[{i}].sha256"), "must be 64 hex digits");
            }
        }
        if !plugin.config.is_table() {
            err(format!("plugins[{i}].config"), "must be a table");
        }
        if plugin.max_memory_mib == Some(0) || plugin.max_open_files == Some(0) {
            err(
                format!("plugins[{i}]"),
                "max_memory_mib and max_open_files must be positive",
            );
        }
        if plugin.isolation == Isolation::InProcess
            && (plugin.max_memory_mib.is_some()
                || plugin.max_open_files.is_some()
                || plugin.user.is_some())
        {
            err(
                format!("plugins[{i}].isolation"),
                "max_memory_mib, max_open_files and user need isolation = \"process\"",
            );
        }
        if plugin.user.as_deref() == Some("") {
            err(format!("plugins[{i}].user"), "must not be empty");
        }
        match (plugin.isolation, &plugin.remote) {
            (Isolation::Remote, None) => err(
                format!("plugins[{i}].remote"),
                "isolation = \"remote\" needs remote = { address, ca, cert, key }",
            ),
            (Isolation::Remote, Some(remote)) => {
                if plugin.name.is_none() {
                    err(
                            format!("plugins[{i}].name"),
                            "a remote plugin needs a name (its library is not on this machine to read it from)",
                        );
                }
                if remote
                    .address
                    .rsplit_once(':')
                    .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
                {
                    err(format!("plugins[{i}].remote.address"), "must be host:port");
                }
                if plugin.max_memory_mib.is_some()
                    || plugin.max_open_files.is_some()
                    || plugin.user.is_some()
                {
                    err(
                            format!("plugins[{i}].isolation"),
                            "max_memory_mib, max_open_files and user are the plugin host's to set, not the gateway's",
                        );
                }
            }
            (_, Some(_)) => err(
                format!("plugins[{i}].remote"),
                "is for isolation = \"remote\"",
            ),
            (_, None) => {}
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, EMBEDDED_DEFAULT};

    /// The problems' key paths and messages when the embedded config's metering entry
    /// gets `lines`.
    fn problems(lines: &str) -> Vec<(String, String)> {
        let shipped = "name = \"metering\"\n";
        assert!(EMBEDDED_DEFAULT.contains(shipped));
        let text = EMBEDDED_DEFAULT.replacen(shipped, &format!("{shipped}{lines}\n"), 1);
        match Config::parse(&text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.into_iter().map(|e| (e.path, e.message)).collect(),
        }
    }

    #[test]
    fn a_remote_plugin_needs_its_host_named_and_nothing_only_a_local_process_takes() {
        let remote = "remote = { address = \"10.0.0.21:7443\", ca = \"ca.pem\", cert = \"g.pem\", key = \"g-key.pem\" }";
        assert_eq!(problems(&format!("isolation = \"remote\"\n{remote}")), []);
        let missing = problems("isolation = \"remote\"");
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].0.ends_with(".remote"), "{missing:?}");
        let stray = problems(remote);
        assert!(
            stray[0].1.contains("is for isolation = \"remote\""),
            "{stray:?}"
        );
        let bad = problems(&format!(
            "isolation = \"remote\"\nmax_open_files = 64\n{}",
            remote.replace("10.0.0.21:7443", "10.0.0.21")
        ));
        let paths: Vec<&str> = bad.iter().map(|(p, _)| p.as_str()).collect();
        assert!(
            paths.iter().any(|p| p.ends_with(".remote.address"))
                && paths.iter().any(|p| p.ends_with(".isolation")),
            "{bad:?}"
        );
    }
}
