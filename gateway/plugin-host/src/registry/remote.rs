//! Starting a plugin instance served by a plugin host on another machine.

use std::path::Path;
use std::sync::Arc;

use skyport_core::config::PluginConfig;

use super::{Backend, PluginRegistry, Running};
use crate::health::HealthCell;
use crate::isolation::remote::{RemotePlugin, RemoteSpec};
use crate::loader::Refusal;

impl PluginRegistry {
    /// Connects instance `name` to its plugin host (`config.remote`); a host out of reach
    /// now is a refusal, like a library that does not load.
    pub(super) async fn start_remote(
        &self,
        name: &str,
        config: &PluginConfig,
        file: &Path,
        health: &Arc<HealthCell>,
    ) -> Result<Arc<Running>, Refusal> {
        let refuse = |reason: String| Refusal {
            plugin: name.to_string(),
            version: None,
            file: file.to_path_buf(),
            reason,
        };
        let remote = config
            .remote
            .as_ref()
            .ok_or_else(|| refuse("isolation = \"remote\" needs remote = {...}".into()))?;
        let base = self.base_dir();
        let spec = RemoteSpec::from_files(
            name,
            &remote.address,
            remote.server_name.as_deref(),
            &base.join(&remote.ca),
            &base.join(&remote.cert),
            &base.join(&remote.key),
        )
        .map_err(refuse)?;
        let (plugin, loaded) =
            RemotePlugin::start(spec, Arc::clone(health), self.gateway_host(name))
                .await
                .map_err(refuse)?;
        Ok(Self::running(
            name,
            loaded.manifest,
            loaded.description,
            loaded.sha256,
            Backend::Remote(plugin),
        ))
    }
}
