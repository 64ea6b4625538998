//! `[console]`: the web console at `/console/`: whether it is served, and how long its
//! sessions last.

use serde::Deserialize;

use super::ConfigError;

/// `[console]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Whether `/console/` is served (the API is served either way).
    pub enabled: bool,
    /// Seconds without a request after which a session ends (30 minutes).
    pub idle_timeout_secs: u64,
    /// Seconds after sign-in at which a session ends in any case (12 hours).
    pub absolute_timeout_secs: u64,
    /// Seconds a development sign-in link (`skyport console`) may be used within.
    pub sign_in_link_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 12 * 3600,
            sign_in_link_secs: 300,
        }
    }
}

impl ConsoleConfig {
    /// What is wrong with these settings.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: &str| {
            errors.push(ConfigError {
                path: format!("console.{path}"),
                message: message.into(),
            })
        };
        if self.idle_timeout_secs == 0 {
            err("idle_timeout_secs", "must be at least 1");
        }
        if self.absolute_timeout_secs < self.idle_timeout_secs {
            err(
                "absolute_timeout_secs",
                "must be at least idle_timeout_secs",
            );
        }
        if !(1..=3600).contains(&self.sign_in_link_secs) {
            err("sign_in_link_secs", "must be between 1 and 3600");
        }
        errors
    }
}
