//! Every store on a real PostgreSQL server: the conformance suites the SQLite stores pass,
//! and the schema's versioning.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use skyport_core::config::{StorageBackend, StorageConfig};

use crate::testkit::PostgresServer;
use crate::*;

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A new, empty, migrated database on `server`.
async fn fresh(server: &PostgresServer) -> Pg {
    let name = format!("t{}", DATABASES.fetch_add(1, Ordering::Relaxed));
    let url = server.create_database(&name).await.unwrap();
    let db = Pg::connect(&config(url), Some(server.password()))
        .await
        .unwrap();
    schema::migrate(&db).await.unwrap();
    db
}

fn config(url: String) -> StorageConfig {
    StorageConfig {
        backend: StorageBackend::Postgres,
        url: Some(url),
        pool_size: 4,
        ..StorageConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_passes_its_conformance_suite_on_postgres() {
    let server = PostgresServer::start().unwrap();
    let s = &server;
    skyport_domain::inventory::conformance::run(|| async move {
        Arc::new(PgInventory::new(fresh(s).await)) as _
    })
    .await;
    skyport_auth::access_keys::conformance::run(|| async move {
        Arc::new(PgAccessKeys::new(fresh(s).await)) as _
    })
    .await;
    skyport_domain::operations::key_pairs::conformance::run(|| async move {
        Arc::new(PgKeyPairs::new(fresh(s).await)) as _
    })
    .await;
    skyport_domain::catalog::changes::conformance::run(|| async move {
        Arc::new(PgCatalogChanges::new(fresh(s).await)) as _
    })
    .await;
    skyport_domain::placement::audit::conformance::run(|| async move {
        Arc::new(PgPlacementAudit::new(fresh(s).await)) as _
    })
    .await;
    skyport_domain::approvals::conformance::run(&PgApprovals::new(fresh(s).await)).await;
    skyport_domain::events::conformance::run(&PgEvents::new(fresh(s).await)).await;
    skyport_domain::sla::conformance::run(&PgSla::new(fresh(s).await)).await;
    skyport_domain::sessions::conformance::run(&PgSessions::new(fresh(s).await)).await;
    skyport_domain::instance_leases::conformance::run(&PgInstanceLeases::new(fresh(s).await)).await;
    skyport_domain::operations::deployments::conformance::run(|| async move {
        Arc::new(PgDeployments::new(fresh(s).await)) as _
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_pass_their_conformance_suite_on_postgres() {
    let server = PostgresServer::start().unwrap();
    let store = Arc::new(PgLeases::new(fresh(&server).await));
    skyport_domain::leases::conformance::run(store, tokio::time::sleep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_a_newer_schema_is_refused() {
    let server = PostgresServer::start().unwrap();
    let url = server.create_database("schema").await.unwrap();
    let settings = config(url);
    let a = Pg::connect(&settings, Some(server.password()))
        .await
        .unwrap();
    let b = Pg::connect(&settings, Some(server.password()))
        .await
        .unwrap();
    // Two replicas starting together: one migrates, the other finds it done.
    let (found_a, found_b) = tokio::join!(schema::migrate(&a), schema::migrate(&b));
    let mut found = [found_a.unwrap(), found_b.unwrap()];
    found.sort();
    assert_eq!(found, [0, schema::latest()]);
    assert_eq!(schema::migrate(&a).await.unwrap(), schema::latest());

    // A newer Skyport migrated this database: this one refuses it, changing nothing.
    a.execute(
        "test",
        "INSERT INTO skyport_schema_migrations (version, description) VALUES ($1, 'future')",
        &[&(schema::latest() + 1)],
    )
    .await
    .unwrap();
    let refused = schema::migrate(&b).await.unwrap_err().to_string();
    assert!(
        refused.contains("newer than this Skyport knows"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_a_stopped_server_is_a_clear_error() {
    let mut server = PostgresServer::start().unwrap();
    let url = server.create_database("errors").await.unwrap();
    let wrong = Pg::connect(&config(url.clone()), Some("not-the-password")).await;
    let e = wrong
        .err()
        .expect("a wrong password is refused")
        .to_string();
    assert!(e.contains("connecting to PostgreSQL"), "{e}");
    assert!(
        !e.contains("not-the-password"),
        "the password is never shown: {e}"
    );

    let db = Pg::connect(&config(url), Some(server.password()))
        .await
        .unwrap();
    schema::migrate(&db).await.unwrap();
    let keys = PgKeyPairs::new(db);
    use skyport_domain::operations::key_pairs::KeyPairStore;
    assert!(keys.list("demo").await.unwrap().is_empty());
    server.stop();
    let e = keys.list("demo").await.unwrap_err();
    assert_eq!(e.kind, skyport_core::error::ErrorKind::Unavailable, "{e:?}");
    server.resume().unwrap();
    // The pool replaces its broken connections: the store works again.
    let mut recovered = false;
    for _ in 0..50 {
        if keys.list("demo").await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store works again once PostgreSQL is back");
}
