//! Webhook outbox throughput: deliveries per second from the SQLite outbox, through the
//! dispatcher and the gateway's HTTPS client, to a local HTTPS receiver; against a
//! baseline of the same client posting the same bodies straight to the same receiver
//! (no outbox), measured in the same run. The receiver is the end-to-end tests' own.
//!
//! ```sh
//! cargo bench -p skyport-gateway --bench webhook_outbox
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use skyport_core::clock::SystemClock;
use skyport_core::config::{Config, EMBEDDED_DEFAULT};
use skyport_core::tenancy::{IdentitySource, TenantContext};
use skyport_domain::events::dispatch::{DispatchSettings, Dispatcher, Transport};
use skyport_domain::events::{
    DeliveryQuery, DeliveryStatus, Event, EventService, EventStore, NewSubscription,
};
use skyport_domain::leases::SoleHolder;
use skyport_e2e::webhook_receiver::WebhookReceiver;
use skyport_gateway::webhook_client::HttpsTransport;
use skyport_store_sqlite::SqliteEvents;

const SUBSCRIPTIONS: usize = 4;
const EVENTS: usize = 5_000;
const ROUNDS: usize = 3;

fn event(i: usize) -> Event {
    Event {
        id: format!("bench-{i:08}-{}", std::process::id()),
        kind: "instance.lifecycle".into(),
        subject: Some("i-0123456789abcdef0".into()),
        time: "2026-12-06T10:00:00.000Z".into(),
        tenant: Some("demo".into()),
        department: Some("finance".into()),
        data: json!({"event": "run", "state": "running", "provider": "local-vmm",
                     "region": "local-1", "instance_type": "sp.micro",
                     "tags": {"project": "apollo"}}),
    }
}

async fn until_count(receiver: &WebhookReceiver, target: usize) {
    while receiver.count() < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // a benchmark times itself
async fn main() {
    let dir = std::env::temp_dir().join(format!("skyport-bench-webhooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let receiver = WebhookReceiver::start(&dir).await;
    let (base, ca_file) = (receiver.url(""), receiver.ca_file.clone());
    let config = Config::parse(&format!(
        "{EMBEDDED_DEFAULT}\n[webhooks]\nca_file = \"{}\"\npoll_interval_ms = 10\n\
         max_in_flight_per_subscription = 64\n",
        ca_file.display()
    ))
    .unwrap();
    let transport: Arc<HttpsTransport> = Arc::new(HttpsTransport::new(&config).unwrap());
    let ops = TenantContext {
        tenant: "ops".into(),
        department: None,
        roles: vec!["admin".into()],
        subject: "bench".into(),
        source: IdentitySource::Jwt,
        operator: true,
    };
    let body = event(0).to_cloudevent().to_string();
    let total = SUBSCRIPTIONS * EVENTS;
    let (mut outbox_rates, mut direct_rates, mut publish_rates) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        // Baseline: the same client, the same bodies, 64 in flight per endpoint, no outbox.
        let start = Instant::now();
        let before = receiver.count();
        let mut senders = tokio::task::JoinSet::new();
        for s in 0..SUBSCRIPTIONS {
            for lane in 0..64 {
                let (transport, url, body) =
                    (Arc::clone(&transport), format!("{base}/{s}"), body.clone());
                senders.spawn(async move {
                    for _ in (lane..EVENTS).step_by(64) {
                        transport
                            .post(
                                &url,
                                vec![("content-type", "application/json".into())],
                                body.clone(),
                            )
                            .await
                            .unwrap();
                    }
                });
            }
        }
        senders.join_all().await;
        until_count(&receiver, before + total).await;
        direct_rates.push(total as f64 / start.elapsed().as_secs_f64());

        // The outbox: publish every event (each to every subscription), then drain.
        let store_dir = dir.join(format!("round-{round}"));
        let store = Arc::new(SqliteEvents::open(&store_dir).unwrap());
        let events = Arc::new(EventService::new(store.clone(), SystemClock::shared()));
        for s in 0..SUBSCRIPTIONS {
            events
                .subscribe(
                    &ops,
                    true,
                    NewSubscription {
                        url: format!("{base}/{s}"),
                        events: vec!["*".into()],
                        description: None,
                    },
                )
                .await
                .unwrap();
        }
        let start = Instant::now();
        for i in 0..EVENTS {
            events.publish(event(i)).await.unwrap();
        }
        publish_rates.push(EVENTS as f64 / start.elapsed().as_secs_f64());
        let before = receiver.count();
        let start = Instant::now();
        let dispatcher = Dispatcher::new(
            Arc::clone(&events),
            transport.clone(),
            DispatchSettings::from(&config.webhooks),
        );
        let task = Arc::clone(&dispatcher).spawn(Arc::new(SoleHolder), "bench".into());
        until_count(&receiver, before + total).await;
        outbox_rates.push(total as f64 / start.elapsed().as_secs_f64());
        // Every outcome recorded before the next round.
        loop {
            let pending = store
                .deliveries(&DeliveryQuery {
                    status: Some(DeliveryStatus::Pending),
                    limit: 1,
                    ..Default::default()
                })
                .await
                .unwrap();
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        eprintln!(
            "round {round}: direct {:.0}/s, outbox {:.0}/s, publish {:.0} events/s",
            direct_rates[round], outbox_rates[round], publish_rates[round]
        );
    }
    let (direct, outbox) = (median(direct_rates), median(outbox_rates));
    println!(
        "webhook deliveries to a local HTTPS receiver ({SUBSCRIPTIONS} subscriptions x {EVENTS} events, \
         median of {ROUNDS} rounds):\n  direct (same client, no outbox): {direct:.0}/s\n  \
         from the SQLite outbox: {outbox:.0}/s ({:.2}x direct)\n  publishing into the outbox: {:.0} events/s",
        outbox / direct,
        median(publish_rates)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
