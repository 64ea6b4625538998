//! The conformance suite every [`EventStore`] passes.

use super::{Delivery, DeliveryQuery, DeliveryStatus, EventStore, Subscription};

fn subscription(id: &str, tenant: Option<&str>) -> Subscription {
    Subscription {
        id: id.into(),
        tenant: tenant.map(str::to_owned),
        department: None,
        url: "https://hooks.example/in".into(),
        events: vec!["*".into()],
        secret: "whsec_c2VjcmV0".into(),
        description: Some("ops runbooks".into()),
        created_by: "alice".into(),
        created_at: "2026-12-01T00:00:00.000Z".into(),
    }
}

fn delivery(subscription: &str, event: &str, at: &str) -> Delivery {
    Delivery {
        id: Delivery::id_for(subscription, event),
        subscription_id: subscription.into(),
        tenant: Some("demo".into()),
        event_id: event.into(),
        event_type: "instance.lifecycle".into(),
        payload: format!(r#"{{"id":"{event}"}}"#),
        status: DeliveryStatus::Pending,
        attempts: 0,
        created_at: at.into(),
        next_attempt_at: at.into(),
        last_error: None,
        finished_at: None,
    }
}

const T0: &str = "2026-12-01T00:00:00.000Z";
const T1: &str = "2026-12-01T00:00:01.000Z";
const T2: &str = "2026-12-01T00:00:02.000Z";
const T9: &str = "2026-12-01T00:00:09.000Z";

/// Runs every check against `store`, which must be empty.
pub async fn run(store: &dyn EventStore) {
    // Subscriptions keep their secret and come back oldest first.
    let ops = subscription("whk-ops", None);
    let demo = Subscription {
        created_at: "2026-12-01T00:00:05.000Z".into(),
        ..subscription("whk-demo", Some("demo"))
    };
    store.insert_subscription(&ops).await.unwrap();
    store.insert_subscription(&demo).await.unwrap();
    assert_eq!(
        store.subscriptions().await.unwrap(),
        [ops.clone(), demo.clone()]
    );

    // An event enqueued twice is one delivery.
    let a = delivery("whk-demo", "ev-a", T0);
    let b = delivery("whk-demo", "ev-b", T1);
    let c = delivery("whk-ops", "ev-c", T1);
    store.enqueue(&[a.clone(), b.clone()]).await.unwrap();
    store.enqueue(&[a.clone(), c.clone()]).await.unwrap();
    let all = DeliveryQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.deliveries(&all).await.unwrap().len(), 3);

    // Claims take what is due, most overdue first, skip the named subscriptions and
    // hold what they took until `until`.
    let claimed = store.claim(T1, T9, 10, &["whk-ops".into()]).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(ids, ["ev-a", "ev-b"]);
    assert!(claimed.iter().all(|d| d.next_attempt_at == T9));
    assert!(store
        .claim(T2, T9, 10, &["whk-ops".into()])
        .await
        .unwrap()
        .is_empty());
    let limited = store.claim(T2, T9, 1, &[]).await.unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].event_id, "ev-c");
    // A claim that ran out is taken again.
    assert_eq!(store.claim(T9, T9, 10, &[]).await.unwrap().len(), 3);

    // Outcomes: a, delivered; b, retried later; c, dead. Settled deliveries stay settled.
    let mut done = a.clone();
    done.status = DeliveryStatus::Delivered;
    done.attempts = 1;
    done.finished_at = Some(T2.into());
    let mut retry = b.clone();
    retry.attempts = 1;
    retry.last_error = Some("the endpoint answered 503".into());
    retry.next_attempt_at = T2.into();
    let mut dead = c.clone();
    dead.status = DeliveryStatus::Dead;
    dead.attempts = 7;
    dead.last_error = Some("connection refused".into());
    dead.finished_at = Some(T2.into());
    store
        .settle(&[done.clone(), retry.clone(), dead.clone()])
        .await
        .unwrap();
    let mut late = a.clone();
    late.attempts = 9;
    store.settle(&[late]).await.unwrap();
    assert_eq!(store.delivery(&a.id).await.unwrap().unwrap(), done);
    assert_eq!(store.delivery(&b.id).await.unwrap().unwrap(), retry);
    assert_eq!(store.delivery(&c.id).await.unwrap().unwrap(), dead);
    assert!(store.delivery("dlv-none").await.unwrap().is_none());
    let due = store.claim(T2, T9, 10, &[]).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, b.id);
    assert_eq!(due[0].attempts, 1);

    // Listings filter by subscription and status, newest first.
    let dead_letters = store
        .deliveries(&DeliveryQuery {
            status: Some(DeliveryStatus::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead_letters, [dead.clone()]);
    let of_demo = store
        .deliveries(&DeliveryQuery {
            subscription_id: Some("whk-demo".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = of_demo.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(ids, ["ev-b", "ev-a"]);

    // A dead delivery is revived once; others are not.
    assert!(store.revive(&c.id, T9).await.unwrap());
    assert!(!store.revive(&c.id, T9).await.unwrap());
    assert!(!store.revive(&a.id, T9).await.unwrap());
    let revived = store.delivery(&c.id).await.unwrap().unwrap();
    assert_eq!(revived.status, DeliveryStatus::Pending);
    assert_eq!(revived.next_attempt_at, T9);
    assert_eq!(revived.created_at, T9, "its retry period starts again");

    // Delivered ones are purged when old; others never.
    assert_eq!(store.purge_delivered(T1).await.unwrap(), 0);
    assert_eq!(store.purge_delivered(T9).await.unwrap(), 1);
    assert!(store.delivery(&a.id).await.unwrap().is_none());

    // Deleting a subscription drops what it has not been delivered.
    assert!(store.delete_subscription("whk-demo").await.unwrap());
    assert!(!store.delete_subscription("whk-demo").await.unwrap());
    assert!(store.delivery(&b.id).await.unwrap().is_none());
    assert_eq!(store.subscriptions().await.unwrap(), [ops]);

    // What must happen once is enqueued once, with its mark.
    let once = delivery("whk-ops", "ev-threshold", T0);
    assert!(store
        .enqueue_once("budget/x/2026-12/50%", T0, std::slice::from_ref(&once))
        .await
        .unwrap());
    assert!(!store
        .enqueue_once(
            "budget/x/2026-12/50%",
            T1,
            &[delivery("whk-ops", "ev-again", T1)]
        )
        .await
        .unwrap());
    assert!(store.delivery(&once.id).await.unwrap().is_some());
    assert!(store
        .delivery(&Delivery::id_for("whk-ops", "ev-again"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .enqueue_once("budget/x/2026-12/80%", T1, &[])
        .await
        .unwrap());
}
