//! Skyport's ground floor: what every other part of the gateway builds on, and which
//! builds on nothing of the gateway's.
//!
//! - [`clock`]: time, injected ([`clock::Clock`]);
//! - [`ids`]: Skyport's ids, event ids and timestamps;
//! - [`error`]: the one error type, [`error::GatewayError`];
//! - [`config`]: the configuration schema and the checks it can make alone;
//! - [`tenancy`]: principals, tenant contexts and the tenant directory;
//! - [`metrics`]: the Prometheus registry;
//! - [`text`]: byte scans of short request text.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod tenancy;
pub mod text;
