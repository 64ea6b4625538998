//! The call metrics' series (`skyport_plugin_calls`, `skyport_plugin_call_seconds`) of each
//! plugin, op and outcome, kept once made: a call then neither allocates its labels nor
//! hashes them into the metric families (that cost 1.3 µs a call, as much as the rest of
//! an in-process call that answers at once).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use skyport_core::metrics::Metrics;

/// Outcome -> its counter.
type ByOutcome = HashMap<String, Counter>;

/// The series made so far, looked up by borrowed names.
pub(super) struct CallSeries {
    metrics: Arc<Metrics>,
    seconds: RwLock<HashMap<String, Histogram>>,
    calls: RwLock<HashMap<String, HashMap<String, ByOutcome>>>,
}

impl CallSeries {
    /// No series yet; they are made in `metrics`' families when first needed.
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            seconds: RwLock::default(),
            calls: RwLock::default(),
        }
    }

    /// Records one call of `plugin` that took `seconds`.
    pub(super) fn observe(&self, plugin: &str, seconds: f64) {
        let known = read(&self.seconds).get(plugin).cloned();
        let histogram = known.unwrap_or_else(|| {
            let made = self
                .metrics
                .plugin_call_seconds
                .get_or_create(&vec![("plugin", plugin.to_string())])
                .clone();
            write(&self.seconds).insert(plugin.to_string(), made.clone());
            made
        });
        histogram.observe(seconds);
    }

    /// Counts one call of `plugin`'s `op` that ended with `outcome`.
    pub(super) fn count(&self, plugin: &str, op: &str, outcome: &str) {
        let known = read(&self.calls)
            .get(plugin)
            .and_then(|ops| ops.get(op))
            .and_then(|outcomes| outcomes.get(outcome))
            .cloned();
        let counter = known.unwrap_or_else(|| {
            let made = self
                .metrics
                .plugin_calls
                .get_or_create(&vec![
                    ("plugin", plugin.to_string()),
                    ("op", op.to_string()),
                    ("outcome", outcome.to_string()),
                ])
                .clone();
            write(&self.calls)
                .entry(plugin.to_string())
                .or_default()
                .entry(op.to_string())
                .or_default()
                .insert(outcome.to_string(), made.clone());
            made
        });
        counter.inc();
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_made_once_keep_counting_into_the_exported_families() {
        let metrics = Arc::new(Metrics::new());
        let series = CallSeries::new(Arc::clone(&metrics));
        for _ in 0..3 {
            series.count("echo", "echo", "ok");
            series.observe("echo", 0.001);
        }
        series.count("echo", "echo", "TIMEOUT");
        series.count("echo", "health", "ok");
        let get =
            |labels: Vec<(&'static str, String)>| metrics.plugin_calls.get_or_create(&labels).get();
        let labels = |op: &str, outcome: &str| {
            vec![
                ("plugin", "echo".to_string()),
                ("op", op.to_string()),
                ("outcome", outcome.to_string()),
            ]
        };
        assert_eq!(get(labels("echo", "ok")), 3);
        assert_eq!(get(labels("echo", "TIMEOUT")), 1);
        assert_eq!(get(labels("health", "ok")), 1);
        let text = metrics.encode();
        assert!(
            text.contains("skyport_plugin_call_duration_seconds_count{plugin=\"echo\"} 3"),
            "{text}"
        );
    }
}
