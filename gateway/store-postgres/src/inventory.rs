//! [`InventoryStore`] in the shared database (table `instances`); the idempotency tokens
//! are a column of it, unique per tenant.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_domain::inventory::{
    Admission, AdmissionCheck, InstanceNetwork, InstanceRecord, InventoryStore,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::db::{db_error, is_unique_violation, Pg};

/// Instance records shared by every replica.
pub struct PgInventory {
    db: Pg,
}

impl PgInventory {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }

    async fn select(
        &self,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<InstanceRecord>, GatewayError> {
        let rows = self
            .db
            .query(WHAT, &format!("{SELECT} WHERE {condition}"), params)
            .await?;
        Ok(rows.iter().map(row_to_record).collect())
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, GatewayError> {
        self.db.execute(WHAT, sql, params).await
    }
}

const WHAT: &str = "inventory";

const SELECT: &str =
    "SELECT id, tenant, department, provider, region, remote_id, image, instance_type,
    name, tags, state, created_at, key_name, client_token, network, user_data, offering
    FROM instances";

/// The `network` column: the addresses as JSON, or NULL.
fn network_json(network: Option<&InstanceNetwork>) -> Option<String> {
    network.map(|n| serde_json::to_string(n).expect("addresses serialise"))
}

/// Inserts record `r` as a new row; 409 for a duplicate id or idempotency token.
async fn insert_row(client: &impl GenericClient, r: &InstanceRecord) -> Result<(), GatewayError> {
    let tags = Value::Object(r.tags.clone()).to_string();
    let network = network_json(r.network.as_ref());
    let done = client
        .execute(
            "INSERT INTO instances (id, tenant, department, provider, region, remote_id,
             image, instance_type, name, tags, state, created_at, key_name, client_token,
             network, user_data, offering)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17)",
            &[
                &r.id,
                &r.tenant,
                &r.department,
                &r.provider,
                &r.region,
                &r.remote_id,
                &r.image,
                &r.instance_type,
                &r.name,
                &tags,
                &r.state,
                &r.created_at,
                &r.key_name,
                &r.client_token,
                &network,
                &r.user_data,
                &r.offering,
            ],
        )
        .await;
    match done {
        Ok(_) => Ok(()),
        // Only a duplicate id or idempotency token is the caller's conflict.
        Err(e) if is_unique_violation(&e) => Err(GatewayError::new(
            ErrorKind::Conflict,
            "an instance with this id or idempotency token exists",
        )),
        Err(e) => Err(db_error(WHAT, e)),
    }
}

fn row_to_record(row: &Row) -> InstanceRecord {
    let tags: String = row.get(9);
    InstanceRecord {
        id: row.get(0),
        tenant: row.get(1),
        department: row.get(2),
        provider: row.get(3),
        region: row.get(4),
        remote_id: row.get(5),
        image: row.get(6),
        instance_type: row.get(7),
        name: row.get(8),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        state: row.get(10),
        created_at: row.get(11),
        key_name: row.get(12),
        client_token: row.get(13),
        network: row
            .get::<_, Option<String>>(14)
            .and_then(|text| serde_json::from_str(&text).ok()),
        user_data: row.get(15),
        offering: row.get(16),
    }
}

#[async_trait]
impl InventoryStore for PgInventory {
    async fn insert(&self, r: InstanceRecord) -> Result<(), GatewayError> {
        let client = self.db.client(WHAT).await?;
        insert_row(&client, &r).await
    }

    async fn admit(
        &self,
        r: InstanceRecord,
        check: AdmissionCheck,
    ) -> Result<Admission, GatewayError> {
        let mut client = self.db.client(WHAT).await?;
        let tx = client.transaction().await.map_err(|e| db_error(WHAT, e))?;
        // The tenant's admission lock, held until the transaction ends: every other
        // admission for the tenant, on any replica, waits here.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&r.tenant],
        )
        .await
        .map_err(|e| db_error(WHAT, e))?;
        if let Some(token) = &r.client_token {
            let existing = tx
                .query(
                    &format!("{SELECT} WHERE tenant = $1 AND client_token = $2"),
                    &[&r.tenant, token],
                )
                .await
                .map_err(|e| db_error(WHAT, e))?;
            if let Some(row) = existing.first() {
                return Ok(Admission::Existing(Box::new(row_to_record(row))));
            }
        }
        let live: Vec<InstanceRecord> = tx
            .query(
                &format!("{SELECT} WHERE tenant = $1 AND state <> 'terminated' ORDER BY id"),
                &[&r.tenant],
            )
            .await
            .map_err(|e| db_error(WHAT, e))?
            .iter()
            .map(row_to_record)
            .collect();
        check(&live)?;
        insert_row(&tx, &r).await?;
        tx.commit().await.map_err(|e| db_error(WHAT, e))?;
        Ok(Admission::Inserted)
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<InstanceRecord>, GatewayError> {
        Ok(self
            .select("tenant = $1 AND id = $2", &[&tenant, &id])
            .await?
            .pop())
    }

    async fn list(&self, tenant: &str) -> Result<Vec<InstanceRecord>, GatewayError> {
        self.select("tenant = $1 ORDER BY id", &[&tenant]).await
    }

    async fn by_client_token(
        &self,
        tenant: &str,
        token: &str,
    ) -> Result<Option<InstanceRecord>, GatewayError> {
        Ok(self
            .select("tenant = $1 AND client_token = $2", &[&tenant, &token])
            .await?
            .pop())
    }

    async fn update(
        &self,
        id: &str,
        remote_id: Option<String>,
        state: &str,
        instance_type: Option<String>,
    ) -> Result<(), GatewayError> {
        self.execute(
            "UPDATE instances SET remote_id = COALESCE($2, remote_id), state = $3,
             instance_type = COALESCE($4, instance_type) WHERE id = $1",
            &[&id, &remote_id, &state, &instance_type],
        )
        .await
        .map(drop)
    }

    async fn transition(&self, id: &str, from: &str, to: &str) -> Result<bool, GatewayError> {
        self.execute(
            "UPDATE instances SET state = $3 WHERE id = $1 AND state = $2",
            &[&id, &from, &to],
        )
        .await
        .map(|changed| changed == 1)
    }

    async fn set_network(
        &self,
        id: &str,
        network: Option<InstanceNetwork>,
    ) -> Result<(), GatewayError> {
        let network = network_json(network.as_ref());
        self.execute(
            "UPDATE instances SET network = $2 WHERE id = $1",
            &[&id, &network],
        )
        .await
        .map(drop)
    }

    async fn set_tags(&self, id: &str, tags: Map<String, Value>) -> Result<(), GatewayError> {
        let tags = Value::Object(tags).to_string();
        self.execute(
            "UPDATE instances SET tags = $2 WHERE id = $1",
            &[&id, &tags],
        )
        .await
        .map(drop)
    }

    async fn delete(&self, id: &str) -> Result<(), GatewayError> {
        self.execute("DELETE FROM instances WHERE id = $1", &[&id])
            .await
            .map(drop)
    }

    async fn active_for_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<InstanceRecord>, GatewayError> {
        self.select(
            "provider = $1 AND remote_id IS NOT NULL AND state <> 'terminated'",
            &[&provider],
        )
        .await
    }

    async fn unfinished_creates(&self) -> Result<Vec<InstanceRecord>, GatewayError> {
        self.select("remote_id IS NULL AND state = 'pending' ORDER BY id", &[])
            .await
    }
}
