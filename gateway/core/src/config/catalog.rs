//! The catalog's configuration shapes: `[blueprints.*]`, `[offerings.*]`, `[plans.*]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The built-in offering of raw requests (an image and an instance type, no offering named):
/// placed like any other, its plan switch is `raw`.
pub const RAW: &str = "raw";

/// Generic resource types a blueprint can ask for.
pub const RESOURCE_TYPES: &[&str] = &["compute"];

/// A parameter value: a flag, a whole number or text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Text.
    Text(String),
}

impl ParamValue {
    /// The text, when the value is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// Parameters by name, in name order.
pub type Params = BTreeMap<String, ParamValue>;

/// `[blueprints.<name>]`: a generic provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlueprintConfig {
    /// What it is, for people.
    #[serde(default)]
    pub description: String,
    /// The generic resources it creates, in order.
    pub resources: Vec<ResourceConfig>,
    /// Parameters it sets (decision point 1).
    #[serde(default)]
    pub params: Params,
    /// Parameters of `params` that offerings and callers may not change.
    #[serde(default)]
    pub locked: Vec<String>,
    /// Values used when nothing else sets a parameter.
    #[serde(default)]
    pub defaults: Params,
    /// Resources that must not share a provider or region.
    pub separate: Option<SeparateConfig>,
}

/// One generic resource of a blueprint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Name inside the blueprint, e.g. `primary`.
    pub name: String,
    /// Generic type, one of [`RESOURCE_TYPES`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Parameters for this resource only (set with the blueprint's).
    #[serde(default)]
    pub params: Params,
}

/// A blueprint's separation requirement.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeparateConfig {
    /// The resources that must be kept apart (at least two).
    pub resources: Vec<String>,
    /// Apart by what.
    pub by: Separation,
}

/// What separated resources must not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Separation {
    /// Different providers.
    Provider,
    /// Different regions (a provider may serve several).
    Region,
}

/// `[offerings.<name>]`: a blueprint plus parameters, what tenants order.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OfferingConfig {
    /// What it is, for people.
    #[serde(default)]
    pub description: String,
    /// The blueprint it instantiates.
    pub blueprint: String,
    /// Parameters it sets (decision point 2), overriding the blueprint's unless locked.
    #[serde(default)]
    pub params: Params,
    /// Values used when nothing else sets a parameter (before the blueprint's).
    #[serde(default)]
    pub defaults: Params,
    /// Parameters a caller may choose when ordering it.
    #[serde(default)]
    pub user_params: Vec<String>,
    /// The lease its instances get unless the order carries its own: they are stopped
    /// or terminated when it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseTerms>,
    /// Whether its orders wait for an approver (`pending_approval`) before anything is
    /// placed or created.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_approval: bool,
}

/// How long an instance may run before it is stopped or terminated, and what then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseTerms {
    /// Seconds from the create to the expiry (at least 1).
    pub duration_secs: u64,
    /// What happens at expiry: `stop` (default) or `terminate`.
    #[serde(default)]
    pub on_expiry: LeaseAction,
    /// Seconds before the expiry that its warning fires (default: a tenth of the
    /// duration, at most an hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_before_secs: Option<u64>,
}

impl LeaseTerms {
    /// Seconds before the expiry that the warning fires.
    pub fn warn_before(&self) -> u64 {
        self.warn_before_secs
            .unwrap_or((self.duration_secs / 10).min(3600))
            .min(self.duration_secs)
    }
}

/// What a lease's expiry does to its instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseAction {
    /// Stop it (it can be started again, with a new lease or none).
    #[default]
    Stop,
    /// Terminate it.
    Terminate,
}

impl LeaseAction {
    /// `stop` or `terminate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Terminate => "terminate",
        }
    }
}

/// `[plans.<name>]`: what the tenants on it may use.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// What it is, for people.
    #[serde(default)]
    pub description: String,
    /// Offerings its tenants may order.
    #[serde(default)]
    pub offerings: Vec<String>,
    /// Provider regions its tenants may use; empty: every region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Whether raw requests (an image and an instance type, no offering) are allowed.
    #[serde(default = "allowed")]
    pub raw: bool,
    /// Most live instances each tenant on it may have (the tighter of this and the
    /// tenant's own `max_instances` applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// Most vCPUs over its live instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vcpus: Option<u32>,
    /// Most memory (MiB) over its live instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mib: Option<u32>,
    /// Longest lease (seconds from the create to the expiry, extensions included) its
    /// tenants may hold; none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lease_secs: Option<u64>,
}

fn allowed() -> bool {
    true
}

impl PlanConfig {
    /// Whether its tenants may order `offering` (the built-in `raw` when `raw` is set).
    pub fn offers(&self, offering: &str) -> bool {
        if offering == RAW {
            return self.raw;
        }
        self.offerings.iter().any(|o| o == offering)
    }

    /// Whether its tenants may use provider region `region` (an empty list allows all).
    pub fn allows_region(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }
}
