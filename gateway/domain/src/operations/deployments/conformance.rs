//! What every [`DeploymentStore`] must do, as a suite a backend runs against itself.
//! Each check gets a fresh, empty store.

use std::future::Future;
use std::sync::Arc;

use super::{DeployedResource, Deployment, DeploymentStatus, DeploymentStore};

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
        status: DeploymentStatus::Ready,
        planned: Vec::new(),
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
    updates_replace_and_deletes_remove(new_store().await).await;
    abandoned_deployments_are_taken_once(new_store().await).await;
}

async fn updates_replace_and_deletes_remove(store: Arc<dyn DeploymentStore>) {
    let mut d = Deployment {
        status: DeploymentStatus::Creating,
        planned: vec!["primary".into()],
        resources: Vec::new(),
        ..deployment("d-00000000000000001", "demo", "2026-11-23T00:00:00.000Z")
    };
    store.insert(&d).await.unwrap();
    assert_eq!(
        store.get("demo", &d.id).await.unwrap().unwrap().status,
        DeploymentStatus::Creating
    );
    d = Deployment {
        status: DeploymentStatus::Ready,
        planned: Vec::new(),
        ..deployment(&d.id, "demo", &d.created_at)
    };
    store.update(&d).await.unwrap();
    let found = store.get("demo", &d.id).await.unwrap().unwrap();
    assert_eq!(found.status, DeploymentStatus::Ready);
    assert_eq!(found.resources.len(), 1);
    store.delete(&d.id).await.unwrap();
    assert!(store.get("demo", &d.id).await.unwrap().is_none());
    assert!(store.list("demo").await.unwrap().is_empty());
}

async fn abandoned_deployments_are_taken_once(store: Arc<dyn DeploymentStore>) {
    let creating = |id: &str, at: &str| Deployment {
        status: DeploymentStatus::Creating,
        planned: vec!["primary".into(), "standby".into()],
        resources: Vec::new(),
        ..deployment(id, "demo", at)
    };
    let old = creating("d-00000000000000001", "2026-11-23T00:00:00.000Z");
    let recent = creating("d-00000000000000002", "2026-11-23T00:10:00.000Z");
    let ready = deployment("d-00000000000000003", "acme", "2026-11-22T00:00:00.000Z");
    for d in [&old, &recent, &ready] {
        store.insert(d).await.unwrap();
    }
    let taken = store
        .take_abandoned("2026-11-23T00:05:00.000Z")
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].id, old.id);
    assert_eq!(taken[0].planned, old.planned);
    // Taken once: a second recovery (another replica's) gets nothing.
    assert!(store
        .take_abandoned("2026-11-23T00:05:00.000Z")
        .await
        .unwrap()
        .is_empty());
    // The recent one is taken once it is old enough; a ready one never.
    let later = store
        .take_abandoned("2026-11-24T00:00:00.000Z")
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [recent.id.as_str()]
    );
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
