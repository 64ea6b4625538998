//! What every [`InstanceLeaseStore`] must do, run against each implementation.

use skyport_core::config::LeaseAction;

use super::{InstanceLease, InstanceLeaseStore};

fn lease(id: &str, tenant: &str, expires_ms: i64) -> InstanceLease {
    InstanceLease {
        instance_id: id.into(),
        tenant: tenant.into(),
        granted_ms: 1_000,
        expires_ms,
        warn_ms: expires_ms - 100,
        on_expiry: LeaseAction::Stop,
        warned: false,
        expired: false,
    }
}

/// Runs every check against `store`, which must start empty.
pub async fn run(store: &dyn InstanceLeaseStore) {
    store.put(&lease("i-1", "demo", 10_000)).await.unwrap();
    store.put(&lease("i-2", "demo", 5_000)).await.unwrap();
    store.put(&lease("i-3", "acme", 20_000)).await.unwrap();

    // Tenants see their own only.
    assert_eq!(
        store.get("demo", "i-1").await.unwrap(),
        Some(lease("i-1", "demo", 10_000))
    );
    assert_eq!(store.get("acme", "i-1").await.unwrap(), None);
    let demo: Vec<String> = store
        .of_tenant("demo")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.instance_id)
        .collect();
    assert_eq!(demo.len(), 2);
    assert!(demo.contains(&"i-1".to_string()) && demo.contains(&"i-2".to_string()));

    // Due: warnings and expiries reached, soonest expiry first.
    let ids = |due: Vec<InstanceLease>| -> Vec<String> {
        due.into_iter().map(|l| l.instance_id).collect()
    };
    assert!(store.due(4_000).await.unwrap().is_empty());
    assert_eq!(ids(store.due(4_900).await.unwrap()), ["i-2"]);
    assert_eq!(ids(store.due(19_950).await.unwrap()), ["i-2", "i-1", "i-3"]);

    // Marks: warned, then expired; an expired lease is no longer due.
    assert!(store.mark("i-2", 5_000, false).await.unwrap());
    let warned = store.get("demo", "i-2").await.unwrap().unwrap();
    assert!(warned.warned && !warned.expired);
    assert!(store.mark("i-2", 5_000, true).await.unwrap());
    assert_eq!(ids(store.due(9_950).await.unwrap()), ["i-1"]);

    // An extension applies only to the lease it was read from.
    assert!(store
        .extend(&lease("i-1", "demo", 30_000), 10_000)
        .await
        .unwrap());
    assert!(!store
        .extend(&lease("i-1", "demo", 40_000), 10_000)
        .await
        .unwrap());
    assert!(
        !store
            .extend(&lease("i-2", "demo", 9_000), 5_000)
            .await
            .unwrap(),
        "expired"
    );
    // A lease extended since it was read is not marked.
    assert!(!store.mark("i-1", 10_000, true).await.unwrap());
    let extended = store.get("demo", "i-1").await.unwrap().unwrap();
    assert!(!extended.expired && extended.expires_ms == 30_000);
    assert!(!store.mark("i-404", 1, true).await.unwrap());
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_store_conforms() {
        super::run(&super::super::memory::MemoryInstanceLeases::default()).await;
    }
}
