//! Versioned migrations, run at startup by every replica: under an advisory lock (two
//! replicas starting together migrate once), each in the transaction that records it. A
//! replica refuses a database whose schema is newer than the newest it knows: a newer
//! Skyport migrated it, and this one would misread what it does not know.

use anyhow::Context;

use crate::db::Pg;

/// One step of the schema.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first. Append only: a released step never changes.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "the gateway's stores",
        sql: "
        CREATE TABLE instances (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            department TEXT,
            provider TEXT NOT NULL,
            region TEXT NOT NULL,
            remote_id TEXT,
            image TEXT NOT NULL,
            instance_type TEXT NOT NULL,
            name TEXT,
            tags TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL,
            created_at TEXT NOT NULL,
            key_name TEXT,
            client_token TEXT,
            network TEXT,
            user_data TEXT
        );
        CREATE INDEX instances_tenant ON instances (tenant, id);
        CREATE INDEX instances_provider ON instances (provider) WHERE remote_id IS NOT NULL;
        CREATE UNIQUE INDEX instances_client_token ON instances (tenant, client_token)
            WHERE client_token IS NOT NULL;
        CREATE TABLE access_keys (
            access_key_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            department TEXT,
            secret TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE key_pairs (
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            id TEXT NOT NULL UNIQUE,
            key_type TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            public_key TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (tenant, name)
        );
        CREATE TABLE catalog_objects (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            body TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (kind, name)
        );
        CREATE TABLE placements (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            tenant TEXT NOT NULL,
            request_id TEXT NOT NULL,
            mode TEXT NOT NULL,
            offering TEXT NOT NULL,
            provider TEXT NOT NULL,
            region TEXT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX placements_explained ON placements (created_at) WHERE mode = 'explain';
        CREATE TABLE deployments (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            created_at TEXT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX deployments_by_tenant ON deployments (tenant, created_at);
    ",
    },
    Migration {
        version: 2,
        description: "deployments journalled while they are created",
        sql: "
        ALTER TABLE deployments ADD COLUMN status TEXT NOT NULL DEFAULT 'ready';
        CREATE INDEX deployments_creating ON deployments (created_at) WHERE status = 'creating';
    ",
    },
    Migration {
        version: 3,
        description: "leases for run-once work",
        sql: "
        CREATE TABLE skyport_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        );
    ",
    },
    Migration {
        version: 4,
        description: "instance leases",
        sql: "
        CREATE TABLE instance_leases (
            instance_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            granted_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            warn_at TEXT NOT NULL,
            on_expiry TEXT NOT NULL,
            state TEXT NOT NULL,
            due_at TEXT
        );
        CREATE INDEX instance_leases_due ON instance_leases (due_at) WHERE due_at IS NOT NULL;
        CREATE INDEX instance_leases_by_tenant ON instance_leases (tenant);
    ",
    },
    Migration {
        version: 5,
        description: "orders waiting for approval",
        sql: "
        CREATE TABLE approval_orders (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX approval_orders_by_tenant ON approval_orders (tenant, created_at);
    ",
    },
    Migration {
        version: 6,
        description: "webhook subscriptions, the outbox and event marks",
        sql: "
        CREATE TABLE webhook_subscriptions (
            id TEXT PRIMARY KEY,
            tenant TEXT,
            created_at TEXT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE TABLE webhook_deliveries (
            id TEXT PRIMARY KEY,
            subscription_id TEXT NOT NULL,
            status TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            record TEXT NOT NULL
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_by_subscription
            ON webhook_deliveries (subscription_id, created_at);
        CREATE TABLE event_marks (
            key TEXT PRIMARY KEY,
            at TEXT NOT NULL
        );
    ",
    },
    Migration {
        version: 7,
        description: "the providers' SLA minute samples",
        sql: "
        CREATE TABLE sla_minutes (
            minute TEXT NOT NULL,
            provider TEXT NOT NULL,
            region TEXT NOT NULL,
            replica TEXT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX sla_minutes_by_minute ON sla_minutes (minute);
    ",
    },
    Migration {
        version: 8,
        description: "the offering an instance was ordered as",
        sql: "ALTER TABLE instances ADD COLUMN offering TEXT;",
    },
    Migration {
        version: 9,
        description: "web console sessions and used sign-in tickets",
        sql: "
        CREATE TABLE console_sessions (
            id_hash TEXT PRIMARY KEY,
            created_ms BIGINT NOT NULL,
            last_seen_ms BIGINT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE TABLE console_tickets (
            jti TEXT PRIMARY KEY,
            expires_ms BIGINT NOT NULL
        );
    ",
    },
    Migration {
        version: 10,
        description: "placement decisions searched by time",
        sql: "CREATE INDEX placements_by_time ON placements (created_at);",
    },
    Migration {
        version: 11,
        description: "one order waiting for approval per tenant and client token",
        sql: "
        ALTER TABLE approval_orders ADD COLUMN client_token TEXT;
        CREATE UNIQUE INDEX approval_orders_client_token
            ON approval_orders (tenant, client_token) WHERE client_token IS NOT NULL;
    ",
    },
];

/// Every table of the gateway's stores and its columns, as both engines lay them out:
/// what `skyport storage migrate` copies.
pub const TABLES: &[(&str, &[&str])] = &[
    (
        "instances",
        &[
            "id",
            "tenant",
            "department",
            "provider",
            "region",
            "remote_id",
            "image",
            "instance_type",
            "name",
            "tags",
            "state",
            "created_at",
            "key_name",
            "client_token",
            "network",
            "user_data",
            "offering",
        ],
    ),
    (
        "access_keys",
        &[
            "access_key_id",
            "tenant",
            "department",
            "secret",
            "created_at",
            "revoked_at",
        ],
    ),
    (
        "key_pairs",
        &[
            "tenant",
            "name",
            "id",
            "key_type",
            "fingerprint",
            "public_key",
            "created_at",
        ],
    ),
    ("catalog_objects", &["kind", "name", "body", "updated_at"]),
    (
        "approval_orders",
        &[
            "id",
            "tenant",
            "status",
            "created_at",
            "record",
            "client_token",
        ],
    ),
    (
        "instance_leases",
        &[
            "instance_id",
            "tenant",
            "granted_at",
            "expires_at",
            "warn_at",
            "on_expiry",
            "state",
            "due_at",
        ],
    ),
    (
        "placements",
        &[
            "id",
            "created_at",
            "tenant",
            "request_id",
            "mode",
            "offering",
            "provider",
            "region",
            "record",
        ],
    ),
    (
        "deployments",
        &["id", "tenant", "created_at", "record", "status"],
    ),
    (
        "webhook_subscriptions",
        &["id", "tenant", "created_at", "record"],
    ),
    (
        "webhook_deliveries",
        &[
            "id",
            "subscription_id",
            "status",
            "next_attempt_at",
            "created_at",
            "finished_at",
            "record",
        ],
    ),
    ("event_marks", &["key", "at"]),
    (
        "sla_minutes",
        &["minute", "provider", "region", "replica", "record"],
    ),
];

/// A table's rows, each value as text (NULL as `None`).
pub type Rows = Vec<Vec<Option<String>>>;

/// Copies `tables` (name, columns, rows) into `db`, all or nothing, refusing a
/// database that already holds any of the gateway's rows. Returns the rows copied per
/// table.
pub async fn import(
    db: &Pg,
    tables: &[(&str, &[&str], Rows)],
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut client = db
        .client("import")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tx = client.transaction().await?;
    for (table, _) in TABLES {
        let present: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        anyhow::ensure!(
            present == 0,
            "the target database already holds {present} rows in {table}: migrate into an empty one"
        );
    }
    let mut copied = Vec::new();
    for (table, columns, rows) in tables {
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let statement = tx
            .prepare(&format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                placeholders.join(", ")
            ))
            .await?;
        for row in rows {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = row
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            tx.execute(&statement, &params)
                .await
                .with_context(|| format!("copying a row of {table}"))?;
        }
        copied.push((table.to_string(), rows.len()));
    }
    tx.commit().await?;
    Ok(copied)
}

/// The advisory lock migrations run under (any constant; "skyport" in ASCII).
const MIGRATION_LOCK: i64 = 0x0073_6b79_706f_7274;

/// The newest schema version this build knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database to [`latest`]; refuses a newer one. Returns the version found.
pub async fn migrate(db: &Pg) -> anyhow::Result<i32> {
    let mut client = db
        .client("schema")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS skyport_schema_migrations (
            version INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM skyport_schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if found > latest() {
        anyhow::bail!(
            "the database's schema is version {found}, newer than this Skyport knows ({}): \
             a newer Skyport migrated it; run that version (or newer) on every replica",
            latest()
        );
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(m.sql)
            .await
            .with_context(|| format!("schema migration {} ({})", m.version, m.description))?;
        tx.execute(
            "INSERT INTO skyport_schema_migrations (version, description) VALUES ($1, $2)",
            &[&m.version, &m.description],
        )
        .await?;
        tracing::info!(
            version = m.version,
            description = m.description,
            "schema migrated"
        );
    }
    tx.commit().await?;
    Ok(found)
}
