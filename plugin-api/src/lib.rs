//! The Skyport plugin API: the frozen ABI between the gateway and its plugins, and the SDK
//! that plugin authors use to implement it.
//!
//! A plugin is a `cdylib` that depends on this crate alone, implements [`sdk::Plugin`] and
//! calls [`export_plugin!`]. The gateway loads it at run time, checks its manifest, then its
//! abi_stable layout, and talks to it in messages: an operation name, a schema version and
//! JSON parameters in; a JSON result or a typed [`abi::PluginError`] out.
//!
//! The ABI (module [`abi`]) is a promise: it changes only with a new major version of this
//! crate. New capabilities are new operation names or schema versions, never new fields.
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod abi;
pub mod ops;
pub mod sdk;

/// The abi_stable version this ABI is pinned to, re-exported so that plugins and the host
/// agree on it without naming it themselves.
pub use abi_stable;

pub use abi::{PluginError, PluginKind};
pub use sdk::{Description, Host, OpCall, Plugin};

/// Major version of the plugin API. A plugin built against another major is refused.
pub const API_MAJOR: u32 = parse_u32(env!("CARGO_PKG_VERSION_MAJOR"));
/// Minor version of the plugin API. A host loads plugins of any minor of its own major.
pub const API_MINOR: u32 = parse_u32(env!("CARGO_PKG_VERSION_MINOR"));
/// Minor version of abi_stable (0.11) the ABI is laid out with.
pub const ABI_STABLE_MINOR: u32 = 11;
/// Target triple this copy of the crate was compiled for.
pub const BUILD_TARGET: &str = env!("SKYPORT_BUILD_TARGET");

const fn parse_u32(s: &str) -> u32 {
    let bytes = s.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

#[cfg(test)]
mod tests {
    /// `export_plugin!` spells abi_stable's root-module symbol by hand; it must match.
    #[test]
    fn export_plugin_uses_abi_stables_root_module_symbol() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }

    #[test]
    fn api_version_constants_follow_the_crate_version() {
        assert_eq!(super::API_MAJOR, 1);
        assert_eq!(super::API_MINOR, 5);
    }
}
