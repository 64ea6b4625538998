//! `[tls]` and `[auth]`: TLS material, JWT, SigV4 and SigV2, and mTLS.

use std::path::PathBuf;

use serde::Deserialize;

/// The most verified tokens `auth.jwt.token_cache_entries` may keep (the cache allocates
/// its slots at start: about 16 bytes each, 160 MB at this bound).
pub const MAX_TOKEN_CACHE_ENTRIES: u64 = 10_000_000;

/// `[tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub key: Option<PathBuf>,
    /// CA that client certificates must chain to; enables optional mTLS.
    pub client_ca: Option<PathBuf>,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// JWT bearer tokens.
    pub jwt: JwtConfig,
    /// mTLS client identities.
    pub mtls: MtlsConfig,
    /// AWS SigV4 access keys (EC2 Query API).
    #[serde(default)]
    pub sigv4: Sigv4Config,
    /// AWS Signature Version 2 with the same access keys (older EC2 tools).
    #[serde(default)]
    pub sigv2: Sigv2Config,
}

/// `[auth.sigv2]`: Signature Version 2 on the EC2 Query API, with the same access keys
/// and time window as SigV4.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sigv2Config {
    /// Whether SigV2-signed requests are accepted (`AuthFailure` otherwise).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for Sigv2Config {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

/// `[auth.sigv4]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sigv4Config {
    /// Largest difference between a request's `X-Amz-Date` and the gateway's clock (AWS
    /// allows 15 minutes).
    #[serde(default = "default_sigv4_skew")]
    pub max_skew_secs: u64,
}

impl Default for Sigv4Config {
    fn default() -> Self {
        Self {
            max_skew_secs: default_sigv4_skew(),
        }
    }
}

fn default_sigv4_skew() -> u64 {
    900
}

/// `[auth.jwt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Clock leeway for `exp`/`nbf`, at most 30 s.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Minimum time between two JWKS URL fetches triggered by unknown `kid`s.
    #[serde(default = "default_cooldown")]
    pub jwks_refetch_cooldown_secs: u64,
    /// Verified tokens kept in the token cache.
    #[serde(default = "default_token_cache")]
    pub token_cache_entries: u64,
    /// The longest lifetime a token may have (`exp` - `iat`, or `exp` - now without
    /// `iat`), in seconds.
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
    /// Verification keys. Empty: the development key.
    #[serde(default)]
    pub keys: Vec<JwtKeyConfig>,
}

fn default_leeway() -> u64 {
    30
}
fn default_cooldown() -> u64 {
    30
}
fn default_token_cache() -> u64 {
    100_000
}
fn default_max_token_lifetime() -> u64 {
    24 * 3600
}

/// One `[[auth.jwt.keys]]` entry: exactly one of `pem`, `jwks_file`, `jwks_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Key id matched against the token's `kid` (required with `pem`).
    pub kid: Option<String>,
    /// `RS256`, `ES256` or `EdDSA` (required with `pem`; JWKS keys carry or imply it).
    pub algorithm: Option<String>,
    /// Public key PEM file.
    pub pem: Option<PathBuf>,
    /// JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL, refetched on an unknown `kid`.
    pub jwks_url: Option<String>,
}

/// `[auth.mtls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsConfig {
    /// Trust domain of `spiffe://<domain>/tenant/<tenant>/svc/<name>` URI SANs.
    pub trust_domain: String,
    /// Service names whose mTLS identity carries the `admin` role.
    #[serde(default)]
    pub admin_services: Vec<String>,
}
