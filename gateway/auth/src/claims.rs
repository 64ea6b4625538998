//! What Skyport reads from a verified JWT.

use serde::Deserialize;

/// Claims Skyport reads from a verified token.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TokenClaims {
    /// Subject (user or service).
    pub sub: String,
    /// Tenant (required).
    pub tenant: String,
    /// Department inside the tenant.
    #[serde(default)]
    pub dept: Option<String>,
    /// Roles, e.g. `admin`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch, when the token says.
    #[serde(default)]
    pub nbf: Option<u64>,
}
