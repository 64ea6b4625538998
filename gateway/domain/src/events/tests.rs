//! The outbox and dispatcher over the in-memory store and a recording transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use skyport_core::clock::{Clock, ManualClock, SharedClock};
use skyport_core::tenancy::{IdentitySource, TenantContext};

use super::dispatch::{DispatchSettings, Dispatcher, Transport};
use super::memory::MemoryEvents;

use super::signing::sign;
use super::*;
use crate::leases::SoleHolder;

/// What an endpoint does.
#[derive(Clone, Copy)]
enum Endpoint {
    Accept,
    Refuse,
    Hang,
}

/// A POST the recorder accepted: its URL, headers and body.
type Post = (String, HashMap<String, String>, String);

#[derive(Default)]
struct Recorder {
    behaviour: Mutex<HashMap<String, Endpoint>>,
    received: Mutex<Vec<Post>>,
}

#[async_trait]
impl Transport for Recorder {
    async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Result<u16, String> {
        let behaviour = *self
            .behaviour
            .lock()
            .unwrap()
            .get(url)
            .unwrap_or(&Endpoint::Accept);
        match behaviour {
            Endpoint::Accept => {
                let headers = headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                self.received
                    .lock()
                    .unwrap()
                    .push((url.into(), headers, body));
                Ok(204)
            }
            Endpoint::Refuse => Err("connection refused".into()),
            Endpoint::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(200)
            }
        }
    }
}

impl Recorder {
    fn set(&self, url: &str, endpoint: Endpoint) {
        self.behaviour.lock().unwrap().insert(url.into(), endpoint);
    }

    fn bodies_to(&self, url: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(u, _, _)| u == url)
            .map(|(_, _, b)| serde_json::from_str(b).unwrap())
            .collect()
    }
}

struct World {
    clock: Arc<ManualClock>,
    events: Arc<EventService>,
    transport: Arc<Recorder>,
    _dispatcher: tokio::task::JoinHandle<()>,
    dispatcher: Arc<Dispatcher>,
}

fn settings() -> DispatchSettings {
    DispatchSettings {
        retry_for: Duration::from_secs(3600),
        initial_backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(600),
        timeout: Duration::from_secs(5),
        max_in_flight_per_subscription: 4,
        poll_interval: Duration::from_millis(10),
    }
}

fn world() -> World {
    let clock = ManualClock::at_unix(1_796_000_000);
    let shared: SharedClock = clock.clone();
    let events = Arc::new(EventService::new(Arc::new(MemoryEvents::default()), shared));
    let transport = Arc::new(Recorder::default());
    let dispatcher = Dispatcher::new(Arc::clone(&events), transport.clone(), settings());
    let task = Arc::clone(&dispatcher).spawn(Arc::new(SoleHolder), "replica-1".into());
    World {
        clock,
        events,
        transport,
        _dispatcher: task,
        dispatcher,
    }
}

fn ctx(tenant: &str, department: Option<&str>) -> TenantContext {
    TenantContext {
        tenant: tenant.into(),
        department: department.map(str::to_owned),
        roles: vec![],
        subject: format!("{tenant}-user"),
        source: IdentitySource::Jwt,
        operator: false,
    }
}

fn event(id: &str, tenant: Option<&str>, department: Option<&str>) -> Event {
    Event {
        id: id.into(),
        kind: "instance.lifecycle".into(),
        subject: Some("i-0123".into()),
        time: "2026-12-01T00:00:00.000Z".into(),
        tenant: tenant.map(str::to_owned),
        department: department.map(str::to_owned),
        data: json!({"event": "run"}),
    }
}

async fn subscribe(w: &World, who: &TenantContext, operator: bool, url: &str) -> Subscription {
    w.events
        .subscribe(
            who,
            operator,
            NewSubscription {
                url: url.into(),
                events: vec!["instance.*".into()],
                description: None,
            },
        )
        .await
        .unwrap()
}

/// Waits (in real time) until `check` holds.
async fn until(mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not reached in 5 s");
}

#[tokio::test]
async fn events_arrive_signed_as_cloudevents_and_only_where_they_belong() {
    let w = world();
    let a = subscribe(&w, &ctx("acme", None), false, "https://acme.example/in").await;
    let finance = subscribe(
        &w,
        &ctx("acme", Some("finance")),
        false,
        "https://fin.example/in",
    )
    .await;
    let _b = subscribe(&w, &ctx("bolt", None), false, "https://bolt.example/in").await;
    let ops = subscribe(&w, &ctx("ops", None), true, "https://ops.example/in").await;
    assert!(a.secret.starts_with("whsec_"));
    assert_eq!(finance.department.as_deref(), Some("finance"));
    assert!(ops.tenant.is_none());

    w.events
        .publish(event("ev-1", Some("acme"), Some("finance")))
        .await
        .unwrap();
    w.events
        .publish(event("ev-2", Some("acme"), Some("research")))
        .await
        .unwrap();
    // The same happening published again (a create finished twice) goes out once.
    w.events
        .publish(event("ev-1", Some("acme"), Some("finance")))
        .await
        .unwrap();
    w.events.publish(event("ev-3", None, None)).await.unwrap();
    until(|| w.transport.received.lock().unwrap().len() == 2 + 1 + 3).await;
    w.dispatcher.idle().await;

    let ids = |url: &str| -> Vec<String> {
        let mut ids: Vec<String> = w
            .transport
            .bodies_to(url)
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("https://acme.example/in"), ["ev-1", "ev-2"]);
    assert_eq!(ids("https://fin.example/in"), ["ev-1"]);
    assert!(ids("https://bolt.example/in").is_empty());
    assert_eq!(ids("https://ops.example/in"), ["ev-1", "ev-2", "ev-3"]);

    let received = w.transport.received.lock().unwrap();
    let (_, headers, body) = received
        .iter()
        .find(|(u, _, _)| u == "https://fin.example/in")
        .unwrap();
    let cloudevent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(cloudevent["specversion"], "1.0");
    assert_eq!(cloudevent["type"], "io.skyport.instance.lifecycle");
    assert_eq!(cloudevent["source"], SOURCE);
    assert_eq!(cloudevent["tenant"], "acme");
    assert_eq!(cloudevent["subject"], "i-0123");
    assert_eq!(cloudevent["data"]["event"], "run");
    assert_eq!(headers["content-type"], "application/cloudevents+json");
    assert_eq!(headers["webhook-id"], "ev-1");
    let timestamp: u64 = headers["webhook-timestamp"].parse().unwrap();
    assert_eq!(
        headers["webhook-signature"],
        sign(&finance.secret, "ev-1", timestamp, body.as_bytes()).unwrap()
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_backoff_then_dead_lettered_and_revived() {
    let w = world();
    let sub = subscribe(&w, &ctx("acme", None), false, "https://down.example/in").await;
    w.transport.set("https://down.example/in", Endpoint::Refuse);
    w.events
        .publish(event("ev-1", Some("acme"), None))
        .await
        .unwrap();
    let store = Arc::clone(w.events.store());
    let id = Delivery::id_for(&sub.id, "ev-1");
    let attempts = || {
        let store = Arc::clone(&store);
        let id = id.clone();
        async move { store.delivery(&id).await.unwrap().unwrap() }
    };
    for _ in 0..100 {
        if attempts().await.attempts == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = attempts().await;
    assert_eq!(first.attempts, 1);
    assert_eq!(first.status, DeliveryStatus::Pending);
    assert_eq!(first.last_error.as_deref(), Some("connection refused"));
    // Not retried before its backoff (10 s, and up to 10% more) has passed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(attempts().await.attempts, 1);
    // Each retry waits about twice as long; an hour after it was made, it is dead.
    let mut waits = Vec::new();
    let mut last = first;
    while last.status == DeliveryStatus::Pending {
        let due = humantime::parse_rfc3339(&last.next_attempt_at).unwrap();
        let now = w.clock.wall();
        waits.push(due.duration_since(now).unwrap_or_default().as_secs());
        w.clock.advance(due.duration_since(now).unwrap_or_default());
        w.events.wake().notify_one();
        let before = last.attempts;
        for _ in 0..100 {
            last = attempts().await;
            if last.attempts > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(last.attempts > before, "retried when due");
    }
    assert_eq!(last.status, DeliveryStatus::Dead);
    assert!(waits[0] >= 9 && waits[0] <= 11, "{waits:?}");
    assert!(waits[1] >= 19 && waits[1] <= 22, "{waits:?}");
    assert!(waits.iter().all(|w| *w <= 660), "capped: {waits:?}");
    let dead = w
        .events
        .deliveries(
            Viewer::Operator,
            DeliveryQuery {
                status: Some(DeliveryStatus::Dead),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("connection refused"));

    // Back up: an operator's retry delivers it.
    w.transport.set("https://down.example/in", Endpoint::Accept);
    let revived = w.events.retry(&id).await.unwrap();
    assert_eq!(revived.status, DeliveryStatus::Pending);
    until(|| w.transport.bodies_to("https://down.example/in").len() == 1).await;
    assert!(
        w.events.retry(&id).await.is_err(),
        "only dead ones are retried"
    );
}

#[tokio::test]
async fn a_hanging_endpoint_holds_back_only_its_own_deliveries() {
    let w = world();
    subscribe(&w, &ctx("acme", None), false, "https://hang.example/in").await;
    subscribe(&w, &ctx("acme", None), false, "https://fast.example/in").await;
    w.transport.set("https://hang.example/in", Endpoint::Hang);
    for i in 0..200 {
        w.events
            .publish(event(&format!("ev-{i:03}"), Some("acme"), None))
            .await
            .unwrap();
    }
    until(|| w.transport.bodies_to("https://fast.example/in").len() == 200).await;
}

#[tokio::test]
async fn subscriptions_are_seen_and_removed_by_their_tenant_only() {
    let w = world();
    let (acme, bolt) = (ctx("acme", None), ctx("bolt", None));
    let sub = subscribe(&w, &acme, false, "https://acme.example/in").await;
    let listed = w.events.list(Viewer::Tenant(&acme)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].secret.is_empty(), "the secret is shown once");
    assert!(w
        .events
        .list(Viewer::Tenant(&bolt))
        .await
        .unwrap()
        .is_empty());
    assert!(w.events.get(Viewer::Tenant(&bolt), &sub.id).await.is_err());
    assert!(w
        .events
        .unsubscribe(Viewer::Tenant(&bolt), &sub.id)
        .await
        .is_err());
    assert_eq!(w.events.list(Viewer::Operator).await.unwrap().len(), 1);
    w.events
        .unsubscribe(Viewer::Tenant(&acme), &sub.id)
        .await
        .unwrap();
    assert!(w.events.list(Viewer::Operator).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_memory_store_passes_the_conformance_suite() {
    conformance::run(&MemoryEvents::default()).await;
}

#[tokio::test]
async fn provider_health_changes_reach_operators_only() {
    use super::health::HealthWatch;
    let world = crate::testkit::World::new().await;
    let store = Arc::new(MemoryEvents::default());
    let events = Arc::new(EventService::new(store.clone(), world.clock.clone()));
    let subscribe = |ctx: TenantContext, operator: bool| {
        let events = Arc::clone(&events);
        async move {
            events
                .subscribe(
                    &ctx,
                    operator,
                    NewSubscription {
                        url: "https://hooks.example/in".into(),
                        events: vec!["*".into()],
                        description: None,
                    },
                )
                .await
                .unwrap()
        }
    };
    let ops = subscribe(ctx("ops", None), true).await;
    let tenant = subscribe(ctx("demo", None), false).await;
    let mut watch = HealthWatch::new(world.plugins.clone(), Arc::clone(&events), "r1".into());
    assert_eq!(
        watch.look().await,
        0,
        "healthy from the start: nothing to say"
    );
    world
        .plugins
        .set_health("local-vmm", false, Some("probe timed out"));
    assert_eq!(watch.look().await, 1);
    assert_eq!(watch.look().await, 0, "once per change");
    world.clock.advance(Duration::from_secs(1));
    world.plugins.set_health("local-vmm", true, None);
    assert_eq!(watch.look().await, 1);
    let of = |id: String| {
        let store = Arc::clone(&store);
        async move {
            store
                .deliveries(&DeliveryQuery {
                    subscription_id: Some(id),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    let to_ops = of(ops.id).await;
    let healthy: Vec<Value> = to_ops
        .iter()
        .rev()
        .map(|d| serde_json::from_str::<Value>(&d.payload).unwrap()["data"]["healthy"].clone())
        .collect();
    assert_eq!(healthy, [json!(false), json!(true)]);
    assert!(
        of(tenant.id).await.is_empty(),
        "tenants never see platform events"
    );
}
