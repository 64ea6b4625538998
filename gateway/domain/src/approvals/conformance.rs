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
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_store_conforms() {
        super::run(&super::super::memory::MemoryApprovals::default()).await;
    }
}
