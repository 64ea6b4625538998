//! The metering tap: a bounded queue that never blocks a request. A dedicated task hands
//! batches to every loaded metering plugin (`meter.batch@1`). When the queue is full the
//! event is dropped and counted (`skyport_tap_dropped_total`).
//!
//! The forwarder drains the queue on a timer ([`FLUSH_INTERVAL`]) rather than waiting on
//! it: a waiting receiver would be woken, across threads, by every request.

use std::sync::Arc;
use std::time::Duration;

use skyport_plugin_api::ops::{MeterBatch, MeterEvent, METER_BATCH};
use skyport_plugin_api::sdk::CallContext;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::plugins::PluginRegistry;

/// The request path's end of the tap.
#[derive(Clone)]
pub struct MeteringTap {
    tx: mpsc::Sender<MeterEvent>,
    metrics: Arc<Metrics>,
}

impl MeteringTap {
    /// A tap with room for `capacity` events, and its receiving end.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<MeterEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx, metrics }, rx)
    }

    /// Queues an event without waiting; drops and counts it when the queue is full.
    pub fn record(&self, event: MeterEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.metrics.tap_enqueued.inc();
            }
            Err(_) => {
                self.metrics.tap_dropped.inc();
            }
        };
    }
}

/// How often the forwarder drains the tap queue.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Forwards queued events in batches until every sender is gone and the queue is drained.
pub async fn forward_batches(
    mut rx: mpsc::Receiver<MeterEvent>,
    plugins: Arc<PluginRegistry>,
    batch_max: usize,
) {
    let sinks: Vec<String> = plugins
        .plugins()
        .iter()
        .filter(|p| p.manifest.kind == "metering")
        .map(|p| p.name.clone())
        .collect();
    let mut sequence = 0u64;
    let mut buffer = Vec::with_capacity(batch_max);
    let mut open = true;
    while open {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        loop {
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
            sequence += 1;
            let batch = MeterBatch {
                sequence,
                events: std::mem::take(&mut buffer),
            };
            for sink in &sinks {
                let params = match serde_json::to_value(&batch) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "tap batch not serialisable");
                        continue;
                    }
                };
                if let Err(e) = plugins
                    .call(
                        sink,
                        METER_BATCH,
                        1,
                        params,
                        CallContext::default(),
                        Duration::from_secs(30),
                    )
                    .await
                {
                    tracing::warn!(plugin = %sink, error = %e.public, cause = ?e.cause, "metering batch not acknowledged");
                }
            }
        }
    }
}
