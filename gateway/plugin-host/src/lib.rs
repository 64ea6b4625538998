//! Skyport's plugin host: everything that touches a plugin library.
//!
//! - [`loader`]: the checks a library must pass before any of its code runs, and the
//!   one-line refusals (the same checks `skyport plugins check` runs);
//! - [`registry`]: the loaded instances, calls into them (deadline, cancel, panic ->
//!   circuit open) and their health ([`health`]);
//! - [`isolation`]: plugins in supervised processes of their own (the default), and the
//!   child side of it, `skyport plugin-host`;
//! - [`host`]: the host services a plugin calls back into (logs, metrics, host ops);
//! - [`conformance`]: the provider conformance kit (`skyport plugins test`);
//! - [`plugins`]: the [`Plugins`] trait, what the rest of the gateway needs of the loaded
//!   plugins, so that the services above can be tested without loading a library.
// Only the loader opens libraries and reads their manifest (`loader.rs`, each block with
// its SAFETY note); nothing else in this crate may use `unsafe`.
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod conformance;
pub mod health;
pub mod host;
pub mod isolation;
pub mod loader;
pub mod plugins;
pub mod registry;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use loader::{load_library, Refusal};
pub use plugins::{HealthView, PluginFacts, Plugins};
pub use registry::{PluginHandle, PluginRegistry};
