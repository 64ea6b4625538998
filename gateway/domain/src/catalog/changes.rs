//! The administrators' changes to the catalog (`/admin/blueprints|offerings|plans`): a
//! stored object replaces (or adds) the one of that name, and a deletion is stored too,
//! so an object deleted through the API stays deleted even when the configuration still
//! defines it. Changes are kept by a [`CatalogChangeStore`] and laid over the
//! configuration's catalog at every start.

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use skyport_core::config::ConfigError;
use skyport_core::error::GatewayError;

use super::{BlueprintConfig, BudgetConfig, Catalog, OfferingConfig, PlanConfig};

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;

/// The kinds of catalog object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[blueprints.*]`, `/admin/blueprints`.
    Blueprint,
    /// `[offerings.*]`, `/admin/offerings`.
    Offering,
    /// `[plans.*]`, `/admin/plans`.
    Plan,
    /// `[[budgets]]`, `/admin/budgets`.
    Budget,
}

impl Kind {
    /// The kind named by an admin path segment (`blueprints`, `offerings`, `plans`).
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "blueprints" => Some(Self::Blueprint),
            "offerings" => Some(Self::Offering),
            "plans" => Some(Self::Plan),
            "budgets" => Some(Self::Budget),
            _ => None,
        }
    }

    /// `blueprint`, `offering` or `plan`.
    pub fn singular(self) -> &'static str {
        match self {
            Self::Blueprint => "blueprint",
            Self::Offering => "offering",
            Self::Plan => "plan",
            Self::Budget => "budget",
        }
    }

    /// The path segment and configuration table: `blueprints`, `offerings`, `plans`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Blueprint => "blueprints",
            Self::Offering => "offerings",
            Self::Plan => "plans",
            Self::Budget => "budgets",
        }
    }
}

/// One stored change: the object, or `None` for a deletion.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What kind of object.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The new object as JSON; `None`: deleted.
    pub body: Option<Value>,
}

impl Catalog {
    /// Applies `change`; a body that is not an object of its kind is an error naming the
    /// field, under `<kind>.<name>`, and leaves the catalog as it was.
    pub fn apply(&mut self, change: &Change) -> Result<(), ConfigError> {
        let at = format!("{}.{}", change.kind.plural(), change.name);
        match change.kind {
            Kind::Blueprint => apply(&mut self.blueprints, change, &at),
            Kind::Offering => apply(&mut self.offerings, change, &at),
            Kind::Plan => apply(&mut self.plans, change, &at),
            Kind::Budget => {
                apply(&mut self.budgets, change, &at)?;
                if let Some(budget) = self.budgets.get_mut(&change.name) {
                    if budget.name.is_empty() {
                        budget.name = change.name.clone();
                    } else if budget.name != change.name {
                        let message = format!(
                            "the body names budget '{}', the path '{}'",
                            budget.name, change.name
                        );
                        self.budgets.remove(&change.name);
                        return Err(ConfigError {
                            path: format!("{at}.name"),
                            message,
                        });
                    }
                }
                Ok(())
            }
        }
    }

    /// This catalog with `change` applied (see [`Catalog::apply`]).
    pub fn with_change(&self, change: &Change) -> Result<Catalog, ConfigError> {
        let mut next = self.clone();
        next.apply(change)?;
        Ok(next)
    }

    /// Object `name` of `kind` as JSON.
    pub fn object(&self, kind: Kind, name: &str) -> Option<Value> {
        match kind {
            Kind::Blueprint => self.blueprints.get(name).map(|o| serde_json::json!(o)),
            Kind::Offering => self.offerings.get(name).map(|o| serde_json::json!(o)),
            Kind::Plan => self.plans.get(name).map(|o| serde_json::json!(o)),
            Kind::Budget => self.budgets.get(name).map(|o| serde_json::json!(o)),
        }
    }

    /// Every object of `kind`, by name, as JSON.
    pub fn objects(&self, kind: Kind) -> serde_json::Map<String, Value> {
        fn all<T: Serialize>(
            m: &std::collections::BTreeMap<String, T>,
        ) -> serde_json::Map<String, Value> {
            m.iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect()
        }
        match kind {
            Kind::Blueprint => all(&self.blueprints),
            Kind::Offering => all(&self.offerings),
            Kind::Plan => all(&self.plans),
            Kind::Budget => all(&self.budgets),
        }
    }
}

fn apply<T: DeserializeOwned>(
    map: &mut std::collections::BTreeMap<String, T>,
    change: &Change,
    at: &str,
) -> Result<(), ConfigError> {
    match &change.body {
        None => {
            map.remove(&change.name);
        }
        Some(body) => {
            let object: T = serde_path_to_error::deserialize(body).map_err(|e| {
                let path = e.path().to_string();
                ConfigError {
                    path: if path == "." {
                        at.to_string()
                    } else {
                        format!("{at}.{path}")
                    },
                    message: e.into_inner().to_string(),
                }
            })?;
            map.insert(change.name.clone(), object);
        }
    }
    Ok(())
}

// The types must stay (de)serializable both ways for the overlay to round-trip.
const _: fn() = || {
    fn both<T: Serialize + DeserializeOwned>() {}
    both::<BlueprintConfig>();
    both::<OfferingConfig>();
    both::<PlanConfig>();
    both::<BudgetConfig>();
};

/// Where the administrators' catalog changes are kept.
#[async_trait]
pub trait CatalogChangeStore: Send + Sync {
    /// Every stored change, oldest first (the last change of an object is its only one).
    async fn load(&self) -> Result<Vec<Change>, GatewayError>;

    /// Stores `change` as of `at` (RFC 3339), replacing any earlier one for that object.
    async fn save(&self, change: &Change, at: &str) -> Result<(), GatewayError>;
}
