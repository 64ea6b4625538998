//! JWT key sets: PEM files, JWKS files and a JWKS URL.
//!
//! The URL is refetched when a token names an unknown `kid`: single-flight (concurrent
//! misses wait for one fetch) and at most once per cooldown, so random kids cannot storm
//! the identity provider.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

use skyport_core::clock::SharedClock;
use skyport_core::config::JwtKeyConfig;

/// Parses an algorithm name as configured.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Loads a PEM public key for `algorithm`.
pub fn decoding_key_from_pem(algorithm: Algorithm, pem: &[u8]) -> anyhow::Result<DecodingKey> {
    Ok(match algorithm {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem)?,
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem)?,
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem)?,
        other => anyhow::bail!("algorithm {other:?} is not accepted"),
    })
}

/// One verification key, its algorithm pinned.
pub struct VerifyKey {
    /// Key id, when known.
    pub kid: Option<String>,
    /// The only algorithm accepted with this key.
    pub algorithm: Algorithm,
    /// The key.
    pub key: DecodingKey,
    /// The key parsed once for aws-lc's verifier, so that a token's signature is checked
    /// without parsing (and validating) the key again; `None` for an RSA key given as
    /// modulus and exponent, which jsonwebtoken verifies itself.
    parsed: Option<ParsedPublicKey>,
}

impl VerifyKey {
    /// `key`, for `algorithm` only, parsed once when jsonwebtoken holds it as bytes (EC
    /// points, Ed25519 keys, RSA PKCS#1 DER: the forms its own verifiers read).
    pub fn new(
        kid: Option<String>,
        algorithm: Algorithm,
        key: DecodingKey,
    ) -> anyhow::Result<Self> {
        let verification: &'static dyn VerificationAlgorithm = match algorithm {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::EdDSA => &signature::ED25519,
            other => anyhow::bail!("algorithm {other:?} is not accepted"),
        };
        let parsed = match key.kind() {
            DecodingKeyKind::SecretOrDer(bytes) => Some(
                ParsedPublicKey::new(verification, bytes)
                    .map_err(|e| anyhow::anyhow!("{algorithm:?} public key rejected: {e}"))?,
            ),
            DecodingKeyKind::RsaModulusExponent { .. } => None,
        };
        Ok(Self {
            kid,
            algorithm,
            key,
            parsed,
        })
    }

    /// The parsed key, when there is one.
    pub(crate) fn parsed(&self) -> Option<&ParsedPublicKey> {
        self.parsed.as_ref()
    }
}

/// A set of keys looked up by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    /// Loads PEM files and JWKS files (URLs are handled by [`JwksRemote`]).
    pub fn load_local(sources: &[JwtKeyConfig]) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for source in sources {
            if let Some(pem) = &source.pem {
                let algorithm = source
                    .algorithm
                    .as_deref()
                    .and_then(parse_algorithm)
                    .context("pem keys need algorithm RS256, ES256 or EdDSA")?;
                let bytes = std::fs::read(pem)
                    .with_context(|| format!("reading JWT key {}", pem.display()))?;
                let key = decoding_key_from_pem(algorithm, &bytes)
                    .with_context(|| format!("parsing JWT key {}", pem.display()))?;
                let key = VerifyKey::new(source.kid.clone(), algorithm, key)
                    .with_context(|| format!("JWT key {}", pem.display()))?;
                keys.push(Arc::new(key));
            }
            if let Some(file) = &source.jwks_file {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading JWKS {}", file.display()))?;
                let set = Self::from_jwks_json(&text)
                    .with_context(|| format!("parsing JWKS {}", file.display()))?;
                keys.extend(set.keys);
            }
        }
        Ok(Self { keys })
    }

    /// Parses a JWKS document; keys of unsupported types are skipped.
    pub fn from_jwks_json(text: &str) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(text)?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            match key_from_jwk(jwk) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(e) => tracing::warn!(kid = ?jwk.common.key_id, error = %e, "skipping JWKS key"),
            }
        }
        Ok(Self { keys })
    }

    /// The key for `kid`; a token without `kid` matches only a one-key set.
    pub fn find(&self, kid: Option<&str>) -> Option<Arc<VerifyKey>> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .cloned(),
            None if self.keys.len() == 1 => self.keys.first().cloned(),
            None => None,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn key_from_jwk(jwk: &Jwk) -> anyhow::Result<VerifyKey> {
    let algorithm = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(other) => anyhow::bail!("algorithm {other:?} is not accepted"),
        None => match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            _ => anyhow::bail!("key type not accepted"),
        },
    };
    VerifyKey::new(
        jwk.common.key_id.clone(),
        algorithm,
        DecodingKey::from_jwk(jwk)?,
    )
}

/// A JWKS URL and the keys last fetched from it.
pub struct JwksRemote {
    url: String,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    /// When the last fetch started, on `clock`'s monotonic time.
    last_attempt: tokio::sync::Mutex<Option<Duration>>,
    cooldown: Duration,
    fetches: AtomicU64,
    clock: SharedClock,
}

impl JwksRemote {
    /// A remote key set; nothing is fetched yet. The cooldown runs on `clock`.
    pub fn new(url: String, cooldown: Duration, clock: SharedClock) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            url,
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            last_attempt: tokio::sync::Mutex::new(None),
            cooldown,
            fetches: AtomicU64::new(0),
            clock,
        })
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The keys last fetched.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Fetches now, regardless of the cooldown.
    pub async fn fetch(&self) -> anyhow::Result<()> {
        let mut last = self.last_attempt.lock().await;
        *last = Some(self.clock.monotonic());
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> anyhow::Result<()> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let text = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let set = KeySet::from_jwks_json(&text)?;
        tracing::info!(url = %self.url, keys = set.len(), "JWKS fetched");
        self.keys.store(Arc::new(set));
        Ok(())
    }

    /// Refetches because a token named an unknown `kid`: single-flight and at most once
    /// per cooldown. Returns whether a fetch happened and succeeded.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        let mut last = self.last_attempt.lock().await;
        let now = self.clock.monotonic();
        if let Some(at) = *last {
            if now.saturating_sub(at) < self.cooldown {
                return false;
            }
        }
        *last = Some(now);
        match self.fetch_locked().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS refetch failed");
                false
            }
        }
    }

    /// Fetches attempted so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}
