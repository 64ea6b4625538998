//! What every [`PlacementAuditStore`] must do, as a suite a backend runs against itself.
//! Each check gets a fresh, empty store.

use std::future::Future;
use std::sync::Arc;

use super::{AuditEntry, AuditFilter, Mode, PlacementAuditStore};
use crate::placement::params::ParamSet;
use crate::placement::Decision;

fn decision(provider: &str) -> Decision {
    Decision {
        offering: "dev-vm".into(),
        resource: "vm".into(),
        params: ParamSet::default(),
        rules: Vec::new(),
        provider: provider.into(),
        region: "local-1".into(),
        candidates: Vec::new(),
        currency: None,
    }
}

/// Runs every check, each on a new store from `new_store`; panics naming the first that
/// fails.
pub async fn run<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn PlacementAuditStore>>,
{
    a_stored_decision_is_found_whole(new_store().await).await;
    an_unknown_id_is_not_found(new_store().await).await;
    explained_decisions_are_pruned_and_acted_ones_kept(new_store().await).await;
    searches_select_by_every_field_newest_first(new_store().await).await;
}

async fn searches_select_by_every_field_newest_first(store: Arc<dyn PlacementAuditStore>) {
    let at = |tenant: &str, provider: &str, mode, time: &str| {
        AuditEntry::new(tenant, "req-1", mode, &decision(provider), time.into())
    };
    let a = at(
        "demo",
        "local-vmm",
        Mode::Create,
        "2026-11-01T00:00:00.000Z",
    );
    let b = at("demo", "ec2", Mode::Explain, "2026-11-02T00:00:00.000Z");
    let c = at(
        "acme",
        "local-vmm",
        Mode::Create,
        "2026-11-03T00:00:00.000Z",
    );
    for entry in [&a, &b, &c] {
        store.insert(entry.clone()).await.unwrap();
    }
    let ids = |found: Vec<serde_json::Value>| -> Vec<String> {
        found
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let search = |f: AuditFilter| {
        let store = store.clone();
        async move { ids(store.search(&f).await.unwrap()) }
    };
    let all = AuditFilter {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        search(all.clone()).await,
        [c.id.clone(), b.id.clone(), a.id.clone()],
        "newest first"
    );
    assert_eq!(
        search(AuditFilter {
            limit: 2,
            ..all.clone()
        })
        .await,
        [c.id.clone(), b.id.clone()],
        "limited"
    );
    let demo = AuditFilter {
        tenant: Some("demo".into()),
        ..all.clone()
    };
    assert_eq!(search(demo.clone()).await, [b.id.clone(), a.id.clone()]);
    assert_eq!(
        search(AuditFilter {
            provider: Some("local-vmm".into()),
            ..demo.clone()
        })
        .await,
        vec![a.id.clone()]
    );
    assert_eq!(
        search(AuditFilter {
            mode: Some("explain".into()),
            ..all.clone()
        })
        .await,
        vec![b.id.clone()]
    );
    assert_eq!(
        search(AuditFilter {
            since: Some("2026-11-02T00:00:00.000Z".into()),
            until: Some("2026-11-03T00:00:00.000Z".into()),
            ..all.clone()
        })
        .await,
        vec![b.id.clone()]
    );
    let nothing = AuditFilter {
        offering: Some("prod-vm".into()),
        request_id: Some("req-1".into()),
        region: Some("local-1".into()),
        ..all
    };
    assert!(search(nothing).await.is_empty());
}

async fn explained_decisions_are_pruned_and_acted_ones_kept(store: Arc<dyn PlacementAuditStore>) {
    let at = |mode, time: &str| {
        AuditEntry::new("demo", "req", mode, &decision("local-vmm"), time.into())
    };
    let old_explain = at(Mode::Explain, "2026-11-01T00:00:00.000Z");
    let old_create = at(Mode::Create, "2026-11-01T00:00:00.000Z");
    let new_explain = at(Mode::Explain, "2026-11-20T00:00:00.000Z");
    for entry in [&old_explain, &old_create, &new_explain] {
        store.insert(entry.clone()).await.unwrap();
    }
    let pruned = store
        .prune_explained("2026-11-10T00:00:00.000Z")
        .await
        .unwrap();
    assert_eq!(
        pruned, 1,
        "explained_decisions_are_pruned_and_acted_ones_kept"
    );
    assert!(store.get(&old_explain.id).await.unwrap().is_none());
    assert!(store.get(&old_create.id).await.unwrap().is_some());
    assert!(store.get(&new_explain.id).await.unwrap().is_some());
}

async fn a_stored_decision_is_found_whole(store: Arc<dyn PlacementAuditStore>) {
    let create = AuditEntry::new(
        "demo",
        "req-1",
        Mode::Create,
        &decision("local-vmm"),
        "2026-11-23T00:00:00.000Z".into(),
    );
    let explain = AuditEntry::new(
        "acme",
        "req-2",
        Mode::Explain,
        &decision("ec2"),
        "2026-11-23T00:00:01.000Z".into(),
    );
    store.insert(create.clone()).await.unwrap();
    store.insert(explain.clone()).await.unwrap();
    let found = store.get(&create.id).await.unwrap().unwrap();
    assert_eq!(found, create.record, "a_stored_decision_is_found_whole");
    assert_eq!(found["mode"], "create");
    assert_eq!(found["decision"]["provider"], "local-vmm");
    assert_eq!(
        store.get(&explain.id).await.unwrap().unwrap()["mode"],
        "explain"
    );
}

async fn an_unknown_id_is_not_found(store: Arc<dyn PlacementAuditStore>) {
    assert!(
        store.get("pl-00000000000000000").await.unwrap().is_none(),
        "an_unknown_id_is_not_found"
    );
}
