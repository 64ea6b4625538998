//! A plugin instance's health, shared by the registry (probes, panics) and, for a plugin
//! in its own process, the supervisor (crashes, restarts).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use skyport_core::metrics::Metrics;

use crate::plugins::HealthView;

/// Whether a plugin serves, and why not; mirrored in the `plugin_healthy` gauge.
pub struct HealthCell {
    plugin: String,
    healthy: AtomicBool,
    reason: Mutex<Option<String>>,
    notes: Mutex<Vec<String>>,
    metrics: Option<Arc<Metrics>>,
}

impl HealthCell {
    /// Plugin `plugin`, healthy until told otherwise.
    pub fn new(plugin: &str, metrics: Arc<Metrics>) -> Self {
        let cell = Self {
            plugin: plugin.to_string(),
            healthy: AtomicBool::new(true),
            reason: Mutex::new(None),
            notes: Mutex::default(),
            metrics: Some(metrics),
        };
        cell.set(true, None);
        cell
    }

    /// A cell for a version on trial (a reload's new version), reported nowhere.
    pub fn detached(plugin: &str) -> Self {
        Self {
            plugin: plugin.to_string(),
            healthy: AtomicBool::new(true),
            reason: Mutex::new(None),
            notes: Mutex::default(),
            metrics: None,
        }
    }

    /// Health now.
    pub fn view(&self) -> HealthView {
        HealthView {
            healthy: self.healthy.load(Ordering::SeqCst),
            reason: self
                .reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            notes: self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Records what the plugin's last health answer noted.
    pub fn set_notes(&self, notes: Vec<String>) {
        *self.notes.lock().unwrap_or_else(|p| p.into_inner()) = notes;
    }

    /// Records health.
    pub fn set(&self, healthy: bool, reason: Option<String>) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        self.healthy.store(healthy, Ordering::SeqCst);
        *slot = reason;
        if let Some(metrics) = &self.metrics {
            metrics
                .plugin_healthy
                .get_or_create(&vec![("plugin", self.plugin.clone())])
                .set(i64::from(healthy));
        }
    }
}
