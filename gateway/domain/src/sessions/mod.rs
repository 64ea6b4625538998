//! Console sessions: who signed in to the web console, and since when.
//!
//! A session is created when someone signs in (a one-time development link, OpenID
//! Connect, or a client certificate) and is held by the browser as a random secret in an
//! `HttpOnly` cookie. The store keeps only the secret's SHA-256, so a copy of the database
//! opens no session. [`SessionService`] ends a session after `idle_timeout` without a
//! request, after `absolute_timeout` in any case, and at sign-out; it derives each
//! session's CSRF token from its secret, so the token needs no storage.
//!
//! One-time sign-in links carry a ticket id that [`SessionStore::use_ticket`] records, so
//! a link opens one session, on whichever replica it reaches first.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use skyport_core::error::GatewayError;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;
mod service;

pub use service::{
    constant_time_eq, csrf_matches, csrf_token, random_secret, SessionService, SessionTimeouts,
    SignedIn, CSRF_HEADER, SESSION_COOKIE,
};

/// One console session, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// SHA-256 of the cookie's secret, hex.
    pub id_hash: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// The department, when the sign-in named one.
    pub department: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Who signed in (the token's `sub`).
    pub subject: String,
    /// How: `dev-link`, `oidc` or `mtls`.
    pub via: String,
    /// Signed in at, Unix milliseconds.
    pub created_ms: i64,
    /// The last request, Unix milliseconds (updated at most once a minute).
    pub last_seen_ms: i64,
}

impl SessionRecord {
    /// The record as stored (JSON).
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).expect("a session serialises")
    }

    /// A stored record.
    pub fn from_record(text: &str) -> Result<Self, GatewayError> {
        serde_json::from_str(text)
            .map_err(|e| GatewayError::internal(format!("corrupt session record: {e}")))
    }
}

/// Where sessions and used sign-in tickets are kept: the gateway database, shared by
/// replicas.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session.
    async fn insert(&self, session: &SessionRecord) -> Result<(), GatewayError>;
    /// The session whose secret hashes to `id_hash`.
    async fn get(&self, id_hash: &str) -> Result<Option<SessionRecord>, GatewayError>;
    /// Records a request at `last_seen_ms`.
    async fn touch(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), GatewayError>;
    /// Ends a session (nothing when there is none).
    async fn delete(&self, id_hash: &str) -> Result<(), GatewayError>;
    /// Records sign-in ticket `jti` as used, kept until `expires_ms`: `false` when it was
    /// used already.
    async fn use_ticket(&self, jti: &str, expires_ms: i64) -> Result<bool, GatewayError>;
    /// Removes sessions last seen before `idle_before_ms` or created before
    /// `created_before_ms`, and tickets expired before `now_ms`.
    async fn purge(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
        now_ms: i64,
    ) -> Result<(), GatewayError>;
}
