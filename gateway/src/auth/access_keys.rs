//! EC2 access keys: access key id -> (tenant, department, secret), in the gateway database
//! (`<state-dir>/skyport.db`, owner-only permissions). The secret is returned once, at
//! creation, and never logged. Keys are created and revoked by `skyport keys` and the admin
//! API; lookups are cached for [`LOOKUP_TTL`], so a key revoked from the command line
//! (another process) stops working within that time, and one revoked through the admin
//! API at once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::sigv4::HmacSha256;
use crate::db::Db;
use crate::error::{ErrorKind, GatewayError};

/// How long a looked-up key (or its absence) is trusted before the database is asked again.
pub const LOOKUP_TTL: Duration = Duration::from_secs(5);

/// One access key, as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessKey {
    /// `AKSP` + 16 characters.
    pub access_key_id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Department its requests bill, if any.
    pub department: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Revocation time, once revoked.
    pub revoked_at: Option<String>,
}

/// Signing keys by (scope date, region), each as an HMAC already keyed with it. A handful
/// per key at most, so a list searched without allocating beats a map.
type SigningKeys = Vec<(String, String, HmacSha256)>;

/// A usable key with its secret (what verification needs). `Debug` leaves the secret and
/// its derived keys out.
pub struct ActiveKey {
    /// Owning tenant.
    pub tenant: String,
    /// Department.
    pub department: Option<String>,
    /// Secret access key.
    pub secret: String,
    /// Derived SigV4 signing keys by (scope date, region): four HMACs saved on every
    /// request after the first of a day and region.
    signing_keys: std::sync::Mutex<SigningKeys>,
}

impl std::fmt::Debug for ActiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveKey")
            .field("tenant", &self.tenant)
            .field("department", &self.department)
            .finish_non_exhaustive()
    }
}

impl ActiveKey {
    /// An HMAC keyed with the SigV4 signing key of `signed`'s scope, derived once per date
    /// and region.
    pub fn signing_mac(&self, signed: &super::sigv4::SignedRequest) -> HmacSha256 {
        let mut keys = self.signing_keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, mac)) = keys
            .iter()
            .find(|(date, region, _)| *date == signed.scope_date && *region == signed.region)
        {
            return mac.clone();
        }
        // A handful of scopes per day; dropping older ones keeps the list short.
        if keys.len() >= 16 {
            keys.clear();
        }
        let mac = super::sigv4::signing_mac(&self.secret, signed);
        keys.push((
            signed.scope_date.to_string(),
            signed.region.to_string(),
            mac.clone(),
        ));
        mac
    }
}

/// A new key: shown to its owner once.
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    /// The key's public part.
    #[serde(flatten)]
    pub key: AccessKey,
    /// The secret; not retrievable later.
    pub secret_access_key: String,
}

/// The access-key store.
pub struct AccessKeyStore {
    db: Db,
    cache: moka::future::Cache<String, Option<Arc<ActiveKey>>>,
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl AccessKeyStore {
    /// Opens (and migrates) the table in `<state_dir>/skyport.db`, which is made readable
    /// by its owner only.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "access keys",
            "CREATE TABLE IF NOT EXISTS access_keys (
                access_key_id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                department TEXT,
                secret TEXT NOT NULL,
                created_at TEXT NOT NULL,
                revoked_at TEXT
            );",
        )?;
        restrict_to_owner(&state_dir.join("skyport.db"))?;
        Ok(Self {
            db,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LOOKUP_TTL)
                .build(),
        })
    }

    /// Creates a key for `tenant` (and `department`); the caller checks both exist.
    pub async fn create(
        &self,
        tenant: &str,
        department: Option<&str>,
    ) -> Result<NewKey, GatewayError> {
        let id: String = "AKSP"
            .chars()
            .chain((0..16).map(|_| ID_ALPHABET[rand::random_range(0..32)] as char))
            .collect();
        let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 30]>());
        let key = AccessKey {
            access_key_id: id,
            tenant: tenant.to_string(),
            department: department.map(str::to_owned),
            created_at: crate::ids::rfc3339_millis(SystemTime::now()),
            revoked_at: None,
        };
        let (row, secret_row) = (key.clone(), secret.clone());
        self.db
            .with(move |c| {
                c.execute(
                "INSERT INTO access_keys (access_key_id, tenant, department, secret, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    row.access_key_id,
                    row.tenant,
                    row.department,
                    secret_row,
                    row.created_at
                ],
            )
            })
            .await?;
        self.cache.invalidate(&key.access_key_id).await;
        Ok(NewKey {
            key,
            secret_access_key: secret,
        })
    }

    /// Every key (of `tenant`, when given), oldest first, revoked ones included.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<AccessKey>, GatewayError> {
        let tenant = tenant.map(str::to_owned);
        self.db
            .with(move |c| {
                let mut stmt = c.prepare(
                    "SELECT access_key_id, tenant, department, created_at, revoked_at
                 FROM access_keys WHERE ?1 IS NULL OR tenant = ?1
                 ORDER BY created_at, access_key_id",
                )?;
                let rows = stmt.query_map(params![tenant], row_to_key)?;
                rows.collect()
            })
            .await
    }

    /// Revokes a key at once; 404 when there is no such key, 409 when already revoked.
    pub async fn revoke(&self, access_key_id: &str) -> Result<AccessKey, GatewayError> {
        let id = access_key_id.to_string();
        let now = crate::ids::rfc3339_millis(SystemTime::now());
        let changed = self
            .db
            .with(move |c| {
                c.execute(
                    "UPDATE access_keys SET revoked_at = ?2
                     WHERE access_key_id = ?1 AND revoked_at IS NULL",
                    params![id, now],
                )
            })
            .await?;
        self.cache.invalidate(access_key_id).await;
        let id = access_key_id.to_string();
        let key = self
            .db
            .with(move |c| {
                c.query_row(
                    "SELECT access_key_id, tenant, department, created_at, revoked_at
                     FROM access_keys WHERE access_key_id = ?1",
                    params![id],
                    row_to_key,
                )
                .optional()
            })
            .await?
            .ok_or_else(|| GatewayError::not_found(format!("no access key {access_key_id}")))?;
        if changed == 0 {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                format!("access key {access_key_id} is already revoked"),
            ));
        }
        Ok(key)
    }

    /// The active key `access_key_id`, or `None` (unknown or revoked).
    pub async fn active(
        &self,
        access_key_id: &str,
    ) -> Result<Option<Arc<ActiveKey>>, GatewayError> {
        if let Some(hit) = self.cache.get(access_key_id).await {
            return Ok(hit);
        }
        let id = access_key_id.to_string();
        let found = self
            .db
            .with(move |c| {
                c.query_row(
                    "SELECT tenant, department, secret FROM access_keys
                     WHERE access_key_id = ?1 AND revoked_at IS NULL",
                    params![id],
                    |row| {
                        Ok(ActiveKey {
                            tenant: row.get(0)?,
                            department: row.get(1)?,
                            secret: row.get(2)?,
                            signing_keys: Default::default(),
                        })
                    },
                )
                .optional()
            })
            .await?
            .map(Arc::new);
        self.cache
            .insert(access_key_id.to_string(), found.clone())
            .await;
        Ok(found)
    }
}

fn row_to_key(row: &rusqlite::Row<'_>) -> Result<AccessKey, rusqlite::Error> {
    Ok(AccessKey {
        access_key_id: row.get(0)?,
        tenant: row.get(1)?,
        department: row.get(2)?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_lookup_revoke() {
        let dir = std::env::temp_dir().join(format!("ak-{}", std::process::id()));
        let store = AccessKeyStore::open(&dir).unwrap();
        let new = store.create("demo", Some("finance")).await.unwrap();
        assert!(new.key.access_key_id.starts_with("AKSP"));
        assert_eq!(new.key.access_key_id.len(), 20);
        assert_eq!(new.secret_access_key.len(), 40);
        let active = store.active(&new.key.access_key_id).await.unwrap().unwrap();
        assert_eq!(active.tenant, "demo");
        assert_eq!(active.secret, new.secret_access_key);
        assert!(store
            .active("AKSPNOSUCHKEY0000000")
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.list(Some("acme")).await.unwrap(), vec![]);
        store.revoke(&new.key.access_key_id).await.unwrap();
        assert!(store
            .active(&new.key.access_key_id)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store.revoke(&new.key.access_key_id).await.unwrap_err().kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            store.revoke("AKSPNOSUCHKEY0000000").await.unwrap_err().kind,
            ErrorKind::NotFound
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("skyport.db"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
