//! [`InventoryStore`] in the gateway database (table `instances`); the idempotency tokens
//! are a column of it, unique per tenant.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_domain::inventory::{
    Admission, AdmissionCheck, InstanceNetwork, InstanceRecord, InventoryStore,
};

use crate::db::Db;

/// Instance records in `<state_dir>/skyport.db`.
pub struct SqliteInventory {
    db: Db,
}

impl SqliteInventory {
    /// Opens (and migrates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "inventory",
            "CREATE TABLE IF NOT EXISTS instances (
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
                created_at TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS instances_tenant ON instances (tenant, id);",
        )?;
        // Columns added after the first release: added in place to older databases.
        db.add_missing_columns(
            "instances",
            &[
                ("key_name", "TEXT"),
                ("client_token", "TEXT"),
                ("network", "TEXT"),
                ("user_data", "TEXT"),
                ("offering", "TEXT"),
            ],
        )?;
        db.migrate(|conn| {
            conn.execute_batch(
                "CREATE UNIQUE INDEX IF NOT EXISTS instances_client_token
                 ON instances (tenant, client_token) WHERE client_token IS NOT NULL;",
            )
        })?;
        Ok(Self { db })
    }
}

const SELECT: &str =
    "SELECT id, tenant, department, provider, region, remote_id, image, instance_type,
    name, tags, state, created_at, key_name, client_token, network, user_data, offering
    FROM instances";

/// The `network` column: the addresses as JSON, or NULL.
fn network_json(network: Option<&InstanceNetwork>) -> Option<String> {
    network.map(|n| serde_json::to_string(n).expect("addresses serialise"))
}

/// Inserts record `r` as a new row.
fn insert_row(c: &rusqlite::Connection, r: &InstanceRecord) -> Result<usize, rusqlite::Error> {
    c.execute(
        "INSERT INTO instances (id, tenant, department, provider, region, remote_id,
         image, instance_type, name, tags, state, created_at, key_name, client_token, network,
         user_data, offering)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            r.id,
            r.tenant,
            r.department,
            r.provider,
            r.region,
            r.remote_id,
            r.image,
            r.instance_type,
            r.name,
            Value::Object(r.tags.clone()).to_string(),
            r.state,
            r.created_at,
            r.key_name,
            r.client_token,
            network_json(r.network.as_ref()),
            r.user_data,
            r.offering
        ],
    )
}

fn row_to_record(row: &rusqlite::Row<'_>) -> Result<InstanceRecord, rusqlite::Error> {
    let tags: String = row.get(9)?;
    Ok(InstanceRecord {
        id: row.get(0)?,
        tenant: row.get(1)?,
        department: row.get(2)?,
        provider: row.get(3)?,
        region: row.get(4)?,
        remote_id: row.get(5)?,
        image: row.get(6)?,
        instance_type: row.get(7)?,
        name: row.get(8)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        state: row.get(10)?,
        created_at: row.get(11)?,
        key_name: row.get(12)?,
        client_token: row.get(13)?,
        network: row
            .get::<_, Option<String>>(14)?
            .and_then(|text| serde_json::from_str(&text).ok()),
        user_data: row.get(15)?,
        offering: row.get(16)?,
    })
}

#[async_trait]
impl InventoryStore for SqliteInventory {
    async fn insert(&self, r: InstanceRecord) -> Result<(), GatewayError> {
        let inserted = self
            .db
            .with(move |c| {
                let done = insert_row(c, &r);
                match done {
                    Ok(_) => Ok(true),
                    // Only a duplicate id or idempotency token is the caller's conflict;
                    // any other constraint failing is the store's fault and says so.
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if matches!(
                            e.extended_code,
                            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                                | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        ) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(GatewayError::new(
                ErrorKind::Conflict,
                "an instance with this id or idempotency token exists",
            ))
        }
    }

    async fn admit(
        &self,
        r: InstanceRecord,
        check: AdmissionCheck,
    ) -> Result<Admission, GatewayError> {
        // An immediate transaction holds the database's write lock from its first
        // statement: every other admission, in this process or another, waits for it.
        self.db
            .with(move |c| {
                let tx = rusqlite::Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
                if let Some(token) = &r.client_token {
                    let existing = tx
                        .query_row(
                            &format!("{SELECT} WHERE tenant = ?1 AND client_token = ?2"),
                            params![r.tenant, token],
                            row_to_record,
                        )
                        .optional()?;
                    if let Some(existing) = existing {
                        return Ok(Ok(Admission::Existing(Box::new(existing))));
                    }
                }
                let live: Vec<InstanceRecord> = tx
                    .prepare(&format!(
                        "{SELECT} WHERE tenant = ?1 AND state != 'terminated' ORDER BY id"
                    ))?
                    .query_map(params![r.tenant], row_to_record)?
                    .collect::<Result<_, _>>()?;
                if let Err(refused) = check(&live) {
                    return Ok(Err(refused));
                }
                insert_row(&tx, &r)?;
                tx.commit()?;
                Ok(Ok(Admission::Inserted))
            })
            .await?
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<InstanceRecord>, GatewayError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.db
            .with(move |c| {
                c.query_row(
                    &format!("{SELECT} WHERE tenant = ?1 AND id = ?2"),
                    params![tenant, id],
                    row_to_record,
                )
                .optional()
            })
            .await
    }

    async fn list(&self, tenant: &str) -> Result<Vec<InstanceRecord>, GatewayError> {
        let tenant = tenant.to_string();
        self.db
            .with(move |c| {
                let mut stmt = c.prepare(&format!("{SELECT} WHERE tenant = ?1 ORDER BY id"))?;
                let rows = stmt.query_map(params![tenant], row_to_record)?;
                rows.collect()
            })
            .await
    }

    async fn by_client_token(
        &self,
        tenant: &str,
        token: &str,
    ) -> Result<Option<InstanceRecord>, GatewayError> {
        let (tenant, token) = (tenant.to_string(), token.to_string());
        self.db
            .with(move |c| {
                c.query_row(
                    &format!("{SELECT} WHERE tenant = ?1 AND client_token = ?2"),
                    params![tenant, token],
                    row_to_record,
                )
                .optional()
            })
            .await
    }

    async fn update(
        &self,
        id: &str,
        remote_id: Option<String>,
        state: &str,
        instance_type: Option<String>,
    ) -> Result<(), GatewayError> {
        let (id, state) = (id.to_string(), state.to_string());
        self.db
            .with(move |c| {
                c.execute(
                    "UPDATE instances SET remote_id = COALESCE(?2, remote_id), state = ?3,
                     instance_type = COALESCE(?4, instance_type) WHERE id = ?1",
                    params![id, remote_id, state, instance_type],
                )
                .map(|_| ())
            })
            .await
    }

    async fn set_network(
        &self,
        id: &str,
        network: Option<InstanceNetwork>,
    ) -> Result<(), GatewayError> {
        let (id, network) = (id.to_string(), network_json(network.as_ref()));
        self.db
            .with(move |c| {
                c.execute(
                    "UPDATE instances SET network = ?2 WHERE id = ?1",
                    params![id, network],
                )
                .map(|_| ())
            })
            .await
    }

    async fn transition(&self, id: &str, from: &str, to: &str) -> Result<bool, GatewayError> {
        let (id, from, to) = (id.to_string(), from.to_string(), to.to_string());
        self.db
            .with(move |c| {
                c.execute(
                    "UPDATE instances SET state = ?3 WHERE id = ?1 AND state = ?2",
                    params![id, from, to],
                )
                .map(|changed| changed == 1)
            })
            .await
    }

    async fn set_tags(&self, id: &str, tags: Map<String, Value>) -> Result<(), GatewayError> {
        let id = id.to_string();
        let tags = Value::Object(tags).to_string();
        self.db
            .with(move |c| {
                c.execute(
                    "UPDATE instances SET tags = ?2 WHERE id = ?1",
                    params![id, tags],
                )
                .map(|_| ())
            })
            .await
    }

    async fn delete(&self, id: &str) -> Result<(), GatewayError> {
        let id = id.to_string();
        self.db
            .with(move |c| {
                c.execute("DELETE FROM instances WHERE id = ?1", params![id])
                    .map(|_| ())
            })
            .await
    }

    async fn active_for_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<InstanceRecord>, GatewayError> {
        let provider = provider.to_string();
        self.db
            .with(move |c| {
                let mut stmt = c.prepare(&format!(
                    "{SELECT} WHERE provider = ?1 AND remote_id IS NOT NULL AND state != 'terminated'"
                ))?;
                let rows = stmt.query_map(params![provider], row_to_record)?;
                rows.collect()
            })
            .await
    }

    async fn unfinished_creates(&self) -> Result<Vec<InstanceRecord>, GatewayError> {
        self.db
            .with(move |c| {
                let mut stmt = c.prepare(&format!(
                    "{SELECT} WHERE remote_id IS NULL AND state = 'pending' ORDER BY id"
                ))?;
                let rows = stmt.query_map([], row_to_record)?;
                rows.collect()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn sqlite_inventory_passes_the_conformance_suite() {
        let dirs = crate::TestDirs::default();
        let dirs = &dirs;
        skyport_domain::inventory::conformance::run(move || async move {
            let dir = dirs.make("inventory");
            Arc::new(SqliteInventory::open(&dir).unwrap()) as Arc<dyn InventoryStore>
        })
        .await;
    }

    #[tokio::test]
    async fn records_survive_a_reopen() {
        let guard = crate::test_dir("inventory-reopen");
        let dir = guard.path();
        let record = skyport_domain::inventory::conformance::record("i-00000000000000001", "demo");
        SqliteInventory::open(dir)
            .unwrap()
            .insert(record.clone())
            .await
            .unwrap();
        let reopened = SqliteInventory::open(dir).unwrap();
        assert_eq!(
            reopened.get("demo", &record.id).await.unwrap(),
            Some(record)
        );
    }
}
