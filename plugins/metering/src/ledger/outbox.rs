//! The shared ledger with a local outbox: a replica keeps acknowledging metered events
//! while PostgreSQL is out of reach.
//!
//! A batch the shared ledger cannot take is checked here (against the record types last
//! read) and kept in `<dir>/outbox.db` (SQLite, `synchronous = FULL`) before it is
//! acknowledged; [`Ledger::drain`] moves the kept batches into the shared ledger oldest
//! first, each removed from the outbox only after the shared ledger committed it. An event
//! moved twice (a crash between the two commits) is a duplicate by its id and stored once,
//! so no acknowledged event is lost and none is doubled.
//!
//! A drained batch is stamped as received when it reached the shared ledger: if its period
//! was finalized meanwhile, it shows as a correction in the next bill, and a finalized bill
//! never changes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};
use skyport_plugin_api::ops::MeterEvent;

use super::postgres::PgLedger;
use super::{CheckedBatch, IngestOutcome, Ledger, LedgerError, LedgerStats, LifecycleHead};
use crate::record_types::RecordType;
use crate::validate::Limits;

/// After the shared ledger failed, how long batches go straight to the outbox before the
/// next attempt (so a ledger that is down costs one attempt a second, not one a batch).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The shared ledger, with a local outbox for when it is out of reach.
pub struct SpooledLedger {
    shared: PgLedger,
    outbox: Connection,
    /// No attempt on the shared ledger before this instant.
    down_until: Option<Instant>,
    /// Whether the outbox may hold batches: read at open, set when one is kept, cleared
    /// once drained (so a batch written straight through costs no outbox query).
    holding: bool,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl SpooledLedger {
    /// `shared`, with its outbox in `<dir>/outbox.db` (created if missing, owner-only).
    pub fn open(shared: PgLedger, dir: &Path) -> Result<Self, LedgerError> {
        let path = dir.join("outbox.db");
        super::sqlite::owner_only(&path)
            .map_err(|e| LedgerError(format!("cannot restrict {}: {e}", path.display())))?;
        let outbox = Connection::open(&path)?;
        outbox.pragma_update(None, "journal_mode", "WAL")?;
        outbox.pragma_update(None, "synchronous", "FULL")?;
        outbox.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                batch TEXT NOT NULL,
                kept_at TEXT NOT NULL
            );",
        )?;
        let mut ledger = Self {
            shared,
            outbox,
            down_until: None,
            holding: true,
        };
        ledger.holding = ledger.kept()? > 0;
        Ok(ledger)
    }

    /// How many batches wait in the outbox.
    pub fn kept(&self) -> Result<u64, LedgerError> {
        Ok(self
            .outbox
            .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))?)
    }

    fn shared_may_answer(&self) -> bool {
        self.down_until.is_none_or(|until| Instant::now() >= until)
    }

    fn note(&mut self, result: &Result<usize, LedgerError>) {
        match result {
            Ok(_) => self.down_until = None,
            Err(e) => {
                if self.down_until.is_none() {
                    log::warn!("metering ledger out of reach, keeping events in the outbox: {e}");
                }
                self.down_until = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    /// Keeps `batch` in the outbox, durably.
    fn keep(&mut self, batch: &CheckedBatch, now: SystemTime) -> Result<(), LedgerError> {
        let text = serde_json::to_string(batch).map_err(|e| LedgerError(e.to_string()))?;
        self.outbox.execute(
            "INSERT INTO outbox (batch, kept_at) VALUES (?1, ?2)",
            params![text, rfc3339(now)],
        )?;
        self.holding = true;
        Ok(())
    }
}

impl Ledger for SpooledLedger {
    fn register(&mut self, record_type: &RecordType, now: SystemTime) -> Result<bool, String> {
        self.shared.register(record_type, now)
    }

    fn record_types(&self) -> Result<BTreeMap<String, RecordType>, LedgerError> {
        self.shared.record_types()
    }

    /// Into the shared ledger when it answers (after what the outbox holds); otherwise
    /// into the outbox. Either way the batch is durable when this returns. Duplicates of
    /// events already in the shared ledger are found when the outbox drains.
    fn ingest(
        &mut self,
        events: &[MeterEvent],
        limits: &Limits,
        now: SystemTime,
    ) -> Result<IngestOutcome, LedgerError> {
        if self.shared_may_answer() {
            if let Err(e) = self.shared.refresh_types_for(events) {
                self.note(&Err(e));
            }
        }
        let batch = CheckedBatch::check(events, self.shared.known_types(), limits, now);
        if self.shared_may_answer() && self.drain(now).is_ok() {
            let written = self.shared.write(&batch, &rfc3339(now));
            self.note(&written);
            if let Ok(stored) = written {
                return Ok(IngestOutcome {
                    accepted: stored,
                    duplicates: batch.valid.len() - stored,
                    rejected: batch.rejections(),
                });
            }
        }
        self.keep(&batch, now)?;
        Ok(IngestOutcome {
            accepted: batch.valid.len(),
            duplicates: 0,
            rejected: batch.rejections(),
        })
    }

    fn stats(&self) -> Result<LedgerStats, LedgerError> {
        self.shared.stats()
    }

    fn finalize(&self, period: &str, now: SystemTime) -> Result<String, String> {
        self.shared.finalize(period, now)
    }

    fn finalized_periods(&self) -> Result<Vec<(String, String)>, LedgerError> {
        self.shared.finalized_periods()
    }

    fn tenants(&self, from: &str, to: &str) -> Result<Vec<String>, LedgerError> {
        self.shared.tenants(from, to)
    }

    fn lifecycle_rows(
        &self,
        tenant: &str,
        before: &str,
        received_before: &str,
    ) -> Result<Vec<(Option<String>, serde_json::Value, String)>, LedgerError> {
        self.shared.lifecycle_rows(tenant, before, received_before)
    }

    fn api_request_counts(
        &self,
        tenant: &str,
        from: &str,
        to: &str,
        received_before: &str,
    ) -> Result<Vec<(Option<String>, u64)>, LedgerError> {
        self.shared
            .api_request_counts(tenant, from, to, received_before)
    }

    fn lifecycle_heads(&self) -> Result<Vec<LifecycleHead>, LedgerError> {
        self.shared.lifecycle_heads()
    }

    fn mark_seen(&self, instance: &str, at: &str) -> Result<(), LedgerError> {
        self.shared.mark_seen(instance, at)
    }

    fn last_seen(&self, instance: &str) -> Result<Option<String>, LedgerError> {
        self.shared.last_seen(instance)
    }

    fn suspects(&self) -> Result<BTreeMap<String, (String, String)>, LedgerError> {
        self.shared.suspects()
    }

    fn set_suspects(
        &mut self,
        suspects: &BTreeMap<String, (String, String)>,
    ) -> Result<(), LedgerError> {
        self.shared.set_suspects(suspects)
    }

    fn events(&self, tenant: &str, limit: u32) -> Result<Vec<serde_json::Value>, LedgerError> {
        self.shared.events(tenant, limit)
    }

    fn claim(&self, work: &str, holder: &str, ttl: Duration) -> Result<bool, LedgerError> {
        self.shared.claim(work, holder, ttl)
    }

    /// Moves the kept batches into the shared ledger, oldest first, stamped as received
    /// at `now`; stops at the first that fails (it stays kept).
    fn drain(&mut self, now: SystemTime) -> Result<usize, LedgerError> {
        if !self.holding {
            return Ok(0);
        }
        let mut moved = 0;
        loop {
            let oldest: Option<(i64, String)> = self
                .outbox
                .query_row(
                    "SELECT seq, batch FROM outbox ORDER BY seq LIMIT 1",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let Some((seq, text)) = oldest else {
                self.holding = false;
                if moved > 0 {
                    log::info!("metering outbox drained into the shared ledger ({moved} events)");
                }
                return Ok(moved);
            };
            let batch: CheckedBatch = serde_json::from_str(&text)
                .map_err(|e| LedgerError(format!("outbox batch {seq}: {e}")))?;
            let written = self.shared.write(&batch, &rfc3339(now));
            self.note(&written);
            written?;
            self.outbox
                .execute("DELETE FROM outbox WHERE seq = ?1", params![seq])?;
            moved += batch.valid.len();
        }
    }
}
