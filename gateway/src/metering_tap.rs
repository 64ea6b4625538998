//! The metering tap: how events reach every loaded metering plugin (`meter.batch@1`).
//!
//! - [`MeteringTap::record`] (every request's `api.request` event) never blocks: it queues
//!   the event in a bounded queue; when the queue is full the event is dropped and counted
//!   (`skyport_tap_dropped_total`). The forwarder drains the queue on a timer
//!   ([`FLUSH_INTERVAL`]) rather than waiting on it: a waiting receiver would be woken,
//!   across threads, by every request.
//! - [`MeteringTap::record_durable`] (lifecycle events) hands the event to every metering
//!   plugin at once and returns after each acknowledged it (that is, stored it durably), so
//!   the API call that caused it answers only then.
//! - A batch a plugin does not acknowledge is kept, per plugin, and retried with the same
//!   sequence number every tick; plugins store by event id, so a retry counts once. The
//!   retry backlog is bounded by the queue capacity (oldest batches dropped and counted
//!   beyond it). At shutdown the forwarder keeps retrying until its deadline.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skyport_plugin_api::ops::{MeterBatch, MeterEvent, METER_BATCH};
use skyport_plugin_api::sdk::CallContext;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::plugins::PluginRegistry;

/// How often the forwarder drains the tap queue and retries unacknowledged batches.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Deadline of one `meter.batch` call.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Batches a metering plugin has not acknowledged yet, oldest first.
#[derive(Default)]
struct Backlog {
    batches: VecDeque<(String, MeterBatch)>,
    events: usize,
}

/// What the tap shares between the request path and the forwarder.
struct Shared {
    plugins: Arc<PluginRegistry>,
    metrics: Arc<Metrics>,
    /// Metering plugin instances, in configuration order.
    sinks: Vec<String>,
    sequence: AtomicU64,
    backlog: Mutex<Backlog>,
    /// Most events kept in the backlog.
    backlog_capacity: usize,
}

impl Shared {
    /// Sends `batch` (as `params`, serialised once for every sink) to `sink`; true when
    /// acknowledged.
    async fn deliver(&self, sink: &str, batch: &MeterBatch, params: &serde_json::Value) -> bool {
        match self
            .plugins
            .call(
                sink,
                METER_BATCH,
                1,
                params.clone(),
                CallContext::default(),
                SINK_TIMEOUT,
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(plugin = %sink, sequence = batch.sequence, error = %e.public, cause = ?e.cause, "metering batch not acknowledged; kept for retry");
                false
            }
        }
    }

    fn keep_for_retry(&self, sink: &str, batch: MeterBatch) {
        let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        backlog.events += batch.events.len();
        backlog.batches.push_back((sink.to_string(), batch));
        while backlog.events > self.backlog_capacity {
            let Some((sink, dropped)) = backlog.batches.pop_front() else {
                break;
            };
            backlog.events -= dropped.events.len();
            self.metrics.tap_dropped.inc_by(dropped.events.len() as u64);
            tracing::error!(plugin = %sink, sequence = dropped.sequence, events = dropped.events.len(), "metering backlog full: oldest batch dropped");
        }
    }

    /// Retries the backlog once, in order; what fails again stays.
    async fn retry_backlog(&self) {
        let pending = {
            let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
            backlog.events = 0;
            std::mem::take(&mut backlog.batches)
        };
        for (sink, batch) in pending {
            if !self.deliver(&sink, &batch, &batch_params(&batch)).await {
                self.keep_for_retry(&sink, batch);
            }
        }
    }

    /// Hands `batch` to every sink; a sink that does not acknowledge keeps it for retry.
    async fn deliver_to_all(&self, batch: MeterBatch) {
        let params = batch_params(&batch);
        for sink in &self.sinks {
            if !self.deliver(sink, &batch, &params).await {
                self.keep_for_retry(sink, batch.clone());
            }
        }
    }

    fn backlog_is_empty(&self) -> bool {
        self.backlog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .batches
            .is_empty()
    }

    fn next_batch(&self, events: Vec<MeterEvent>) -> MeterBatch {
        MeterBatch {
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            events,
        }
    }
}

/// A batch as `meter.batch@1` params (a `MeterBatch` is plain data: it always serialises).
fn batch_params(batch: &MeterBatch) -> serde_json::Value {
    serde_json::to_value(batch).unwrap_or_default()
}

/// The request path's end of the tap.
#[derive(Clone)]
pub struct MeteringTap {
    tx: mpsc::Sender<MeterEvent>,
    shared: Arc<Shared>,
}

/// The forwarder's end of the tap: pass it to [`forward_batches`].
pub struct TapReceiver {
    rx: mpsc::Receiver<MeterEvent>,
    shared: Arc<Shared>,
}

impl MeteringTap {
    /// A tap with room for `capacity` queued events (and as many awaiting retry), feeding
    /// every metering plugin in `plugins`; and its receiving end.
    pub fn new(
        capacity: usize,
        plugins: Arc<PluginRegistry>,
        metrics: Arc<Metrics>,
    ) -> (Self, TapReceiver) {
        let (tx, rx) = mpsc::channel(capacity);
        let sinks = plugins
            .plugins()
            .iter()
            .filter(|p| p.manifest.kind == "metering")
            .map(|p| p.name.clone())
            .collect();
        let shared = Arc::new(Shared {
            plugins,
            metrics,
            sinks,
            sequence: AtomicU64::new(0),
            backlog: Mutex::default(),
            backlog_capacity: capacity,
        });
        (
            Self {
                tx,
                shared: Arc::clone(&shared),
            },
            TapReceiver { rx, shared },
        )
    }

    /// Queues an event without waiting; drops and counts it when the queue is full.
    pub fn record(&self, event: MeterEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.shared.metrics.tap_enqueued.inc();
            }
            Err(_) => {
                self.shared.metrics.tap_dropped.inc();
            }
        };
    }

    /// Delivers an event to every metering plugin now and returns once each acknowledged
    /// it. A plugin that does not gets it through the retry backlog instead (logged).
    pub async fn record_durable(&self, event: MeterEvent) {
        if self.shared.sinks.is_empty() {
            return;
        }
        let batch = self.shared.next_batch(vec![event]);
        self.shared.deliver_to_all(batch).await;
    }
}

/// Forwards queued events in batches, and retries unacknowledged ones, until every sender
/// is gone, the queue is drained and the backlog is empty (or the caller's deadline ends
/// this task).
pub async fn forward_batches(receiver: TapReceiver, batch_max: usize) {
    let TapReceiver { mut rx, shared } = receiver;
    let mut buffer = Vec::with_capacity(batch_max);
    let mut open = true;
    while open || !shared.backlog_is_empty() {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        shared.retry_backlog().await;
        while open {
            match rx.try_recv() {
                Ok(event) => {
                    buffer.push(event);
                    if buffer.len() < batch_max {
                        continue;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
            if buffer.is_empty() {
                break;
            }
            let batch = shared.next_batch(std::mem::take(&mut buffer));
            shared.deliver_to_all(batch).await;
        }
    }
}
