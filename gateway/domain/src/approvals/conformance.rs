//! What every [`ApprovalStore`] must do, run against each implementation.

use serde_json::json;

use super::{ApprovalStore, OrderStatus, PendingOrder};

fn order(id: &str, tenant: &str, created_at: &str) -> PendingOrder {
    PendingOrder {
        id: id.into(),
        tenant: tenant.into(),
        department: Some("finance".into()),
        ordered_by: "alice".into(),
        offering: "dev-vm".into(),
        request: json!({"offering": "dev-vm", "tags": {"project": "apollo"}}),
        status: OrderStatus::PendingApproval,
        reason: None,
        created_at: created_at.into(),
        decided_at: None,
        decided_by: None,
        instance_id: None,
    }
}

/// Runs every check against `store`, which must start empty.
pub async fn run(store: &dyn ApprovalStore) {
    store
        .insert(&order("ord-2", "demo", "2026-12-05T10:00:01.000Z"))
        .await
        .unwrap();
    store
        .insert(&order("ord-1", "demo", "2026-12-05T10:00:00.000Z"))
        .await
        .unwrap();
    store
        .insert(&order("ord-3", "acme", "2026-12-05T10:00:02.000Z"))
        .await
        .unwrap();
    assert_eq!(
        store.get("ord-1").await.unwrap(),
        Some(order("ord-1", "demo", "2026-12-05T10:00:00.000Z"))
    );
    assert_eq!(store.get("ord-404").await.unwrap(), None);
    let ids =
        |orders: Vec<PendingOrder>| -> Vec<String> { orders.into_iter().map(|o| o.id).collect() };
    // Oldest first; by tenant; by status.
    assert_eq!(
        ids(store.list(Some("demo"), None).await.unwrap()),
        ["ord-1", "ord-2"]
    );
    assert_eq!(
        ids(store.list(None, None).await.unwrap()),
        ["ord-1", "ord-2", "ord-3"]
    );

    // One decision wins.
    let mut denied = order("ord-1", "demo", "2026-12-05T10:00:00.000Z");
    denied.status = OrderStatus::Denied;
    denied.reason = Some("not this quarter".into());
    assert!(store
        .update(&denied, OrderStatus::PendingApproval)
        .await
        .unwrap());
    let mut approved = denied.clone();
    approved.status = OrderStatus::Approved;
    assert!(!store
        .update(&approved, OrderStatus::PendingApproval)
        .await
        .unwrap());
    assert_eq!(store.get("ord-1").await.unwrap(), Some(denied));
    assert_eq!(
        ids(store
            .list(None, Some(OrderStatus::PendingApproval))
            .await
            .unwrap()),
        ["ord-2", "ord-3"]
    );
    assert_eq!(
        ids(store
            .list(Some("demo"), Some(OrderStatus::Denied))
            .await
            .unwrap()),
        ["ord-1"]
    );

    // One order per tenant and client token; inserting returns what is stored.
    let with_token = |id: &str, tenant: &str, token: &str| {
        let mut o = order(id, tenant, "2026-12-05T10:00:03.000Z");
        o.request["client_token"] = json!(token);
        o
    };
    let first = with_token("ord-t1", "demo", "tok-1");
    assert_eq!(store.insert(&first).await.unwrap(), first);
    let resent = with_token("ord-t2", "demo", "tok-1");
    assert_eq!(store.insert(&resent).await.unwrap(), first);
    assert_eq!(store.get("ord-t2").await.unwrap(), None);
    for other in [
        with_token("ord-t3", "acme", "tok-1"),
        with_token("ord-t4", "demo", "tok-2"),
        order("ord-t5", "demo", "2026-12-05T10:00:03.000Z"),
        order("ord-t6", "demo", "2026-12-05T10:00:03.000Z"),
    ] {
        assert_eq!(store.insert(&other).await.unwrap(), other, "{}", other.id);
    }
    // Its decision does not free the token.
    let mut denied = first.clone();
    denied.status = OrderStatus::Denied;
    assert!(store
        .update(&denied, OrderStatus::PendingApproval)
        .await
        .unwrap());
    assert_eq!(
        store
            .insert(&with_token("ord-t7", "demo", "tok-1"))
            .await
            .unwrap(),
        denied
    );
    // Two inserts with one token at once: one order is stored, and both answer it.
    let (r1, r2) = (
        with_token("ord-r1", "demo", "tok-race"),
        with_token("ord-r2", "demo", "tok-race"),
    );
    let (a, b) = tokio::join!(store.insert(&r1), store.insert(&r2));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    let lost = if a.id == "ord-r1" { "ord-r2" } else { "ord-r1" };
    assert_eq!(store.get(lost).await.unwrap(), None);
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_store_conforms() {
        super::run(&super::super::memory::MemoryApprovals::default()).await;
    }
}
