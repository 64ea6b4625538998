//! `metering`: Skyport's metering plugin. It receives the gateway's tap (`meter.batch@1`)
//! and keeps every event once, durably, in its ledger (`<state>/ledger.db`, or PostgreSQL
//! shared by every replica with a local outbox for when it is out of reach), refusing and
//! auditing what it cannot accept.
//!
//! Operations (schema version 1):
//! - `health`
//! - `meter.batch` [`MeterBatch`] -> `{acknowledged, accepted, duplicates, rejected}`,
//!   answered only after the batch is committed
//! - `record_types.register` [`RecordType`] -> `{id, registered}`; `record_types.list`
//! - `ledger.stats` -> events by type and refusals; `ledger.events` `{tenant, limit?}`
//!
//! The modules are public so that benchmarks and tools can drive the ledger and the bill
//! directly; the plugin itself is the `cdylib`.
#![forbid(unsafe_code)]

pub mod bill;
pub mod billing;
mod config;
pub mod export;
pub mod group_sync;
pub mod grouping;
pub mod ledger;
pub mod period;
pub mod rating;
pub mod record_types;
pub mod usage;
pub mod validate;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::ops::{MeterBatch, HEALTH, METER_BATCH};
use skyport_plugin_api::sdk::clock::{Clock, SharedClock, SystemClock};
use skyport_plugin_api::{export_plugin, Description, Host, OpCall, Plugin, PluginError};
use time::OffsetDateTime;

use config::MeteringConfig;
use period::Period;
use rating::RateCard;

pub use ledger::{Ledger, SqliteLedger};
pub use record_types::RecordType;
pub use validate::Limits;

fn err(code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

struct Metering {
    ledger: Arc<Mutex<Box<dyn Ledger + Send>>>,
    limits: Limits,
    card: Arc<RateCard>,
    interval_secs: i64,
    host: Host,
    /// Where every time the plugin uses comes from: event arrival, record-type
    /// registration, rate lookups, the end of open usage slices.
    clock: SharedClock,
}

impl Metering {
    /// Runs `f` on the ledger on a blocking thread: SQLite commits wait for the disk, and an
    /// op's first poll runs on the gateway's own worker.
    async fn with_ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Ledger) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, PluginError> {
        let ledger = Arc::clone(&self.ledger);
        tokio::task::spawn_blocking(move || {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut **ledger)
        })
        .await
        .map_err(|e| err(error_code::INTERNAL, format!("ledger task: {e}")))?
    }

    /// Like [`Metering::with_ledger`], with the clock read once the ledger is locked: a
    /// write stamped with the time must not carry a time earlier than a write committed
    /// before it (an event received before a period's finalization is counted in the
    /// frozen bill; one after it is a correction).
    async fn with_ledger_at<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Ledger, SystemTime) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, PluginError> {
        let ledger = Arc::clone(&self.ledger);
        let clock = Arc::clone(&self.clock);
        tokio::task::spawn_blocking(move || {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut **ledger, clock.wall())
        })
        .await
        .map_err(|e| err(error_code::INTERNAL, format!("ledger task: {e}")))?
    }

    async fn ingest(&self, batch: MeterBatch) -> Result<Value, PluginError> {
        let limits = self.limits.clone();
        let size = batch.events.len();
        let outcome = self
            .with_ledger_at(move |ledger, now| {
                ledger
                    .ingest(&batch.events, &limits, now)
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

impl Metering {
    /// `rates.get@1`: the prices in force now for `pairs` of `{sku, provider}` (the rate
    /// card's own precedence: a provider's row beats `*`), so the gateway can compare
    /// providers without reading this plugin's configuration.
    fn rates(&self, params: &Value) -> Result<Value, PluginError> {
        let pairs = params["pairs"].as_array().ok_or_else(|| {
            err(
                error_code::INVALID_INPUT,
                "rates.get needs pairs: [{sku, provider}]",
            )
        })?;
        let now = OffsetDateTime::from(self.clock.wall());
        let rates: Vec<Value> = pairs
            .iter()
            .map(|pair| {
                let sku = pair["sku"].as_str().unwrap_or_default();
                let provider = pair["provider"].as_str().unwrap_or_default();
                match self.card.lookup(sku, provider, now) {
                    Ok(rate) => json!({
                        "sku": sku,
                        "provider": provider,
                        "unit": rate.unit.name(),
                        "price": rate.price.to_string(),
                    }),
                    Err(e) => json!({"sku": sku, "provider": provider, "error": e}),
                }
            })
            .collect();
        Ok(json!({"currency": self.card.currency, "rates": rates}))
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
                "bill.get@1",
                "bill.render@1",
                "usage.list@1",
                "period.finalize@1",
                "periods.list@1",
                "bill.all@1",
                "rates.get@1",
            ]
            .map(String::from)
            .to_vec(),
            config_schema: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "record_types": {"type": "array", "items": {"type": "object"}},
                    "max_future_skew_secs": {"type": "integer", "minimum": 0},
                    "state_dir": {"type": "string"},
                    "ledger": {
                        "type": "object",
                        "required": ["backend"],
                        "properties": {"backend": {"enum": ["sqlite", "postgres"]}}
                    },
                    "rate_card": {"type": "object"},
                    "interval_secs": {"type": "integer", "minimum": 1, "maximum": 2678400},
                    "group_sync_secs": {"type": "integer", "minimum": 0}
                }
            }),
        }
    }

    fn init(config: Value, host: Host) -> Result<Self, PluginError> {
        let config: MeteringConfig = serde_json::from_value(config)
            .map_err(|e| err(error_code::INVALID_CONFIG, e.to_string()))?;
        let dir = config.state_dir(&host)?;
        let clock = SystemClock::shared();
        let ledger = config.open_ledger(&dir, &host, clock.wall())?;
        let card = match &config.rate_card {
            Some(value) => RateCard::from_json(value),
            None => Ok(RateCard::embedded()),
        }
        .map_err(|e| err(error_code::INVALID_CONFIG, e))?;
        if config.shared() {
            log::info!(
                "metering: shared ledger on PostgreSQL, outbox in {}",
                dir.display()
            );
        } else {
            log::info!("metering: ledger in {}", dir.display());
        }
        let ledger: Arc<Mutex<Box<dyn Ledger + Send>>> = Arc::new(Mutex::new(ledger));
        if config.group_sync_secs > 0 {
            tokio::spawn(group_sync_loop(
                Arc::clone(&ledger),
                host.clone(),
                Duration::from_secs(config.group_sync_secs),
                clock.clone(),
            ));
        }
        if config.shared() {
            tokio::spawn(drain_loop(Arc::clone(&ledger), clock.clone()));
        }
        Ok(Self {
            ledger,
            limits: Limits {
                max_future_skew: Duration::from_secs(config.max_future_skew_secs),
                ..Limits::default()
            },
            card: Arc::new(card),
            interval_secs: config.interval_secs.clamp(1, 31 * 86400) as i64,
            host,
            clock,
        })
    }

    /// `rates.get` is a lookup in the rate card, in memory, that never blocks: it answers
    /// without a hop to this plugin's runtime (placement and budgets ask it per order).
    fn answers_at_once(&self, op: &str, version: u32) -> bool {
        (op, version) == ("rates.get", 1)
    }

    async fn call(self: Arc<Self>, call: OpCall) -> Result<Value, PluginError> {
        match (call.op.as_str(), call.version) {
            (HEALTH, 1) => Ok(json!({"healthy": true})),
            (METER_BATCH, 1) => self.ingest(call.params()?).await,
            ("record_types.register", 1) => {
                let record_type: RecordType = call.params()?;
                let id = record_type.id.clone();
                let registered = self
                    .with_ledger_at(move |l, now| {
                        l.register(&record_type, now)
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
            ("bill.get", 1) => {
                let group_by = match call.params["group_by"].as_str() {
                    Some(text) => Some(
                        grouping::GroupBy::parse(text)
                            .map_err(|e| err(error_code::INVALID_INPUT, e))?,
                    ),
                    None => None,
                };
                let bill = self.bill(&call.params).await?;
                let grouped = group_by.map(|by| grouping::group(&bill, &by));
                let mut value = serde_json::to_value(bill)
                    .map_err(|e| err(error_code::INTERNAL, e.to_string()))?;
                if let Some(grouped) = grouped {
                    value["grouped"] = json!(grouped);
                }
                Ok(value)
            }
            ("bill.render", 1) => {
                let format = call.params["format"].as_str().unwrap_or("json");
                let handler =
                    export::handler(format).map_err(|e| err(error_code::INVALID_INPUT, e))?;
                let bill = self.bill(&call.params).await?;
                let body = handler
                    .render(&bill)
                    .map_err(|e| err(error_code::INTERNAL, e))?;
                Ok(json!({"content_type": handler.content_type(), "body": body}))
            }
            ("usage.list", 1) => self.usage(&call.params).await,
            ("rates.get", 1) => self.rates(&call.params),
            ("period.finalize", 1) => {
                let period = Period::parse(text_param(&call.params, "period", "period.finalize")?)
                    .map_err(|e| err(error_code::INVALID_INPUT, e))?;
                let at = self
                    .with_ledger_at(move |ledger, now| {
                        billing::finalize(ledger, period, to_millis(now))
                            .map_err(|e| err(error_code::CONFLICT, e))
                    })
                    .await?;
                log::info!("period {period} finalized at {at}");
                Ok(json!({"period": period.to_string(), "finalized_at": at}))
            }
            ("periods.list", 1) => {
                let periods = self
                    .with_ledger(|ledger| {
                        ledger
                            .finalized_periods()
                            .map_err(|e| err(error_code::INTERNAL, e.to_string()))
                    })
                    .await?;
                Ok(json!(periods
                    .into_iter()
                    .map(|(period, at)| json!({"period": period, "finalized_at": at}))
                    .collect::<Vec<_>>()))
            }
            ("bill.all", 1) => {
                let period = Period::parse(text_param(&call.params, "period", "bill.all")?)
                    .map_err(|e| err(error_code::INVALID_INPUT, e))?;
                let card = Arc::clone(&self.card);
                let now = now_millis(&*self.clock);
                let bills = self
                    .with_ledger(move |ledger| {
                        billing::all_bills(ledger, &card, period, now)
                            .map_err(|e| err(error_code::INVALID_INPUT, e))
                    })
                    .await?;
                Ok(json!({"period": period.to_string(), "bills": bills}))
            }
            _ => Err(call.unsupported()),
        }
    }
}

/// Moves what the outbox keeps into the shared ledger, every second.
async fn drain_loop(ledger: Arc<Mutex<Box<dyn Ledger + Send>>>, clock: SharedClock) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ledger = Arc::clone(&ledger);
        let clock = Arc::clone(&clock);
        let _ = tokio::task::spawn_blocking(move || {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            ledger.drain(clock.wall())
        })
        .await;
    }
}

/// Who this process is when it claims run-once work on a shared ledger.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}-{}-{started}", host.trim(), std::process::id())
}

/// Whether this process may run `work` now (a shared ledger grants it to one replica at
/// a time, for `ttl`, renewed while the holder keeps running it).
async fn claim(
    ledger: &Arc<Mutex<Box<dyn Ledger + Send>>>,
    work: &'static str,
    holder: &str,
    ttl: Duration,
) -> bool {
    let ledger = Arc::clone(ledger);
    let holder = holder.to_string();
    let claimed = tokio::task::spawn_blocking(move || {
        let ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.claim(work, &holder, ttl)
    })
    .await;
    match claimed {
        Ok(Ok(claimed)) => claimed,
        Ok(Err(e)) => {
            log::debug!("{work} skipped: cannot claim it: {e}");
            false
        }
        Err(_) => false,
    }
}

/// Runs a group sync every `every`: asks the host for every provider's instances and
/// reconciles the ledger with them. On a shared ledger one replica at a time does it.
async fn group_sync_loop(
    ledger: Arc<Mutex<Box<dyn Ledger + Send>>>,
    host: Host,
    every: Duration,
    clock: SharedClock,
) {
    let holder = holder_id();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !claim(&ledger, "metering.group_sync", &holder, every * 2).await {
            continue;
        }
        let listing = match host.call("inventory.instances", 1, json!({})).await {
            Ok(listing) => listing,
            Err(e) => {
                log::debug!("group sync skipped: {e}");
                continue;
            }
        };
        let ledger = Arc::clone(&ledger);
        let clock = Arc::clone(&clock);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            group_sync::reconcile(&mut **ledger, &listing, clock.wall())
        })
        .await;
        match outcome {
            Ok(Ok(outcome)) => {
                let labels = json!({});
                host.counter("group_sync_runs", 1.0, &labels);
                host.counter(
                    "group_sync_discovered",
                    outcome.discovered.len() as f64,
                    &labels,
                );
                host.counter(
                    "group_sync_vanished",
                    outcome.vanished.len() as f64,
                    &labels,
                );
                for id in &outcome.discovered {
                    log::warn!("group sync: {id} runs without a start event; metered from first detection (DiscoveredWithoutStart)");
                }
                for id in &outcome.vanished {
                    log::warn!("group sync: {id} is gone without a stop event; terminated when last seen (VanishedWithoutStop)");
                }
            }
            Ok(Err(e)) => log::error!("group sync failed: {e}"),
            Err(e) => log::error!("group sync task failed: {e}"),
        }
    }
}

/// `clock`'s now, to the millisecond: the ledger's precision, so that an open slice ends
/// on the same grid as the events around it.
fn now_millis(clock: &dyn Clock) -> OffsetDateTime {
    to_millis(clock.wall())
}

/// `at`, to the millisecond (see [`now_millis`]).
fn to_millis(at: SystemTime) -> OffsetDateTime {
    let at = OffsetDateTime::from(at);
    at.replace_millisecond(at.millisecond()).unwrap_or(at)
}

/// A required, non-empty string parameter.
fn text_param<'a>(params: &'a Value, name: &str, op: &str) -> Result<&'a str, PluginError> {
    params[name]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| err(error_code::INVALID_INPUT, format!("{op} needs \"{name}\"")))
}

fn time_param(params: &Value, name: &str, op: &str) -> Result<OffsetDateTime, PluginError> {
    let text = text_param(params, name, op)?;
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
        err(
            error_code::INVALID_INPUT,
            format!("{name} '{text}' is not an RFC 3339 time: {e}"),
        )
    })
}

impl Metering {
    /// `usage.list` `{tenant, from, to, department?}`: usage records in `[from, to)`.
    async fn usage(&self, params: &Value) -> Result<Value, PluginError> {
        let now = now_millis(&*self.clock);
        let tenant = text_param(params, "tenant", "usage.list")?.to_string();
        let (from, to) = (
            time_param(params, "from", "usage.list")?,
            time_param(params, "to", "usage.list")?,
        );
        if to <= from {
            return Err(err(error_code::INVALID_INPUT, "to must be after from"));
        }
        let department = params["department"].as_str().map(str::to_owned);
        let interval = self.interval_secs;
        self.with_ledger(move |ledger| {
            billing::usage(
                ledger,
                &tenant,
                department.as_deref(),
                from,
                to,
                interval,
                now,
            )
            .map_err(|e| err(error_code::INTERNAL, e))
        })
        .await
    }

    /// `bill.get` `{tenant, period?, department?}`: the tenant's bill for `period`
    /// (default: the current one), or one department's view of it.
    async fn bill(&self, params: &Value) -> Result<bill::Bill, PluginError> {
        let now = now_millis(&*self.clock);
        let tenant = text_param(params, "tenant", "bill.get")?.to_string();
        let period = match params["period"].as_str() {
            Some(text) => Period::parse(text).map_err(|e| err(error_code::INVALID_INPUT, e))?,
            None => Period::of(now),
        };
        let department = params["department"].as_str().map(str::to_owned);
        let card = Arc::clone(&self.card);
        self.with_ledger(move |ledger| {
            billing::tenant_bill(ledger, &card, &tenant, department.as_deref(), period, now)
                .map_err(|e| err(error_code::INVALID_INPUT, e))
        })
        .await
    }
}

export_plugin!(Metering, name = "metering", kind = Metering);
