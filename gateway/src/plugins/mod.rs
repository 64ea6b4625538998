//! Plugins: the loader (checks and refusals), the host services plugins call back into,
//! and the registry of loaded instances that the gateway calls.

pub mod host;
pub mod loader;
pub mod registry;

pub use loader::{load_library, Refusal};
pub use registry::{PluginHandle, PluginRegistry};
