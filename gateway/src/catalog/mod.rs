//! The service catalog: Skyport's instance types, and what tenants may order.
//!
//! - A **blueprint** is a generic provider: one or more generic resources (today `compute`)
//!   with inherent requirements, e.g. two compute resources that must land on different
//!   providers or regions.
//! - An **offering** is a blueprint plus parameters, which may override the blueprint's
//!   unless the blueprint locks them.
//! - A **plan** lists the offerings and regions a tenant may use, and whether raw image +
//!   instance type requests are allowed.
//!
//! All three are defined in `[blueprints.*]`, `[offerings.*]` and `[plans.*]` and validated
//! with the configuration (every error names its key path); see `docs/placement.md`.

mod instance_types;
mod model;
mod validate;

pub use instance_types::{instance_type, instance_type_names, InstanceType, INSTANCE_TYPES};
pub use model::{
    BlueprintConfig, OfferingConfig, ParamValue, Params, PlanConfig, ResourceConfig,
    SeparateConfig, Separation, RESOURCE_TYPES,
};
pub use validate::{valid_param_name, validate, TEXT_PARAMS};
