//! The ledger on PostgreSQL, shared by every gateway replica (`metering_*` tables, which
//! can live in the gateway's own database).
//!
//! A batch is one transaction, and an event's id is claimed by the `INSERT` that stores it
//! (`ON CONFLICT (id) DO NOTHING`): a batch retried by any replica, in any order, counts
//! each event once. Text columns use the `C` collation, so times, tenants and departments
//! order exactly as in the SQLite ledger and a bill is the same bytes from either store.
//! The schema is versioned; a ledger newer than this plugin is refused.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use postgres::error::SqlState;
use postgres::{Client, NoTls};
use skyport_plugin_api::ops::MeterEvent;

use super::postgres_batch::{audit_refusals, copy_events, insert_new_events};
use super::{CheckedBatch, IngestOutcome, Ledger, LedgerError, LedgerStats, LifecycleHead};
use crate::record_types::RecordType;
use crate::validate::Limits;

/// The schema version this plugin writes.
const SCHEMA_VERSION: i32 = 2;

/// Serialises migrations between replicas starting at once (any fixed key).
const MIGRATION_LOCK: i64 = 0x736b_7970_6d65_7465;

const SCHEMA_V1: &str = r#"
CREATE TABLE metering_record_types (
    id TEXT COLLATE "C" PRIMARY KEY,
    definition TEXT NOT NULL,
    registered_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE metering_events (
    id TEXT COLLATE "C" PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    type TEXT COLLATE "C" NOT NULL,
    time TEXT COLLATE "C" NOT NULL,
    tenant TEXT COLLATE "C" NOT NULL,
    department TEXT COLLATE "C",
    attributes TEXT NOT NULL,
    received_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX metering_events_tenant_time ON metering_events (tenant, time);
CREATE TABLE metering_sync_seen (
    instance_id TEXT COLLATE "C" PRIMARY KEY,
    last_seen TEXT COLLATE "C" NOT NULL
);
CREATE TABLE metering_sync_suspects (
    instance_id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL,
    first_seen TEXT COLLATE "C" NOT NULL
);
CREATE TABLE metering_finalized_periods (
    period TEXT COLLATE "C" PRIMARY KEY,
    finalized_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE metering_rejections (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    event TEXT NOT NULL,
    received_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE metering_leases (
    work TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
"#;

/// Request counts apart, so that a bill reads them without the other events.
const SCHEMA_V2: &str = "
CREATE INDEX metering_events_request_counts ON metering_events (tenant, time)
    WHERE type = 'api.request.count';
";

/// Each schema version's DDL, in order.
const MIGRATIONS: [(i32, &str); 2] = [(1, SCHEMA_V1), (2, SCHEMA_V2)];

/// How to reach the shared ledger.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user@host:port/database` (no password in it).
    pub url: String,
    /// The password, read from a file or the environment by the caller.
    pub password: Option<String>,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long one statement may run.
    pub statement_timeout: Duration,
}

/// The ledger in PostgreSQL. One connection, made on first use and again after it broke.
pub struct PgLedger {
    config: postgres::Config,
    client: RefCell<Option<Client>>,
    /// The registered record types, as stored (read again when a batch names one that is
    /// not known here: another replica may have registered it).
    types: BTreeMap<String, RecordType>,
}

impl From<postgres::Error> for LedgerError {
    fn from(e: postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self(format!("PostgreSQL: {}", db.message())),
            None => Self(format!("PostgreSQL: {e}")),
        }
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl PgLedger {
    /// Connects, migrates the schema (refusing a newer one) and reads the record types.
    pub fn open(settings: &PgSettings) -> Result<Self, LedgerError> {
        let mut config = postgres::Config::from_str(&settings.url)
            .map_err(|e| LedgerError(format!("ledger url: {e}")))?;
        if let Some(password) = &settings.password {
            config.password(password);
        }
        config.connect_timeout(settings.connect_timeout);
        config.options(&format!(
            "-c statement_timeout={}",
            settings.statement_timeout.as_millis().max(1)
        ));
        config.application_name("skyport-metering");
        let mut ledger = Self {
            config,
            client: RefCell::new(None),
            types: BTreeMap::new(),
        };
        ledger.with_client(migrate)?;
        ledger.types = ledger.record_types()?;
        Ok(ledger)
    }

    /// Runs `f` on the connection, connecting first if there is none. A connection found
    /// broken by `f` (the server restarted since it was made) is replaced and `f` runs
    /// once more on the new one: every ledger call is safe to repeat (reads, and writes
    /// whose events are deduplicated by id).
    fn with_client<T>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let mut slot = self.client.borrow_mut();
        let mut fresh = false;
        loop {
            if slot.as_ref().is_none_or(Client::is_closed) {
                *slot = Some(self.config.connect(NoTls)?);
                fresh = true;
            }
            let client = slot.as_mut().expect("connected above");
            let result = f(client);
            if result.is_err() && client.is_closed() {
                *slot = None;
                if !fresh {
                    continue;
                }
            }
            return result;
        }
    }

    /// The record types known here.
    pub fn known_types(&self) -> &BTreeMap<String, RecordType> {
        &self.types
    }

    /// Reads the record types again when `events` name one not known here.
    pub fn refresh_types_for(&mut self, events: &[MeterEvent]) -> Result<(), LedgerError> {
        if events
            .iter()
            .any(|e| !self.types.contains_key(&e.record_type))
        {
            self.types = self.record_types()?;
        }
        Ok(())
    }

    /// Writes a checked batch in one transaction, received at `received_at`; returns how
    /// many of its valid events were new.
    ///
    /// The events are streamed in with `COPY` (binary), the fastest way into the table;
    /// a batch without refusals to audit is that one statement. When an id is already
    /// stored (a retry, or an id twice in the batch) the copy fails as a whole and the
    /// batch is written again with `INSERT ... ON CONFLICT (id) DO NOTHING`, which skips
    /// the known ids.
    pub fn write(&self, batch: &CheckedBatch, received_at: &str) -> Result<usize, LedgerError> {
        self.with_client(|client| {
            let copied = if batch.refused.is_empty() {
                // One statement is its own transaction: the copy commits as it completes,
                // one round trip in all.
                copy_events(client, batch, received_at)
            } else {
                let mut tx = client.transaction()?;
                copy_events(&mut tx, batch, received_at).and_then(|stored| {
                    audit_refusals(&mut tx, batch, received_at)?;
                    tx.commit()?;
                    Ok(stored)
                })
            };
            match copied {
                Ok(stored) => return Ok(stored),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                Err(e) => return Err(e.into()),
            }
            let mut tx = client.transaction()?;
            let stored = insert_new_events(&mut tx, batch, received_at)?;
            audit_refusals(&mut tx, batch, received_at)?;
            tx.commit()?;
            Ok(stored)
        })
    }

    /// Every row of `sql` with `params`.
    fn rows(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, LedgerError> {
        self.with_client(|client| Ok(client.query(sql, params)?))
    }
}

/// Creates or upgrades the schema, under a lock so that replicas starting together
/// migrate once; refuses a schema newer than this plugin.
fn migrate(client: &mut Client) -> Result<(), LedgerError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS metering_schema (version INTEGER NOT NULL)")?;
    let version: Option<i32> = tx
        .query_opt("SELECT max(version) FROM metering_schema", &[])?
        .and_then(|row| row.get(0));
    match version {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(LedgerError(format!(
                "the metering ledger's schema is version {v}, newer than this plugin's \
                 {SCHEMA_VERSION}: upgrade the plugin before it writes to this database"
            )))
        }
        found => {
            for (version, ddl) in MIGRATIONS {
                if found.is_none_or(|v| v < version) {
                    tx.batch_execute(ddl)?;
                    tx.execute(
                        "INSERT INTO metering_schema (version) VALUES ($1)",
                        &[&version],
                    )?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

impl Ledger for PgLedger {
    fn register(&mut self, record_type: &RecordType, now: SystemTime) -> Result<bool, String> {
        if let Some(problem) = record_type.problem() {
            return Err(problem);
        }
        let definition = serde_json::to_string(record_type).map_err(|e| e.to_string())?;
        let at = rfc3339(now);
        let known = self
            .with_client(|client| {
                let inserted = client.execute(
                    "INSERT INTO metering_record_types (id, definition, registered_at)
                     VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                    &[&record_type.id, &definition, &at],
                )?;
                if inserted == 1 {
                    return Ok(None);
                }
                let row = client.query_one(
                    "SELECT definition FROM metering_record_types WHERE id = $1",
                    &[&record_type.id],
                )?;
                Ok(Some(row.get::<_, String>(0)))
            })
            .map_err(|e| e.to_string())?;
        match known {
            None => {
                self.types
                    .insert(record_type.id.clone(), record_type.clone());
                Ok(true)
            }
            Some(known) if known == definition => {
                self.types
                    .insert(record_type.id.clone(), record_type.clone());
                Ok(false)
            }
            Some(known) => Err(format!(
                "record type {} is already registered differently ({known})",
                record_type.id
            )),
        }
    }

    fn record_types(&self) -> Result<BTreeMap<String, RecordType>, LedgerError> {
        let rows = self.rows(
            "SELECT definition FROM metering_record_types ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .filter_map(|row| serde_json::from_str::<RecordType>(row.get(0)).ok())
            .map(|t| (t.id.clone(), t))
            .collect())
    }

    fn ingest(
        &mut self,
        events: &[MeterEvent],
        limits: &Limits,
        now: SystemTime,
    ) -> Result<IngestOutcome, LedgerError> {
        self.refresh_types_for(events)?;
        let batch = CheckedBatch::check(events, &self.types, limits, now);
        let stored = self.write(&batch, &rfc3339(now))?;
        Ok(IngestOutcome {
            accepted: stored,
            duplicates: batch.valid.len() - stored,
            rejected: batch.rejections(),
        })
    }

    fn stats(&self) -> Result<LedgerStats, LedgerError> {
        let events = self
            .rows(
                "SELECT type, COUNT(*) FROM metering_events GROUP BY type ORDER BY type",
                &[],
            )?
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
            .collect();
        let rejections =
            self.rows("SELECT COUNT(*) FROM metering_rejections", &[])?[0].get::<_, i64>(0) as u64;
        Ok(LedgerStats { events, rejections })
    }

    fn finalize(&self, period: &str, now: SystemTime) -> Result<String, String> {
        let at = rfc3339(now);
        self.with_client(|client| {
            let inserted = client.execute(
                "INSERT INTO metering_finalized_periods (period, finalized_at) VALUES ($1, $2)
                 ON CONFLICT (period) DO NOTHING",
                &[&period, &at],
            )?;
            if inserted == 1 {
                return Ok(Ok(at.clone()));
            }
            let when: String = client
                .query_one(
                    "SELECT finalized_at FROM metering_finalized_periods WHERE period = $1",
                    &[&period],
                )?
                .get(0);
            Ok(Err(format!("period {period} was finalized at {when}")))
        })
        .map_err(|e| e.to_string())?
    }

    fn finalized_periods(&self) -> Result<Vec<(String, String)>, LedgerError> {
        Ok(self
            .rows(
                "SELECT period, finalized_at FROM metering_finalized_periods ORDER BY period",
                &[],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    fn tenants(&self, from: &str, to: &str) -> Result<Vec<String>, LedgerError> {
        Ok(self
            .rows(
                "SELECT DISTINCT tenant FROM metering_events
                 WHERE time >= $1 AND time < $2 ORDER BY tenant",
                &[&from, &to],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn lifecycle_rows(
        &self,
        tenant: &str,
        before: &str,
        received_before: &str,
    ) -> Result<Vec<(Option<String>, serde_json::Value, String)>, LedgerError> {
        Ok(self
            .rows(
                "SELECT department, attributes, time FROM metering_events
                 WHERE tenant = $1 AND type = 'instance.lifecycle' AND time < $2
                   AND received_at < $3
                 ORDER BY time, seq",
                &[&tenant, &before, &received_before],
            )?
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    serde_json::from_str(row.get(1)).unwrap_or_default(),
                    row.get(2),
                )
            })
            .collect())
    }

    fn api_request_counts(
        &self,
        tenant: &str,
        from: &str,
        to: &str,
        received_before: &str,
    ) -> Result<Vec<(Option<String>, u64)>, LedgerError> {
        Ok(self
            .rows(
                "SELECT department, SUM(n)::bigint FROM (
                     SELECT department, COUNT(*) AS n FROM metering_events
                     WHERE tenant = $1 AND type = 'api.request' AND time >= $2 AND time < $3
                       AND received_at < $4
                     GROUP BY department
                     UNION ALL
                     SELECT department, SUM((attributes::jsonb ->> 'count')::bigint) AS n
                     FROM metering_events
                     WHERE tenant = $1 AND type = 'api.request.count' AND time >= $2
                       AND time < $3 AND received_at < $4
                     GROUP BY department) AS requests
                 GROUP BY department ORDER BY department NULLS FIRST",
                &[&tenant, &from, &to, &received_before],
            )?
            .iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1) as u64))
            .collect())
    }

    fn lifecycle_heads(&self) -> Result<Vec<LifecycleHead>, LedgerError> {
        let rows = self.rows(
            "SELECT DISTINCT ON (attributes::jsonb ->> 'instance_id')
                    tenant, department, attributes, time
             FROM metering_events
             WHERE type = 'instance.lifecycle'
               AND attributes::jsonb ->> 'instance_id' IS NOT NULL
             ORDER BY attributes::jsonb ->> 'instance_id', time DESC, seq DESC",
            &[],
        )?;
        let mut heads: BTreeMap<String, LifecycleHead> = BTreeMap::new();
        for row in &rows {
            let attributes: serde_json::Value =
                serde_json::from_str(row.get(2)).unwrap_or_default();
            if let Some(id) = attributes["instance_id"].as_str().map(str::to_owned) {
                heads.insert(
                    id.clone(),
                    LifecycleHead {
                        instance_id: id,
                        tenant: row.get(0),
                        department: row.get(1),
                        attributes,
                        time: row.get(3),
                    },
                );
            }
        }
        Ok(heads.into_values().collect())
    }

    fn mark_seen(&self, instance: &str, at: &str) -> Result<(), LedgerError> {
        self.with_client(|client| {
            client.execute(
                "INSERT INTO metering_sync_seen (instance_id, last_seen) VALUES ($1, $2)
                 ON CONFLICT (instance_id) DO UPDATE SET last_seen = excluded.last_seen",
                &[&instance, &at],
            )?;
            Ok(())
        })
    }

    fn last_seen(&self, instance: &str) -> Result<Option<String>, LedgerError> {
        Ok(self
            .rows(
                "SELECT last_seen FROM metering_sync_seen WHERE instance_id = $1",
                &[&instance],
            )?
            .first()
            .map(|row| row.get(0)))
    }

    fn suspects(&self) -> Result<BTreeMap<String, (String, String)>, LedgerError> {
        Ok(self
            .rows(
                "SELECT instance_id, kind, first_seen FROM metering_sync_suspects",
                &[],
            )?
            .iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2))))
            .collect())
    }

    fn set_suspects(
        &mut self,
        suspects: &BTreeMap<String, (String, String)>,
    ) -> Result<(), LedgerError> {
        self.with_client(|client| {
            let mut tx = client.transaction()?;
            tx.execute("DELETE FROM metering_sync_suspects", &[])?;
            for (id, (kind, first_seen)) in suspects {
                tx.execute(
                    "INSERT INTO metering_sync_suspects (instance_id, kind, first_seen)
                     VALUES ($1, $2, $3)",
                    &[id, kind, first_seen],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn events(&self, tenant: &str, limit: u32) -> Result<Vec<serde_json::Value>, LedgerError> {
        Ok(self
            .rows(
                "SELECT id, type, time, tenant, department, attributes FROM metering_events
                 WHERE tenant = $1 ORDER BY seq LIMIT $2",
                &[&tenant, &i64::from(limit)],
            )?
            .iter()
            .map(|row| {
                serde_json::json!({
                    "id": row.get::<_, String>(0),
                    "type": row.get::<_, String>(1),
                    "time": row.get::<_, String>(2),
                    "tenant": row.get::<_, String>(3),
                    "department": row.get::<_, Option<String>>(4),
                    "attributes": serde_json::from_str::<serde_json::Value>(row.get(5))
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    /// A lease row per piece of work, timed on the database's clock (replicas' clocks
    /// may differ): taken when free or expired, renewed by its holder.
    fn claim(&self, work: &str, holder: &str, ttl: Duration) -> Result<bool, LedgerError> {
        let ttl_ms = ttl.as_millis() as f64;
        self.with_client(|client| {
            let held = client.execute(
                "INSERT INTO metering_leases (work, holder, expires_at)
                 VALUES ($1, $2, now() + $3::float8 * interval '1 millisecond')
                 ON CONFLICT (work) DO UPDATE
                    SET holder = excluded.holder, expires_at = excluded.expires_at
                    WHERE metering_leases.holder = excluded.holder
                       OR metering_leases.expires_at < now()",
                &[&work, &holder, &ttl_ms],
            )?;
            Ok(held == 1)
        })
    }
}
