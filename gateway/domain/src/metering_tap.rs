//! The metering tap: how events reach every loaded metering plugin (`meter.batch@1`).
//!
//! - [`MeteringTap::record`] (every authenticated request) never blocks: it queues an
//!   [`ApiRequestEvent`] of plain values in a bounded queue; when the queue is full the
//!   request is dropped and counted (`skyport_tap_dropped_total`). The forwarder drains the
//!   queue on a timer ([`FLUSH_INTERVAL`]) rather than waiting on it: a waiting receiver
//!   would be woken, across threads, by every request.
//! - The forwarder counts what it drained: one `api.request.count` event per tenant,
//!   department, route, method, status, identity source and minute, carrying how many
//!   requests that was and their bytes. So a plugin stores a few records per flush, not one
//!   per request; the bill sums the counts. The events are written as `meter.batch@1` JSON
//!   text in one pass, byte for byte what a [`MeterBatch`] of [`MeterEvent`]s serialised
//!   through a `serde_json::Value` gives (keys in sorted order). With no metering plugin
//!   loaded, queued requests are drained and nothing is written.
//! - [`MeteringTap::record_durable`] (lifecycle events) hands the event to every metering
//!   plugin at once and returns after each acknowledged it (that is, stored it durably), so
//!   the API call that caused it answers only then.
//! - A batch a plugin does not acknowledge is kept, per plugin, and retried with the same
//!   sequence number and event ids every tick; plugins store by event id, so a retry counts
//!   once. The retry backlog is bounded by the queue capacity, in requests (oldest batches
//!   dropped and counted beyond it). At shutdown the forwarder keeps retrying until its
//!   deadline.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use skyport_plugin_api::ops::{MeterBatch, MeterEvent, METER_BATCH};
use skyport_plugin_api::sdk::CallContext;
use tokio::sync::mpsc;

use skyport_core::ids::time_ordered_uuid;
use skyport_core::metrics::Metrics;
use skyport_plugin_host::Plugins;

/// How often the forwarder drains the tap queue and retries unacknowledged batches.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Deadline of one `meter.batch` call.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Record type of the tap's events: [`RequestCount`].
pub const API_REQUEST_COUNT: &str = "api.request.count";

/// One answered request, as the request path records it: plain values, no JSON, no id.
#[derive(Debug, Clone)]
pub struct ApiRequestEvent {
    /// When the request was answered.
    pub time: SystemTime,
    /// Tenant billed.
    pub tenant: Arc<str>,
    /// Department inside the tenant, when known.
    pub department: Option<String>,
    /// How the caller proved who it is (`jwt`, `mtls`, `sigv4`, ...).
    pub identity_source: &'static str,
    /// Route template (e.g. `/v1/instances/{id}`) or EC2 action.
    pub route: &'static str,
    /// HTTP method, as [`method_label`] names it.
    pub method: &'static str,
    /// Response status.
    pub status: u16,
    /// Request body bytes (`Content-Length`).
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

/// `method`'s name when it is one of the nine standard methods, else `OTHER`: a caller
/// inventing methods must not make a count (and a ledger row) per invention.
pub fn method_label(method: &http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|name| *name == method.as_str())
        .unwrap_or("OTHER")
}

/// What requests with the same [`CountKey`] have in common.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CountKey {
    /// Whole minutes since the Unix epoch.
    minute: u64,
    tenant: Arc<str>,
    department: Option<String>,
    identity_source: &'static str,
    route: &'static str,
    method: &'static str,
    status: u16,
}

/// The requests of one [`CountKey`] drained in one flush: one `api.request.count` event.
///
/// A metering plugin receives it as a [`MeterEvent`]: `id` (a time-ordered UUID), `type`
/// (`api.request.count`), `time` (the start of the minute the requests were answered in,
/// RFC 3339 UTC with milliseconds), `tenant`, `department` (when known) and `attributes`
/// `{count, route, method, status, identity_source, bytes_in, bytes_out}`.
#[derive(Debug, Clone)]
pub struct RequestCount {
    id: uuid::Uuid,
    key: CountKey,
    count: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl RequestCount {
    fn time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.key.minute * 60)
    }
}

/// Running totals of one [`CountKey`].
#[derive(Default)]
struct Totals {
    count: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// When the last of them was answered.
    latest: Option<SystemTime>,
}

/// Counts `events` (draining them) per [`CountKey`], in a stable order (minute, tenant,
/// department, route, method, status, identity source). Each count gets a new id stamped
/// with the time its last request was answered.
fn count_requests(events: &mut Vec<ApiRequestEvent>) -> Vec<RequestCount> {
    let mut counts: HashMap<CountKey, Totals> = HashMap::new();
    for event in events.drain(..) {
        let minute = event
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let key = CountKey {
            minute,
            tenant: event.tenant,
            department: event.department,
            identity_source: event.identity_source,
            route: event.route,
            method: event.method,
            status: event.status,
        };
        let totals = counts.entry(key).or_default();
        totals.count += 1;
        totals.bytes_in = totals.bytes_in.saturating_add(event.bytes_in);
        totals.bytes_out = totals.bytes_out.saturating_add(event.bytes_out);
        totals.latest = totals.latest.max(Some(event.time));
    }
    let mut out: Vec<RequestCount> = counts
        .into_iter()
        .map(|(key, totals)| RequestCount {
            id: time_ordered_uuid(totals.latest.unwrap_or(SystemTime::UNIX_EPOCH)),
            key,
            count: totals.count,
            bytes_in: totals.bytes_in,
            bytes_out: totals.bytes_out,
        })
        .collect();
    /// The order of counts: by reference, nothing cloned per comparison.
    type Order<'a> = (
        u64,
        &'a str,
        Option<&'a str>,
        &'static str,
        &'static str,
        u16,
        &'static str,
    );
    fn order(c: &RequestCount) -> Order<'_> {
        let k = &c.key;
        (
            k.minute,
            &k.tenant,
            k.department.as_deref(),
            k.route,
            k.method,
            k.status,
            k.identity_source,
        )
    }
    out.sort_by(|a, b| order(a).cmp(&order(b)));
    out
}

/// Serialises a `Display` value as a JSON string without an intermediate `String`.
struct AsString<T>(T);

impl<T: Display> Serialize for AsString<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// `attributes` of a [`RequestCount`], keys in sorted order.
#[derive(Serialize)]
struct RequestCountAttributes<'a> {
    bytes_in: u64,
    bytes_out: u64,
    count: u64,
    identity_source: &'a str,
    method: &'a str,
    route: &'a str,
    status: u16,
}

impl Serialize for RequestCount {
    /// The [`MeterEvent`] wire form, keys in sorted order (as a `serde_json::Value` map
    /// writes them).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut event = serializer.serialize_struct("MeterEvent", 6)?;
        event.serialize_field(
            "attributes",
            &RequestCountAttributes {
                bytes_in: self.bytes_in,
                bytes_out: self.bytes_out,
                count: self.count,
                identity_source: self.key.identity_source,
                method: self.key.method,
                route: self.key.route,
                status: self.key.status,
            },
        )?;
        match &self.key.department {
            Some(department) => event.serialize_field("department", department)?,
            None => event.skip_field("department")?,
        }
        event.serialize_field("id", &AsString(self.id.hyphenated()))?;
        event.serialize_field("tenant", &*self.key.tenant)?;
        event.serialize_field(
            "time",
            &AsString(humantime::format_rfc3339_millis(self.time())),
        )?;
        event.serialize_field("type", API_REQUEST_COUNT)?;
        event.end()
    }
}

/// `meter.batch@1` params for `counts`: the JSON text of a [`MeterBatch`], keys in sorted
/// order, written in one pass.
fn batch_json(sequence: u64, counts: &[RequestCount]) -> String {
    #[derive(Serialize)]
    struct Batch<'a> {
        events: &'a [RequestCount],
        sequence: u64,
    }
    // About 330 bytes an event: one allocation for most batches.
    let mut out = Vec::with_capacity(64 + counts.len() * 384);
    // Plain data into a Vec cannot fail to serialise, and serde_json writes UTF-8.
    if serde_json::to_writer(
        &mut out,
        &Batch {
            events: counts,
            sequence,
        },
    )
    .is_err()
    {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// A batch on its way to the plugins: its sequence number, size and JSON text.
#[derive(Clone)]
struct Pending {
    sequence: u64,
    /// Requests (or lifecycle events) it accounts for: what is counted as dropped if it is.
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

/// Forwards queued requests, counted, in batches, and retries unacknowledged ones, until every sender
/// is gone, the queue is drained and the backlog is empty (or the caller's deadline ends
/// this task).
pub async fn forward_batches(receiver: TapReceiver, batch_max: usize) {
    let TapReceiver { mut rx, shared } = receiver;
    let mut buffer = Vec::with_capacity(batch_max);
    let mut open = true;
    while open || !shared.backlog_is_empty() {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        shared.retry_backlog().await;
        // What is queued now, in batches of at most `batch_max` requests. Requests that
        // arrive while a batch is delivered wait for the next tick: one durable write per
        // tick under load, not one per delivery.
        loop {
            let full = drain(&mut rx, &mut buffer, batch_max, &mut open);
            if buffer.is_empty() {
                break;
            }
            if shared.sinks.is_empty() {
                buffer.clear();
            } else {
                let requests = buffer.len();
                let counts = count_requests(&mut buffer);
                let sequence = shared.next_sequence();
                let batch = Pending {
                    sequence,
                    events: requests,
                    params: batch_json(sequence, &counts),
                };
                shared.deliver_to_all(batch).await;
            }
            if !full {
                break;
            }
        }
    }
}

/// Moves queued requests into `buffer` until it holds `batch_max` (true) or the queue is
/// empty (false); clears `open` when every sender is gone.
fn drain(
    rx: &mut mpsc::Receiver<ApiRequestEvent>,
    buffer: &mut Vec<ApiRequestEvent>,
    batch_max: usize,
    open: &mut bool,
) -> bool {
    while buffer.len() < batch_max {
        match rx.try_recv() {
            Ok(event) => buffer.push(event),
            Err(mpsc::error::TryRecvError::Empty) => return false,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                *open = false;
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23T11:39:01.123Z plus `millis`.
    fn at(millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_433_941_123 + millis)
    }

    fn request(
        time: SystemTime,
        tenant: &str,
        department: Option<&str>,
        status: u16,
        bytes_out: u64,
    ) -> ApiRequestEvent {
        ApiRequestEvent {
            time,
            tenant: Arc::from(tenant),
            department: department.map(str::to_owned),
            identity_source: "jwt",
            route: "/v1/instances/{id}",
            method: "DELETE",
            status,
            bytes_in: 17,
            bytes_out,
        }
    }

    /// The count as a `MeterEvent` with a JSON map, the way a plugin reads it.
    fn as_meter_event(c: &RequestCount) -> MeterEvent {
        MeterEvent {
            id: c.id.to_string(),
            record_type: "api.request.count".into(),
            time: skyport_core::ids::rfc3339_millis(c.time()),
            tenant: c.key.tenant.to_string(),
            department: c.key.department.clone(),
            attributes: serde_json::json!({
                "count": c.count,
                "identity_source": c.key.identity_source,
                "route": c.key.route,
                "method": c.key.method,
                "status": c.key.status,
                "bytes_in": c.bytes_in,
                "bytes_out": c.bytes_out,
            }),
        }
    }

    #[test]
    fn requests_are_counted_per_tenant_department_status_and_minute() {
        // 11:39:01.123 + 58.876 s is 11:39:59.999; + 59 s is 11:40:00.123.
        let mut events = vec![
            request(at(0), "demo", Some("finance"), 200, 100),
            request(at(5), "demo", Some("finance"), 200, 50),
            request(at(58_876), "demo", Some("finance"), 200, 1),
            request(at(59_000), "demo", Some("finance"), 200, 7),
            request(at(6), "demo", None, 200, 1),
            request(at(7), "demo", Some("finance"), 429, 1),
            request(at(8), "acme", Some("finance"), 200, 1),
        ];
        let counts = count_requests(&mut events);
        assert!(events.is_empty(), "drained");
        let summary: Vec<String> = counts
            .iter()
            .map(|c| {
                format!(
                    "{} {} {:?} {}: {} requests, {} in, {} out",
                    skyport_core::ids::rfc3339_millis(c.time()),
                    c.key.tenant,
                    c.key.department,
                    c.key.status,
                    c.count,
                    c.bytes_in,
                    c.bytes_out
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "2026-11-23T11:39:00.000Z acme Some(\"finance\") 200: 1 requests, 17 in, 1 out",
                "2026-11-23T11:39:00.000Z demo None 200: 1 requests, 17 in, 1 out",
                "2026-11-23T11:39:00.000Z demo Some(\"finance\") 200: 3 requests, 51 in, 151 out",
                "2026-11-23T11:39:00.000Z demo Some(\"finance\") 429: 1 requests, 17 in, 1 out",
                "2026-11-23T11:40:00.000Z demo Some(\"finance\") 200: 1 requests, 17 in, 7 out",
            ]
        );
        // Ids are unique, and stamped with the last request's time.
        let ids: std::collections::BTreeSet<_> = counts.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), counts.len());
        let stamp = counts[2].id.get_timestamp().unwrap().to_unix();
        assert_eq!(stamp, (1_795_433_999, 999_000_000));
        // Byte counts saturate rather than wrap.
        let mut huge = vec![
            request(at(0), "demo", None, 200, u64::MAX),
            request(at(1), "demo", None, 200, 5),
        ];
        assert_eq!(count_requests(&mut huge)[0].bytes_out, u64::MAX);
    }

    #[test]
    fn standard_methods_keep_their_names_and_invented_ones_are_other() {
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
        assert_eq!(method_label(&http::Method::GET), "GET");
        for invented in ["FOO", "get", "PROPFIND"] {
            let method = http::Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "OTHER", "{invented}");
        }
    }

    #[test]
    fn a_batch_is_byte_for_byte_a_meter_batch_through_a_value() {
        let mut events = vec![
            request(at(0), "demo", Some("fin\"ance"), 200, 3),
            request(at(1), "demo", Some("r\\q\u{e9}\u{1}"), 429, 4),
        ];
        let counts = count_requests(&mut events);
        let reference = MeterBatch {
            sequence: 42,
            events: counts.iter().map(as_meter_event).collect(),
        };
        let text = batch_json(42, &counts);
        assert_eq!(text, serde_json::to_value(&reference).unwrap().to_string());
        let parsed: MeterBatch = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, reference);
        assert_eq!(parsed.events[0].time, "2026-11-23T11:39:00.000Z");
        assert_eq!(parsed.events[0].attributes["count"], 1);
        assert_eq!(batch_json(1, &[]), r#"{"events":[],"sequence":1}"#);
    }

    /// A metering plugin that takes 30 ms to store each batch, and keeps what it got.
    struct SlowSink {
        batches: Mutex<Vec<MeterBatch>>,
    }

    #[async_trait::async_trait]
    impl Plugins for SlowSink {
        fn loaded(&self) -> Vec<skyport_plugin_host::PluginFacts> {
            vec![skyport_plugin_host::PluginFacts {
                name: "meter".into(),
                kind: "metering",
                ops: vec!["meter.batch@1".into()],
                health: skyport_plugin_host::HealthView {
                    healthy: true,
                    reason: None,
                    notes: Vec::new(),
                },
            }]
        }

        async fn call_json(
            &self,
            _name: &str,
            _op: &str,
            _version: u32,
            params: String,
            _context: CallContext,
            _timeout: Duration,
        ) -> Result<serde_json::Value, skyport_core::error::GatewayError> {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let batch: MeterBatch = serde_json::from_str(&params).unwrap();
            self.batches.lock().unwrap().push(batch);
            Ok(serde_json::json!({}))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn under_steady_load_each_tick_sends_one_batch_and_every_request_is_counted_once() {
        let sink = Arc::new(SlowSink {
            batches: Mutex::default(),
        });
        let (tap, receiver) = MeteringTap::new(
            10_000,
            Arc::clone(&sink) as Arc<dyn Plugins>,
            Arc::new(Metrics::default()),
        );
        let forwarder = tokio::spawn(forward_batches(receiver, 10_000));
        // One request a millisecond for a second, while each delivery takes 30 ms.
        for i in 0..1000 {
            tap.record(request(at(i), "demo", None, 200, 1));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(tap);
        forwarder.await.unwrap();
        let batches = sink.batches.lock().unwrap();
        let counted: u64 = batches
            .iter()
            .flat_map(|b| &b.events)
            .map(|e| e.attributes["count"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, 1000);
        // One batch per tick (100 ms, plus the 30 ms delivery): 8 in that second. Before, a
        // batch left as soon as the previous one was stored, with whatever had arrived
        // meanwhile: about 33 here, each one durable write.
        assert!(
            (7..=11).contains(&batches.len()),
            "{} batches",
            batches.len()
        );
        let sequences: Vec<u64> = batches.iter().map(|b| b.sequence).collect();
        assert!(
            sequences.windows(2).all(|w| w[1] == w[0] + 1),
            "{sequences:?}"
        );
    }
}
