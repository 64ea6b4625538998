//! The ledger: every accepted metering event, once, durably, plus the registered record
//! types, an audit of refused events, finalized periods and the group sync's bookkeeping.
//! The caller acknowledges a batch only after [`Ledger::ingest`] returned, that is after
//! the ledger stored it durably.
//!
//! [`Ledger`] is what the rest of the plugin uses; [`SqliteLedger`] is the embedded
//! store, and `conformance` (feature `testkit`) is what every ledger must pass.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use skyport_plugin_api::ops::MeterEvent;

use crate::record_types::RecordType;
use crate::validate::{check_event, Limits};

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod outbox;
mod postgres;
mod postgres_batch;
#[cfg(test)]
mod shared_tests;
mod sqlite;

pub use outbox::SpooledLedger;
pub use postgres::{PgLedger, PgSettings};
pub use sqlite::SqliteLedger;

/// A ledger failure (the store could not read or write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerError(pub String);

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LedgerError {}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// Events stored now.
    pub accepted: usize,
    /// Events whose id was already in the ledger (a retry): not stored again.
    pub duplicates: usize,
    /// Events refused, with the reason (also in the audit table).
    pub rejected: Vec<Rejection>,
}

/// One refused event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The event's id as sent.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// A batch checked against the registered record types: the events to store (with their
/// normalised time) and the refusals to audit. What a ledger writes in one transaction,
/// and what the outbox keeps while the shared ledger is out of reach.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CheckedBatch {
    /// Valid events, with their time normalised to the ledger's form.
    pub valid: Vec<(MeterEvent, String)>,
    /// Refused events.
    pub refused: Vec<Refusal>,
}

/// One refused event, as audited.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    /// The event's id as sent.
    pub id: String,
    /// Its record type as sent.
    pub record_type: String,
    /// Why it was refused.
    pub reason: String,
    /// The event as sent, cut to 4 KiB.
    pub raw: String,
}

impl CheckedBatch {
    /// Checks `events` against `types` at `now`.
    pub fn check(
        events: &[MeterEvent],
        types: &BTreeMap<String, RecordType>,
        limits: &Limits,
        now: SystemTime,
    ) -> Self {
        let mut batch = Self::default();
        for event in events {
            match check_event(event, types, limits, now) {
                Ok(time) => batch.valid.push((event.clone(), time)),
                Err(reason) => {
                    let mut raw = serde_json::to_string(event).unwrap_or_default();
                    raw.truncate(4096);
                    batch.refused.push(Refusal {
                        id: event.id.clone(),
                        record_type: event.record_type.clone(),
                        reason,
                        raw,
                    });
                }
            }
        }
        batch
    }

    /// The refusals as an ingest outcome reports them.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.refused
            .iter()
            .map(|r| Rejection {
                id: r.id.clone(),
                reason: r.reason.clone(),
            })
            .collect()
    }
}

/// Counts for operators and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerStats {
    /// Stored events by record type.
    pub events: BTreeMap<String, u64>,
    /// Refused events (audit rows).
    pub rejections: u64,
}

/// The last lifecycle event of one instance.
#[derive(Debug, Clone)]
pub struct LifecycleHead {
    /// Skyport instance id.
    pub instance_id: String,
    /// Tenant.
    pub tenant: String,
    /// Department.
    pub department: Option<String>,
    /// The event's attributes.
    pub attributes: serde_json::Value,
    /// Its time (ledger format).
    pub time: String,
}

/// Where metered events are kept. Times are the ledger's text form (RFC 3339, UTC,
/// milliseconds), which orders as the times do.
pub trait Ledger {
    /// Registers `record_type`, durably. Registering the same definition again is a no-op
    /// (false); a different definition under an existing id, or an invalid one, is refused.
    fn register(&mut self, record_type: &RecordType, now: SystemTime) -> Result<bool, String>;

    /// The registered record types, by id.
    fn record_types(&self) -> Result<BTreeMap<String, RecordType>, LedgerError>;

    /// Stores `events` in one durable write: each valid event once by its id (a repeated
    /// id, in this batch or an earlier one, is a duplicate and stored no more), each
    /// invalid one refused and audited. Nothing of the batch is kept when the write fails.
    fn ingest(
        &mut self,
        events: &[MeterEvent],
        limits: &Limits,
        now: SystemTime,
    ) -> Result<IngestOutcome, LedgerError>;

    /// Stored events by type, and the number of refused ones.
    fn stats(&self) -> Result<LedgerStats, LedgerError>;

    /// Marks `period` (`YYYY-MM`) finalized at `now`; returns that time. A period is
    /// finalized once: a second time is refused.
    fn finalize(&self, period: &str, now: SystemTime) -> Result<String, String>;

    /// Every finalized period with its time, by period.
    fn finalized_periods(&self) -> Result<Vec<(String, String)>, LedgerError>;

    /// Every tenant with events stamped in `[from, to)`, by name.
    fn tenants(&self, from: &str, to: &str) -> Result<Vec<String>, LedgerError>;

    /// The tenant's `instance.lifecycle` events stamped before `before` and received
    /// before `received_before`, in event-time then ledger order, as (department,
    /// attributes, time) rows.
    fn lifecycle_rows(
        &self,
        tenant: &str,
        before: &str,
        received_before: &str,
    ) -> Result<Vec<(Option<String>, serde_json::Value, String)>, LedgerError>;

    /// The tenant's requests stamped in `[from, to)` and received before
    /// `received_before`, per department (by department): each `api.request` event counts
    /// one, each `api.request.count` event its `count`.
    fn api_request_counts(
        &self,
        tenant: &str,
        from: &str,
        to: &str,
        received_before: &str,
    ) -> Result<Vec<(Option<String>, u64)>, LedgerError>;

    /// The last lifecycle event of every instance.
    fn lifecycle_heads(&self) -> Result<Vec<LifecycleHead>, LedgerError>;

    /// Group sync bookkeeping: `instance` was seen running at `at`.
    fn mark_seen(&self, instance: &str, at: &str) -> Result<(), LedgerError>;

    /// When `instance` was last seen running by a group sync.
    fn last_seen(&self, instance: &str) -> Result<Option<String>, LedgerError>;

    /// Group sync bookkeeping: disagreements seen by the last sync, by instance, as
    /// (kind, first seen).
    fn suspects(&self) -> Result<BTreeMap<String, (String, String)>, LedgerError>;

    /// Group sync bookkeeping: replaces the disagreements with this sync's.
    fn set_suspects(
        &mut self,
        suspects: &BTreeMap<String, (String, String)>,
    ) -> Result<(), LedgerError>;

    /// The tenant's stored events in ledger order (at most `limit`), as JSON.
    fn events(&self, tenant: &str, limit: u32) -> Result<Vec<serde_json::Value>, LedgerError>;

    /// Claims run-once work (`work`, e.g. the group sync) for `holder` until `ttl` from
    /// now, or renews the claim `holder` already has: true when `holder` may do it. A
    /// ledger only one process writes needs no claim (the default); a shared one grants
    /// each piece of work to one holder at a time.
    fn claim(
        &self,
        work: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, LedgerError> {
        let _ = (work, holder, ttl);
        Ok(true)
    }

    /// Moves what was kept aside while the ledger's store was out of reach into it; returns
    /// how many events were moved (stamped as received at `now`). A ledger that never keeps anything aside has nothing to
    /// move (the default).
    fn drain(&mut self, now: SystemTime) -> Result<usize, LedgerError> {
        let _ = now;
        Ok(0)
    }
}
