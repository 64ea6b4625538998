//! `[[placement.rules]]`: the administrators' placement rules, as configured. They are
//! compiled (CEL) and run by `skyport_domain::placement::rules`.

use serde::{Deserialize, Serialize};

/// One `[[placement.rules]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name, shown in every decision it takes part in.
    pub name: String,
    /// What it is for, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Generic resource types it applies to; empty: every type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Offerings it applies to; empty: every offering. Checked before the condition runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offerings: Vec<String>,
    /// CEL condition over `params`, e.g. `params.tier == "prod"`.
    pub when: String,
    /// Candidates to drop when it fires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<ExcludeAction>,
    /// What to bind the resource to when it fires (overrides cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choose: Option<ChooseAction>,
}

/// `exclude = { providers = [..], regions = [..] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeAction {
    /// Provider instances to drop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Regions to drop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

/// `choose = { provider?, region?, instance_type? }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChooseAction {
    /// The provider instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The instance type the resource gets (each provider maps it to its native type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
}
