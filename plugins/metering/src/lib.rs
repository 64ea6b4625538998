//! `metering`: Skyport's metering plugin. It receives the gateway's tap (`meter.batch@1`)
//! and keeps every event once, durably, in its ledger (`<state>/ledger.db`), refusing and
//! auditing what it cannot accept.
//!
//! Operations (schema version 1):
//! - `health`
//! - `meter.batch` [`MeterBatch`] -> `{acknowledged, accepted, duplicates, rejected}`,
//!   answered only after the batch is committed
//! - `record_types.register` [`RecordType`] -> `{id, registered}`; `record_types.list`
//! - `ledger.stats` -> events by type and refusals; `ledger.events` `{tenant, limit?}`

mod ledger;
mod record_types;
mod validate;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::ops::{MeterBatch, HEALTH, METER_BATCH};
use skyport_plugin_api::{export_plugin, Description, Host, OpCall, Plugin, PluginError};

pub use ledger::{IngestOutcome, Ledger, LedgerStats, Rejection};
pub use record_types::RecordType;
pub use validate::{check_event, Limits};

/// Configuration (`[[plugins]] config = {...}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeteringConfig {
    /// Record types registered at start (in addition to those already in the ledger).
    #[serde(default = "record_types::built_in")]
    record_types: Vec<RecordType>,
    /// How far in the future an event may be stamped.
    #[serde(default = "default_skew")]
    max_future_skew_secs: u64,
    /// Ledger directory; default: the one the host assigns.
    state_dir: Option<String>,
}

fn default_skew() -> u64 {
    300
}

fn err(code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

struct Metering {
    ledger: Arc<Mutex<Ledger>>,
    limits: Limits,
    host: Host,
}

impl Metering {
    /// Runs `f` on the ledger on a blocking thread: SQLite commits wait for the disk, and an
    /// op's first poll runs on the gateway's own worker.
    async fn with_ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, PluginError> {
        let ledger = Arc::clone(&self.ledger);
        tokio::task::spawn_blocking(move || {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut ledger)
        })
        .await
        .map_err(|e| err(error_code::INTERNAL, format!("ledger task: {e}")))?
    }

    async fn ingest(&self, batch: MeterBatch) -> Result<Value, PluginError> {
        let limits = self.limits.clone();
        let size = batch.events.len();
        let outcome = self
            .with_ledger(move |ledger| {
                ledger
                    .ingest(&batch.events, &limits, SystemTime::now())
                    .map_err(|e| err(error_code::UNAVAILABLE, format!("ledger write failed: {e}")))
            })
            .await?;
        let labels = json!({});
        self.host
            .counter("events_accepted", outcome.accepted as f64, &labels);
        self.host
            .counter("events_duplicate", outcome.duplicates as f64, &labels);
        for rejection in &outcome.rejected {
            log::warn!("event {} refused: {}", rejection.id, rejection.reason);
        }
        self.host
            .counter("events_rejected", outcome.rejected.len() as f64, &labels);
        Ok(json!({
            "acknowledged": size,
            "accepted": outcome.accepted,
            "duplicates": outcome.duplicates,
            "rejected": outcome.rejected,
        }))
    }
}

impl Plugin for Metering {
    fn describe() -> Description {
        Description {
            name: "metering".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "metering".into(),
            summary: "durable usage ledger behind the consolidated bill".into(),
            ops: [
                "health@1",
                "meter.batch@1",
                "record_types.register@1",
                "record_types.list@1",
                "ledger.stats@1",
                "ledger.events@1",
            ]
            .map(String::from)
            .to_vec(),
            config_schema: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "record_types": {"type": "array", "items": {"type": "object"}},
                    "max_future_skew_secs": {"type": "integer", "minimum": 0},
                    "state_dir": {"type": "string"}
                }
            }),
        }
    }

    fn init(config: Value, host: Host) -> Result<Self, PluginError> {
        let config: MeteringConfig = serde_json::from_value(config)
            .map_err(|e| err(error_code::INVALID_CONFIG, e.to_string()))?;
        let dir = match &config.state_dir {
            Some(dir) => PathBuf::from(dir),
            None => host.state_dir()?,
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            err(
                error_code::INVALID_CONFIG,
                format!("{}: {e}", dir.display()),
            )
        })?;
        let ledger = Ledger::open(&dir).map_err(|e| {
            err(
                error_code::INVALID_CONFIG,
                format!("ledger in {}: {e}", dir.display()),
            )
        })?;
        for record_type in &config.record_types {
            ledger
                .register(record_type, SystemTime::now())
                .map_err(|e| err(error_code::INVALID_CONFIG, e))?;
        }
        log::info!("metering: ledger in {}", dir.display());
        Ok(Self {
            ledger: Arc::new(Mutex::new(ledger)),
            limits: Limits {
                max_future_skew: Duration::from_secs(config.max_future_skew_secs),
                ..Limits::default()
            },
            host,
        })
    }

    async fn call(self: Arc<Self>, call: OpCall) -> Result<Value, PluginError> {
        match (call.op.as_str(), call.version) {
            (HEALTH, 1) => Ok(json!({"healthy": true})),
            (METER_BATCH, 1) => self.ingest(call.params()?).await,
            ("record_types.register", 1) => {
                let record_type: RecordType = call.params()?;
                let id = record_type.id.clone();
                let registered = self
                    .with_ledger(move |l| {
                        l.register(&record_type, SystemTime::now())
                            .map_err(|e| err(error_code::CONFLICT, e))
                    })
                    .await?;
                Ok(json!({"id": id, "registered": registered}))
            }
            ("record_types.list", 1) => {
                let types = self
                    .with_ledger(|l| {
                        l.record_types()
                            .map_err(|e| err(error_code::INTERNAL, e.to_string()))
                    })
                    .await?;
                Ok(json!(types.into_values().collect::<Vec<_>>()))
            }
            ("ledger.stats", 1) => {
                let stats = self
                    .with_ledger(|l| {
                        l.stats()
                            .map_err(|e| err(error_code::INTERNAL, e.to_string()))
                    })
                    .await?;
                Ok(serde_json::to_value(stats).unwrap_or_default())
            }
            ("ledger.events", 1) => {
                let tenant = call.params["tenant"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let limit = call.params["limit"].as_u64().unwrap_or(1000).min(100_000) as u32;
                let events = self
                    .with_ledger(move |l| {
                        l.events(&tenant, limit)
                            .map_err(|e| err(error_code::INTERNAL, e.to_string()))
                    })
                    .await?;
                Ok(Value::Array(events))
            }
            _ => Err(call.unsupported()),
        }
    }
}

export_plugin!(Metering, name = "metering", kind = Metering);
