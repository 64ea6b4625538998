//! Skyport's domain: what the gateway does for a tenant, whichever front door the
//! request came through, over stores and plugins it reaches only through traits.
//!
//! - [`approvals`]: orders that wait for an approver;
//! - [`budgets`]: what tenants and departments may spend per month, and the admission
//!   check that prices every order;
//! - [`catalog`]: instance types, blueprints, offerings and plans, and their changes at
//!   run time ([`catalog::CatalogService`]);
//! - [`placement`]: where an order goes, and why ([`placement::PlacementService`]);
//! - [`instance_leases`]: how long an instance may run before it is stopped or
//!   terminated;
//! - [`inventory`]: Skyport's record of every instance ([`inventory::InventoryStore`]),
//!   its claims, lifecycle metering and the sync with what providers report;
//! - [`operations`]: instances, deployments, key pairs, images, metering and operators'
//!   diagnostics, the operations both front ends call;
//! - [`metering_tap`]: how events reach the metering plugins;
//! - [`sla`]: the providers' service level (availability, errors, latency) per month;
//! - [`regions`]: the regions providers serve, and the federated one;
//! - [`events`]: what happens, published to the webhooks tenants and operators
//!   subscribe, through a durable outbox;
//! - [`config_check`]: the configuration checks that need the catalog and the rules.
//!
//! Every store is a trait with a conformance suite (feature `testkit`, which also brings
//! in-memory stores for tests of what builds on them).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod approvals;
pub mod budgets;
pub mod catalog;
pub mod config_check;
pub mod events;
pub mod instance_leases;
pub mod inventory;
pub mod leases;
pub mod metering_tap;
pub mod operations;
pub mod placement;
pub mod regions;
pub mod sessions;
pub mod sla;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

use skyport_core::tenancy::TenantContext;
use skyport_plugin_api::sdk::CallContext;

/// The plugin-call context of a tenant's request: its id, tenant and department.
pub fn call_context(ctx: &TenantContext, request_id: &str) -> CallContext {
    CallContext {
        request_id: request_id.to_string(),
        tenant: Some(ctx.tenant.to_string()),
        department: ctx.department.clone(),
    }
}
