//! The parameter set of one resource, gathered over the five decision points in order:
//! blueprint -> offering -> user context -> user preference -> defaults. Every value
//! remembers the point (and the place) that set it and what it replaced.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{BlueprintConfig, OfferingConfig, ParamValue, Params, ResourceConfig};

/// Where a parameter's value came from, in the order the points are consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionPoint {
    /// The blueprint's (and the resource's) `params`.
    Blueprint,
    /// The offering's `params`.
    Offering,
    /// Who is asking: tenant, department, plan.
    UserContext,
    /// What the caller chose (only the offering's `user_params`).
    UserPreference,
    /// The offering's, then the blueprint's `defaults`, for what is still unset.
    Default,
    /// Not one of the five points: an administrator rule's `choose`, applied after them.
    Rule,
}

/// One parameter's value and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    /// The value in force.
    pub value: ParamValue,
    /// The decision point that set it.
    pub set_by: DecisionPoint,
    /// Where exactly, e.g. `offering prod-vm`.
    pub source: String,
    /// Earlier values it replaced, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrode: Vec<Overridden>,
}

/// A value that a later decision point replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overridden {
    /// The replaced value.
    pub value: ParamValue,
    /// The point that had set it.
    pub set_by: DecisionPoint,
    /// Where exactly.
    pub source: String,
}

/// A resource's parameters by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ParamSet(BTreeMap<String, Param>);

impl ParamSet {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name).map(|p| &p.value)
    }

    /// The text value of `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(ParamValue::as_text)
    }

    /// A set of plain values, each as if the request had set it (for tests and benchmarks).
    pub fn from_params(params: &Params) -> Self {
        let mut set = Self::default();
        for (name, value) in params {
            set.set(name, value, DecisionPoint::UserPreference, "request");
        }
        set
    }

    /// How many parameters are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `name` as administrator rule `rule` chose it.
    pub fn set_by_rule(&mut self, name: &str, value: &ParamValue, rule: &str) {
        self.set(name, value, DecisionPoint::Rule, &format!("rule {rule}"));
    }

    /// Every parameter, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sets `name` at `point`, keeping what it replaces.
    fn set(&mut self, name: &str, value: &ParamValue, set_by: DecisionPoint, source: &str) {
        let param = Param {
            value: value.clone(),
            set_by,
            source: source.to_string(),
            overrode: Vec::new(),
        };
        match self.0.get_mut(name) {
            Some(old) => {
                let mut overrode = std::mem::take(&mut old.overrode);
                overrode.push(Overridden {
                    value: old.value.clone(),
                    set_by: old.set_by,
                    source: std::mem::take(&mut old.source),
                });
                *old = Param { overrode, ..param };
            }
            None => {
                self.0.insert(name.to_string(), param);
            }
        }
    }

    /// Sets `name` only when nothing set it yet (the defaults point).
    fn fill(&mut self, name: &str, value: &ParamValue, source: &str) {
        if !self.0.contains_key(name) {
            self.set(name, value, DecisionPoint::Default, source);
        }
    }
}

/// Why a parameter set could not be gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherError {
    /// The caller set a parameter the offering does not let callers choose.
    NotUserSettable {
        /// The parameter.
        parameter: String,
    },
    /// A required parameter has no value and no default.
    Missing {
        /// The parameter.
        parameter: String,
    },
    /// The caller gave a text value longer than [`MAX_PARAM_CHARS`].
    TooLong {
        /// The parameter.
        parameter: String,
    },
}

/// The longest text a caller may give a parameter: every decision is stored with its
/// parameters, so a caller's value must not make the audit grow by megabytes.
pub const MAX_PARAM_CHARS: usize = 1024;

/// Parameters every compute resource needs.
pub const REQUIRED_COMPUTE: &[&str] = &["image", "instance_type"];

/// What the gatherer needs to know about one resource of one order.
pub struct Order<'a> {
    /// The offering's name.
    pub offering_name: &'a str,
    /// The offering.
    pub offering: &'a OfferingConfig,
    /// Its blueprint.
    pub blueprint: &'a BlueprintConfig,
    /// The resource being placed.
    pub resource: &'a ResourceConfig,
    /// Who asks: `tenant`, `department`, `plan` (decision point 3).
    pub context: &'a Params,
    /// What the caller chose (decision point 4).
    pub preferences: &'a Params,
}

/// Gathers one resource's parameters over the five decision points. Later points override
/// earlier ones, except that the blueprint's locked parameters never change and callers
/// may set only the offering's `user_params`. A required parameter left without a value
/// is an error naming it.
pub fn gather(order: &Order<'_>) -> Result<ParamSet, GatherError> {
    let mut set = ParamSet::default();
    let blueprint_source = format!("blueprint {}", order.offering.blueprint);
    for (name, value) in &order.blueprint.params {
        set.set(name, value, DecisionPoint::Blueprint, &blueprint_source);
    }
    let resource_source = format!(
        "blueprint {} resource {}",
        order.offering.blueprint, order.resource.name
    );
    for (name, value) in &order.resource.params {
        set.set(name, value, DecisionPoint::Blueprint, &resource_source);
    }
    let locked = |name: &str| order.blueprint.locked.iter().any(|l| l == name);
    let offering_source = format!("offering {}", order.offering_name);
    for (name, value) in &order.offering.params {
        if !locked(name) {
            set.set(name, value, DecisionPoint::Offering, &offering_source);
        }
    }
    for (name, value) in order.context {
        if !locked(name) {
            set.set(name, value, DecisionPoint::UserContext, "caller");
        }
    }
    for (name, value) in order.preferences {
        if locked(name) || !order.offering.user_params.iter().any(|p| p == name) {
            return Err(GatherError::NotUserSettable {
                parameter: name.clone(),
            });
        }
        if value
            .as_text()
            .is_some_and(|t| t.chars().count() > MAX_PARAM_CHARS)
        {
            return Err(GatherError::TooLong {
                parameter: name.clone(),
            });
        }
        set.set(name, value, DecisionPoint::UserPreference, "request");
    }
    let offering_defaults = format!("offering {} defaults", order.offering_name);
    for (name, value) in &order.offering.defaults {
        set.fill(name, value, &offering_defaults);
    }
    let blueprint_defaults = format!("blueprint {} defaults", order.offering.blueprint);
    for (name, value) in &order.blueprint.defaults {
        set.fill(name, value, &blueprint_defaults);
    }
    if order.resource.kind == "compute" {
        if let Some(missing) = REQUIRED_COMPUTE.iter().find(|p| set.get(p).is_none()) {
            return Err(GatherError::Missing {
                parameter: missing.to_string(),
            });
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ParamValue::Text(v.to_string())))
            .collect()
    }

    struct Fixture {
        blueprint: BlueprintConfig,
        offering: OfferingConfig,
        context: Params,
        preferences: Params,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                blueprint: BlueprintConfig {
                    description: String::new(),
                    resources: vec![ResourceConfig {
                        name: "vm".into(),
                        kind: "compute".into(),
                        params: Params::new(),
                    }],
                    params: params(&[("tier", "standard")]),
                    locked: Vec::new(),
                    defaults: params(&[("image", "base-image"), ("instance_type", "sp.micro")]),
                    separate: None,
                },
                offering: OfferingConfig {
                    description: String::new(),
                    blueprint: "single".into(),
                    params: Params::new(),
                    defaults: Params::new(),
                    user_params: vec!["instance_type".into(), "region".into()],
                    lease: None,
                    requires_approval: false,
                },
                context: params(&[("tenant", "demo")]),
                preferences: Params::new(),
            }
        }

        fn gather(&self) -> Result<ParamSet, GatherError> {
            gather(&Order {
                offering_name: "vm-offer",
                offering: &self.offering,
                blueprint: &self.blueprint,
                resource: &self.blueprint.resources[0],
                context: &self.context,
                preferences: &self.preferences,
            })
        }
    }

    /// Each decision point, alone, changes the outcome; the table says how.
    #[test]
    fn each_decision_point_changes_the_outcome() {
        type Edit = fn(&mut Fixture);
        let cases: [(&str, Edit, &str, &str, DecisionPoint); 6] = [
            (
                "defaults only",
                |_| {},
                "instance_type",
                "sp.micro",
                DecisionPoint::Default,
            ),
            (
                "offering default beats blueprint default",
                |f| f.offering.defaults = params(&[("instance_type", "sp.small")]),
                "instance_type",
                "sp.small",
                DecisionPoint::Default,
            ),
            (
                "blueprint param",
                |f| f.blueprint.params = params(&[("instance_type", "sp.medium")]),
                "instance_type",
                "sp.medium",
                DecisionPoint::Blueprint,
            ),
            (
                "offering param",
                |f| f.offering.params = params(&[("tier", "gold")]),
                "tier",
                "gold",
                DecisionPoint::Offering,
            ),
            (
                "user context",
                |f| f.context = params(&[("tenant", "demo"), ("department", "finance")]),
                "department",
                "finance",
                DecisionPoint::UserContext,
            ),
            (
                "user preference",
                |f| f.preferences = params(&[("instance_type", "sp.large")]),
                "instance_type",
                "sp.large",
                DecisionPoint::UserPreference,
            ),
        ];
        for (case, edit, name, value, point) in cases {
            let mut f = Fixture::new();
            edit(&mut f);
            let set = f.gather().unwrap();
            assert_eq!(set.text(name), Some(value), "{case}");
            assert_eq!(set.0[name].set_by, point, "{case}");
        }
    }

    #[test]
    fn later_points_override_earlier_ones_and_remember_them() {
        let mut f = Fixture::new();
        f.blueprint.params = params(&[("instance_type", "sp.small")]);
        f.offering.params = params(&[("instance_type", "sp.medium")]);
        f.preferences = params(&[("instance_type", "sp.large")]);
        let set = f.gather().unwrap();
        let p = &set.0["instance_type"];
        assert_eq!(p.value, ParamValue::Text("sp.large".into()));
        assert_eq!(p.source, "request");
        let history: Vec<_> = p
            .overrode
            .iter()
            .map(|o| (o.set_by, o.source.as_str()))
            .collect();
        assert_eq!(
            history,
            [
                (DecisionPoint::Blueprint, "blueprint single"),
                (DecisionPoint::Offering, "offering vm-offer"),
            ]
        );
    }

    #[test]
    fn locked_parameters_and_unlisted_preferences_are_refused() {
        let mut f = Fixture::new();
        f.blueprint.locked = vec!["tier".into()];
        f.offering.params = params(&[("tier", "gold")]);
        assert_eq!(f.gather().unwrap().text("tier"), Some("standard"));
        f.preferences = params(&[("tier", "gold")]);
        assert_eq!(
            f.gather(),
            Err(GatherError::NotUserSettable {
                parameter: "tier".into()
            })
        );
        f.preferences = params(&[("provider", "ec2")]);
        assert!(matches!(
            f.gather(),
            Err(GatherError::NotUserSettable { .. })
        ));
    }

    #[test]
    fn a_required_parameter_without_value_or_default_stops_the_order() {
        let mut f = Fixture::new();
        f.blueprint.defaults = params(&[("instance_type", "sp.micro")]);
        assert_eq!(
            f.gather(),
            Err(GatherError::Missing {
                parameter: "image".into()
            })
        );
    }
}
