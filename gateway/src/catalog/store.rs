//! The administrators' changes to the catalog (`/admin/blueprints|offerings|plans`), kept
//! in the gateway database (table `catalog_objects`) and laid over the configuration's
//! catalog at every start: a stored object replaces (or adds) the one of that name, and a
//! deletion is stored too, so an object deleted through the API stays deleted even when
//! the configuration still defines it.

use std::path::Path;
use std::time::SystemTime;

use rusqlite::params;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{BlueprintConfig, Catalog, OfferingConfig, PlanConfig};
use crate::config::ConfigError;
use crate::db::Db;
use crate::error::GatewayError;

/// The three kinds of catalog object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[blueprints.*]`, `/admin/blueprints`.
    Blueprint,
    /// `[offerings.*]`, `/admin/offerings`.
    Offering,
    /// `[plans.*]`, `/admin/plans`.
    Plan,
}

impl Kind {
    /// The kind named by an admin path segment (`blueprints`, `offerings`, `plans`).
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "blueprints" => Some(Self::Blueprint),
            "offerings" => Some(Self::Offering),
            "plans" => Some(Self::Plan),
            _ => None,
        }
    }

    /// The path segment and configuration table: `blueprints`, `offerings`, `plans`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Blueprint => "blueprints",
            Self::Offering => "offerings",
            Self::Plan => "plans",
        }
    }
}

/// One stored change: the object, or `None` for a deletion.
#[derive(Debug, Clone)]
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
};

/// The catalog changes table.
#[derive(Clone)]
pub struct CatalogStore {
    db: Db,
}

impl CatalogStore {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "catalog changes",
            "CREATE TABLE IF NOT EXISTS catalog_objects (
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                body TEXT,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, name)
            );",
        )?;
        Ok(Self { db })
    }

    /// Every stored change, oldest first (at startup, on this thread).
    pub fn load(&self) -> anyhow::Result<Vec<Change>> {
        let rows: Vec<(String, String, Option<String>)> = self.db.migrate(|conn| {
            let mut stmt = conn.prepare(
                "SELECT kind, name, body FROM catalog_objects ORDER BY updated_at, kind, name",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(kind, name, body)| {
                let kind = Kind::from_segment(&kind)
                    .ok_or_else(|| anyhow::anyhow!("catalog_objects: unknown kind '{kind}'"))?;
                let body = body.map(|b| serde_json::from_str(&b)).transpose()?;
                Ok(Change { kind, name, body })
            })
            .collect()
    }

    /// Stores `change` (replacing any earlier one for that object).
    pub async fn save(&self, change: &Change) -> Result<(), GatewayError> {
        let row = (
            change.kind.plural(),
            change.name.clone(),
            change.body.as_ref().map(Value::to_string),
            crate::ids::rfc3339_millis(SystemTime::now()),
        );
        self.db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO catalog_objects (kind, name, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body,
                         updated_at = excluded.updated_at",
                    params![row.0, row.1, row.2, row.3],
                )
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn changes_are_stored_and_laid_over_the_configuration_in_order() {
        let dir = std::env::temp_dir().join(crate::ids::new_id("skyport-catalog"));
        let store = CatalogStore::open(&dir).unwrap();
        let put = Change {
            kind: Kind::Offering,
            name: "big-vm".into(),
            body: Some(serde_json::json!({"blueprint": "single-vm", "params": {"cpus": 8}})),
        };
        let delete = Change {
            kind: Kind::Offering,
            name: "dev-vm".into(),
            body: None,
        };
        store.save(&put).await.unwrap();
        store.save(&delete).await.unwrap();
        let changes = CatalogStore::open(&dir).unwrap().load().unwrap();
        let mut catalog = Catalog::from_config(&Config::embedded());
        for change in &changes {
            catalog.apply(change).unwrap();
        }
        assert!(!catalog.offerings.contains_key("dev-vm"));
        assert_eq!(
            catalog.offerings["big-vm"].params["cpus"],
            crate::catalog::ParamValue::Int(8)
        );
        let bad = Change {
            body: Some(serde_json::json!({"blueprint": "single-vm", "user_params": "image"})),
            ..put
        };
        let err = catalog.with_change(&bad).unwrap_err();
        assert_eq!(err.path, "offerings.big-vm.user_params");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
