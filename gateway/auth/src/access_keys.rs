//! EC2 access keys: access key id -> (tenant, department, secret). The secret is returned
//! once, at creation, and never logged. Keys are created and revoked by `skyport keys` and
//! the admin API ([`AccessKeys`]); lookups are cached for [`LOOKUP_TTL`], so a key revoked
//! from the command line (another process) stops working within that time, and one
//! revoked through the admin API at once. The keys used lately are found first in a
//! lock-free table of their own (`recent`), held to the same TTL.
//!
//! Where keys are kept is an [`AccessKeyStore`] (the embedded default keeps them in the
//! gateway database, readable by its owner only); `conformance` (feature `testkit`) is
//! what every store must pass.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde::Serialize;
use skyport_core::clock::SharedClock;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::ids::rfc3339_millis;

use crate::sigv4::HmacSha256;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;
mod recent;

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
    /// The key's id.
    access_key_id: Box<str>,
    /// When the store was asked for it (monotonic): how long it may be trusted.
    looked_up: Duration,
    /// Set when it is revoked through this gateway: a request that found it before then
    /// and is still reading its body is refused too.
    revoked: std::sync::atomic::AtomicBool,
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
    fn new(
        access_key_id: &str,
        tenant: String,
        department: Option<String>,
        secret: String,
        looked_up: Duration,
    ) -> Self {
        Self {
            tenant,
            department,
            secret,
            signing_keys: Default::default(),
            access_key_id: access_key_id.into(),
            looked_up,
            revoked: Default::default(),
        }
    }

    /// Whether it was revoked through this gateway since it was looked up.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(std::sync::atomic::Ordering::Acquire)
    }

    /// An HMAC keyed with the SigV4 signing key of `signed`'s scope, derived once per date
    /// and region.
    pub fn signing_mac(&self, signed: &crate::sigv4::SignedRequest) -> HmacSha256 {
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
        let mac = crate::sigv4::signing_mac(&self.secret, signed);
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

/// A key's owner and secret: what a store keeps besides the listed facts.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret {
    /// Owning tenant.
    pub tenant: String,
    /// Department its requests bill.
    pub department: Option<String>,
    /// Secret access key.
    pub secret: String,
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySecret")
            .field("tenant", &self.tenant)
            .field("department", &self.department)
            .finish_non_exhaustive()
    }
}

/// What a revocation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The key was active and is revoked now.
    Revoked(AccessKey),
    /// The key had been revoked before.
    AlreadyRevoked(AccessKey),
    /// No such key.
    Unknown,
}

/// Where access keys are kept.
#[async_trait]
pub trait AccessKeyStore: Send + Sync {
    /// Stores a new key and its secret.
    async fn insert(&self, key: AccessKey, secret: String) -> Result<(), GatewayError>;

    /// Every key (of `tenant`, when given), oldest first (by creation time, then id),
    /// revoked ones included, never with their secrets.
    async fn list(&self, tenant: Option<&str>) -> Result<Vec<AccessKey>, GatewayError>;

    /// Revokes key `access_key_id` as of `at` (RFC 3339), unless it already is.
    async fn revoke(&self, access_key_id: &str, at: &str) -> Result<Revocation, GatewayError>;

    /// The owner and secret of key `access_key_id` while it is active; `None` when it is
    /// unknown or revoked.
    async fn secret(&self, access_key_id: &str) -> Result<Option<KeySecret>, GatewayError>;
}

/// Access keys: created, listed, revoked, and looked up for SigV4 verification.
pub struct AccessKeys {
    store: Arc<dyn AccessKeyStore>,
    cache: moka::future::Cache<String, Option<Arc<ActiveKey>>>,
    /// The keys used lately, in front of `cache`.
    recent: recent::RecentKeys,
    clock: SharedClock,
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// What the lookup cache may hold, in bytes (estimated per entry).
const CACHE_BYTES: u64 = 16 << 20;
/// What one cache entry costs beside its id (the key, the secret, moka's own).
const ENTRY_BYTES: usize = 256;

/// Whether `id` could name an access key: 16-128 letters and digits, as AWS's own are
/// (Skyport's are 20). Anything else is refused without a lookup.
pub fn is_well_formed(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl AccessKeys {
    /// Keys kept in `store`; creation and revocation times are read from `clock`.
    pub fn new(store: Arc<dyn AccessKeyStore>, clock: SharedClock) -> Self {
        Self {
            store,
            // Weighed by what an entry holds (its id, chosen by the caller, and a key), so
            // the cache stays within [`CACHE_BYTES`] whatever ids callers send.
            cache: moka::future::Cache::builder()
                .weigher(|id: &String, _| u32::try_from(id.len() + ENTRY_BYTES).unwrap_or(u32::MAX))
                .max_capacity(CACHE_BYTES)
                .time_to_live(LOOKUP_TTL)
                .build(),
            recent: recent::RecentKeys::new(),
            clock,
        }
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
            created_at: rfc3339_millis(self.clock.wall()),
            revoked_at: None,
        };
        self.store.insert(key.clone(), secret.clone()).await?;
        self.cache.invalidate(&key.access_key_id).await;
        Ok(NewKey {
            key,
            secret_access_key: secret,
        })
    }

    /// Every key (of `tenant`, when given), oldest first, revoked ones included.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<AccessKey>, GatewayError> {
        self.store.list(tenant).await
    }

    /// Revokes a key at once; 404 when there is no such key, 409 when already revoked.
    pub async fn revoke(&self, access_key_id: &str) -> Result<AccessKey, GatewayError> {
        let at = rfc3339_millis(self.clock.wall());
        let revocation = self.store.revoke(access_key_id, &at).await?;
        // Requests in flight hold the key they found: it says it is revoked now.
        let cached = self.cache.remove(access_key_id).await.flatten();
        for key in cached
            .iter()
            .chain(self.recent.forget(access_key_id).iter())
        {
            key.revoked
                .store(true, std::sync::atomic::Ordering::Release);
        }
        match revocation {
            Revocation::Revoked(key) => Ok(key),
            Revocation::AlreadyRevoked(_) => Err(GatewayError::new(
                ErrorKind::Conflict,
                format!("access key {access_key_id} is already revoked"),
            )),
            Revocation::Unknown => Err(GatewayError::not_found(format!(
                "no access key {access_key_id}"
            ))),
        }
    }

    /// The active key `access_key_id`, or `None` (unknown or revoked).
    pub async fn active(
        &self,
        access_key_id: &str,
    ) -> Result<Option<Arc<ActiveKey>>, GatewayError> {
        if !is_well_formed(access_key_id) {
            // No key has such an id: nothing to look up or to remember.
            return Ok(None);
        }
        let now = self.clock.monotonic();
        if let Some(key) = self.recent.get(access_key_id, now) {
            return Ok(Some(key));
        }
        // Boxed: moka's lookup is a kilobyte of future, which every caller's future would
        // otherwise carry (and copy) even when `recent` answers.
        let found = Box::pin(self.look_up(access_key_id, now)).await?;
        if let Some(key) = &found {
            self.recent.put(Arc::clone(key));
        }
        Ok(found)
    }

    /// Key `access_key_id` from the lookup cache, else from the store (then cached); `now`
    /// is when it is being looked up (monotonic).
    async fn look_up(
        &self,
        access_key_id: &str,
        now: Duration,
    ) -> Result<Option<Arc<ActiveKey>>, GatewayError> {
        if let Some(hit) = self.cache.get(access_key_id).await {
            return Ok(hit);
        }
        let found = self.store.secret(access_key_id).await?.map(|s| {
            Arc::new(ActiveKey::new(
                access_key_id,
                s.tenant,
                s.department,
                s.secret,
                now,
            ))
        });
        self.cache
            .insert(access_key_id.to_string(), found.clone())
            .await;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use skyport_core::clock::ManualClock;

    use super::memory::MemoryAccessKeys;
    use super::*;

    #[tokio::test]
    async fn ids_no_key_could_have_are_refused_without_a_lookup_or_a_cache_entry() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let keys = AccessKeys::new(Arc::new(MemoryAccessKeys::default()), clock.clone());
        for id in ["AKSP", "AKSP-NOT-ALNUM-0000", &"A".repeat(12_000)] {
            assert!(!is_well_formed(id));
            assert!(keys.active(id).await.unwrap().is_none());
        }
        keys.cache.run_pending_tasks().await;
        assert_eq!(keys.cache.entry_count(), 0);
        // A well-formed unknown id is looked up and remembered (briefly).
        assert!(keys.active("AKSPAAAAAAAAAAAAAAAA").await.unwrap().is_none());
        keys.cache.run_pending_tasks().await;
        assert_eq!(keys.cache.entry_count(), 1);
    }

    #[tokio::test]
    async fn a_key_revoked_through_the_service_is_refused_at_once_even_when_just_used() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let keys = AccessKeys::new(Arc::new(MemoryAccessKeys::default()), clock.clone());
        let id = keys.create("demo", None).await.unwrap().key.access_key_id;
        // Used twice (the second found among the recent keys), then revoked with no time
        // passing: neither the recent keys nor the lookup cache may still answer.
        assert!(keys.active(&id).await.unwrap().is_some());
        assert!(keys.active(&id).await.unwrap().is_some());
        keys.revoke(&id).await.unwrap();
        assert!(keys.active(&id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_request_holding_a_key_learns_it_was_revoked() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let keys = AccessKeys::new(Arc::new(MemoryAccessKeys::default()), clock.clone());
        let id = keys.create("demo", None).await.unwrap().key.access_key_id;
        let other = keys.create("demo", None).await.unwrap().key.access_key_id;
        // What a request reading its body holds (found once among the recent keys too).
        let held = keys.active(&id).await.unwrap().unwrap();
        assert!(keys.active(&id).await.unwrap().is_some());
        let held_other = keys.active(&other).await.unwrap().unwrap();
        assert!(!held.is_revoked());
        keys.revoke(&id).await.unwrap();
        assert!(held.is_revoked(), "the key it holds says so");
        assert!(!held_other.is_revoked(), "another key does not");
    }

    #[tokio::test]
    async fn a_key_is_created_looked_up_and_revoked_once() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let keys = AccessKeys::new(Arc::new(MemoryAccessKeys::default()), clock.clone());
        let new = keys.create("demo", Some("finance")).await.unwrap();
        assert!(new.key.access_key_id.starts_with("AKSP"));
        assert_eq!(new.key.access_key_id.len(), 20);
        assert_eq!(new.secret_access_key.len(), 40);
        assert_eq!(new.key.created_at, "2026-11-23T11:39:01.000Z");
        let active = keys.active(&new.key.access_key_id).await.unwrap().unwrap();
        assert_eq!(
            (active.tenant.as_str(), active.secret.as_str()),
            ("demo", new.secret_access_key.as_str())
        );
        assert!(!format!("{active:?}").contains(&new.secret_access_key));
        assert!(keys.active("AKSPNOSUCHKEY0000000").await.unwrap().is_none());

        clock.advance(Duration::from_secs(60));
        let revoked = keys.revoke(&new.key.access_key_id).await.unwrap();
        assert_eq!(
            revoked.revoked_at.as_deref(),
            Some("2026-11-23T11:40:01.000Z")
        );
        // Revoked through this service: refused at once, not after the lookup TTL.
        assert!(keys.active(&new.key.access_key_id).await.unwrap().is_none());
        let again = keys.revoke(&new.key.access_key_id).await.unwrap_err();
        assert_eq!(again.kind, ErrorKind::Conflict);
        let unknown = keys.revoke("AKSPNOSUCHKEY0000000").await.unwrap_err();
        assert_eq!(unknown.kind, ErrorKind::NotFound);
    }
}
