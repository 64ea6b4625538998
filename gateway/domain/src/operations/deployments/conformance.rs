//! What every [`DeploymentStore`] must do, as a suite a backend runs against itself.
//! Each check gets a fresh, empty store.

use std::future::Future;
use std::sync::Arc;

use super::{DeployedResource, Deployment, DeploymentStore};

fn deployment(id: &str, tenant: &str, created_at: &str) -> Deployment {
    Deployment {
        id: id.to_string(),
        tenant: tenant.to_string(),
        department: Some("ops".into()),
        offering: "web-dr".into(),
        created_at: created_at.to_string(),
        resources: vec![DeployedResource {
            resource: "primary".into(),
            instance: "i-00000000000000001".into(),
            provider: "local-vmm".into(),
            region: "local-1".into(),
            placement: "pl-00000000000000001".into(),
        }],
    }
}

/// Runs every check, each on a new store from `new_store`; panics naming the first that
/// fails.
pub async fn run<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn DeploymentStore>>,
{
    a_deployment_is_found_only_by_its_tenant(new_store().await).await;
    listing_is_per_tenant_oldest_first(new_store().await).await;
}

async fn a_deployment_is_found_only_by_its_tenant(store: Arc<dyn DeploymentStore>) {
    let d = deployment("d-00000000000000001", "demo", "2026-11-23T00:00:00.000Z");
    store.insert(&d).await.unwrap();
    let found = store.get("demo", &d.id).await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&found).unwrap(),
        serde_json::to_value(&d).unwrap(),
        "a_deployment_is_found_only_by_its_tenant: every field round-trips"
    );
    assert!(
        store.get("acme", &d.id).await.unwrap().is_none(),
        "a_deployment_is_found_only_by_its_tenant: another tenant's is not found"
    );
}

async fn listing_is_per_tenant_oldest_first(store: Arc<dyn DeploymentStore>) {
    let later = deployment("d-00000000000000001", "demo", "2026-11-23T00:00:02.000Z");
    let earlier = deployment("d-00000000000000002", "demo", "2026-11-23T00:00:01.000Z");
    let other = deployment("d-00000000000000003", "acme", "2026-11-23T00:00:00.000Z");
    for d in [&later, &earlier, &other] {
        store.insert(d).await.unwrap();
    }
    let ids: Vec<String> = store
        .list("demo")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        ids,
        [earlier.id, later.id],
        "listing_is_per_tenant_oldest_first"
    );
    assert!(store.list("nobody").await.unwrap().is_empty());
}
