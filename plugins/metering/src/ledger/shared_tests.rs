//! The shared ledger against a real PostgreSQL server (started by the test on a loopback
//! port, stopped by PID): the conformance suite, the outbox, claims, the schema guard, and
//! the same bill as the SQLite ledger.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use skyport_plugin_api::ops::MeterEvent;
use skyport_store_postgres::testkit::PostgresServer;

use super::conformance::{lifecycle, noon};
use super::{Ledger, PgLedger, PgSettings, SpooledLedger, SqliteLedger};
use crate::billing;
use crate::period::Period;
use crate::rating::RateCard;
use crate::record_types::built_in;
use crate::validate::Limits;

/// A new, empty database on `server`; its settings.
fn database(server: &PostgresServer) -> PgSettings {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!("ledger_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = runtime.block_on(server.create_database(&name)).unwrap();
    PgSettings {
        url,
        password: Some(server.password().to_string()),
        connect_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(10),
    }
}

fn registered(mut ledger: impl Ledger) -> impl Ledger {
    for t in built_in() {
        ledger.register(&t, noon()).unwrap();
    }
    ledger
}

/// A request of demo's at 11:00 on the conformance suite's day.
fn request(id: &str, department: Option<&str>) -> MeterEvent {
    super::conformance::request(id, "demo", department, "2026-11-23T11:00:00.000Z")
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ledger-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_postgres_ledger_passes_the_conformance_suite_and_bills_as_sqlite_does() {
    let server = PostgresServer::start().unwrap();
    super::conformance::run(|| {
        Box::new(PgLedger::open(&database(&server)).unwrap()) as Box<dyn Ledger + Send>
    });

    // The same events give the same bill, byte for byte, from either store (times,
    // tenants and departments order alike: the C collation).
    let events = vec![
        request("r-1", None),
        request("r-2", Some("finance")),
        request("r-3", Some("Ops")),
        lifecycle("l-1", "i-1", "run", "2026-11-23T08:00:00.000Z"),
        lifecycle("l-2", "i-1", "stop", "2026-11-23T10:30:00.000Z"),
        lifecycle("l-3", "i-2", "run", "2026-11-23T09:15:00+01:00"),
    ];
    let dir = temp_dir("bill-bytes");
    let mut sqlite = registered(SqliteLedger::open(&dir).unwrap());
    let mut shared = registered(PgLedger::open(&database(&server)).unwrap());
    let limits = Limits::default();
    for ledger in [&mut sqlite as &mut dyn Ledger, &mut shared] {
        let outcome = ledger.ingest(&events, &limits, noon()).unwrap();
        assert_eq!(outcome.accepted, events.len(), "{outcome:?}");
    }
    let card = RateCard::embedded();
    let period = Period::parse("2026-11").unwrap();
    let now = time::OffsetDateTime::from(noon() + Duration::from_secs(60));
    let bill = |ledger: &dyn Ledger| {
        serde_json::to_string(
            &billing::tenant_bill(ledger, &card, "demo", None, period, now).unwrap(),
        )
        .unwrap()
    };
    let from_sqlite = bill(&sqlite);
    assert!(from_sqlite.contains("sp.micro"), "{from_sqlite}");
    assert_eq!(from_sqlite, bill(&shared));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn events_acknowledged_while_postgres_is_down_reach_it_once() {
    let mut server = PostgresServer::start().unwrap();
    let settings = database(&server);
    let dir = temp_dir("outbox");
    let mut ledger =
        registered(SpooledLedger::open(PgLedger::open(&settings).unwrap(), &dir).unwrap());
    let limits = Limits::default();
    let first = ledger
        .ingest(&[request("e-1", None)], &limits, noon())
        .unwrap();
    assert_eq!(first.accepted, 1);

    // PostgreSQL goes away: batches are acknowledged from the outbox, refusals still
    // reported; reads fail rather than answer from a partial ledger.
    server.stop();
    let unknown = MeterEvent {
        record_type: "storage.volume".into(),
        ..request("e-bad", None)
    };
    let kept = ledger
        .ingest(
            &[request("e-2", None), request("e-1", None), unknown],
            &limits,
            noon(),
        )
        .unwrap();
    assert_eq!((kept.accepted, kept.rejected.len()), (2, 1), "{kept:?}");
    let later = ledger
        .ingest(&[request("e-3", None)], &limits, noon())
        .unwrap();
    assert_eq!(later.accepted, 1);
    assert!(
        ledger.stats().is_err(),
        "no answer from a ledger that is down"
    );
    assert!(ledger.drain(noon()).is_err());

    // The outbox survives the process: a new one drains it once PostgreSQL answers.
    drop(ledger);
    server.resume().unwrap();
    let mut reopened = SpooledLedger::open(PgLedger::open(&settings).unwrap(), &dir).unwrap();
    assert_eq!(reopened.kept().unwrap(), 2);
    assert_eq!(reopened.drain(noon()).unwrap(), 3);
    assert_eq!(reopened.kept().unwrap(), 0);
    assert_eq!(reopened.drain(noon()).unwrap(), 0);
    let stats = reopened.stats().unwrap();
    assert_eq!(stats.events["api.request"], 3, "e-1 stored once: {stats:?}");
    assert_eq!(stats.rejections, 1, "the refusal is audited: {stats:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_once_work_is_claimed_by_one_replica_at_a_time() {
    let server = PostgresServer::start().unwrap();
    let settings = database(&server);
    let a = PgLedger::open(&settings).unwrap();
    let b = PgLedger::open(&settings).unwrap();
    let ttl = Duration::from_millis(400);
    assert!(a.claim("metering.group_sync", "a", ttl).unwrap());
    assert!(!b.claim("metering.group_sync", "b", ttl).unwrap());
    assert!(
        a.claim("metering.group_sync", "a", ttl).unwrap(),
        "the holder renews"
    );
    assert!(
        b.claim("other.work", "b", ttl).unwrap(),
        "claims are per piece of work"
    );
    std::thread::sleep(ttl + Duration::from_millis(200));
    assert!(
        b.claim("metering.group_sync", "b", ttl).unwrap(),
        "an expired claim is taken over"
    );
    assert!(!a.claim("metering.group_sync", "a", ttl).unwrap());
}

/// A ledger opened once (so at the plugin's schema version) on a new database; and a
/// way to run SQL in that database as its owner.
fn opened_ledger(server: &PostgresServer) -> (PgSettings, impl Fn(&str) + '_) {
    let settings = database(server);
    drop(PgLedger::open(&settings).unwrap());
    let database = settings.url.rsplit('/').next().unwrap().to_string();
    let sql = move |statements: &str| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(server.execute(&database, statements))
            .unwrap();
    };
    (settings, sql)
}

#[test]
fn a_ledger_schema_newer_than_the_plugin_is_refused() {
    let server = PostgresServer::start().unwrap();
    let (settings, sql) = opened_ledger(&server);
    sql("UPDATE metering_schema SET version = 99");
    let refused = PgLedger::open(&settings).err().expect("refused");
    assert!(
        refused
            .0
            .contains("schema is version 99, newer than this plugin's 2"),
        "{refused}"
    );
}

#[test]
fn a_version_1_ledger_is_brought_to_version_2() {
    let server = PostgresServer::start().unwrap();
    let (settings, sql) = opened_ledger(&server);
    // Back to what version 1 made.
    sql("DROP INDEX metering_events_request_counts;
         DELETE FROM metering_schema WHERE version = 2;");
    drop(PgLedger::open(&settings).unwrap());
    // The index is back (dropping it again succeeds), and the version is recorded.
    sql("DROP INDEX metering_events_request_counts;
         DO $$ BEGIN
             IF (SELECT max(version) FROM metering_schema) <> 2 THEN
                 RAISE EXCEPTION 'not migrated';
             END IF;
         END $$;");
}
