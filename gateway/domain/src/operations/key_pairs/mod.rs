//! SSH key pairs, per tenant (EC2 `CreateKeyPair`, `ImportKeyPair`, `DescribeKeyPairs`,
//! `DeleteKeyPair`). Skyport keeps the public half, in a [`KeyPairStore`]; a created key's
//! private half is returned once and never stored. Fingerprints are OpenSSH's (see
//! [`material`]).

mod material;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use skyport_core::clock::SharedClock;
use skyport_core::error::{Detail, ErrorKind, GatewayError, Resource};
use skyport_core::ids::rfc3339_millis;

use super::cpu_work::CpuWork;

/// One stored key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// Name, unique per tenant.
    pub name: String,
    /// `key-` + 17 hex.
    pub id: String,
    /// `rsa` or `ed25519`.
    pub key_type: String,
    /// `SHA256:...`.
    pub fingerprint: String,
    /// OpenSSH public key line (`ssh-ed25519 AAAA...`).
    pub public_key: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// Key types `CreateKeyPair` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA 2048 (EC2's default).
    Rsa,
    /// Ed25519.
    Ed25519,
}

/// Where key pairs are kept.
#[async_trait]
pub trait KeyPairStore: Send + Sync {
    /// Stores `pair` for `tenant`; false (nothing stored) when the tenant already has a key
    /// pair of that name.
    async fn insert(&self, tenant: &str, pair: KeyPair) -> Result<bool, GatewayError>;

    /// The tenant's key pairs, by name.
    async fn list(&self, tenant: &str) -> Result<Vec<KeyPair>, GatewayError>;

    /// The tenant's key pair named `name`.
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<KeyPair>, GatewayError>;

    /// Deletes the tenant's key pair with this name or id; false when there was none.
    async fn delete(&self, tenant: &str, name_or_id: &str) -> Result<bool, GatewayError>;
}

/// Longest key-pair name (as on EC2).
const MAX_NAME: usize = 255;

/// The tenants' key pairs.
pub struct KeyPairService {
    store: Arc<dyn KeyPairStore>,
    clock: SharedClock,
    /// Key generation's turn on the CPU.
    cpu: CpuWork,
}

impl KeyPairService {
    /// Key pairs kept in `store`, created at `clock`'s time.
    pub fn new(store: Arc<dyn KeyPairStore>, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            cpu: CpuWork::default(),
        }
    }

    /// Creates a key pair; returns it with the private key (PKCS#8 PEM), shown only now.
    pub async fn create(
        &self,
        tenant: &str,
        name: &str,
        key_type: KeyType,
    ) -> Result<(KeyPair, String), GatewayError> {
        check_name(name)?;
        // An RSA key takes tens of milliseconds of CPU: off the request workers, in turn.
        let (public_key, private_pem) = self
            .cpu
            .run(tenant, move || material::generate(key_type))
            .await??;
        let pair = self.insert(tenant, name, &public_key).await?;
        Ok((pair, private_pem))
    }

    /// Stores the public key `material` (an OpenSSH public key line) under `name`.
    pub async fn import(
        &self,
        tenant: &str,
        name: &str,
        material: &str,
    ) -> Result<KeyPair, GatewayError> {
        check_name(name)?;
        self.insert(tenant, name, material.trim()).await
    }

    async fn insert(
        &self,
        tenant: &str,
        name: &str,
        public_key: &str,
    ) -> Result<KeyPair, GatewayError> {
        let (key_type, blob) = material::parse_public_key(public_key)?;
        let pair = KeyPair {
            name: name.to_string(),
            id: skyport_core::ids::new_id("key"),
            key_type,
            fingerprint: material::fingerprint(&blob),
            // Stored without the comment, which may name a person or a machine.
            public_key: public_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            created_at: rfc3339_millis(self.clock.wall()),
        };
        if !self.store.insert(tenant, pair.clone()).await? {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                format!("the key pair '{name}' already exists"),
            )
            .with_detail(Detail::Duplicate(Resource::KeyPair)));
        }
        Ok(pair)
    }

    /// The tenant's key pairs, by name.
    pub async fn list(&self, tenant: &str) -> Result<Vec<KeyPair>, GatewayError> {
        self.store.list(tenant).await
    }

    /// The tenant's key pair named `name`.
    pub async fn get(&self, tenant: &str, name: &str) -> Result<Option<KeyPair>, GatewayError> {
        self.store.get(tenant, name).await
    }

    /// Deletes the tenant's key pair with this name or id; false when there was none.
    pub async fn delete(&self, tenant: &str, name_or_id: &str) -> Result<bool, GatewayError> {
        self.store.delete(tenant, name_or_id).await
    }
}

fn check_name(name: &str) -> Result<(), GatewayError> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(|c| c.is_control()) {
        return Err(GatewayError::invalid(format!(
            "a key pair name is 1-{MAX_NAME} printable characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use skyport_core::clock::ManualClock;

    use super::memory::MemoryKeyPairs;
    use super::*;

    fn service() -> KeyPairService {
        KeyPairService::new(
            Arc::new(MemoryKeyPairs::default()),
            ManualClock::at_unix(1_795_433_941),
        )
    }

    #[tokio::test]
    async fn created_keys_are_tenant_scoped_and_names_unique_per_tenant() {
        let keys = service();
        let (pair, private) = keys.create("demo", "a", KeyType::Ed25519).await.unwrap();
        assert!(pair.public_key.starts_with("ssh-ed25519 "));
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(pair.created_at, "2026-11-23T11:39:01.000Z");
        let duplicate = keys.create("demo", "a", KeyType::Rsa).await.unwrap_err();
        assert_eq!(duplicate.kind, ErrorKind::Conflict);
        assert_eq!(duplicate.detail, Some(Detail::Duplicate(Resource::KeyPair)));
        keys.create("acme", "a", KeyType::Ed25519).await.unwrap();
        assert!(keys.get("acme", "b").await.unwrap().is_none());
        assert!(!keys.delete("acme", "b").await.unwrap());
        assert!(keys.delete("demo", &pair.id).await.unwrap());
        assert!(keys.list("demo").await.unwrap().is_empty());
        assert_eq!(keys.list("acme").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn imports_check_the_key_and_the_name_and_drop_the_comment() {
        let keys = service();
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvbRm2wv8GQcUuA0LUm7kmgUFplH0y8Ghy7bhcr6qRQ alice@laptop";
        let pair = keys.import("demo", "k", line).await.unwrap();
        assert_eq!(pair.key_type, "ed25519");
        assert!(!pair.public_key.contains("alice"));
        for (name, material) in [("x", "hello"), ("", line), ("bad\u{7}", line)] {
            assert_eq!(
                keys.import("demo", name, material).await.unwrap_err().kind,
                ErrorKind::InvalidInput,
                "{name:?}"
            );
        }
    }
}
