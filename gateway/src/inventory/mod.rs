//! The inventory: which Skyport instance id is which provider's VM, for which tenant.
//!
//! One SQLite database in the state directory (WAL). The row is written before the provider
//! call (state `pending`, no remote id yet) and completed after it, so a crash in between
//! leaves a visible, reconcilable row rather than an unknown VM. Another tenant's id is
//! indistinguishable from an unknown id: every query is keyed by (tenant, id).

pub mod lifecycle;
pub mod sync;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::db::Db;
use crate::error::GatewayError;

/// One instance as Skyport knows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceRecord {
    /// `i-` + 17 hex.
    pub id: String,
    /// Owning tenant (never shown to others).
    #[serde(skip)]
    pub tenant: String,
    /// Department billed.
    pub department: Option<String>,
    /// Provider instance name.
    pub provider: String,
    /// Region.
    pub region: String,
    /// The provider's own id (never shown to tenants).
    #[serde(skip)]
    pub remote_id: Option<String>,
    /// Image.
    pub image: String,
    /// Instance type.
    pub instance_type: String,
    /// Name given at creation.
    pub name: Option<String>,
    /// Tags.
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// EC2-named state.
    pub state: String,
    /// Creation time (RFC 3339 UTC).
    pub created_at: String,
    /// Key pair named at creation (EC2 `KeyName`).
    pub key_name: Option<String>,
    /// The caller's idempotency token (EC2 `ClientToken`): a retried create with the same
    /// token returns this instance instead of creating another.
    #[serde(skip)]
    pub client_token: Option<String>,
}

impl InstanceRecord {
    /// What metering records and the metering plugin's inventory view say about an
    /// instance: its id, provider, region, type and the type's size. Callers add their own
    /// fields (event, state, tenant).
    pub fn meter_attributes(&self) -> serde_json::Map<String, serde_json::Value> {
        let size = crate::catalog::instance_type(&self.instance_type);
        let serde_json::Value::Object(map) = serde_json::json!({
            "instance_id": self.id,
            "provider": self.provider,
            "region": self.region,
            "instance_type": self.instance_type,
            "vcpus": size.map(|t| t.vcpus),
            "memory_mib": size.map(|t| t.memory_mib),
        }) else {
            unreachable!("a json! object literal is an object")
        };
        map
    }
}

/// The inventory store.
#[derive(Clone)]
pub struct Inventory {
    db: Db,
    claims: Arc<Mutex<HashSet<String>>>,
}

/// An API operation's hold on one instance: while it lives, no other operation may start on
/// that instance and the background sync leaves the instance alone (the operation records
/// and meters its own outcome). Released on drop.
pub struct Claim {
    id: String,
    claims: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Inventory {
    /// Opens (and migrates) `<state_dir>/skyport.db`.
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
        db.migrate(|conn| {
            for (column, ddl) in [
                ("key_name", "ALTER TABLE instances ADD COLUMN key_name TEXT"),
                (
                    "client_token",
                    "ALTER TABLE instances ADD COLUMN client_token TEXT",
                ),
            ] {
                let present: bool = conn.query_row(
                    "SELECT count(*) FROM pragma_table_info('instances') WHERE name = ?1",
                    params![column],
                    |row| row.get::<_, i64>(0).map(|n| n > 0),
                )?;
                if !present {
                    conn.execute_batch(ddl)?;
                }
            }
            conn.execute_batch(
                "CREATE UNIQUE INDEX IF NOT EXISTS instances_client_token
                 ON instances (tenant, client_token) WHERE client_token IS NOT NULL;",
            )
        })?;
        Ok(Self {
            db,
            claims: Arc::default(),
        })
    }

    /// Claims instance `id` for one API operation; 409 while another one holds it.
    pub fn claim(&self, id: &str) -> Result<Claim, GatewayError> {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if !claims.insert(id.to_string()) {
            return Err(GatewayError::new(
                crate::error::ErrorKind::Conflict,
                format!("another operation on instance {id} is in progress; retry when it ends"),
            ));
        }
        Ok(Claim {
            id: id.to_string(),
            claims: Arc::clone(&self.claims),
        })
    }

    /// Whether an API operation holds instance `id`.
    pub fn is_claimed(&self, id: &str) -> bool {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Moves instance `id` from state `from` to `to`; false when its state was no longer
    /// `from` (someone else recorded a change first), so a change is recorded, and
    /// metered, once.
    pub async fn transition(&self, id: &str, from: &str, to: &str) -> Result<bool, GatewayError> {
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

    /// Every instance of `provider` that has a remote id and is not terminated: what a
    /// reconciliation compares with the provider's own inventory.
    pub async fn active_for_provider(
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

    /// Inserts a new record.
    pub async fn insert(&self, r: InstanceRecord) -> Result<(), GatewayError> {
        self.db
            .with(move |c| {
                c.execute(
                "INSERT INTO instances (id, tenant, department, provider, region, remote_id, image,
                 instance_type, name, tags, state, created_at, key_name, client_token)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
                    serde_json::Value::Object(r.tags).to_string(),
                    r.state,
                    r.created_at,
                    r.key_name,
                    r.client_token
                ],
            )
            .map(|_| ())
            })
            .await
    }

    /// Sets remote id and state.
    pub async fn update(
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

    /// Replaces the tags of instance `id`.
    pub async fn set_tags(
        &self,
        id: &str,
        tags: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), GatewayError> {
        let id = id.to_string();
        let tags = serde_json::Value::Object(tags).to_string();
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

    /// The tenant's instance created with idempotency token `token`, if any.
    pub async fn by_client_token(
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

    /// Deletes a record.
    pub async fn delete(&self, id: &str) -> Result<(), GatewayError> {
        let id = id.to_string();
        self.db
            .with(move |c| {
                c.execute("DELETE FROM instances WHERE id = ?1", params![id])
                    .map(|_| ())
            })
            .await
    }

    /// The tenant's instance `id`, or `None` (also for another tenant's id).
    pub async fn get(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<InstanceRecord>, GatewayError> {
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

    /// The tenant's instances, ordered by id.
    pub async fn list(&self, tenant: &str) -> Result<Vec<InstanceRecord>, GatewayError> {
        let tenant = tenant.to_string();
        self.db
            .with(move |c| {
                let mut stmt = c.prepare(&format!("{SELECT} WHERE tenant = ?1 ORDER BY id"))?;
                let rows = stmt.query_map(params![tenant], row_to_record)?;
                rows.collect()
            })
            .await
    }
}

const SELECT: &str =
    "SELECT id, tenant, department, provider, region, remote_id, image, instance_type,
    name, tags, state, created_at, key_name, client_token FROM instances";

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
    })
}

/// A new Skyport instance id: `i-` + 17 lower-case hex digits.
pub fn new_instance_id() -> String {
    crate::ids::new_id("i")
}

/// Whether `id` has the shape of a Skyport instance id.
pub fn is_instance_id(id: &str) -> bool {
    id.len() == 19
        && id.starts_with("i-")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_ec2_shape() {
        for _ in 0..100 {
            let id = new_instance_id();
            assert!(is_instance_id(&id), "{id}");
        }
        assert!(!is_instance_id("i-123"));
        assert!(!is_instance_id("i-0123456789ABCDEF0"));
    }

    #[tokio::test]
    async fn another_tenants_id_is_not_found() {
        let dir = std::env::temp_dir().join(format!("inv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inv = Inventory::open(&dir).unwrap();
        let record = InstanceRecord {
            id: new_instance_id(),
            tenant: "demo".into(),
            department: None,
            provider: "local-vmm".into(),
            region: "local-1".into(),
            remote_id: None,
            image: "skyport-tiny".into(),
            instance_type: "sp.micro".into(),
            name: None,
            tags: Default::default(),
            state: "pending".into(),
            created_at: "2026-11-23T00:00:00.000Z".into(),
            key_name: None,
            client_token: Some("token-1".into()),
        };
        inv.insert(record.clone()).await.unwrap();
        assert_eq!(
            inv.get("demo", &record.id).await.unwrap(),
            Some(record.clone())
        );
        assert_eq!(inv.get("acme", &record.id).await.unwrap(), None);
        assert_eq!(
            inv.by_client_token("demo", "token-1").await.unwrap(),
            Some(record.clone())
        );
        assert_eq!(inv.by_client_token("acme", "token-1").await.unwrap(), None);
        assert!(inv.list("acme").await.unwrap().is_empty());
        inv.update(&record.id, Some("vm-1".into()), "running", None)
            .await
            .unwrap();
        assert_eq!(
            inv.get("demo", &record.id).await.unwrap().unwrap().state,
            "running"
        );

        // A change is recorded once: the second observer of running -> stopped loses.
        assert!(inv
            .transition(&record.id, "running", "stopped")
            .await
            .unwrap());
        assert!(!inv
            .transition(&record.id, "running", "stopped")
            .await
            .unwrap());
        let active = inv.active_for_provider("local-vmm").await.unwrap();
        assert_eq!(active.len(), 1);
        assert!(inv.active_for_provider("ec2").await.unwrap().is_empty());

        // One API operation per instance at a time; the claim ends with its guard.
        let claim = inv.claim(&record.id).unwrap();
        assert!(inv.is_claimed(&record.id));
        assert_eq!(
            inv.claim(&record.id).err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Conflict)
        );
        drop(claim);
        assert!(!inv.is_claimed(&record.id));
        assert!(inv.claim(&record.id).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
