//! SSH key pairs, per tenant (EC2 `CreateKeyPair`, `ImportKeyPair`, `DescribeKeyPairs`,
//! `DeleteKeyPair`). Skyport keeps the public half; a created key's private half is
//! returned once and never stored. Fingerprints are OpenSSH's (`SHA256:` and the unpadded
//! base64 SHA-256 of the public key blob), the same `ssh-keygen -l` prints.

use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::error::{ErrorKind, GatewayError};
use x509_parser::prelude::FromDer;

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

/// The tenant key-pair store (table `key_pairs` in the gateway database).
#[derive(Clone)]
pub struct KeyPairStore {
    db: Db,
}

/// Longest key-pair name (as on EC2).
const MAX_NAME: usize = 255;

impl KeyPairStore {
    /// Opens (and migrates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "key pairs",
            "CREATE TABLE IF NOT EXISTS key_pairs (
                tenant TEXT NOT NULL,
                name TEXT NOT NULL,
                id TEXT NOT NULL UNIQUE,
                key_type TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                public_key TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (tenant, name)
            );",
        )?;
        Ok(Self { db })
    }

    /// Creates a key pair; returns it with the private key (PKCS#8 PEM), shown only now.
    pub async fn create(
        &self,
        tenant: &str,
        name: &str,
        key_type: KeyType,
    ) -> Result<(KeyPair, String), GatewayError> {
        check_name(name)?;
        let (public_key, private_pem) = generate(key_type)?;
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
        let (key_type, blob) = parse_public_key(public_key)?;
        let pair = KeyPair {
            name: name.to_string(),
            id: crate::ids::new_id("key"),
            key_type,
            fingerprint: fingerprint(&blob),
            // Stored without the comment, which may name a person or a machine.
            public_key: public_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            created_at: crate::ids::rfc3339_millis(SystemTime::now()),
        };
        let (tenant, row) = (tenant.to_string(), pair.clone());
        let inserted = self
            .db
            .with(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO key_pairs
                     (tenant, name, id, key_type, fingerprint, public_key, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        tenant,
                        row.name,
                        row.id,
                        row.key_type,
                        row.fingerprint,
                        row.public_key,
                        row.created_at
                    ],
                )
            })
            .await?;
        if inserted == 0 {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                format!("the key pair '{name}' already exists"),
            ));
        }
        Ok(pair)
    }

    /// The tenant's key pairs, by name.
    pub async fn list(&self, tenant: &str) -> Result<Vec<KeyPair>, GatewayError> {
        let tenant = tenant.to_string();
        self.db
            .with(move |c| {
                let mut stmt = c.prepare(
                    "SELECT name, id, key_type, fingerprint, public_key, created_at
                 FROM key_pairs WHERE tenant = ?1 ORDER BY name",
                )?;
                let rows = stmt.query_map(params![tenant], row_to_pair)?;
                rows.collect()
            })
            .await
    }

    /// The tenant's key pair named `name`.
    pub async fn get(&self, tenant: &str, name: &str) -> Result<Option<KeyPair>, GatewayError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.db
            .with(move |c| {
                c.query_row(
                    "SELECT name, id, key_type, fingerprint, public_key, created_at
                 FROM key_pairs WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    row_to_pair,
                )
                .optional()
            })
            .await
    }

    /// Deletes the tenant's key pair with this name or id; false when there was none.
    pub async fn delete(&self, tenant: &str, name_or_id: &str) -> Result<bool, GatewayError> {
        let (tenant, key) = (tenant.to_string(), name_or_id.to_string());
        self.db
            .with(move |c| {
                c.execute(
                    "DELETE FROM key_pairs WHERE tenant = ?1 AND (name = ?2 OR id = ?2)",
                    params![tenant, key],
                )
                .map(|n| n > 0)
            })
            .await
    }
}

fn row_to_pair(row: &rusqlite::Row<'_>) -> Result<KeyPair, rusqlite::Error> {
    Ok(KeyPair {
        name: row.get(0)?,
        id: row.get(1)?,
        key_type: row.get(2)?,
        fingerprint: row.get(3)?,
        public_key: row.get(4)?,
        created_at: row.get(5)?,
    })
}

fn check_name(name: &str) -> Result<(), GatewayError> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(|c| c.is_control()) {
        return Err(GatewayError::invalid(format!(
            "a key pair name is 1-{MAX_NAME} printable characters"
        )));
    }
    Ok(())
}

/// `SHA256:` + unpadded base64 of the SHA-256 of an SSH public key blob.
fn fingerprint(blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(blob))
    )
}

/// Key type name and wire blob of an OpenSSH public key line; 400 for anything else.
fn parse_public_key(line: &str) -> Result<(String, Vec<u8>), GatewayError> {
    let bad = || {
        GatewayError::invalid(
            "the public key must be an OpenSSH public key line (ssh-rsa, ssh-ed25519 or ecdsa-sha2-nistp256/384/521)",
        )
    };
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(bad());
    };
    let key_type = match kind {
        "ssh-rsa" => "rsa",
        "ssh-ed25519" => "ed25519",
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => "ecdsa",
        _ => return Err(bad()),
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    // The blob starts with its own type name; a mismatch means a corrupted or forged line.
    let named = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .ok_or_else(bad)?;
    if named != kind.as_bytes() {
        return Err(bad());
    }
    Ok((key_type.to_string(), blob))
}

fn ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn ssh_mpint(out: &mut Vec<u8>, big_endian: &[u8]) {
    let trimmed: &[u8] = {
        let start = big_endian
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(big_endian.len());
        &big_endian[start..]
    };
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        let mut padded = vec![0u8];
        padded.extend_from_slice(trimmed);
        ssh_string(out, &padded);
    } else {
        ssh_string(out, trimmed);
    }
}

/// A new key pair: (OpenSSH public key line, PKCS#8 PEM private key).
fn generate(key_type: KeyType) -> Result<(String, String), GatewayError> {
    let alg = match key_type {
        KeyType::Rsa => &rcgen::PKCS_RSA_SHA256,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
    };
    let pair = rcgen::KeyPair::generate_for(alg).map_err(GatewayError::internal)?;
    let mut blob = Vec::new();
    let kind = match key_type {
        KeyType::Rsa => {
            let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
            let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki)
                .map_err(GatewayError::internal)?;
            let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = info.parsed() else {
                return Err(GatewayError::internal("generated RSA key did not parse"));
            };
            ssh_string(&mut blob, b"ssh-rsa");
            ssh_mpint(&mut blob, rsa.exponent);
            ssh_mpint(&mut blob, rsa.modulus);
            "ssh-rsa"
        }
        KeyType::Ed25519 => {
            ssh_string(&mut blob, b"ssh-ed25519");
            ssh_string(&mut blob, pair.public_key_raw());
            "ssh-ed25519"
        }
    };
    let line = format!(
        "{kind} {}",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    Ok((line, pair.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(tag: &str) -> (KeyPairStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("kp-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        (KeyPairStore::open(&dir).unwrap(), dir)
    }

    #[tokio::test]
    async fn created_keys_are_valid_openssh_and_tenant_scoped() {
        let (store, dir) = store("create");
        for (name, kind, prefix) in [
            ("a", KeyType::Ed25519, "ssh-ed25519 "),
            ("b", KeyType::Rsa, "ssh-rsa "),
        ] {
            let (pair, private) = store.create("demo", name, kind).await.unwrap();
            assert!(pair.public_key.starts_with(prefix), "{}", pair.public_key);
            assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
            let (_, blob) = parse_public_key(&pair.public_key).unwrap();
            assert_eq!(pair.fingerprint, fingerprint(&blob));
        }
        assert_eq!(
            store
                .create("demo", "a", KeyType::Ed25519)
                .await
                .unwrap_err()
                .kind,
            ErrorKind::Conflict
        );
        assert!(store.list("acme").await.unwrap().is_empty());
        assert!(store.get("acme", "a").await.unwrap().is_none());
        assert!(!store.delete("acme", "a").await.unwrap());
        assert!(store.delete("demo", "a").await.unwrap());
        assert_eq!(store.list("demo").await.unwrap().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn imports_check_the_key_and_drop_the_comment() {
        let (store, dir) = store("import");
        // ssh-keygen -t ed25519 public key (a fixed test vector).
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvbRm2wv8GQcUuA0LUm7kmgUFplH0y8Ghy7bhcr6qRQ alice@laptop";
        let pair = store.import("demo", "k", line).await.unwrap();
        assert_eq!(pair.key_type, "ed25519");
        assert!(!pair.public_key.contains("alice"));
        assert_eq!(
            store
                .import("demo", "x", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGvbRm2w")
                .await
                .unwrap_err()
                .kind,
            ErrorKind::InvalidInput
        );
        assert_eq!(
            store.import("demo", "y", "hello").await.unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
