//! Every Prometheus metric the gateway exports, registered once. The plain-HTTP listener
//! that serves them is the gateway binary's (`skyport_gateway::metrics_listener`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label set: ordered name/value pairs.
pub type Labels = Vec<(&'static str, String)>;

/// Labels of [`Metrics::requests`]: built per request without allocating.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template.
    pub route: &'static str,
    /// Response status.
    pub status: u16,
    /// Tenant, or `-` when unauthenticated.
    pub tenant: TenantLabel,
}

/// Labels of [`Metrics::request_seconds`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template.
    pub route: &'static str,
}

/// Labels of [`Metrics::rate_limited`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant.
    pub tenant: TenantLabel,
}

/// A tenant as a label value, sharing the tenant's `Arc<str>`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct TenantLabel(pub Arc<str>);

impl EncodeLabelValue for TenantLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

/// Labels of [`Metrics::cache_lookups`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLookupLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by route, status and tenant.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route.
    pub request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Requests refused by the rate limiter, by tenant.
    pub rate_limited: Family<TenantLabels, Counter>,
    /// Cache lookups by result (`hit`/`miss`).
    pub cache_lookups: Family<CacheLookupLabels, Counter>,
    /// Plugin calls by plugin, op and outcome (`ok` or an error code).
    pub plugin_calls: Family<Labels, Counter>,
    /// Plugin call latency by plugin.
    pub plugin_call_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// 1 when a plugin is healthy, 0 otherwise.
    pub plugin_healthy: Family<Labels, Gauge>,
    /// Plugin processes that ended without being told to (labels: plugin, `how`: the
    /// signal's name, `exit` or `stuck`).
    pub plugin_crashes: Family<Labels, Counter>,
    /// Plugin processes started again after a crash (label: plugin).
    pub plugin_restarts: Family<Labels, Counter>,
    /// Connections the API listener closed before their handshake (label: reason,
    /// `global` or `peer` limit, `peer_rate`).
    pub connections_refused: Family<Labels, Counter>,
    /// EC2 requests signed with Signature Version 2, by signature method.
    pub ec2_sigv2_requests: Family<Labels, Counter>,
    /// EC2 requests refused because Skyport does not serve their action, by action name.
    pub ec2_unsupported_actions: Family<Labels, Counter>,
    /// Connections open on the API listener.
    pub connections_open: Gauge,
    /// Metrics reported by plugins through the host (labels: plugin, name, then the
    /// plugin's own labels).
    pub plugin_reported: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    /// Tap events dropped because the queue was full.
    pub tap_dropped: Counter,
    /// Tap events accepted into the queue.
    pub tap_enqueued: Counter,
    /// Instance changes a provider made by itself (labels: provider, state), found by the
    /// inventory sync or a read.
    pub instance_changes_detected: Family<Labels, Counter>,
    /// Instances a provider runs that Skyport's inventory does not know (label: provider),
    /// as of the last inventory sync.
    pub instances_unmanaged: Family<Labels, Gauge>,
    /// Orders stopped because a required parameter had no value (label: parameter).
    pub placement_missing_parameter: Family<Labels, Counter>,
    /// Placement rules whose condition failed to give true or false (label: rule).
    pub placement_rule_errors: Family<Labels, Counter>,
    /// The `tenant` label of requests without a tenant: `-`.
    pub no_tenant: Arc<str>,
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("skyport");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        let rate_limited = Family::<TenantLabels, Counter>::default();
        let cache_lookups = Family::<CacheLookupLabels, Counter>::default();
        let plugin_calls = Family::<Labels, Counter>::default();
        let plugin_call_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        let plugin_healthy = Family::<Labels, Gauge>::default();
        let plugin_crashes = Family::<Labels, Counter>::default();
        let plugin_restarts = Family::<Labels, Counter>::default();
        let connections_refused = Family::<Labels, Counter>::default();
        let ec2_sigv2_requests = Family::<Labels, Counter>::default();
        registry.register(
            "ec2_sigv2_requests",
            "EC2 requests authenticated with Signature Version 2, by method (HmacSHA256, HmacSHA1)",
            ec2_sigv2_requests.clone(),
        );
        let ec2_unsupported_actions = Family::<Labels, Counter>::default();
        registry.register(
            "ec2_unsupported_actions",
            "EC2 requests refused with InvalidAction, by the action they named (what clients want that Skyport does not serve)",
            ec2_unsupported_actions.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_refused",
            "API connections closed before their handshake: the listener's or the peer's connection limit, or the peer's rate of new connections, was reached",
            connections_refused.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open on the API listener",
            connections_open.clone(),
        );
        let plugin_reported = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        let tap_dropped = Counter::default();
        let tap_enqueued = Counter::default();
        let instance_changes_detected = Family::<Labels, Counter>::default();
        let instances_unmanaged = Family::<Labels, Gauge>::default();
        let placement_missing_parameter = Family::<Labels, Counter>::default();
        let placement_rule_errors = Family::<Labels, Counter>::default();
        registry.register(
            "placement_rule_errors",
            "Placement rules whose condition gave an error or a non-boolean (they did not fire)",
            placement_rule_errors.clone(),
        );
        registry.register(
            "placement_missing_parameter",
            "Orders stopped because a required parameter had no value and no default",
            placement_missing_parameter.clone(),
        );
        registry.register(
            "instance_changes_detected",
            "Instance changes a provider made by itself",
            instance_changes_detected.clone(),
        );
        registry.register(
            "instances_unmanaged",
            "Instances a provider runs that the inventory does not know",
            instances_unmanaged.clone(),
        );
        registry.register(
            "http_requests",
            "Requests by route, status and tenant",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Request latency by route",
            request_seconds.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the rate limiter",
            rate_limited.clone(),
        );
        registry.register(
            "cache_lookups",
            "Read cache lookups by result",
            cache_lookups.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls by plugin, op and outcome",
            plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Plugin call latency by plugin",
            plugin_call_seconds.clone(),
        );
        registry.register(
            "plugin_healthy",
            "1 when the plugin is healthy",
            plugin_healthy.clone(),
        );
        registry.register(
            "plugin_crashes",
            "Plugin processes that ended unasked, by how",
            plugin_crashes.clone(),
        );
        registry.register(
            "plugin_restarts",
            "Plugin processes restarted after a crash",
            plugin_restarts.clone(),
        );
        registry.register(
            "plugin_reported",
            "Values reported by plugins",
            plugin_reported.clone(),
        );
        registry.register(
            "tap_dropped",
            "Metering tap events dropped (queue full)",
            tap_dropped.clone(),
        );
        registry.register(
            "tap_enqueued",
            "Metering tap events queued",
            tap_enqueued.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            rate_limited,
            cache_lookups,
            plugin_calls,
            plugin_call_seconds,
            plugin_healthy,
            plugin_crashes,
            plugin_restarts,
            connections_refused,
            ec2_sigv2_requests,
            ec2_unsupported_actions,
            connections_open,
            plugin_reported,
            tap_dropped,
            tap_enqueued,
            instance_changes_detected,
            placement_missing_parameter,
            placement_rule_errors,
            instances_unmanaged,
            no_tenant: Arc::from("-"),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
