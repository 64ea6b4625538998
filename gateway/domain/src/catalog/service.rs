//! The catalog in force, and its changes at run time: the configuration's catalog with the
//! administrators' stored changes laid over it, swapped atomically on every change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;
use skyport_core::clock::SharedClock;
use skyport_core::config::Config;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::ids::rfc3339_millis;
use skyport_core::tenancy::TenantDirectory;

use super::changes::{CatalogChangeStore, Change, Kind};
use super::{validate, Catalog};

/// The catalog in force and its changes.
pub struct CatalogService {
    in_force: ArcSwap<Catalog>,
    /// The configuration's catalog, under the changes.
    configured: Catalog,
    /// The stored changes `in_force` was made from, as the store lists them: another
    /// replica's change shows as a difference ([`CatalogService::refresh`]).
    applied: std::sync::Mutex<Vec<Change>>,
    store: Arc<dyn CatalogChangeStore>,
    /// Changes are applied one at a time.
    writes: tokio::sync::Mutex<()>,
    tenants: Arc<TenantDirectory>,
    clock: SharedClock,
}

impl CatalogService {
    /// The configuration's catalog with the changes in `store` laid over it. When the
    /// changes no longer fit the configuration (it was edited since), the configuration's
    /// catalog alone is served, and the problems are logged with their key paths.
    pub async fn open(
        config: &Config,
        tenants: Arc<TenantDirectory>,
        store: Arc<dyn CatalogChangeStore>,
        clock: SharedClock,
    ) -> Result<Self, GatewayError> {
        let configured = Catalog::from_config(config);
        let changes = store.load().await?;
        let in_force = if changes.is_empty() {
            configured.clone()
        } else {
            overlaid(configured.clone(), &changes, &tenants)
        };
        Ok(Self {
            in_force: ArcSwap::from_pointee(in_force),
            configured,
            applied: std::sync::Mutex::new(changes),
            store,
            writes: tokio::sync::Mutex::new(()),
            tenants,
            clock,
        })
    }

    /// Reads the stored changes again and, when they differ from those in force (another
    /// replica sharing the store changed the catalog), puts the catalog they make in
    /// force; whether it did.
    pub async fn refresh(&self) -> Result<bool, GatewayError> {
        let changes = self.store.load().await?;
        let _one_at_a_time = self.writes.lock().await;
        if *self.applied.lock().unwrap_or_else(|p| p.into_inner()) == changes {
            return Ok(false);
        }
        let next = overlaid(self.configured.clone(), &changes, &self.tenants);
        self.in_force.store(Arc::new(next));
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = changes;
        tracing::info!("catalog changed in the shared store: the new catalog is in force");
        Ok(true)
    }

    /// The catalog in force now.
    pub fn current(&self) -> Arc<Catalog> {
        self.in_force.load_full()
    }

    /// Every object of `kind`, by name, as JSON.
    pub fn objects(&self, kind: Kind) -> serde_json::Map<String, Value> {
        self.in_force.load().objects(kind)
    }

    /// Object `name` of `kind` as JSON; 404 when there is none.
    pub fn object(&self, kind: Kind, name: &str) -> Result<Value, GatewayError> {
        self.in_force
            .load()
            .object(kind, name)
            .ok_or_else(|| GatewayError::not_found(format!("no {} '{name}'", kind.singular())))
    }

    /// Puts object `name` of `kind` (a JSON object); returns whether it is new, and the
    /// object as now in force.
    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        body: Value,
    ) -> Result<(bool, Value), GatewayError> {
        if !body.is_object() {
            return Err(GatewayError::invalid("the body must be a JSON object"));
        }
        let existed = self.in_force.load().object(kind, name).is_some();
        let change = Change {
            kind,
            name: name.to_string(),
            body: Some(body),
        };
        self.apply(&change).await?;
        Ok((!existed, self.object(kind, name)?))
    }

    /// Deletes object `name` of `kind`; 404 when there is none, 409 while others refer
    /// to it.
    pub async fn delete(&self, kind: Kind, name: &str) -> Result<(), GatewayError> {
        self.object(kind, name)?;
        self.apply(&Change {
            kind,
            name: name.to_string(),
            body: None,
        })
        .await
    }

    /// Checks the catalog `change` would make, stores the change and puts that catalog in
    /// force; changes are applied one at a time. A body that does not parse, or a catalog
    /// that would not validate, is 400 naming every problem's key path; a deletion that
    /// others still refer to is 409 naming them.
    async fn apply(&self, change: &Change) -> Result<(), GatewayError> {
        let _one_at_a_time = self.writes.lock().await;
        let next = self
            .in_force
            .load()
            .with_change(change)
            .map_err(|e| GatewayError::invalid(format!("{}: {}", e.path, e.message)))?;
        let errors = validate(&next, self.tenants.configs());
        if !errors.is_empty() {
            let listed: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect();
            let (kind, what) = if change.body.is_none() {
                (ErrorKind::Conflict, "it is still referred to")
            } else {
                (ErrorKind::InvalidInput, "the catalog would not be valid")
            };
            return Err(GatewayError::new(
                kind,
                format!("{what}: {}", listed.join("; ")),
            ));
        }
        self.store
            .save(change, &rfc3339_millis(self.clock.wall()))
            .await?;
        self.in_force.store(Arc::new(next));
        {
            // As the store now lists it: the object's earlier change replaced, this one last.
            let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            applied.retain(|c| !(c.kind == change.kind && c.name == change.name));
            applied.push(change.clone());
        }
        tracing::info!(
            object = %format!("{}.{}", change.kind.plural(), change.name),
            change = if change.body.is_some() { "put" } else { "delete" },
            "catalog changed"
        );
        Ok(())
    }
}

/// `configured` with `changes` laid over it, or `configured` alone (logged) when they no
/// longer fit.
fn overlaid(configured: Catalog, changes: &[Change], tenants: &TenantDirectory) -> Catalog {
    let mut overlaid = configured.clone();
    let problems = match changes.iter().try_for_each(|c| overlaid.apply(c)) {
        Ok(()) => validate(&overlaid, tenants.configs()),
        Err(e) => vec![e],
    };
    if problems.is_empty() {
        tracing::info!(
            changes = changes.len(),
            "catalog changes from the admin API applied"
        );
        return overlaid;
    }
    for p in &problems {
        tracing::error!(path = %p.path, problem = %p.message,
            "the admin API's catalog changes no longer fit the configuration");
    }
    tracing::error!("serving the configuration's catalog alone; fix the changes through /admin/blueprints, /admin/offerings or /admin/plans");
    configured
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use skyport_core::clock::ManualClock;

    use super::super::changes::memory::MemoryCatalogChanges;
    use super::*;

    async fn service(store: Arc<MemoryCatalogChanges>) -> CatalogService {
        let config = Config::embedded();
        let tenants = Arc::new(TenantDirectory::new(config.tenants.clone()));
        CatalogService::open(&config, tenants, store, ManualClock::at_unix(1_795_433_941))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_change_another_replica_stored_is_put_in_force_by_a_refresh() {
        let store = Arc::new(MemoryCatalogChanges::default());
        let (here, there) = (
            service(Arc::clone(&store)).await,
            service(Arc::clone(&store)).await,
        );
        there
            .put(
                Kind::Offering,
                "big-vm",
                json!({"blueprint": "single-vm", "params": {"cpus": 8}}),
            )
            .await
            .unwrap();
        assert!(!here.current().offerings.contains_key("big-vm"));
        assert!(here.refresh().await.unwrap(), "the change is seen");
        assert_eq!(
            here.object(Kind::Offering, "big-vm").unwrap()["params"]["cpus"],
            8
        );
        assert!(!here.refresh().await.unwrap(), "and taken once");
        assert!(
            !there.refresh().await.unwrap(),
            "a replica's own change is already in force"
        );
        there.delete(Kind::Offering, "big-vm").await.unwrap();
        assert!(here.refresh().await.unwrap());
        assert!(!here.current().offerings.contains_key("big-vm"));
    }

    #[tokio::test]
    async fn changes_are_validated_stored_and_laid_over_the_configuration_at_the_next_start() {
        let store = Arc::new(MemoryCatalogChanges::default());
        let catalog = service(Arc::clone(&store)).await;
        let (created, object) = catalog
            .put(
                Kind::Offering,
                "big-vm",
                json!({"blueprint": "single-vm", "params": {"cpus": 8}}),
            )
            .await
            .unwrap();
        assert!(created);
        assert_eq!(object["params"]["cpus"], 8);
        let bad = catalog
            .put(Kind::Offering, "broken", json!({"blueprint": "nowhere"}))
            .await
            .unwrap_err();
        assert_eq!(bad.kind, ErrorKind::InvalidInput);
        assert!(bad.public.contains("offerings.broken"), "{}", bad.public);
        let in_use = catalog
            .delete(Kind::Blueprint, "single-vm")
            .await
            .unwrap_err();
        assert_eq!(in_use.kind, ErrorKind::Conflict);
        let plan = json!({"offerings": ["dev-vm", "prod-vm", "web-dr", "big-vm"]});
        catalog.put(Kind::Plan, "standard", plan).await.unwrap();
        catalog.delete(Kind::Offering, "prod-vm").await.unwrap_err();
        catalog
            .put(
                Kind::Plan,
                "standard",
                json!({"offerings": ["dev-vm", "big-vm"]}),
            )
            .await
            .unwrap();
        catalog.delete(Kind::Offering, "prod-vm").await.unwrap();
        assert_eq!(
            catalog
                .delete(Kind::Offering, "prod-vm")
                .await
                .unwrap_err()
                .kind,
            ErrorKind::NotFound
        );

        let restarted = service(store).await;
        let current = restarted.current();
        assert!(current.offerings.contains_key("big-vm"));
        assert!(!current.offerings.contains_key("prod-vm"));
        assert!(!current.offerings.contains_key("broken"));
        assert_eq!(current.plans["standard"].offerings, ["dev-vm", "big-vm"]);
    }

    #[test]
    fn a_change_that_does_not_parse_names_its_field() {
        let catalog = Catalog::from_config(&Config::embedded());
        let bad = Change {
            kind: Kind::Offering,
            name: "big-vm".into(),
            body: Some(json!({"blueprint": "single-vm", "user_params": "image"})),
        };
        assert_eq!(
            catalog.with_change(&bad).unwrap_err().path,
            "offerings.big-vm.user_params"
        );
    }
}
