//! JWT bearer tokens: RS256, ES256 and EdDSA, algorithm pinned per key, `exp`, `iss`, `aud`,
//! `sub` and `tenant` required, `nbf` checked, leeway at most 30 s. `exp` and `nbf` are
//! judged by the injected clock, as is the verified-token cache.
//!
//! Verified tokens are cached from their second use (signature verification is most of a
//! request's cost): keyed by the full token, expiring at the token's `exp`, flushed
//! whenever keys change. A failure is never cached.
//!
//! The signature is checked with the key as parsed once at load (aws-lc's
//! `ParsedPublicKey`), then the claims are decoded once and checked here (`iss`, `aud` and
//! the required claims, as jsonwebtoken checks them; its `decode` would decode the header
//! twice and the claims twice more); a key jsonwebtoken holds only as RSA modulus and
//! exponent is left to jsonwebtoken whole.
//!
//! The key is chosen by the header's `kid`. Tokens of one issuer share their header
//! segment, so the `kid` of the last header decoded is remembered with its encoded text: a
//! token whose header segment is byte for byte the same skips a second decode of the
//! header (jsonwebtoken's `decode` reads it again itself).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use aws_lc_rs::signature::ParsedPublicKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{decode, decode_header, Algorithm, Validation};

use super::claims::TokenClaims;
use super::jwks::{JwksRemote, KeySet, VerifyKey};
use super::token_cache::TokenCache;
use skyport_core::clock::SharedClock;
use skyport_core::config::{JwtConfig, JwtKeyConfig};
use skyport_core::error::GatewayError;

/// Verifies bearer tokens against the configured keys.
pub struct JwtVerifier {
    /// One prepared validation per accepted algorithm (built once, not per request), for
    /// the keys jsonwebtoken must parse itself.
    validations: Vec<(Algorithm, Validation)>,
    /// The accepted issuer.
    issuer: String,
    /// The accepted audience.
    audience: String,
    local_keys: ArcSwap<KeySet>,
    key_sources: Vec<JwtKeyConfig>,
    remote: Option<JwksRemote>,
    cache: TokenCache,
    /// The last header segment decoded and its `kid`.
    last_header: ArcSwapOption<HeaderKid>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    leeway: u64,
    /// The longest lifetime (`exp` - `iat`, or `exp` - now) a token may have, in seconds.
    max_lifetime: u64,
    clock: SharedClock,
}

/// A token's encoded header segment and what it decodes to.
struct HeaderKid {
    segment: Box<str>,
    alg: Algorithm,
    kid: Option<String>,
}

/// Checks `token`'s signature with `key`, parsed at load, as jsonwebtoken would with the
/// key it parses on every call: the header's `alg` must be the key's, and the signature
/// (the last segment, base64url without padding) must verify over everything before it.
fn verify_signature(
    token: &str,
    alg: Algorithm,
    key: &VerifyKey,
    parsed: &ParsedPublicKey,
) -> Result<(), GatewayError> {
    if alg != key.algorithm {
        return Err(GatewayError::unauthenticated(
            "token algorithm not accepted for this key",
        ));
    }
    let invalid = || GatewayError::unauthenticated("token signature invalid");
    let (message, signature) = token.rsplit_once('.').ok_or_else(invalid)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
    parsed
        .verify_sig(message.as_bytes(), &signature)
        .map_err(|_| invalid())
}

/// A token jsonwebtoken refused, with what the caller may be told.
fn refusal(e: jsonwebtoken::errors::Error) -> GatewayError {
    use jsonwebtoken::errors::ErrorKind as K;
    let public = match e.kind() {
        K::ExpiredSignature => "token expired".to_string(),
        K::ImmatureSignature => "token not valid yet (nbf)".to_string(),
        K::InvalidIssuer => "token issuer not accepted".to_string(),
        K::InvalidAudience => "token audience not accepted".to_string(),
        K::InvalidAlgorithm => "token algorithm not accepted for this key".to_string(),
        K::InvalidSignature => "token signature invalid".to_string(),
        K::MissingRequiredClaim(c) => format!("token lacks the {c} claim"),
        K::Json(j) => format!("token claims invalid: {j}"),
        _ => "token invalid".to_string(),
    };
    GatewayError::unauthenticated(public).with_cause(e)
}

/// The encoded header and payload segments of `token`, split as jsonwebtoken splits it
/// (the signature after the last `.`, the payload after the last `.` before it).
fn segments(token: &str) -> Option<(&str, &str)> {
    let (message, _signature) = token.rsplit_once('.')?;
    message.rsplit_once('.')
}

/// The encoded header segment of `token`, split as jsonwebtoken splits it.
fn header_segment(token: &str) -> Option<&str> {
    segments(token).map(|(header, _payload)| header)
}

impl JwtVerifier {
    /// Builds the verifier; `keys` are the configured sources (already defaulted to the
    /// development key by the caller when empty). Cached tokens expire, and the JWKS
    /// refetch cooldown runs, by `clock`.
    pub fn new(
        config: &JwtConfig,
        keys: Vec<JwtKeyConfig>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let local = KeySet::load_local(&keys)?;
        let remote = keys
            .iter()
            .find_map(|k| k.jwks_url.clone())
            .map(|url| {
                JwksRemote::new(
                    url,
                    Duration::from_secs(config.jwks_refetch_cooldown_secs),
                    clock.clone(),
                )
            })
            .transpose()?;
        let validations = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(|algorithm| {
                let mut v = Validation::new(algorithm);
                v.set_issuer(&[&config.issuer]);
                v.set_audience(&[&config.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                // `exp` and `nbf` are checked below against the injected clock (jsonwebtoken
                // would read the system's); their presence is required above.
                v.validate_nbf = false;
                v.validate_exp = false;
                (algorithm, v)
            })
            .collect();
        Ok(Self {
            validations,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            local_keys: ArcSwap::from_pointee(local),
            key_sources: keys,
            remote,
            cache: TokenCache::new(config.token_cache_entries),
            last_header: ArcSwapOption::empty(),
            leeway: config.leeway_secs.min(30),
            max_lifetime: config.max_token_lifetime_secs,
            clock,
        })
    }

    /// Fetches remote keys once at startup; failure is logged, not fatal.
    pub async fn prefetch(&self) {
        if let Some(remote) = &self.remote {
            if let Err(e) = remote.fetch().await {
                tracing::warn!(url = %remote.url(), error = %e, "JWKS fetch failed; will retry on first unknown kid");
            }
        }
    }

    /// Reloads PEM and JWKS files (SIGHUP). On error the old keys stay.
    pub fn reload(&self) -> anyhow::Result<()> {
        let keys = KeySet::load_local(&self.key_sources)?;
        self.local_keys.store(Arc::new(keys));
        self.cache.clear();
        Ok(())
    }

    /// Number of JWKS URL fetches so far (for metrics and tests).
    pub fn jwks_fetches(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.fetch_count())
    }

    /// Verifies `token`, from the cache when it was verified before and has not expired.
    pub async fn verify(&self, token: &str) -> Result<Arc<TokenClaims>, GatewayError> {
        let hash = self.cache.hash(token);
        let now = self
            .clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(claims) = self.cache.get(hash, token, now) {
            return Ok(claims);
        }
        let header = self.header_kid(token)?;
        let kid = header.kid.as_deref();
        let key = match self.find_key(kid) {
            Some(key) => key,
            None => {
                let refreshed = match (&self.remote, kid) {
                    // Boxed: a rare path whose HTTP fetch would otherwise enlarge every
                    // request's future.
                    (Some(remote), Some(_)) => Box::pin(remote.refresh_for_unknown_kid()).await,
                    _ => false,
                };
                if refreshed {
                    self.cache.clear();
                }
                self.find_key(kid).ok_or_else(|| {
                    GatewayError::unauthenticated("token signed by an unknown key")
                        .with_cause(format!("kid {kid:?}"))
                })?
            }
        };
        let claims = match key.parsed() {
            Some(parsed) => {
                verify_signature(token, header.alg, &key, parsed)?;
                self.decode_claims(token)?
            }
            None => {
                let validation = self
                    .validations
                    .iter()
                    .find(|(alg, _)| *alg == key.algorithm)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        GatewayError::internal("no validation for the key's algorithm")
                    })?;
                decode::<TokenClaims>(token, &key.key, validation)
                    .map_err(refusal)?
                    .claims
            }
        };
        if claims.tenant.is_empty() {
            return Err(GatewayError::unauthenticated("token tenant claim is empty"));
        }
        if claims.sub.trim().is_empty() {
            return Err(GatewayError::unauthenticated("token sub claim is empty"));
        }
        // A token that lives longer than the gateway allows is refused however it was
        // signed: a leaked one must not stay good for years.
        let lifetime = claims.exp.saturating_sub(
            claims
                .iat
                .unwrap_or(now)
                .min(now.saturating_add(self.leeway)),
        );
        if lifetime > self.max_lifetime.saturating_add(self.leeway) {
            return Err(GatewayError::unauthenticated(format!(
                "token lifetime ({lifetime} s) exceeds the {} s this gateway accepts (auth.jwt.max_token_lifetime_secs)",
                self.max_lifetime
            )));
        }
        // RFC 7519 §4.1.4 and §4.1.5, with the configured leeway.
        if claims.exp.saturating_add(self.leeway) < now {
            return Err(GatewayError::unauthenticated("token expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(GatewayError::unauthenticated("token not valid yet (nbf)"));
        }
        let claims = Arc::new(claims);
        self.cache.insert(hash, token, Arc::clone(&claims));
        Ok(claims)
    }

    /// The claims of `token`, whose signature is verified: decoded once, then checked as
    /// jsonwebtoken's validation would (`exp`, `iss`, `aud` and `sub` present, `iss` the
    /// accepted issuer, `aud` naming the accepted audience; `exp` and `nbf` are judged by
    /// the caller against the injected clock).
    fn decode_claims(&self, token: &str) -> Result<TokenClaims, GatewayError> {
        let (_header, payload) =
            segments(token).ok_or_else(|| GatewayError::unauthenticated("token invalid"))?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| GatewayError::unauthenticated("token invalid").with_cause(e))?;
        // A JSON object, as RFC 7519 requires (serde would also fill the claims from an
        // array, by position).
        if json.trim_ascii_start().first() != Some(&b'{') {
            return Err(GatewayError::unauthenticated(
                "token claims invalid: the claims must be a JSON object",
            ));
        }
        let claims: TokenClaims = serde_json::from_slice(&json).map_err(|e| {
            GatewayError::unauthenticated(format!("token claims invalid: {e}")).with_cause(e)
        })?;
        let lacks = |claim| GatewayError::unauthenticated(format!("token lacks the {claim} claim"));
        let issuer = claims.iss.as_deref().ok_or_else(|| lacks("iss"))?;
        let audience = claims.aud.as_ref().ok_or_else(|| lacks("aud"))?;
        if issuer != self.issuer {
            return Err(GatewayError::unauthenticated("token issuer not accepted"));
        }
        if !audience.names(&self.audience) {
            return Err(GatewayError::unauthenticated("token audience not accepted"));
        }
        Ok(claims)
    }

    /// The `kid` of `token`'s header: remembered when the header segment is the last one
    /// decoded, else decoded (the whole header, so a malformed one is refused here).
    fn header_kid(&self, token: &str) -> Result<Arc<HeaderKid>, GatewayError> {
        let segment = header_segment(token);
        if let (Some(segment), Some(last)) = (segment, &*self.last_header.load()) {
            if *last.segment == *segment {
                return Ok(Arc::clone(last));
            }
        }
        let header = decode_header(token)
            .map_err(|e| GatewayError::unauthenticated("malformed bearer token").with_cause(e))?;
        let decoded = Arc::new(HeaderKid {
            segment: segment.unwrap_or_default().into(),
            alg: header.alg,
            kid: header.kid,
        });
        self.last_header.store(Some(Arc::clone(&decoded)));
        Ok(decoded)
    }

    fn find_key(&self, kid: Option<&str>) -> Option<Arc<VerifyKey>> {
        let local = self.local_keys.load();
        if let Some(key) = local.find(kid) {
            return Some(key);
        }
        self.remote.as_ref().and_then(|r| r.keys().find(kid))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{encode, EncodingKey, Header};
    use skyport_core::clock::ManualClock;
    use skyport_core::config::Config;

    use super::*;

    #[test]
    fn header_segment_is_split_as_jsonwebtoken_splits_it() {
        assert_eq!(header_segment("h.p.s"), Some("h"));
        assert_eq!(header_segment("h.x.p.s"), Some("h.x"));
        assert_eq!(header_segment("h.s"), None);
        assert_eq!(header_segment("h"), None);
    }

    /// A verifier with one ES256 key on `clock`, and that key's encoding half.
    fn verifier(clock: Arc<ManualClock>) -> (JwtVerifier, EncodingKey) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // The verifier reads the key when it is made; the directory goes when this returns.
        let dir = tempfile::Builder::new()
            .prefix("skyport-jwt-")
            .tempdir()
            .unwrap();
        let pem = dir.path().join("jwt.pem");
        std::fs::write(&pem, key.public_key_pem()).unwrap();
        let config = Config::embedded().auth.jwt;
        let source = JwtKeyConfig {
            kid: Some("k1".into()),
            algorithm: Some("ES256".into()),
            pem: Some(pem),
            jwks_file: None,
            jwks_url: None,
        };
        let verifier = JwtVerifier::new(&config, vec![source], clock).unwrap();
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        (verifier, encoding)
    }

    fn mint(key: &EncodingKey, nbf: u64, exp: u64) -> String {
        let config = Config::embedded().auth.jwt;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims = serde_json::json!({"sub": "alice", "tenant": "demo", "iss": config.issuer,
            "aud": config.audience, "nbf": nbf, "exp": exp});
        encode(&header, &claims, key).unwrap()
    }

    #[tokio::test]
    async fn signatures_are_checked_with_the_parsed_key_and_claims_still_validated() {
        let t0 = 1_795_433_941;
        let (verifier, key) = verifier(ManualClock::at_unix(t0));
        let good = mint(&key, t0 - 10, t0 + 60);
        assert_eq!(verifier.verify(&good).await.unwrap().sub, "alice");
        let (head, signature) = good.rsplit_once('.').unwrap();
        let (header, _payload) = head.split_once('.').unwrap();
        // Another payload under the genuine signature.
        let forged_claims = serde_json::json!({"sub": "mallory", "tenant": "demo",
            "iss": Config::embedded().auth.jwt.issuer, "aud": Config::embedded().auth.jwt.audience,
            "exp": t0 + 60});
        let forged = format!(
            "{header}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(forged_claims.to_string())
        );
        // A signature from another key, one that is not base64url, none at all.
        let (_, other_key) = verifier_key_pair();
        let other = mint(&other_key, t0 - 10, t0 + 60);
        let not_base64 = format!(
            "{head}.{}",
            signature.replace(|c: char| c.is_alphanumeric(), "!")
        );
        for token in [forged, other, not_base64, format!("{head}.")] {
            let refused = verifier.verify(&token).await.unwrap_err();
            assert_eq!(refused.public, "token signature invalid", "{token}");
        }
        // A genuine signature does not excuse the claims: another audience is refused.
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims = serde_json::json!({"sub": "alice", "tenant": "demo",
            "iss": Config::embedded().auth.jwt.issuer, "aud": "someone-else", "exp": t0 + 60});
        let elsewhere = encode(&header, &claims, &key).unwrap();
        let refused = verifier.verify(&elsewhere).await.unwrap_err();
        assert_eq!(refused.public, "token audience not accepted");
        // The algorithm is the key's: an HS256 header is refused before any signature.
        let hs = encode(
            &Header {
                kid: Some("k1".into()),
                ..Header::new(Algorithm::HS256)
            },
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let refused = verifier.verify(&hs).await.unwrap_err();
        assert_eq!(refused.public, "token algorithm not accepted for this key");
    }

    /// A fresh P-256 key pair, as PEM public key and signing key.
    fn verifier_key_pair() -> (String, EncodingKey) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        (key.public_key_pem(), encoding)
    }

    /// The claims checked here, not by jsonwebtoken, get jsonwebtoken's verdict: each set of
    /// claims, signed with the verifier's key, is judged by both (jsonwebtoken with its
    /// full validation, as for keys it parses itself).
    #[tokio::test]
    async fn claims_are_judged_as_jsonwebtoken_judges_them() {
        let t0 = 1_795_433_941;
        let (verifier, key) = verifier(ManualClock::at_unix(t0));
        let config = Config::embedded().auth.jwt;
        let (iss, aud) = (config.issuer.as_str(), config.audience.as_str());
        let exp = t0 + 60;
        let cases = [
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "aud": aud, "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "aud": ["x", aud], "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "aud": ["x", "y"], "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "aud": [], "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "aud": "x", "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "aud": aud, "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": "x", "aud": aud, "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": 7, "aud": aud, "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "aud": 7, "exp": exp}),
            serde_json::json!({"tenant": "t", "iss": iss, "aud": aud, "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "aud": aud}),
            serde_json::json!({"sub": "a", "iss": iss, "aud": aud, "exp": exp}),
            serde_json::json!({"sub": "a", "tenant": "t", "iss": iss, "aud": aud, "exp": exp,
                "extra": {"nested": [1, 2]}}),
        ];
        let known = verifier.find_key(Some("k1")).unwrap();
        let (_, whole) = verifier
            .validations
            .iter()
            .find(|(alg, _)| *alg == Algorithm::ES256)
            .unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        // Claims as an array, which serde would read by position: refused by both.
        let by_position = serde_json::json!(["a", "t", null, [], exp, null, null, null, iss, aud]);
        for claims in cases.into_iter().chain([by_position]) {
            let token = encode(&header, &claims, &key).unwrap();
            let ours = verifier.verify(&token).await.map(|c| c.sub.clone());
            let theirs = decode::<TokenClaims>(&token, &known.key, whole)
                .map(|data| data.claims.sub)
                .map_err(refusal);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{claims}"),
                (Err(a), Err(b)) if claims.is_array() => {
                    assert!(a.public.starts_with("token claims invalid"), "{}", a.public);
                    assert!(b.public.starts_with("token claims invalid"), "{}", b.public);
                }
                (a, b) => assert_eq!(
                    a.as_ref().map_err(|e| &e.public),
                    b.as_ref().map_err(|e| &e.public),
                    "{claims}"
                ),
            }
        }
    }

    #[tokio::test]
    async fn an_empty_subject_and_a_lifetime_past_the_limit_are_refused() {
        let t0 = 1_795_433_941;
        let clock = ManualClock::at_unix(t0);
        let (verifier, key) = verifier(clock.clone());
        let config = Config::embedded().auth.jwt;
        let mint_with = |claims: serde_json::Value| {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("k1".into());
            let mut all = serde_json::json!({"sub": "alice", "tenant": "demo",
                "iss": config.issuer, "aud": config.audience, "exp": t0 + 60});
            for (k, v) in claims.as_object().unwrap() {
                all[k] = v.clone();
            }
            encode(&header, &all, &key).unwrap()
        };
        let empty = mint_with(serde_json::json!({"sub": " "}));
        let refused = verifier.verify(&empty).await.unwrap_err();
        assert_eq!(refused.public, "token sub claim is empty");
        // A year-long token, with or without iat.
        for claims in [
            serde_json::json!({"exp": t0 + 365 * 86400}),
            serde_json::json!({"iat": t0 - 10, "exp": t0 + 365 * 86400}),
        ] {
            let refused = verifier.verify(&mint_with(claims)).await.unwrap_err();
            assert!(
                refused.public.contains("exceeds the 86400 s"),
                "{}",
                refused.public
            );
        }
        // A day is fine.
        let day = mint_with(serde_json::json!({"iat": t0, "exp": t0 + 86400}));
        assert!(verifier.verify(&day).await.is_ok());
    }

    #[tokio::test]
    async fn expiry_and_not_before_are_judged_by_the_injected_clock_cached_or_not() {
        let t0 = 1_795_433_941;
        let clock = ManualClock::at_unix(t0);
        let (verifier, key) = verifier(clock.clone());
        let token = mint(&key, t0, t0 + 60);
        for _ in 0..3 {
            // The second verification stores it, the third is a cache hit.
            assert_eq!(verifier.verify(&token).await.unwrap().tenant, "demo");
        }
        clock.advance(Duration::from_secs(60 + 30));
        assert!(
            verifier.verify(&token).await.is_ok(),
            "within the 30 s leeway"
        );
        clock.advance(Duration::from_secs(1));
        let expired = verifier.verify(&token).await.unwrap_err();
        assert_eq!(expired.public, "token expired");

        let later = mint(&key, t0 + 200, t0 + 600);
        let early = verifier.verify(&later).await.unwrap_err();
        assert_eq!(early.public, "token not valid yet (nbf)");
        clock.advance(Duration::from_secs(200));
        assert!(verifier.verify(&later).await.is_ok());
    }
}
