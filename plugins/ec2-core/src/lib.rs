//! What Skyport's EC2-dialect provider plugins share: the Query API client (signing,
//! retries, error mapping), reply parsing, SigV2, the network view (instance addresses,
//! the default VPC, zone names), and the provider ops. The `ec2` and `eucalyptus` plugins
//! are each a [`provider::Dialect`] and a JSON Schema over this crate.
#![forbid(unsafe_code)]

pub mod client;
pub mod network;
pub mod provider;
pub mod sigv2;
pub mod xml;

pub use provider::{Dialect, Provider, OPS};
