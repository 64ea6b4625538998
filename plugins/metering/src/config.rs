//! The plugin's configuration (`[[plugins]] config = {...}`) and the ledger it opens.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::{Host, PluginError};

use crate::ledger::{Ledger, PgLedger, PgSettings, SpooledLedger, SqliteLedger};
use crate::record_types::{self, RecordType};

/// Configuration (`[[plugins]] config = {...}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeteringConfig {
    /// Record types registered at start, beside the built-in ones (which a type here with
    /// the same id replaces) and those already in the ledger.
    #[serde(default)]
    pub record_types: Vec<RecordType>,
    /// How far in the future an event may be stamped.
    #[serde(default = "default_skew")]
    pub max_future_skew_secs: u64,
    /// Ledger directory (the SQLite ledger, or the outbox of a shared one); default: the
    /// one the host assigns.
    pub state_dir: Option<String>,
    /// Where the ledger is kept; default: SQLite in the state directory.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// Prices; default: the embedded card.
    pub rate_card: Option<Value>,
    /// Length of a usage-record interval, seconds (1 h).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds between two group syncs with the providers' inventories (0: never).
    #[serde(default = "default_group_sync")]
    pub group_sync_secs: u64,
}

/// `ledger = { backend = "sqlite" }` (the default) or
/// `ledger = { backend = "postgres", url, password_file | password_env, ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum LedgerConfig {
    /// `<state_dir>/ledger.db`, this process only.
    #[default]
    Sqlite,
    /// Shared by every replica, with a local outbox in the state directory.
    Postgres {
        /// `postgres://user@host:port/database`, without a password.
        url: String,
        /// A file holding the password (relative: to the gateway's state directory).
        password_file: Option<String>,
        /// An environment variable holding the password (pass it to an isolated plugin
        /// with the plugin's `env` list).
        password_env: Option<String>,
        /// How long a connection attempt may take, milliseconds.
        #[serde(default = "default_connect_timeout")]
        connect_timeout_ms: u64,
        /// How long one statement may run, seconds.
        #[serde(default = "default_statement_timeout")]
        statement_timeout_secs: u64,
    },
}

fn default_connect_timeout() -> u64 {
    3000
}

fn default_statement_timeout() -> u64 {
    30
}

fn default_group_sync() -> u64 {
    300
}

fn default_interval() -> u64 {
    3600
}

fn default_skew() -> u64 {
    300
}

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::new(error_code::INVALID_CONFIG, message)
}

impl MeteringConfig {
    /// The record types to register at start: those configured, then each built-in one
    /// the configuration does not name. A configuration that lists its own types keeps
    /// the gateway's (`api.request.count` above all: without it, requests go unbilled).
    pub(crate) fn registrations(&self) -> Vec<RecordType> {
        let mut types = self.record_types.clone();
        for built_in in record_types::built_in() {
            if !types.iter().any(|t| t.id == built_in.id) {
                types.push(built_in);
            }
        }
        types
    }

    /// The state directory, created if missing.
    pub fn state_dir(&self, host: &Host) -> Result<PathBuf, PluginError> {
        let dir = match &self.state_dir {
            Some(dir) => PathBuf::from(dir),
            None => host.state_dir()?,
        };
        std::fs::create_dir_all(&dir).map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Opens the configured ledger and registers the configured record types in it.
    /// A shared ledger's connection is made on a thread of its own, outside the plugin's
    /// runtime (its client blocks on a runtime of its own).
    pub fn open_ledger(
        &self,
        dir: &Path,
        host: &Host,
        now: SystemTime,
    ) -> Result<Box<dyn Ledger + Send>, PluginError> {
        let settings = self.shared_settings(host)?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut ledger: Box<dyn Ledger + Send> =
                        match &settings {
                            None => Box::new(SqliteLedger::open(dir).map_err(|e| {
                                invalid(format!("ledger in {}: {e}", dir.display()))
                            })?),
                            Some(settings) => {
                                let shared = PgLedger::open(settings).map_err(|e| {
                                    PluginError::new(
                                        error_code::UNAVAILABLE,
                                        format!("metering ledger at {}: {e}", settings.url),
                                    )
                                })?;
                                Box::new(SpooledLedger::open(shared, dir).map_err(|e| {
                                    invalid(format!("ledger outbox in {}: {e}", dir.display()))
                                })?)
                            }
                        };
                    for record_type in &self.registrations() {
                        ledger.register(record_type, now).map_err(invalid)?;
                    }
                    Ok(ledger)
                })
                .join()
                .map_err(|_| {
                    PluginError::new(error_code::INTERNAL, "opening the ledger panicked")
                })?
        })
    }

    /// How to reach the shared ledger, if one is configured; its password read now.
    fn shared_settings(&self, host: &Host) -> Result<Option<PgSettings>, PluginError> {
        let LedgerConfig::Postgres {
            url,
            password_file,
            password_env,
            connect_timeout_ms,
            statement_timeout_secs,
        } = &self.ledger
        else {
            return Ok(None);
        };
        let parsed =
            postgres::Config::from_str(url).map_err(|e| invalid(format!("ledger url: {e}")))?;
        if parsed.get_password().is_some() {
            return Err(invalid(
                "ledger url carries a password: give it in password_file or password_env",
            ));
        }
        let password = match (password_file, password_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "ledger: give password_file or password_env, not both",
                ))
            }
            (Some(file), None) => {
                let path = host.resolve_config_path(file)?;
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    invalid(format!("ledger password_file {}: {e}", path.display()))
                })?;
                Some(text.trim_end_matches(['\n', '\r']).to_string())
            }
            (None, Some(name)) => Some(std::env::var(name).map_err(|_| {
                invalid(format!(
                    "ledger password_env: {name} is not set in the plugin's environment"
                ))
            })?),
            (None, None) => None,
        };
        Ok(Some(PgSettings {
            url: url.clone(),
            password,
            connect_timeout: Duration::from_millis((*connect_timeout_ms).max(1)),
            statement_timeout: Duration::from_secs((*statement_timeout_secs).max(1)),
        }))
    }

    /// Whether the ledger is shared between replicas.
    pub fn shared(&self) -> bool {
        matches!(self.ledger, LedgerConfig::Postgres { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_record_types_add_to_the_built_in_ones_and_replace_those_they_name() {
        let config: MeteringConfig = serde_json::from_value(serde_json::json!({
            "record_types": [
                {"id": "storage.volume", "primary_key": ["volume_id"]},
                {"id": "api.request", "state_key": ["route"]},
            ]
        }))
        .unwrap();
        let types = config.registrations();
        let ids: Vec<&str> = types.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "storage.volume",
                "api.request",
                "instance.lifecycle",
                "api.request.count"
            ]
        );
        assert_eq!(
            types[1].state_key,
            ["route"],
            "the configured definition wins"
        );
        let defaults: MeteringConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(defaults.registrations(), record_types::built_in());
    }
}
