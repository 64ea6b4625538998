//! The `extern "C"` entry points `export_plugin!` wires into the root module. Each one
//! catches panics: a panic unwinding through the boundary would abort the host.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};

use super::host::install_log_bridge;
use super::instance::{panicked, Instance};
use super::{Host, Plugin};
use crate::abi::{
    error_code, HostBox, OpResult, PluginBox, PluginError, PluginInstance_TO, PluginModule,
    PluginModuleRef,
};

/// Builds the root module for `P` (called once, by abi_stable, when the host loads it).
pub fn root_module<P: Plugin>() -> PluginModuleRef {
    PluginModule {
        describe: describe_entry::<P>,
        instantiate: instantiate_entry::<P>,
    }
    .leak_into_prefix()
}

/// `describe` for `P`: its [`super::Description`] as JSON.
pub extern "C" fn describe_entry<P: Plugin>() -> OpResult {
    match catch_unwind(P::describe) {
        Ok(description) => match serde_json::to_string(&description) {
            Ok(json) => RResult::ROk(RString::from(json)),
            Err(e) => RResult::RErr(PluginError::new(error_code::INTERNAL, e.to_string())),
        },
        Err(payload) => RResult::RErr(panicked("describe", payload.as_ref())),
    }
}

/// `instantiate` for `P`: builds the plugin's own runtime, then `P::init` inside it.
pub extern "C" fn instantiate_entry<P: Plugin>(
    config: RStr<'_>,
    host: HostBox,
) -> RResult<PluginBox, PluginError> {
    let config = config.as_str().to_owned();
    let result = catch_unwind(AssertUnwindSafe(move || instantiate::<P>(&config, host)));
    match result {
        Ok(Ok(instance)) => RResult::ROk(instance),
        Ok(Err(err)) => RResult::RErr(err),
        Err(payload) => RResult::RErr(panicked("instantiate", payload.as_ref())),
    }
}

fn instantiate<P: Plugin>(config: &str, host: HostBox) -> Result<PluginBox, PluginError> {
    let config: serde_json::Value = serde_json::from_str(config).map_err(|e| {
        PluginError::new(
            error_code::INVALID_CONFIG,
            format!("config is not JSON: {e}"),
        )
    })?;
    let host = Host::new(host);
    install_log_bridge(&host);
    let name = P::describe().name;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("plugin-{name}"))
        .enable_all()
        .build()
        .map_err(|e| PluginError::new(error_code::INTERNAL, format!("runtime: {e}")))?;
    let plugin = {
        let _entered = runtime.enter();
        P::init(config, host)?
    };
    Ok(PluginInstance_TO::from_value(
        Instance::new(plugin, runtime),
        TD_Opaque,
    ))
}
