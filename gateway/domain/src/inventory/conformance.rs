//! What every [`InventoryStore`] must do, as a suite a backend runs against itself:
//! `conformance::run(|| async { Arc::new(MyStore::new(..)) as Arc<dyn InventoryStore> }).await`.
//! Each check gets a fresh, empty store.

use std::future::Future;
use std::sync::Arc;

use skyport_core::error::ErrorKind;

use super::{Admission, AdmissionCheck, InstanceNetwork, InstanceRecord, InventoryStore};

/// A pending record of `tenant` with id `id`.
pub fn record(id: &str, tenant: &str) -> InstanceRecord {
    InstanceRecord {
        id: id.to_string(),
        tenant: tenant.to_string(),
        department: None,
        provider: "local-vmm".into(),
        region: "local-1".into(),
        remote_id: None,
        image: "skyport-tiny".into(),
        instance_type: "sp.micro".into(),
        name: None,
        tags: Default::default(),
        state: "pending".into(),
        created_at: "2026-11-23T00:00:00.000Z".into(),
        key_name: None,
        client_token: None,
        network: None,
        user_data: None,
        offering: Some("dev-vm".into()),
    }
}

/// Runs every check, each on a new store from `new_store`; panics naming the first that
/// fails.
pub async fn run<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn InventoryStore>>,
{
    a_record_is_found_only_by_its_tenant(new_store().await).await;
    listing_is_per_tenant_in_id_order(new_store().await).await;
    updates_keep_what_they_do_not_set(new_store().await).await;
    a_change_is_recorded_once(new_store().await).await;
    tags_are_replaced_whole(new_store().await).await;
    addresses_are_recorded_and_cleared(new_store().await).await;
    reconciliation_sees_live_instances_with_a_remote_id(new_store().await).await;
    idempotency_tokens_are_unique_per_tenant(new_store().await).await;
    a_deleted_record_is_gone(new_store().await).await;
    admission_sees_live_instances_and_may_refuse(new_store().await).await;
    admission_returns_the_instance_of_a_known_token(new_store().await).await;
    concurrent_admissions_never_pass_a_quota_together(new_store().await).await;
}

/// A check that admits while the tenant has fewer than `max` live instances.
fn at_most(max: usize) -> AdmissionCheck {
    Box::new(move |live: &[InstanceRecord]| {
        if live.len() < max {
            Ok(())
        } else {
            Err(skyport_core::error::GatewayError::new(
                ErrorKind::QuotaExceeded,
                format!("quota exceeded: {} live", live.len()),
            ))
        }
    })
}

async fn admission_sees_live_instances_and_may_refuse(store: Arc<dyn InventoryStore>) {
    let gone = InstanceRecord {
        state: "terminated".into(),
        ..record("i-00000000000000001", "demo")
    };
    store.insert(gone).await.unwrap();
    store
        .insert(record("i-00000000000000009", "acme"))
        .await
        .unwrap();
    // Another tenant's instances and terminated ones are not counted.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_by_check = Arc::clone(&seen);
    let check: AdmissionCheck = Box::new(move |live: &[InstanceRecord]| {
        *seen_by_check.lock().unwrap() = live.iter().map(|r| r.id.clone()).collect();
        Ok(())
    });
    let second = record("i-00000000000000002", "demo");
    assert_eq!(
        store.admit(second.clone(), check).await.unwrap(),
        Admission::Inserted
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(store.get("demo", &second.id).await.unwrap(), Some(second));
    // Refused: nothing is inserted, and the check's error comes back as it was.
    let refused = store
        .admit(record("i-00000000000000003", "demo"), at_most(1))
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::QuotaExceeded);
    assert_eq!(
        store.get("demo", "i-00000000000000003").await.unwrap(),
        None
    );
}

async fn admission_returns_the_instance_of_a_known_token(store: Arc<dyn InventoryStore>) {
    let first = InstanceRecord {
        client_token: Some("tok".into()),
        ..record("i-00000000000000001", "demo")
    };
    assert_eq!(
        store.admit(first.clone(), at_most(10)).await.unwrap(),
        Admission::Inserted
    );
    // The same token again: the first instance, even when the quota is now full.
    let again = InstanceRecord {
        client_token: Some("tok".into()),
        ..record("i-00000000000000002", "demo")
    };
    assert_eq!(
        store.admit(again, at_most(1)).await.unwrap(),
        Admission::Existing(Box::new(first))
    );
    assert_eq!(store.list("demo").await.unwrap().len(), 1);
    // Another tenant's token of the same value is its own.
    let acme = InstanceRecord {
        client_token: Some("tok".into()),
        ..record("i-00000000000000003", "acme")
    };
    assert_eq!(
        store.admit(acme, at_most(1)).await.unwrap(),
        Admission::Inserted
    );
}

async fn concurrent_admissions_never_pass_a_quota_together(store: Arc<dyn InventoryStore>) {
    let attempts: Vec<_> = (1..=12)
        .map(|i| {
            let store = Arc::clone(&store);
            let r = record(&format!("i-{i:017}"), "demo");
            tokio::spawn(async move { store.admit(r, at_most(3)).await })
        })
        .collect();
    let mut results = Vec::new();
    for attempt in attempts {
        results.push(attempt.await.expect("the admission task ran"));
    }
    let inserted = results
        .iter()
        .filter(|r| matches!(r, Ok(Admission::Inserted)))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind == ErrorKind::QuotaExceeded))
        .count();
    assert_eq!((inserted, refused), (3, 9), "{results:?}");
    assert_eq!(store.list("demo").await.unwrap().len(), 3);
}

async fn a_record_is_found_only_by_its_tenant(store: Arc<dyn InventoryStore>) {
    let r = InstanceRecord {
        department: Some("finance".into()),
        key_name: Some("k".into()),
        name: Some("web".into()),
        user_data: Some("IyEvYmluL3NoCg==".into()),
        ..record("i-00000000000000001", "demo")
    };
    store.insert(r.clone()).await.unwrap();
    assert_eq!(
        store.get("demo", &r.id).await.unwrap(),
        Some(r.clone()),
        "a_record_is_found_only_by_its_tenant: every field round-trips"
    );
    assert_eq!(
        store.get("acme", &r.id).await.unwrap(),
        None,
        "a_record_is_found_only_by_its_tenant: another tenant's id is not found"
    );
    assert!(store.list("acme").await.unwrap().is_empty());
}

async fn listing_is_per_tenant_in_id_order(store: Arc<dyn InventoryStore>) {
    for (id, tenant) in [
        ("i-00000000000000003", "demo"),
        ("i-00000000000000001", "demo"),
        ("i-00000000000000002", "acme"),
    ] {
        store.insert(record(id, tenant)).await.unwrap();
    }
    let ids: Vec<String> = store
        .list("demo")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        ids,
        ["i-00000000000000001", "i-00000000000000003"],
        "listing_is_per_tenant_in_id_order"
    );
}

async fn updates_keep_what_they_do_not_set(store: Arc<dyn InventoryStore>) {
    let r = record("i-00000000000000001", "demo");
    store.insert(r.clone()).await.unwrap();
    store
        .update(&r.id, Some("vm-1".into()), "running", None)
        .await
        .unwrap();
    store.update(&r.id, None, "stopped", None).await.unwrap();
    store
        .update(&r.id, None, "stopped", Some("sp.small".into()))
        .await
        .unwrap();
    let now = store.get("demo", &r.id).await.unwrap().unwrap();
    assert_eq!(
        (
            now.remote_id.as_deref(),
            now.state.as_str(),
            now.instance_type.as_str()
        ),
        (Some("vm-1"), "stopped", "sp.small"),
        "updates_keep_what_they_do_not_set"
    );
}

async fn a_change_is_recorded_once(store: Arc<dyn InventoryStore>) {
    let r = InstanceRecord {
        state: "running".into(),
        ..record("i-00000000000000001", "demo")
    };
    store.insert(r.clone()).await.unwrap();
    assert!(store.transition(&r.id, "running", "stopped").await.unwrap());
    assert!(
        !store.transition(&r.id, "running", "stopped").await.unwrap(),
        "a_change_is_recorded_once: the second observer loses"
    );
    assert_eq!(
        store.get("demo", &r.id).await.unwrap().unwrap().state,
        "stopped"
    );
    assert!(!store
        .transition("i-0000000000000000f", "running", "stopped")
        .await
        .unwrap());
}

async fn tags_are_replaced_whole(store: Arc<dyn InventoryStore>) {
    let r = InstanceRecord {
        tags: serde_json::json!({"a": "1", "b": "2"})
            .as_object()
            .cloned()
            .unwrap(),
        ..record("i-00000000000000001", "demo")
    };
    store.insert(r.clone()).await.unwrap();
    let replaced = serde_json::json!({"c": "3"}).as_object().cloned().unwrap();
    store.set_tags(&r.id, replaced.clone()).await.unwrap();
    assert_eq!(
        store.get("demo", &r.id).await.unwrap().unwrap().tags,
        replaced,
        "tags_are_replaced_whole"
    );
}

async fn addresses_are_recorded_and_cleared(store: Arc<dyn InventoryStore>) {
    let with_addresses = InstanceRecord {
        network: Some(InstanceNetwork {
            private_ip: Some("10.213.0.10".into()),
            zone: Some("local-1a".into()),
            ..InstanceNetwork::default()
        }),
        ..record("i-00000000000000001", "demo")
    };
    store.insert(with_addresses.clone()).await.unwrap();
    let got = store
        .get("demo", &with_addresses.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.network, with_addresses.network,
        "addresses_are_recorded_and_cleared: inserted addresses round-trip"
    );
    let moved = InstanceNetwork {
        private_ip: Some("10.213.0.11".into()),
        public_ip: Some("203.0.113.5".into()),
        ..InstanceNetwork::default()
    };
    store
        .set_network(&with_addresses.id, Some(moved.clone()))
        .await
        .unwrap();
    let got = store
        .get("demo", &with_addresses.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.network,
        Some(moved),
        "addresses_are_recorded_and_cleared: replaced"
    );
    store.set_network(&with_addresses.id, None).await.unwrap();
    let got = store
        .get("demo", &with_addresses.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.network, None,
        "addresses_are_recorded_and_cleared: cleared"
    );
}

async fn reconciliation_sees_live_instances_with_a_remote_id(store: Arc<dyn InventoryStore>) {
    let ids = [
        ("i-00000000000000001", Some("vm-1"), "running", "local-vmm"),
        ("i-00000000000000002", None, "pending", "local-vmm"),
        (
            "i-00000000000000003",
            Some("vm-3"),
            "terminated",
            "local-vmm",
        ),
        ("i-00000000000000004", Some("vm-4"), "stopped", "ec2"),
        ("i-00000000000000005", Some("vm-5"), "stopped", "local-vmm"),
    ];
    for (id, remote, state, provider) in ids {
        store
            .insert(InstanceRecord {
                remote_id: remote.map(str::to_owned),
                state: state.into(),
                provider: provider.into(),
                ..record(id, if id.ends_with('5') { "acme" } else { "demo" })
            })
            .await
            .unwrap();
    }
    let mut active: Vec<String> = store
        .active_for_provider("local-vmm")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    active.sort();
    assert_eq!(
        active,
        ["i-00000000000000001", "i-00000000000000005"],
        "reconciliation_sees_live_instances_with_a_remote_id: every tenant's"
    );
    let unfinished: Vec<String> = store
        .unfinished_creates()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        unfinished,
        ["i-00000000000000002"],
        "reconciliation_sees_live_instances_with_a_remote_id: unfinished creates"
    );
}

async fn idempotency_tokens_are_unique_per_tenant(store: Arc<dyn InventoryStore>) {
    let first = InstanceRecord {
        client_token: Some("token-1".into()),
        ..record("i-00000000000000001", "demo")
    };
    store.insert(first.clone()).await.unwrap();
    assert_eq!(
        store.by_client_token("demo", "token-1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.by_client_token("acme", "token-1").await.unwrap(),
        None,
        "idempotency_tokens_are_unique_per_tenant: another tenant's token is not found"
    );
    let again = InstanceRecord {
        client_token: Some("token-1".into()),
        ..record("i-00000000000000002", "demo")
    };
    assert_eq!(
        store.insert(again).await.map_err(|e| e.kind),
        Err(ErrorKind::Conflict),
        "idempotency_tokens_are_unique_per_tenant: a second use is refused"
    );
    let other_tenant = InstanceRecord {
        client_token: Some("token-1".into()),
        ..record("i-00000000000000003", "acme")
    };
    store.insert(other_tenant).await.unwrap();
    for id in ["i-00000000000000004", "i-00000000000000005"] {
        store.insert(record(id, "demo")).await.unwrap();
    }
}

async fn a_deleted_record_is_gone(store: Arc<dyn InventoryStore>) {
    let r = InstanceRecord {
        client_token: Some("t".into()),
        ..record("i-00000000000000001", "demo")
    };
    store.insert(r.clone()).await.unwrap();
    store.delete(&r.id).await.unwrap();
    assert_eq!(
        store.get("demo", &r.id).await.unwrap(),
        None,
        "a_deleted_record_is_gone"
    );
    assert_eq!(store.by_client_token("demo", "t").await.unwrap(), None);
    store.insert(r).await.unwrap();
}
