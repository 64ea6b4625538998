//! The dispatcher: sends what is due in the outbox, signed, and records each outcome.
//!
//! - Deliveries are claimed from the store in batches ([`EventStore::claim`]): a claimed
//!   delivery is due again only when its claim runs out, so a dispatcher killed mid-send
//!   leaves it to be sent again (at least once; receivers deduplicate on `webhook-id`).
//! - At most `max_in_flight_per_subscription` are in flight to one subscription; the
//!   rest of its claimed deliveries wait here, and a subscription with four times that
//!   many waiting is not claimed for until they drain. A slow or failing endpoint so holds back its own
//!   deliveries only, never requests (publishing only writes the outbox) nor other
//!   subscriptions.
//! - Outcomes are written in batches ([`EventStore::settle`]): delivered on a 2xx;
//!   otherwise retried after `initial_backoff * 2^(attempts-1)` (at most `max_backoff`,
//!   with up to 10% jitter), and dead-lettered once the delivery is older than
//!   `retry_for`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rand::Rng;
use skyport_core::clock::SharedClock;
use skyport_core::config::WebhooksConfig;
use skyport_core::ids::rfc3339_millis;
use tokio::sync::{mpsc, Notify};

use super::signing::sign;
use super::{Delivery, DeliveryStatus, EventService, Subscription};
use crate::leases::LeaseStore;

/// Deliveries claimed at once, at most.
const CLAIM_BATCH: usize = 512;
/// Deliveries held here at once (in flight or waiting), across subscriptions: the
/// outbox is claimed from again once at least half a batch of room is free.
const MAX_HELD: usize = 2 * CLAIM_BATCH;
/// How long delivered deliveries are kept (for `GET .../deliveries`).
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 24 * 3600);
/// The coordination lease under which one replica dispatches.
const DISPATCH_LEASE: &str = "webhook-dispatch";

/// How deliveries reach endpoints: an HTTPS client in the gateway, a recording double in
/// unit tests.
#[async_trait]
pub trait Transport: Send + Sync {
    /// POSTs `body` to `url` with `headers`: the response status, or why there is none.
    async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Result<u16, String>;
}

/// The retry and concurrency settings, from `[webhooks]`.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Dead-letter a delivery failing for longer than this.
    pub retry_for: Duration,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Time one attempt has (the transport enforces it).
    pub timeout: Duration,
    /// Deliveries in flight to one subscription at most.
    pub max_in_flight_per_subscription: usize,
    /// Time between looks for due deliveries when nothing wakes the dispatcher.
    pub poll_interval: Duration,
}

impl From<&WebhooksConfig> for DispatchSettings {
    fn from(c: &WebhooksConfig) -> Self {
        Self {
            retry_for: Duration::from_secs(c.retry_for_secs),
            initial_backoff: Duration::from_secs(c.initial_backoff_secs),
            max_backoff: Duration::from_secs(c.max_backoff_secs),
            timeout: Duration::from_secs(c.timeout_secs),
            max_in_flight_per_subscription: c.max_in_flight_per_subscription,
            poll_interval: Duration::from_millis(c.poll_interval_ms),
        }
    }
}

impl DispatchSettings {
    /// How long a claim holds: an attempt's time and some slack.
    fn claim(&self) -> Duration {
        self.timeout + Duration::from_secs(20)
    }

    /// The wait before attempt `attempts + 1`, after `attempts` failures.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self
            .initial_backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let base = doubled.min(self.max_backoff);
        base + base.mul_f64(rand::rng().random_range(0.0..0.1))
    }
}

/// What is in flight and waiting, per subscription.
#[derive(Default)]
struct Flight {
    in_flight: HashMap<String, usize>,
    waiting: HashMap<String, VecDeque<Delivery>>,
    /// Deliveries in flight or waiting.
    held: usize,
    /// Their ids: a delivery claimed again while held (its claim ran out while it
    /// waited here) is not held twice.
    ids: HashSet<String>,
}

/// Sends the outbox's due deliveries.
pub struct Dispatcher {
    events: Arc<EventService>,
    transport: Arc<dyn Transport>,
    settings: DispatchSettings,
    clock: SharedClock,
    flight: Mutex<Flight>,
    settled: mpsc::UnboundedSender<Delivery>,
    settle_queue: Mutex<Option<mpsc::UnboundedReceiver<Delivery>>>,
    /// Woken when a send finishes (room for more).
    room: Notify,
}

impl Dispatcher {
    /// A dispatcher of `events`' outbox over `transport`.
    pub fn new(
        events: Arc<EventService>,
        transport: Arc<dyn Transport>,
        settings: DispatchSettings,
    ) -> Arc<Self> {
        let (settled, queue) = mpsc::unbounded_channel();
        Arc::new(Self {
            clock: events.clock().clone(),
            events,
            transport,
            settings,
            flight: Mutex::new(Flight::default()),
            settled,
            settle_queue: Mutex::new(Some(queue)),
            room: Notify::new(),
        })
    }

    /// Runs the dispatcher until the task is dropped: on whichever replica holds the
    /// dispatch lease in `leases` as `holder`.
    pub fn spawn(
        self: Arc<Self>,
        leases: Arc<dyn LeaseStore>,
        holder: String,
    ) -> tokio::task::JoinHandle<()> {
        let settler = Arc::clone(&self).spawn_settler();
        tokio::spawn(async move {
            let _settler = AbortOnDrop(settler);
            let wake = self.events.wake();
            let lease_for = self.settings.poll_interval.max(Duration::from_secs(5)) * 3;
            let mut held_until = Duration::ZERO;
            let mut last_purge = Duration::ZERO;
            loop {
                let now = self.clock.monotonic();
                if now >= held_until {
                    match leases.acquire(DISPATCH_LEASE, &holder, lease_for).await {
                        Ok(true) => held_until = now + lease_for / 3,
                        Ok(false) => {
                            tokio::time::sleep(lease_for / 3).await;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e.public, "the webhook-dispatch lease is unavailable");
                            tokio::time::sleep(self.settings.poll_interval).await;
                            continue;
                        }
                    }
                }
                if now.saturating_sub(last_purge) > Duration::from_secs(3600) {
                    last_purge = now;
                    self.purge().await;
                }
                let claimed = self.tick().await;
                if claimed == 0 {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = self.room.notified() => {}
                        _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                } else if claimed < CLAIM_BATCH {
                    // Let what was claimed go out before looking again.
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = self.room.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
            }
        })
    }

    /// Claims what is due now and starts sending it: how many it claimed.
    pub async fn tick(self: &Arc<Self>) -> usize {
        let (skip, room) = {
            let flight = self.flight.lock().unwrap();
            // A subscription with a deep queue waiting here is not claimed for: a hanging
            // endpoint's backlog stays in the outbox, not in memory.
            let deep = 4 * self.settings.max_in_flight_per_subscription;
            let skip: Vec<String> = flight
                .waiting
                .iter()
                .filter(|(_, queue)| queue.len() >= deep)
                .map(|(s, _)| s.clone())
                .collect();
            (skip, MAX_HELD.saturating_sub(flight.held))
        };
        if room < CLAIM_BATCH / 2 {
            return 0;
        }
        let now = self.clock.wall();
        let until = now + self.settings.claim();
        let claimed = match self
            .events
            .store()
            .claim(
                &rfc3339_millis(now),
                &rfc3339_millis(until),
                room.min(CLAIM_BATCH),
                &skip,
            )
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e.public, cause = ?e.cause, "claiming due webhook deliveries failed");
                return 0;
            }
        };
        let count = claimed.len();
        if count == 0 {
            return 0;
        }
        let subscriptions = match self.events.subscriptions().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e.public, "reading webhook subscriptions failed");
                return 0;
            }
        };
        let mut start = Vec::new();
        {
            let mut flight = self.flight.lock().unwrap();
            let cap = self.settings.max_in_flight_per_subscription;
            for delivery in claimed {
                if !flight.ids.insert(delivery.id.clone()) {
                    continue;
                }
                let sub = delivery.subscription_id.clone();
                let busy = *flight.in_flight.get(&sub).unwrap_or(&0);
                flight.held += 1;
                if busy < cap {
                    *flight.in_flight.entry(sub).or_default() += 1;
                    start.push(delivery);
                } else {
                    flight.waiting.entry(sub).or_default().push_back(delivery);
                }
            }
        }
        for delivery in start {
            self.start(delivery, &subscriptions);
        }
        count
    }

    /// Sends `delivery` in a task of its own. A subscription missing from `subscriptions`
    /// (a cached list) is looked up in the store before the delivery is given up as
    /// deleted: another replica may have made it moments ago.
    fn start(self: &Arc<Self>, delivery: Delivery, subscriptions: &[Subscription]) {
        let cached = subscriptions
            .iter()
            .find(|s| s.id == delivery.subscription_id)
            .cloned();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let found = match cached {
                Some(s) => Ok(Some(s)),
                None => this
                    .events
                    .store()
                    .subscriptions()
                    .await
                    .map(|all| all.into_iter().find(|s| s.id == delivery.subscription_id))
                    .map_err(|e| format!("reading the subscription failed: {}", e.public)),
            };
            let (outcome, gone) = match &found {
                Ok(Some(s)) => (this.send(s, &delivery).await, false),
                Ok(None) => (Err("the subscription was deleted".to_string()), true),
                Err(e) => (Err(e.clone()), false),
            };
            let settled = this.settle_one(delivery, outcome, gone);
            let sub = settled.subscription_id.clone();
            let id = settled.id.clone();
            let _ = this.settled.send(settled);
            this.finished(&sub, &id);
        });
    }

    /// One attempt: the response's status on a 2xx, the failure otherwise.
    async fn send(&self, subscription: &Subscription, delivery: &Delivery) -> Result<(), String> {
        let timestamp = self
            .clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let signature = sign(
            &subscription.secret,
            &delivery.event_id,
            timestamp,
            delivery.payload.as_bytes(),
        )
        .ok_or_else(|| "the subscription's secret is not a whsec_ secret".to_string())?;
        let headers = vec![
            ("content-type", "application/cloudevents+json".to_string()),
            ("webhook-id", delivery.event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        match self
            .transport
            .post(&subscription.url, headers, delivery.payload.clone())
            .await
        {
            Ok(status) if (200..300).contains(&status) => Ok(()),
            Ok(status) => Err(format!("the endpoint answered {status}")),
            Err(e) => Err(e),
        }
    }

    /// `delivery` after an attempt with `outcome`.
    fn settle_one(
        &self,
        mut delivery: Delivery,
        outcome: Result<(), String>,
        gone: bool,
    ) -> Delivery {
        let now = self.clock.wall();
        delivery.attempts += 1;
        match outcome {
            Ok(()) => {
                delivery.status = DeliveryStatus::Delivered;
                delivery.finished_at = Some(rfc3339_millis(now));
                delivery.last_error = None;
            }
            Err(error) => {
                let created = humantime::parse_rfc3339(&delivery.created_at).unwrap_or(now);
                let next = now + self.settings.backoff(delivery.attempts);
                let expired =
                    next.duration_since(created).unwrap_or_default() >= self.settings.retry_for;
                delivery.last_error = Some(error);
                if gone || expired {
                    delivery.status = DeliveryStatus::Dead;
                    delivery.finished_at = Some(rfc3339_millis(now));
                    tracing::warn!(delivery = %delivery.id, subscription = %delivery.subscription_id, error = ?delivery.last_error, attempts = delivery.attempts, "a webhook delivery is dead-lettered");
                } else {
                    delivery.next_attempt_at = rfc3339_millis(next);
                }
            }
        }
        delivery
    }

    /// A send to `subscription` finished: start its next waiting delivery, if any.
    fn finished(self: &Arc<Self>, subscription: &str, id: &str) {
        let (next, wake) = {
            let mut flight = self.flight.lock().unwrap();
            flight.held -= 1;
            flight.ids.remove(id);
            let next = match flight.waiting.get_mut(subscription) {
                Some(queue) => {
                    let next = queue.pop_front();
                    if queue.is_empty() {
                        flight.waiting.remove(subscription);
                    }
                    next
                }
                None => None,
            };
            if next.is_none() {
                if let Some(n) = flight.in_flight.get_mut(subscription) {
                    *n -= 1;
                    if *n == 0 {
                        flight.in_flight.remove(subscription);
                    }
                }
            }
            // Wake the claimer when half a batch of room has just become free.
            (
                next,
                flight.held == MAX_HELD - CLAIM_BATCH / 2 || flight.held == 0,
            )
        };
        if let Some(delivery) = next {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                // A failed read leaves the list empty: `start` then asks the store.
                let subscriptions = this.events.subscriptions().await.unwrap_or_default();
                this.start(delivery, &subscriptions);
            });
        }
        if wake {
            self.room.notify_one();
        }
    }

    /// Writes outcomes in batches, as they come.
    fn spawn_settler(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut queue = self
            .settle_queue
            .lock()
            .unwrap()
            .take()
            .expect("one settler per dispatcher");
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(1024);
            while queue.recv_many(&mut batch, 1024).await > 0 {
                while let Err(e) = self.events.store().settle(&batch).await {
                    tracing::warn!(error = %e.public, cause = ?e.cause, "recording webhook outcomes failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                batch.clear();
            }
        })
    }

    /// Forgets deliveries delivered more than a week ago.
    async fn purge(&self) {
        let before = self.clock.wall() - KEEP_DELIVERED;
        match self
            .events
            .store()
            .purge_delivered(&rfc3339_millis(before.max(SystemTime::UNIX_EPOCH)))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "old webhook deliveries forgotten"),
            Err(e) => tracing::warn!(error = %e.public, "purging old webhook deliveries failed"),
        }
    }

    /// Waits until nothing is in flight or waiting (tests, shutdown).
    pub async fn idle(&self) {
        loop {
            if self.flight.lock().unwrap().held == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
