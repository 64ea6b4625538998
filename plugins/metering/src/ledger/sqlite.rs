//! The ledger in SQLite (`<dir>/ledger.db`, WAL, `synchronous = FULL`).
//!
//! A batch is one transaction. An event's id is claimed by the same `INSERT` that stores
//! it (`ON CONFLICT(id) DO NOTHING`), so a batch retried after a failed write counts each
//! event exactly once, never zero times.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension};
use skyport_plugin_api::ops::MeterEvent;

use super::{IngestOutcome, Ledger, LedgerError, LedgerStats, LifecycleHead, Rejection};
use crate::record_types::RecordType;
use crate::validate::{check_event, Limits};

/// The ledger database.
pub struct SqliteLedger {
    conn: Connection,
    /// The registered record types, as stored (read once, kept in step by `register`).
    types: BTreeMap<String, RecordType>,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl SqliteLedger {
    /// Opens (and migrates) `<dir>/ledger.db`.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        let path = dir.join("ledger.db");
        owner_only(&path)
            .map_err(|e| LedgerError(format!("cannot restrict {}: {e}", path.display())))?;
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // 64 MiB of page cache (the default is 2 MiB): the id index stays in memory.
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS record_types (
                id TEXT PRIMARY KEY,
                definition TEXT NOT NULL,
                registered_at TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                time TEXT NOT NULL,
                tenant TEXT NOT NULL,
                department TEXT,
                attributes TEXT NOT NULL,
                received_at TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS events_tenant_time ON events (tenant, time);
            -- Request counts apart, so that a bill reads them without the other events.
            CREATE INDEX IF NOT EXISTS events_request_counts ON events (tenant, time)
                WHERE type = 'api.request.count';
            CREATE TABLE IF NOT EXISTS sync_seen (
                instance_id TEXT PRIMARY KEY,
                last_seen TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS sync_suspects (
                instance_id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                first_seen TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS finalized_periods (
                period TEXT PRIMARY KEY,
                finalized_at TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS rejections (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL,
                type TEXT NOT NULL,
                reason TEXT NOT NULL,
                event TEXT NOT NULL,
                received_at TEXT NOT NULL
            );",
        )?;
        let mut ledger = Self {
            conn,
            types: BTreeMap::new(),
        };
        ledger.types = ledger.record_types()?;
        Ok(ledger)
    }
}

impl Ledger for SqliteLedger {
    /// Registers `record_type`, durably. Registering the same definition again is a no-op;
    /// a different definition under an existing id is refused (it would change the meaning
    /// of events already stored).
    fn register(&mut self, record_type: &RecordType, now: SystemTime) -> Result<bool, String> {
        if let Some(problem) = record_type.problem() {
            return Err(problem);
        }
        let definition = serde_json::to_string(record_type).map_err(|e| e.to_string())?;
        let existing: Option<String> = self
            .conn
            .query_row(
                "SELECT definition FROM record_types WHERE id = ?1",
                params![record_type.id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        match existing {
            Some(known) if known == definition => Ok(false),
            Some(known) => Err(format!(
                "record type {} is already registered differently ({known})",
                record_type.id
            )),
            None => {
                self.conn
                    .execute(
                        "INSERT INTO record_types (id, definition, registered_at) VALUES (?1, ?2, ?3)",
                        params![record_type.id, definition, rfc3339(now)],
                    )
                    .map_err(|e| e.to_string())?;
                self.types
                    .insert(record_type.id.clone(), record_type.clone());
                Ok(true)
            }
        }
    }

    /// Every registered record type.
    fn record_types(&self) -> Result<BTreeMap<String, RecordType>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT definition FROM record_types ORDER BY id")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let mut out = BTreeMap::new();
        for definition in rows {
            if let Ok(t) = serde_json::from_str::<RecordType>(&definition?) {
                out.insert(t.id.clone(), t);
            }
        }
        Ok(out)
    }

    /// Stores a batch in one transaction: valid new events are stored, known ids counted as
    /// duplicates, invalid events audited. Nothing is stored if the commit fails.
    fn ingest(
        &mut self,
        events: &[MeterEvent],
        limits: &Limits,
        now: SystemTime,
    ) -> Result<IngestOutcome, LedgerError> {
        let received_at = rfc3339(now);
        let tx = self.conn.transaction()?;
        let mut outcome = IngestOutcome::default();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (id, type, time, tenant, department, attributes, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING",
            )?;
            let mut audit = tx.prepare_cached(
                "INSERT INTO rejections (event_id, type, reason, event, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for event in events {
                match check_event(event, &self.types, limits, now) {
                    Ok(time) => {
                        let stored = insert.execute(params![
                            event.id,
                            event.record_type,
                            time,
                            event.tenant,
                            event.department,
                            event.attributes.to_string(),
                            received_at
                        ])?;
                        if stored == 1 {
                            outcome.accepted += 1;
                        } else {
                            outcome.duplicates += 1;
                        }
                    }
                    Err(reason) => {
                        let mut raw = serde_json::to_string(event).unwrap_or_default();
                        raw.truncate(4096);
                        audit.execute(params![
                            event.id,
                            event.record_type,
                            reason,
                            raw,
                            received_at
                        ])?;
                        outcome.rejected.push(Rejection {
                            id: event.id.clone(),
                            reason,
                        });
                    }
                }
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// Stored events by type, and the number of refused ones.
    fn stats(&self) -> Result<LedgerStats, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type")?;
        let events = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<BTreeMap<String, u64>>>()?;
        let rejections = self
            .conn
            .query_row("SELECT COUNT(*) FROM rejections", [], |row| row.get(0))?;
        Ok(LedgerStats { events, rejections })
    }

    /// Marks `period` (`YYYY-MM`) final as of `now`: its bill is then computed only from
    /// events received before that instant. Refused if it already is.
    fn finalize(&self, period: &str, now: SystemTime) -> Result<String, String> {
        let at = rfc3339(now);
        let changed = self
            .conn
            .execute(
                "INSERT INTO finalized_periods (period, finalized_at) VALUES (?1, ?2)
                 ON CONFLICT(period) DO NOTHING",
                params![period, at],
            )
            .map_err(|e| e.to_string())?;
        if changed == 1 {
            return Ok(at);
        }
        let when: String = self
            .conn
            .query_row(
                "SELECT finalized_at FROM finalized_periods WHERE period = ?1",
                params![period],
                |row| row.get(0),
            )
            .map_err(|e| e.to_string())?;
        Err(format!("period {period} was finalized at {when}"))
    }

    /// Finalized periods and when, oldest first.
    fn finalized_periods(&self) -> Result<Vec<(String, String)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT period, finalized_at FROM finalized_periods ORDER BY period")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every tenant with events stamped in `[from, to)`.
    fn tenants(&self, from: &str, to: &str) -> Result<Vec<String>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT tenant FROM events WHERE time >= ?1 AND time < ?2 ORDER BY tenant",
        )?;
        let rows = stmt.query_map(params![from, to], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The tenant's `instance.lifecycle` events stamped before `before` and received before
    /// `received_before` (ledger times), in event-time then ledger order, as (department,
    /// attributes, time) rows.
    fn lifecycle_rows(
        &self,
        tenant: &str,
        before: &str,
        received_before: &str,
    ) -> Result<Vec<(Option<String>, serde_json::Value, String)>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT department, attributes, time FROM events
             WHERE tenant = ?1 AND type = 'instance.lifecycle' AND time < ?2 AND received_at < ?3
             ORDER BY time, seq",
        )?;
        let rows = stmt.query_map(params![tenant, before, received_before], |row| {
            let attributes: String = row.get(1)?;
            Ok((
                row.get(0)?,
                serde_json::from_str(&attributes).unwrap_or_default(),
                row.get(2)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The tenant's requests stamped in `[from, to)` and received before
    /// `received_before` (ledger times), counted per department.
    fn api_request_counts(
        &self,
        tenant: &str,
        from: &str,
        to: &str,
        received_before: &str,
    ) -> Result<Vec<(Option<String>, u64)>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT department, SUM(n) FROM (
                 SELECT department, COUNT(*) AS n FROM events
                 WHERE tenant = ?1 AND type = 'api.request' AND time >= ?2 AND time < ?3
                   AND received_at < ?4
                 GROUP BY department
                 UNION ALL
                 SELECT department,
                        SUM(CAST(json_extract(attributes, '$.count') AS INTEGER)) AS n
                 FROM events
                 WHERE tenant = ?1 AND type = 'api.request.count' AND time >= ?2
                   AND time < ?3 AND received_at < ?4
                 GROUP BY department)
             GROUP BY department ORDER BY department",
        )?;
        let rows = stmt.query_map(params![tenant, from, to, received_before], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The last `instance.lifecycle` event of every instance (event time, then ledger
    /// order), as (instance id, tenant, department, attributes, time).
    fn lifecycle_heads(&self) -> Result<Vec<LifecycleHead>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT tenant, department, attributes, time FROM events
             WHERE type = 'instance.lifecycle' ORDER BY time, seq",
        )?;
        let mut heads: BTreeMap<String, LifecycleHead> = BTreeMap::new();
        let rows = stmt.query_map([], |row| {
            let attributes: String = row.get(2)?;
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                serde_json::from_str::<serde_json::Value>(&attributes).unwrap_or_default(),
                row.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (tenant, department, attributes, time) = row?;
            if let Some(id) = attributes["instance_id"].as_str().map(str::to_owned) {
                heads.insert(
                    id.clone(),
                    LifecycleHead {
                        instance_id: id,
                        tenant,
                        department,
                        attributes,
                        time,
                    },
                );
            }
        }
        Ok(heads.into_values().collect())
    }

    /// Group sync bookkeeping: `instance` was seen running at `at`.
    fn mark_seen(&self, instance: &str, at: &str) -> Result<(), LedgerError> {
        self.conn.execute(
            "INSERT INTO sync_seen (instance_id, last_seen) VALUES (?1, ?2)
             ON CONFLICT(instance_id) DO UPDATE SET last_seen = excluded.last_seen",
            params![instance, at],
        )?;
        Ok(())
    }

    /// When `instance` was last seen running by a group sync.
    fn last_seen(&self, instance: &str) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn
            .query_row(
                "SELECT last_seen FROM sync_seen WHERE instance_id = ?1",
                params![instance],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Group sync bookkeeping: disagreements seen by the last sync, by instance, as
    /// (kind, first seen).
    fn suspects(&self) -> Result<BTreeMap<String, (String, String)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT instance_id, kind, first_seen FROM sync_suspects")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Group sync bookkeeping: replaces the disagreements with this sync's.
    fn set_suspects(
        &mut self,
        suspects: &BTreeMap<String, (String, String)>,
    ) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM sync_suspects", [])?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO sync_suspects (instance_id, kind, first_seen) VALUES (?1, ?2, ?3)",
            )?;
            for (id, (kind, first_seen)) in suspects {
                insert.execute(params![id, kind, first_seen])?;
            }
        }
        Ok(tx.commit()?)
    }

    /// The tenant's stored events in ledger order (at most `limit`), as JSON.
    fn events(&self, tenant: &str, limit: u32) -> Result<Vec<serde_json::Value>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, type, time, tenant, department, attributes FROM events
             WHERE tenant = ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![tenant, limit], |row| {
            let attributes: String = row.get(5)?;
            Ok(serde_json::json!({
                "id": row.get::<_, String>(0)?,
                "type": row.get::<_, String>(1)?,
                "time": row.get::<_, String>(2)?,
                "tenant": row.get::<_, String>(3)?,
                "department": row.get::<_, Option<String>>(4)?,
                "attributes": serde_json::from_str::<serde_json::Value>(&attributes)
                    .unwrap_or_default(),
            }))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Makes the ledger and its WAL and shared-memory files readable by their owner only
/// (created so if missing): SQLite gives the files it creates the database's mode, and
/// the ledger is every tenant's usage.
///
/// The file is opened here only when it does not exist yet: closing any descriptor of a
/// file drops every POSIX lock the process holds on it, and a connection already open on
/// it (a ledger opened again in the same process) would lose SQLite's.
pub(super) fn owner_only(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !db.exists() {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(db)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_types::built_in;

    fn ledger(tag: &str) -> (SqliteLedger, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("ledger-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ledger = SqliteLedger::open(&dir).unwrap();
        for t in built_in() {
            ledger.register(&t, SystemTime::now()).unwrap();
        }
        (ledger, dir)
    }

    fn event(id: &str) -> MeterEvent {
        MeterEvent {
            id: id.into(),
            record_type: "api.request".into(),
            time: "2026-11-23T12:00:00.000Z".into(),
            tenant: "demo".into(),
            department: None,
            attributes: serde_json::json!({"route": "/v1/whoami", "status": 200}),
        }
    }

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-23T12:00:01Z").unwrap()
    }

    /// METERING.md case 1: duplicates and retries count once, also after a failed write.
    #[test]
    fn duplicates_and_retries_after_a_failed_write_count_exactly_once() {
        let (mut ledger, dir) = ledger("dup");
        let batch: Vec<MeterEvent> = ["e-1", "e-2", "e-3"].map(event).to_vec();
        // The write fails part-way (as a full disk would): nothing of the batch is kept.
        ledger
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER fail BEFORE INSERT ON events WHEN NEW.id = 'e-3'
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        assert!(ledger.ingest(&batch, &Limits::default(), now()).is_err());
        assert_eq!(ledger.stats().unwrap().events.get("api.request"), None);
        ledger.conn.execute_batch("DROP TRIGGER fail").unwrap();
        // The retry stores every event once; a second retry and an in-batch duplicate
        // store nothing more.
        let first = ledger.ingest(&batch, &Limits::default(), now()).unwrap();
        assert_eq!((first.accepted, first.duplicates), (3, 0));
        let mut again = batch.clone();
        again.push(event("e-1"));
        let second = ledger.ingest(&again, &Limits::default(), now()).unwrap();
        assert_eq!((second.accepted, second.duplicates), (0, 4));
        assert_eq!(ledger.stats().unwrap().events["api.request"], 3);
        // Still there after reopening.
        drop(ledger);
        let reopened = SqliteLedger::open(&dir).unwrap();
        assert_eq!(reopened.stats().unwrap().events["api.request"], 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_ledger_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (mut ledger, dir) = ledger("mode");
        ledger
            .ingest(&[event("e-1")], &Limits::default(), now())
            .unwrap();
        for file in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
            let mode = std::fs::metadata(dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        drop(ledger);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_sqlite_ledger_passes_the_conformance_suite() {
        // Every ledger's directory lives until the suite ends, then goes.
        let dirs = std::cell::RefCell::new(Vec::new());
        super::super::conformance::run(|| {
            let dir = tempfile::Builder::new()
                .prefix("ledger-conformance-")
                .tempdir()
                .unwrap();
            let ledger = SqliteLedger::open(dir.path()).unwrap();
            dirs.borrow_mut().push(dir);
            Box::new(ledger) as Box<dyn Ledger + Send>
        });
    }

    #[test]
    fn refused_events_are_audited_and_the_rest_of_the_batch_is_kept() {
        let (mut ledger, dir) = ledger("refuse");
        let unknown = MeterEvent {
            record_type: "storage.volume".into(),
            ..event("e-2")
        };
        let outcome = ledger
            .ingest(&[event("e-1"), unknown], &Limits::default(), now())
            .unwrap();
        assert_eq!(outcome.accepted, 1);
        assert_eq!(outcome.rejected.len(), 1);
        assert!(outcome.rejected[0]
            .reason
            .contains("unregistered record type"));
        let stats = ledger.stats().unwrap();
        assert_eq!((stats.events["api.request"], stats.rejections), (1, 1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn record_types_persist_and_cannot_be_redefined() {
        let (mut ledger, dir) = ledger("types");
        let mut changed = built_in().remove(1);
        assert!(
            !ledger.register(&changed, now()).unwrap(),
            "same definition: no-op"
        );
        changed.state_key.push("region".into());
        assert!(ledger
            .register(&changed, now())
            .unwrap_err()
            .contains("already registered differently"));
        let bad = RecordType {
            id: "Bad Id".into(),
            ..changed
        };
        assert!(ledger
            .register(&bad, now())
            .unwrap_err()
            .contains("use 1-63"));
        drop(ledger);
        let reopened = SqliteLedger::open(&dir).unwrap();
        assert_eq!(reopened.record_types().unwrap().len(), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
