//! What every [`CatalogChangeStore`] must do, as a suite a backend runs against itself.
//! Each check gets a fresh, empty store.

use std::future::Future;
use std::sync::Arc;

use serde_json::json;

use super::{CatalogChangeStore, Change, Kind};

fn put(kind: Kind, name: &str, body: serde_json::Value) -> Change {
    Change {
        kind,
        name: name.to_string(),
        body: Some(body),
    }
}

/// Runs every check, each on a new store from `new_store`; panics naming the first that
/// fails.
pub async fn run<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn CatalogChangeStore>>,
{
    an_empty_store_has_no_changes(new_store().await).await;
    changes_load_oldest_first(new_store().await).await;
    a_later_change_of_an_object_replaces_the_earlier(new_store().await).await;
}

async fn an_empty_store_has_no_changes(store: Arc<dyn CatalogChangeStore>) {
    assert!(
        store.load().await.unwrap().is_empty(),
        "an_empty_store_has_no_changes"
    );
}

async fn changes_load_oldest_first(store: Arc<dyn CatalogChangeStore>) {
    let offering = put(Kind::Offering, "big-vm", json!({"blueprint": "single-vm"}));
    let plan = put(Kind::Plan, "gold", json!({"offerings": ["big-vm"]}));
    let deletion = Change {
        kind: Kind::Blueprint,
        name: "web-dr".into(),
        body: None,
    };
    store.save(&plan, "2026-11-02T00:00:00.000Z").await.unwrap();
    store
        .save(&offering, "2026-11-01T00:00:00.000Z")
        .await
        .unwrap();
    store
        .save(&deletion, "2026-11-03T00:00:00.000Z")
        .await
        .unwrap();
    assert_eq!(
        store.load().await.unwrap(),
        vec![offering, plan, deletion],
        "changes_load_oldest_first: every kind, deletions included"
    );
}

async fn a_later_change_of_an_object_replaces_the_earlier(store: Arc<dyn CatalogChangeStore>) {
    let first = put(Kind::Offering, "big-vm", json!({"blueprint": "single-vm"}));
    let other = put(Kind::Plan, "big-vm", json!({"offerings": []}));
    let second = Change {
        body: None,
        ..first.clone()
    };
    store
        .save(&first, "2026-11-01T00:00:00.000Z")
        .await
        .unwrap();
    store
        .save(&other, "2026-11-02T00:00:00.000Z")
        .await
        .unwrap();
    store
        .save(&second, "2026-11-03T00:00:00.000Z")
        .await
        .unwrap();
    assert_eq!(
        store.load().await.unwrap(),
        vec![other, second],
        "a_later_change_of_an_object_replaces_the_earlier: one per (kind, name), kinds apart"
    );
}
