//! `[webhooks]`: how events reach the HTTPS endpoints tenants and operators subscribe.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// PEM file of CA certificates trusted for endpoints besides the system's (an
    /// enterprise CA); relative to the state directory.
    pub ca_file: Option<PathBuf>,
    /// Seconds a delivery is retried before it is dead-lettered (24 hours).
    pub retry_for_secs: u64,
    /// Seconds before the first retry; each later one waits twice as long.
    pub initial_backoff_secs: u64,
    /// Longest wait between two attempts.
    pub max_backoff_secs: u64,
    /// Seconds an endpoint has to answer one delivery.
    pub timeout_secs: u64,
    /// Deliveries in flight to one subscription at most; the rest wait their turn, so a
    /// slow endpoint holds back only its own.
    pub max_in_flight_per_subscription: usize,
    /// Milliseconds between two looks for due deliveries when nothing new was published.
    pub poll_interval_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            retry_for_secs: 24 * 3600,
            initial_backoff_secs: 10,
            max_backoff_secs: 3600,
            timeout_secs: 10,
            max_in_flight_per_subscription: 32,
            poll_interval_ms: 1000,
        }
    }
}

impl WebhooksConfig {
    /// What is wrong with these settings.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: &str| {
            errors.push(ConfigError {
                path: format!("webhooks.{path}"),
                message: message.into(),
            })
        };
        if self.retry_for_secs == 0 {
            err("retry_for_secs", "must be at least 1");
        }
        if self.initial_backoff_secs == 0 || self.initial_backoff_secs > self.max_backoff_secs {
            err(
                "initial_backoff_secs",
                "must be at least 1 and at most max_backoff_secs",
            );
        }
        if !(1..=300).contains(&self.timeout_secs) {
            err("timeout_secs", "must be 1-300");
        }
        if !(1..=1024).contains(&self.max_in_flight_per_subscription) {
            err("max_in_flight_per_subscription", "must be 1-1024");
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            err("poll_interval_ms", "must be 10-60000");
        }
        errors
    }
}
