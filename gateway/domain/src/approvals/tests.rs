//! The approval workflow over the memory store and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use skyport_core::clock::ManualClock;
use skyport_core::error::ErrorKind;

use super::memory::MemoryApprovals;
use super::{ApprovalService, OrderStatus};
use crate::testkit::caller;

fn service() -> (ApprovalService, Arc<ManualClock>) {
    let clock = ManualClock::at_unix(1_795_433_941);
    let service = ApprovalService::new(
        Arc::new(MemoryApprovals::default()),
        clock.clone(),
        Duration::from_secs(3600),
    );
    (service, clock)
}

#[tokio::test]
async fn an_undecided_order_expires_with_its_reason_and_cannot_be_decided() {
    let (approvals, clock) = service();
    let demo = caller("demo", Some("finance"));
    let order = approvals
        .submit(
            &demo,
            "prod-vm",
            Some("finance".into()),
            json!({"offering": "prod-vm"}),
            None,
        )
        .await
        .unwrap();
    assert!(order.id.starts_with("ord-"));
    clock.advance(Duration::from_secs(3599));
    assert_eq!(
        approvals.get(&demo, &order.id).await.unwrap().status,
        OrderStatus::PendingApproval
    );
    clock.advance(Duration::from_secs(2));
    let expired = approvals.get(&demo, &order.id).await.unwrap();
    assert_eq!(expired.status, OrderStatus::Expired);
    assert_eq!(
        expired.reason.as_deref(),
        Some("no approver decided within 3600 s")
    );
    let refused = approvals
        .decide(&order.id, "ops", true, None)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Conflict);
    assert!(refused.public.contains("is expired"), "{}", refused.public);
}

#[tokio::test]
async fn orders_are_seen_by_their_tenant_and_department_only() {
    let (approvals, _) = service();
    let finance = caller("demo", Some("finance"));
    let order = approvals
        .submit(&finance, "prod-vm", Some("finance".into()), json!({}), None)
        .await
        .unwrap();
    for other in [caller("acme", None), caller("demo", Some("engineering"))] {
        let hidden = approvals.get(&other, &order.id).await.unwrap_err();
        assert_eq!(hidden.kind, ErrorKind::NotFound);
        assert!(approvals.list(&other).await.unwrap().is_empty());
    }
    assert_eq!(
        approvals.list(&caller("demo", None)).await.unwrap().len(),
        1
    );
    assert_eq!(
        approvals.get(&finance, "not-an-id").await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    // Decided once; the outcome recorded.
    let approved = approvals
        .decide(&order.id, "ops", true, None)
        .await
        .unwrap();
    let done = approvals
        .finish(approved, Err("no provider could serve it".into()))
        .await
        .unwrap();
    assert_eq!(done.status, OrderStatus::Failed);
    assert_eq!(
        approvals
            .get(&finance, &order.id)
            .await
            .unwrap()
            .reason
            .as_deref(),
        Some("no provider could serve it")
    );
}

#[tokio::test]
async fn an_order_sent_again_with_its_client_token_is_the_same_order() {
    let (approvals, _) = service();
    let demo = caller("demo", None);
    let body = json!({"offering": "prod-vm", "client_token": "order-1"});
    let first = approvals
        .submit(&demo, "prod-vm", None, body.clone(), None)
        .await
        .unwrap();
    let again = approvals
        .submit(&demo, "prod-vm", None, body, None)
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    // Another token, no token, or another tenant with the same token: new orders.
    let other = approvals
        .submit(
            &demo,
            "prod-vm",
            None,
            json!({"client_token": "order-2"}),
            None,
        )
        .await
        .unwrap();
    let untokened = approvals
        .submit(&demo, "prod-vm", None, json!({}), None)
        .await
        .unwrap();
    let acme = caller("acme", None);
    let acmes = approvals
        .submit(
            &acme,
            "prod-vm",
            None,
            json!({"client_token": "order-1"}),
            None,
        )
        .await
        .unwrap();
    let ids = [&first.id, &other.id, &untokened.id, &acmes.id];
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "{ids:?}");
    assert_eq!(approvals.list(&demo).await.unwrap().len(), 3);
    // Two sends of one order at once queue it once, and both answer the order the store
    // kept. (The store's insert is what makes the check and the write one step; its
    // conformance tests race inserts on SQLite and PostgreSQL.)
    let body = json!({"offering": "prod-vm", "client_token": "order-3"});
    let (a, b) = tokio::join!(
        approvals.submit(&demo, "prod-vm", None, body.clone(), None),
        approvals.submit(&demo, "prod-vm", None, body, None),
    );
    assert_eq!(a.unwrap().id, b.unwrap().id);
    assert_eq!(approvals.list(&demo).await.unwrap().len(), 4);
}
