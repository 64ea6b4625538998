//! The metering tap: how events reach every loaded metering plugin (`meter.batch@1`).
//!
//! - [`MeteringTap::record`] (every request's `api.request` event) never blocks: it queues
//!   the event in a bounded queue; when the queue is full the event is dropped and counted
//!   (`skyport_tap_dropped_total`). The forwarder drains the queue on a timer
//!   ([`FLUSH_INTERVAL`]) rather than waiting on it: a waiting receiver would be woken,
//!   across threads, by every request.
//! - The request path queues an [`ApiRequestEvent`] of plain values; the forwarder writes a
//!   whole batch as `meter.batch@1` JSON text once, straight from those values, and sends
//!   that text to every metering plugin. The text is byte for byte what a [`MeterBatch`] of
//!   [`MeterEvent`]s serialised through a `serde_json::Value` gives (keys in sorted order),
//!   without building a JSON tree per event. With no metering plugin loaded, queued events
//!   are drained and nothing is written.
//! - [`MeteringTap::record_durable`] (lifecycle events) hands the event to every metering
//!   plugin at once and returns after each acknowledged it (that is, stored it durably), so
//!   the API call that caused it answers only then.
//! - A batch a plugin does not acknowledge is kept, per plugin, and retried with the same
//!   sequence number every tick; plugins store by event id, so a retry counts once. The
//!   retry backlog is bounded by the queue capacity (oldest batches dropped and counted
//!   beyond it). At shutdown the forwarder keeps retrying until its deadline.

use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use skyport_plugin_api::ops::{MeterBatch, MeterEvent, METER_BATCH};
use skyport_plugin_api::sdk::CallContext;
use tokio::sync::mpsc;

use skyport_core::metrics::Metrics;
use skyport_plugin_host::Plugins;

/// How often the forwarder drains the tap queue and retries unacknowledged batches.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Deadline of one `meter.batch` call.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Record type of [`ApiRequestEvent`].
pub const API_REQUEST: &str = "api.request";

/// One `api.request` event, as the request path records it: plain values, no JSON.
///
/// A metering plugin receives it as a [`MeterEvent`]: `id`, `type` (`api.request`), `time`
/// (RFC 3339 UTC, milliseconds), `tenant`, `department` (when known) and `attributes`
/// `{request_id, identity_source, route, method, status, bytes_in, bytes_out, latency_us}`.
#[derive(Debug, Clone)]
pub struct ApiRequestEvent {
    /// Event id (a time-ordered UUID).
    pub id: uuid::Uuid,
    /// When the request was answered.
    pub time: SystemTime,
    /// Tenant billed.
    pub tenant: Arc<str>,
    /// Department inside the tenant, when known.
    pub department: Option<String>,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// How the caller proved who it is (`jwt` or `mtls`).
    pub identity_source: &'static str,
    /// Route template, e.g. `/v1/instances/{id}`.
    pub route: &'static str,
    /// HTTP method.
    pub method: http::Method,
    /// Response status.
    pub status: u16,
    /// Request body bytes (`Content-Length`).
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Time to answer, in microseconds.
    pub latency_us: u64,
}

/// Serialises a `Display` value as a JSON string without an intermediate `String`.
struct AsString<T>(T);

impl<T: Display> Serialize for AsString<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// `attributes` of an [`ApiRequestEvent`], keys in sorted order.
#[derive(Serialize)]
struct ApiRequestAttributes<'a> {
    bytes_in: u64,
    bytes_out: u64,
    identity_source: &'a str,
    latency_us: u64,
    method: &'a str,
    request_id: &'a str,
    route: &'a str,
    status: u16,
}

impl Serialize for ApiRequestEvent {
    /// The [`MeterEvent`] wire form, keys in sorted order (as a `serde_json::Value` map
    /// writes them).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut event = serializer.serialize_struct("MeterEvent", 6)?;
        event.serialize_field(
            "attributes",
            &ApiRequestAttributes {
                bytes_in: self.bytes_in,
                bytes_out: self.bytes_out,
                identity_source: self.identity_source,
                latency_us: self.latency_us,
                method: self.method.as_str(),
                request_id: &self.request_id,
                route: self.route,
                status: self.status,
            },
        )?;
        match &self.department {
            Some(department) => event.serialize_field("department", department)?,
            None => event.skip_field("department")?,
        }
        event.serialize_field("id", &AsString(self.id.hyphenated()))?;
        event.serialize_field("tenant", &*self.tenant)?;
        event.serialize_field(
            "time",
            &AsString(humantime::format_rfc3339_millis(self.time)),
        )?;
        event.serialize_field("type", API_REQUEST)?;
        event.end()
    }
}

/// `meter.batch@1` params for `events`: the JSON text of a [`MeterBatch`], keys in sorted
/// order, written in one pass.
fn batch_json(sequence: u64, events: &[ApiRequestEvent]) -> String {
    #[derive(Serialize)]
    struct Batch<'a> {
        events: &'a [ApiRequestEvent],
        sequence: u64,
    }
    // About 350 bytes an event: one allocation for most batches.
    let mut out = Vec::with_capacity(64 + events.len() * 384);
    // Plain data into a Vec cannot fail to serialise, and serde_json writes UTF-8.
    if serde_json::to_writer(&mut out, &Batch { events, sequence }).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// A batch on its way to the plugins: its sequence number, size and JSON text.
#[derive(Clone)]
struct Pending {
    sequence: u64,
    events: usize,
    params: String,
}

/// Batches a metering plugin has not acknowledged yet, oldest first.
#[derive(Default)]
struct Backlog {
    batches: VecDeque<(String, Pending)>,
    events: usize,
}

/// What the tap shares between the request path and the forwarder.
struct Shared {
    plugins: Arc<dyn Plugins>,
    metrics: Arc<Metrics>,
    /// Metering plugin instances, in configuration order.
    sinks: Vec<String>,
    sequence: AtomicU64,
    backlog: Mutex<Backlog>,
    /// Most events kept in the backlog.
    backlog_capacity: usize,
}

impl Shared {
    /// Sends `batch` to `sink`; true when acknowledged.
    async fn deliver(&self, sink: &str, batch: &Pending) -> bool {
        match self
            .plugins
            .call_json(
                sink,
                METER_BATCH,
                1,
                batch.params.clone(),
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

    fn keep_for_retry(&self, sink: &str, batch: Pending) {
        let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        backlog.events += batch.events;
        backlog.batches.push_back((sink.to_string(), batch));
        while backlog.events > self.backlog_capacity {
            let Some((sink, dropped)) = backlog.batches.pop_front() else {
                break;
            };
            backlog.events -= dropped.events;
            self.metrics.tap_dropped.inc_by(dropped.events as u64);
            tracing::error!(plugin = %sink, sequence = dropped.sequence, events = dropped.events, "metering backlog full: oldest batch dropped");
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
            if !self.deliver(&sink, &batch).await {
                self.keep_for_retry(&sink, batch);
            }
        }
    }

    /// Hands `batch` (written once) to every sink; a sink that does not acknowledge keeps
    /// it for retry.
    async fn deliver_to_all(&self, batch: Pending) {
        for sink in &self.sinks {
            if !self.deliver(sink, &batch).await {
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

    fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The request path's end of the tap.
#[derive(Clone)]
pub struct MeteringTap {
    tx: mpsc::Sender<ApiRequestEvent>,
    shared: Arc<Shared>,
}

/// The forwarder's end of the tap: pass it to [`forward_batches`].
pub struct TapReceiver {
    rx: mpsc::Receiver<ApiRequestEvent>,
    shared: Arc<Shared>,
}

impl MeteringTap {
    /// A tap with room for `capacity` queued events (and as many awaiting retry), feeding
    /// every metering plugin in `plugins`; and its receiving end.
    pub fn new(
        capacity: usize,
        plugins: Arc<dyn Plugins>,
        metrics: Arc<Metrics>,
    ) -> (Self, TapReceiver) {
        let (tx, rx) = mpsc::channel(capacity);
        let sinks = plugins
            .loaded()
            .into_iter()
            .filter(|p| p.is_metering())
            .map(|p| p.name)
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
    pub fn record(&self, event: ApiRequestEvent) {
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
        let sequence = self.shared.next_sequence();
        let batch = MeterBatch {
            sequence,
            events: vec![event],
        };
        // Through a `Value`, as always: keys in sorted order, like the tap's batches.
        let params = serde_json::to_value(&batch)
            .map(|v| v.to_string())
            .unwrap_or_default();
        self.shared
            .deliver_to_all(Pending {
                sequence,
                events: 1,
                params,
            })
            .await;
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
            if shared.sinks.is_empty() {
                buffer.clear();
                continue;
            }
            let sequence = shared.next_sequence();
            let batch = Pending {
                sequence,
                events: buffer.len(),
                params: batch_json(sequence, &buffer),
            };
            buffer.clear();
            shared.deliver_to_all(batch).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(department: Option<&str>, request_id: &str, status: u16) -> ApiRequestEvent {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_433_941_123);
        ApiRequestEvent {
            id: skyport_core::ids::time_ordered_uuid(time),
            time,
            tenant: Arc::from("demo"),
            department: department.map(str::to_owned),
            request_id: request_id.to_string(),
            identity_source: "jwt",
            route: "/v1/instances/{id}",
            method: http::Method::DELETE,
            status,
            bytes_in: 17,
            bytes_out: u64::MAX,
            latency_us: 1234,
        }
    }

    /// The event as the request path used to build it: a `MeterEvent` with a JSON map.
    fn as_meter_event(e: &ApiRequestEvent) -> MeterEvent {
        MeterEvent {
            id: e.id.to_string(),
            record_type: "api.request".into(),
            time: skyport_core::ids::rfc3339_millis(e.time),
            tenant: e.tenant.to_string(),
            department: e.department.clone(),
            attributes: serde_json::json!({
                "request_id": e.request_id,
                "identity_source": e.identity_source,
                "route": e.route,
                "method": e.method.as_str(),
                "status": e.status,
                "bytes_in": e.bytes_in,
                "bytes_out": e.bytes_out,
                "latency_us": e.latency_us,
            }),
        }
    }

    #[test]
    fn a_batch_is_byte_for_byte_a_meter_batch_through_a_value() {
        let events = vec![
            event(Some("fin\"ance"), "req-1", 200),
            event(None, "r\\q\u{e9}\u{1}", 429),
        ];
        let reference = MeterBatch {
            sequence: 42,
            events: events.iter().map(as_meter_event).collect(),
        };
        let text = batch_json(42, &events);
        assert_eq!(text, serde_json::to_value(&reference).unwrap().to_string());
        let parsed: MeterBatch = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, reference);
        assert_eq!(parsed.events[0].time, "2026-11-23T11:39:01.123Z");
        assert_eq!(batch_json(1, &[]), r#"{"events":[],"sequence":1}"#);
    }
}
