//! What every [`AccessKeyStore`] must do, as a suite a backend runs against itself:
//! `conformance::run(|| async { Arc::new(MyStore::new(..)) as Arc<dyn AccessKeyStore> }).await`.
//! Each check gets a fresh, empty store.

use std::future::Future;
use std::sync::Arc;

use super::{AccessKey, AccessKeyStore, KeySecret, Revocation};

fn key(id: &str, tenant: &str, department: Option<&str>, created_at: &str) -> AccessKey {
    AccessKey {
        access_key_id: id.to_string(),
        tenant: tenant.to_string(),
        department: department.map(str::to_owned),
        created_at: created_at.to_string(),
        revoked_at: None,
    }
}

/// Runs every check, each on a new store from `new_store`; panics naming the first that
/// fails.
pub async fn run<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn AccessKeyStore>>,
{
    a_stored_key_is_listed_and_its_secret_found(new_store().await).await;
    listing_is_by_tenant_oldest_first(new_store().await).await;
    a_key_is_revoked_once_and_then_has_no_secret(new_store().await).await;
}

async fn a_stored_key_is_listed_and_its_secret_found(store: Arc<dyn AccessKeyStore>) {
    let k = key(
        "AKSPAAAAAAAAAAAAAAAA",
        "demo",
        Some("finance"),
        "2026-11-01T00:00:00.000Z",
    );
    store.insert(k.clone(), "s3cret".into()).await.unwrap();
    assert_eq!(store.list(None).await.unwrap(), vec![k.clone()]);
    assert_eq!(
        store.secret(&k.access_key_id).await.unwrap(),
        Some(KeySecret {
            tenant: "demo".into(),
            department: Some("finance".into()),
            secret: "s3cret".into(),
        }),
        "a_stored_key_is_listed_and_its_secret_found"
    );
    assert_eq!(store.secret("AKSPNOSUCHKEY0000000").await.unwrap(), None);
}

async fn listing_is_by_tenant_oldest_first(store: Arc<dyn AccessKeyStore>) {
    let later = key(
        "AKSPAAAAAAAAAAAAAAAA",
        "demo",
        None,
        "2026-11-02T00:00:00.000Z",
    );
    let earlier = key(
        "AKSPZZZZZZZZZZZZZZZZ",
        "demo",
        None,
        "2026-11-01T00:00:00.000Z",
    );
    let other = key(
        "AKSPBBBBBBBBBBBBBBBB",
        "acme",
        None,
        "2026-11-01T12:00:00.000Z",
    );
    for k in [&later, &earlier, &other] {
        store.insert(k.clone(), "s".into()).await.unwrap();
    }
    assert_eq!(
        store.list(Some("demo")).await.unwrap(),
        vec![earlier.clone(), later.clone()],
        "listing_is_by_tenant_oldest_first"
    );
    assert_eq!(store.list(Some("acme")).await.unwrap(), vec![other.clone()]);
    assert!(store.list(Some("nobody")).await.unwrap().is_empty());
    assert_eq!(
        store.list(None).await.unwrap(),
        vec![earlier, other, later],
        "listing_is_by_tenant_oldest_first: all tenants"
    );
}

async fn a_key_is_revoked_once_and_then_has_no_secret(store: Arc<dyn AccessKeyStore>) {
    let k = key(
        "AKSPAAAAAAAAAAAAAAAA",
        "demo",
        None,
        "2026-11-01T00:00:00.000Z",
    );
    store.insert(k.clone(), "s".into()).await.unwrap();
    let at = "2026-11-03T00:00:00.000Z";
    let revoked = AccessKey {
        revoked_at: Some(at.to_string()),
        ..k.clone()
    };
    assert_eq!(
        store.revoke(&k.access_key_id, at).await.unwrap(),
        Revocation::Revoked(revoked.clone()),
        "a_key_is_revoked_once_and_then_has_no_secret"
    );
    assert_eq!(
        store
            .revoke(&k.access_key_id, "2026-11-04T00:00:00.000Z")
            .await
            .unwrap(),
        Revocation::AlreadyRevoked(revoked.clone()),
        "a second revocation keeps the first time"
    );
    assert_eq!(store.secret(&k.access_key_id).await.unwrap(), None);
    assert_eq!(store.list(None).await.unwrap(), vec![revoked]);
    assert_eq!(
        store.revoke("AKSPNOSUCHKEY0000000", at).await.unwrap(),
        Revocation::Unknown
    );
}
