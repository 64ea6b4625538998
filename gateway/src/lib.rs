//! Skyport, a federated cloud-broker gateway: the `skyport` binary's library.
//!
//! A request reads top to bottom through these modules: [`server`] (TLS, HTTP) ->
//! [`stack`] (the one request pipeline) -> [`api`] (the front door: native or EC2) ->
//! the domain's services (`skyport-domain`) -> the plugins (`skyport-plugin-host`).
//! [`console`] serves the web console's files and sign-in on the same listener; its pages
//! call the native API like any client. [`wiring`] builds all of it from the
//! configuration; [`cli`] is the command line.
// Nothing in this crate needs `unsafe`; the plugin loader's lives in skyport-plugin-host.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod catalog_refresh;
pub mod cli;
pub mod console;
pub mod metrics_listener;
mod peer_rate;
mod per_key;
pub mod recovery;
pub mod redis_link;
pub mod server;
pub mod services;
pub mod stack;
pub mod storage;
pub mod tls;
pub mod webhook_client;
pub mod wiring;

#[cfg(test)]
mod testkit;
