//! The service catalog: Skyport's instance types, and what tenants may order.
//!
//! - A **blueprint** is a generic provider: one or more generic resources (today `compute`)
//!   with inherent requirements, e.g. two compute resources that must land on different
//!   providers or regions.
//! - An **offering** is a blueprint plus parameters, which may override the blueprint's
//!   unless the blueprint locks them.
//! - A **plan** lists the offerings and regions a tenant may use, and whether raw image +
//!   instance type requests (the built-in offering [`RAW`]) are allowed.
//!
//! All three are defined in `[blueprints.*]`, `[offerings.*]` and `[plans.*]` and validated
//! with the configuration (every error names its key path); see `docs/placement.md`.

use std::collections::BTreeMap;

use serde::Serialize;

mod builtin;
pub mod changes;
mod instance_types;
mod service;
mod validate;

pub use builtin::RAW;
pub use instance_types::{
    instance_type, instance_type_names, parse_instance_type, InstanceType, INSTANCE_TYPES,
};
pub use service::CatalogService;
pub use skyport_core::config::{
    BlueprintConfig, BudgetConfig, OfferingConfig, ParamValue, Params, PlanConfig, ResourceConfig,
    SeparateConfig, Separation, RESOURCE_TYPES,
};
pub use validate::{valid_param_name, validate, TEXT_PARAMS};

/// The catalog in force: the configuration's blueprints, offerings and plans, with the
/// administrators' changes (`/admin/blueprints|offerings|plans`) laid over them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    /// Generic providers by name.
    pub blueprints: BTreeMap<String, BlueprintConfig>,
    /// What tenants order, by name.
    pub offerings: BTreeMap<String, OfferingConfig>,
    /// What each tenant may use, by name.
    pub plans: BTreeMap<String, PlanConfig>,
    /// What tenants and departments may spend, by name.
    pub budgets: BTreeMap<String, BudgetConfig>,
}

impl Catalog {
    /// The catalog the configuration defines.
    pub fn from_config(config: &skyport_core::config::Config) -> Self {
        Self {
            blueprints: config.blueprints.clone(),
            offerings: config.offerings.clone(),
            plans: config.plans.clone(),
            budgets: config
                .budgets
                .iter()
                .map(|b| (b.name.clone(), b.clone()))
                .collect(),
        }
    }

    /// Offering `name` with its blueprint: one of the catalog's, or the built-in [`RAW`].
    pub fn offering(&self, name: &str) -> Option<(&OfferingConfig, &BlueprintConfig)> {
        if name == RAW {
            return Some(builtin::raw());
        }
        let offering = self.offerings.get(name)?;
        Some((offering, self.blueprints.get(&offering.blueprint)?))
    }

    /// Plan `name` with its name; `None` when `name` is `None` (no plan: every offering,
    /// every region, raw requests allowed) or names no plan.
    pub fn plan<'a>(&'a self, name: Option<&'a str>) -> Option<(&'a str, &'a PlanConfig)> {
        let name = name?;
        Some((name, self.plans.get(name)?))
    }
}
