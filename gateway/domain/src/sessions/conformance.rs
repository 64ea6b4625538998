//! The conformance suite every [`SessionStore`] passes.

use super::{SessionRecord, SessionStore};

fn session(id: &str, created_ms: i64, last_seen_ms: i64) -> SessionRecord {
    SessionRecord {
        id_hash: id.into(),
        tenant: "acme".into(),
        department: Some("research".into()),
        roles: vec!["admin".into()],
        subject: "ana".into(),
        via: "dev-link".into(),
        created_ms,
        last_seen_ms,
    }
}

/// Runs every check against `store`, which must be empty.
pub async fn run(store: &dyn SessionStore) {
    let a = session("a", 1_000, 1_000);
    let b = session("b", 2_000, 2_000);
    store.insert(&a).await.unwrap();
    store.insert(&b).await.unwrap();
    assert_eq!(
        store.get("a").await.unwrap(),
        Some(a.clone()),
        "read back whole"
    );
    assert_eq!(store.get("c").await.unwrap(), None);

    store.touch("a", 5_000).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().unwrap().last_seen_ms, 5_000);
    store.touch("missing", 5_000).await.unwrap();

    store.delete("b").await.unwrap();
    assert_eq!(store.get("b").await.unwrap(), None, "signed out");
    store.delete("b").await.unwrap();

    assert!(store.use_ticket("t1", 10_000).await.unwrap(), "first use");
    assert!(
        !store.use_ticket("t1", 10_000).await.unwrap(),
        "second use refused"
    );
    assert!(store.use_ticket("t2", 3_000).await.unwrap());

    // `a`: idle since 5 000; a new one, `d`, created at 6 000.
    store.insert(&session("d", 6_000, 6_000)).await.unwrap();
    store.purge(5_500, 0, 4_000).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), None, "idle session purged");
    assert!(
        store.get("d").await.unwrap().is_some(),
        "active session kept"
    );
    store.purge(0, 7_000, 4_000).await.unwrap();
    assert_eq!(store.get("d").await.unwrap(), None, "old session purged");
    assert!(
        !store.use_ticket("t1", 10_000).await.unwrap(),
        "unexpired ticket kept"
    );
    assert!(
        store.use_ticket("t2", 3_000).await.unwrap(),
        "expired ticket purged"
    );
}
