//! The abi_stable root module: the one typed entry into a plugin.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr},
    StableAbi,
};

use super::types::{HostBox, OpResult, PluginBox, PluginError};

/// The root module. Frozen for API major 1: never add, remove or reorder fields.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Describes the plugin as JSON ([`crate::sdk::Description`]) without instantiating it.
    pub describe: extern "C" fn() -> OpResult,
    /// Creates one instance from its JSON configuration and the host's services.
    #[sabi(last_prefix_field)]
    pub instantiate:
        extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<PluginBox, PluginError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "skyport_plugin";
    const NAME: &'static str = "skyport_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
