//! What every [`KeyPairStore`] must do, as a suite a backend runs against itself.
//! Each check gets a fresh, empty store.

use std::future::Future;
use std::sync::Arc;

use super::{KeyPair, KeyPairStore};

fn pair(name: &str, id: &str) -> KeyPair {
    KeyPair {
        name: name.to_string(),
        id: id.to_string(),
        key_type: "ed25519".into(),
        fingerprint: "SHA256:abc".into(),
        public_key: "ssh-ed25519 AAAA".into(),
        created_at: "2026-11-23T00:00:00.000Z".into(),
    }
}

/// Runs every check, each on a new store from `new_store`; panics naming the first that
/// fails.
pub async fn run<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn KeyPairStore>>,
{
    names_are_unique_per_tenant(new_store().await).await;
    listing_is_per_tenant_by_name(new_store().await).await;
    deletion_is_by_name_or_id_within_the_tenant(new_store().await).await;
}

async fn names_are_unique_per_tenant(store: Arc<dyn KeyPairStore>) {
    let a = pair("a", "key-00000000000000001");
    assert!(store.insert("demo", a.clone()).await.unwrap());
    assert!(
        !store
            .insert("demo", pair("a", "key-00000000000000002"))
            .await
            .unwrap(),
        "names_are_unique_per_tenant: a second 'a' is refused"
    );
    assert!(
        store
            .insert("acme", pair("a", "key-00000000000000003"))
            .await
            .unwrap(),
        "names_are_unique_per_tenant: another tenant may use the name"
    );
    assert_eq!(store.get("demo", "a").await.unwrap(), Some(a));
    assert_eq!(store.get("demo", "b").await.unwrap(), None);
}

async fn listing_is_per_tenant_by_name(store: Arc<dyn KeyPairStore>) {
    for (tenant, name, id) in [
        ("demo", "b", "key-00000000000000001"),
        ("demo", "a", "key-00000000000000002"),
        ("acme", "c", "key-00000000000000003"),
    ] {
        store.insert(tenant, pair(name, id)).await.unwrap();
    }
    let names: Vec<String> = store
        .list("demo")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["a", "b"], "listing_is_per_tenant_by_name");
}

async fn deletion_is_by_name_or_id_within_the_tenant(store: Arc<dyn KeyPairStore>) {
    store
        .insert("demo", pair("a", "key-00000000000000001"))
        .await
        .unwrap();
    store
        .insert("demo", pair("b", "key-00000000000000002"))
        .await
        .unwrap();
    assert!(
        !store.delete("acme", "a").await.unwrap(),
        "deletion_is_by_name_or_id_within_the_tenant: not another tenant's"
    );
    assert!(store.delete("demo", "a").await.unwrap());
    assert!(store.delete("demo", "key-00000000000000002").await.unwrap());
    assert!(!store.delete("demo", "a").await.unwrap());
    assert!(store.list("demo").await.unwrap().is_empty());
}
