//! The frozen ABI: everything a host and a plugin exchange across the library boundary.
//!
//! Rules (DESIGN §6): the typed surface stays tiny and frozen per major version. Calls are
//! message-shaped ([`OpRequest`] -> JSON or [`PluginError`]); a panic never crosses the
//! boundary (the SDK turns it into a `PANICKED` error); each plugin owns its async runtime.

mod manifest;
mod module;
mod types;

pub use manifest::{
    FixedStr, PluginKind, PluginManifest, MANIFEST_LAYOUT_VERSION, MANIFEST_MAGIC, MANIFEST_SYMBOL,
};
pub use module::{PluginModule, PluginModuleRef};
pub use types::{
    error_code, CompletionBox, CompletionSink, CompletionSink_TO, HostBox, HostServices,
    HostServices_TO, LogLevel, MetricKind, OpRequest, OpResult, PluginBox, PluginError,
    PluginInstance, PluginInstance_TO,
};
