//! JWT handling before and after the signature: header decoding, key choice, claims and
//! lifetime rules, the verified-token cache. No input verifies unless the trusted key
//! signed its claims: a token built from fuzz input alone is always refused, and one
//! spliced from a genuine token verifies only to the genuine claims.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use skyport_auth::claims::TokenClaims;
use skyport_auth::jwt::JwtVerifier;
use skyport_core::clock::{ManualClock, SharedClock};
use skyport_core::config::{JwtConfig, JwtKeyConfig};

const NOW: u64 = 1_800_000_000;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: JwtVerifier,
    /// A token the trusted key signed, and its claims.
    genuine: String,
    claims: Arc<TokenClaims>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let dir = std::env::temp_dir().join(format!("skyport-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let pem = dir.join("trusted.pem");
        std::fs::write(&pem, key.public_key_pem()).expect("the public key");
        let config = jwt_config();
        let clock: SharedClock = ManualClock::at_unix(NOW);
        let verifier = JwtVerifier::new(
            &config,
            vec![JwtKeyConfig {
                kid: Some("trusted".into()),
                algorithm: Some("ES256".into()),
                pem: Some(pem),
                jwks_file: None,
                jwks_url: None,
            }],
            clock,
        )
        .expect("the verifier");
        // The verifier has read the key: its directory can go.
        let _ = std::fs::remove_dir_all(&dir);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("trusted".into());
        let genuine = encode(
            &header,
            &serde_json::json!({
                "sub": "alice", "tenant": "acme", "dept": "web", "roles": ["admin"],
                "iss": "fuzz-issuer", "aud": "skyport", "iat": NOW, "exp": NOW + 600,
            }),
            &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("the signing key"),
        )
        .expect("a genuine token");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let claims = runtime
            .block_on(verifier.verify(&genuine))
            .expect("the genuine token verifies");
        Fixture {
            runtime,
            verifier,
            genuine,
            claims,
        }
    })
}

fn jwt_config() -> JwtConfig {
    serde_json::from_value(serde_json::json!({
        "issuer": "fuzz-issuer",
        "audience": "skyport",
        "token_cache_entries": 64,
    }))
    .expect("a JWT configuration")
}

#[derive(Debug, Arbitrary)]
enum Input {
    /// A token entirely from fuzz input.
    Raw(String),
    /// The genuine token with one of its three segments replaced.
    Segment { which: u8, with: String },
    /// The genuine token with `text` inserted at `at`.
    Insert { at: u16, text: String },
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let (token, spliced) = match &input {
        Input::Raw(token) => (token.clone(), false),
        Input::Segment { which, with } => {
            let mut parts: Vec<&str> = f.genuine.split('.').collect();
            parts[usize::from(*which) % 3] = with;
            (parts.join("."), true)
        }
        Input::Insert { at, text } => {
            let mut token = f.genuine.clone();
            let at = usize::from(*at) % (token.len() + 1);
            token.insert_str(at, text);
            (token, true)
        }
    };
    match f.runtime.block_on(f.verifier.verify(&token)) {
        Ok(claims) => {
            assert!(spliced, "a token from fuzz input alone verified: {token:?}");
            assert_eq!(
                claims, f.claims,
                "a changed token verified to other claims: {token:?}"
            );
        }
        Err(e) => assert!(e.to_string().len() < 4096, "an unbounded error message"),
    }
});
