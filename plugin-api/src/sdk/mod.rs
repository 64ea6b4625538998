//! The author SDK: implement [`Plugin`], call [`crate::export_plugin!`], and the SDK does the
//! rest — panic guards on every entry point, a plugin-owned tokio runtime, exactly-once
//! completions, cancellation and a `log` bridge into the host.

pub mod clock;
mod completion;
mod entry;
mod host;
mod instance;

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use completion::{completion_channel, CompletionReceiver};
pub use entry::{describe_entry, instantiate_entry, root_module};
pub use host::Host;

use crate::abi::PluginError;

/// What a plugin says about itself before it is instantiated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Description {
    /// Same as the manifest name.
    pub name: String,
    /// Same as the manifest version.
    pub version: String,
    /// `provider` or `metering`.
    pub kind: String,
    /// One line for operators.
    #[serde(default)]
    pub summary: String,
    /// Operations served, as `name@version` (e.g. `health@1`).
    #[serde(default)]
    pub ops: Vec<String>,
    /// JSON Schema of the plugin's configuration; the host validates config against it.
    #[serde(default = "empty_object_schema")]
    pub config_schema: serde_json::Value,
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object"})
}

/// Who a call is made for, as far as the host has verified it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallContext {
    /// The gateway's request id, for log correlation.
    #[serde(default)]
    pub request_id: String,
    /// Verified tenant, when the call serves a tenant's request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Department inside the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

/// One call as the plugin sees it: parsed, typed where the ABI is not.
#[derive(Debug, Clone)]
pub struct OpCall {
    /// Host-assigned call id.
    pub id: u64,
    /// Operation name.
    pub op: String,
    /// Schema version.
    pub version: u32,
    /// Parameters.
    pub params: serde_json::Value,
    /// Call context.
    pub context: CallContext,
}

impl OpCall {
    /// Deserializes the parameters into `T`, or an `INVALID_INPUT` error naming the op.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_value(self.params.clone()).map_err(|e| {
            PluginError::new(
                crate::abi::error_code::INVALID_INPUT,
                format!("{}@{}: bad params: {e}", self.op, self.version),
            )
        })
    }

    /// The standard error for an op this plugin does not serve.
    pub fn unsupported(&self) -> PluginError {
        PluginError::new(
            crate::abi::error_code::UNSUPPORTED_OP,
            format!("operation {}@{} is not supported", self.op, self.version),
        )
    }
}

/// A plugin. One value per configured instance; calls may run concurrently.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// Describes the plugin (cheap, no side effects).
    fn describe() -> Description;

    /// Creates an instance. Runs inside the plugin's own runtime, so it may spawn tasks.
    fn init(config: serde_json::Value, host: Host) -> Result<Self, PluginError>;

    /// Serves one call. The future runs on this plugin's own runtime (unless
    /// [`Plugin::answers_at_once`] says otherwise for its op), so an op that blocks stalls
    /// only this plugin; still, prefer to await, or move blocking work to
    /// `tokio::task::spawn_blocking`.
    fn call(
        self: Arc<Self>,
        call: OpCall,
    ) -> impl Future<Output = Result<serde_json::Value, PluginError>> + Send + 'static;

    /// Whether a call of `op@version` may be polled first on the caller's thread, inside
    /// this plugin's runtime context: `true` only for ops that never block and are
    /// usually ready at once (a lookup in memory). Such a call then costs no thread hop:
    /// about 1.5 µs in process against 20-30 µs when the plugin's runtime must wake up (see
    /// `bench/README.md`); one that is not ready continues on the plugin's runtime. In
    /// process, that first poll runs on a gateway worker: an op that blocks there stalls
    /// the gateway's requests, which is why the default, `false`, polls every call on the
    /// plugin's runtime. Out of process, it runs on the plugin host's reader thread.
    fn answers_at_once(&self, op: &str, version: u32) -> bool {
        let _ = (op, version);
        false
    }

    /// Called once at shutdown, outside any runtime, before the runtime stops.
    fn shutdown(&self) {}
}

/// Exports a [`Plugin`] implementation from a `cdylib`: the manifest symbol and the
/// abi_stable root module.
///
/// ```ignore
/// skyport_plugin_api::export_plugin!(MyPlugin, name = "my-plugin", kind = Provider);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, name = $name:literal, kind = $kind:ident) => {
        /// The Skyport plugin manifest, read by the host before anything else.
        #[no_mangle]
        pub static SKYPORT_PLUGIN_MANIFEST: $crate::abi::PluginManifest =
            $crate::abi::PluginManifest::current(
                $name,
                env!("CARGO_PKG_VERSION"),
                $crate::abi::PluginKind::$kind,
            );

        // What abi_stable's `#[export_root_module]` generates, spelled with `$crate` paths so
        // that plugins need no direct abi_stable dependency. The symbol name is abi_stable
        // 0.11's `ROOT_MODULE_LOADER_NAME` (checked by a test in skyport-plugin-api).
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi_stable::library::LibHeader = {
            extern "C" fn __skyport_erased_root_module(
            ) -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(
                    $crate::sdk::root_module::<$plugin>,
                )
            }
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<
                    $crate::abi::PluginModuleRef,
                >(
                    __skyport_erased_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
