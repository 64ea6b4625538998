//! Skyport, a federated cloud-broker gateway.
//!
//! A request reads top to bottom through these modules (see `pipeline`): `tls` ->
//! `auth` -> `limit` -> `cache` -> `api` -> `plugins` -> `metering_tap`.
// Only the plugin loader opens libraries and reads their manifest (`plugins/loader.rs`,
// each block with its SAFETY note); nothing else may use `unsafe`.
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod config_check;
pub mod host_ops;
pub mod inventory;
pub mod limit;
pub mod metering_tap;
pub mod metrics_listener;
pub mod operations;
pub mod pipeline;
pub mod placement;
pub mod server;
pub mod state;
pub mod tls;

pub use skyport_auth as auth;
pub use skyport_core::{clock, config, error, ids, metrics};
pub use skyport_plugin_host as plugins;
pub use skyport_store_sqlite::db;
