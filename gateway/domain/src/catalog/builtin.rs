//! The built-in offering `raw`: what a request by image and instance type alone (no
//! offering) is placed as, so that raw requests go through the same decision points,
//! rules, cost ranking and audit as orders by offering.

use std::sync::LazyLock;

use super::{BlueprintConfig, OfferingConfig, Params, ResourceConfig};

pub use skyport_core::config::RAW;

/// What callers choose in a raw request.
const RAW_USER_PARAMS: &[&str] = &["image", "instance_type", "region", "provider"];

static RAW_BLUEPRINT: LazyLock<BlueprintConfig> = LazyLock::new(|| BlueprintConfig {
    description: "One virtual machine, as a raw request asks (built in)".into(),
    resources: vec![ResourceConfig {
        name: "vm".into(),
        kind: "compute".into(),
        params: Params::new(),
    }],
    params: Params::new(),
    locked: Vec::new(),
    defaults: Params::new(),
    separate: None,
});

static RAW_OFFERING: LazyLock<OfferingConfig> = LazyLock::new(|| OfferingConfig {
    description: "A request by image and instance type (built in; the plan's `raw` allows it)"
        .into(),
    blueprint: RAW.into(),
    params: Params::new(),
    defaults: Params::new(),
    user_params: RAW_USER_PARAMS.iter().map(|p| p.to_string()).collect(),
    lease: None,
    requires_approval: false,
});

/// The built-in offering `raw` and its blueprint.
pub(super) fn raw() -> (&'static OfferingConfig, &'static BlueprintConfig) {
    (&RAW_OFFERING, &RAW_BLUEPRINT)
}
