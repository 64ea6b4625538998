//! [`SessionService`]: sign-in, the session behind a cookie, CSRF tokens, sign-out.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;
use skyport_core::tenancy::{IdentitySource, Principal};

use super::{SessionRecord, SessionStore};

/// The session cookie. The `__Host-` prefix makes browsers refuse it unless it is
/// `Secure`, for path `/` and without a domain.
pub const SESSION_COOKIE: &str = "__Host-skyport_session";

/// The request header that carries a session's CSRF token on every write.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A session's last request is written again only after this long (or a tenth of the idle
/// timeout, when that is shorter).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionTimeouts {
    /// Ended after this long without a request.
    pub idle: Duration,
    /// Ended this long after sign-in, whatever happens.
    pub absolute: Duration,
}

impl From<&skyport_core::config::ConsoleConfig> for SessionTimeouts {
    fn from(config: &skyport_core::config::ConsoleConfig) -> Self {
        Self {
            idle: Duration::from_secs(config.idle_timeout_secs),
            absolute: Duration::from_secs(config.absolute_timeout_secs),
        }
    }
}

/// What a sign-in gives the browser.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The cookie's value (never stored).
    pub secret: String,
    /// The stored session.
    pub record: SessionRecord,
}

/// Console sessions over a [`SessionStore`].
pub struct SessionService {
    store: Arc<dyn SessionStore>,
    clock: SharedClock,
    timeouts: SessionTimeouts,
}

impl SessionService {
    /// Sessions in `store`, ended after `timeouts`.
    pub fn new(
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
        timeouts: SessionTimeouts,
    ) -> Self {
        Self {
            store,
            clock,
            timeouts,
        }
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> SessionTimeouts {
        self.timeouts
    }

    fn now_ms(&self) -> i64 {
        self.clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// A new session for `principal`, signed in `via` (`dev-link`, `oidc`, `mtls`). Ended
    /// sessions are purged on the way.
    pub async fn sign_in(
        &self,
        principal: &Principal,
        via: &str,
    ) -> Result<SignedIn, GatewayError> {
        let now = self.now_ms();
        self.store
            .purge(
                now - self.timeouts.idle.as_millis() as i64,
                now - self.timeouts.absolute.as_millis() as i64,
                now,
            )
            .await?;
        let secret = random_secret();
        let record = SessionRecord {
            id_hash: id_hash(&secret),
            tenant: principal.tenant.clone(),
            department: principal.department.clone(),
            roles: principal.roles.clone(),
            subject: principal.subject.clone(),
            via: via.to_string(),
            created_ms: now,
            last_seen_ms: now,
        };
        self.store.insert(&record).await?;
        Ok(SignedIn { secret, record })
    }

    /// The live session behind cookie value `secret`: 401 when there is none, or when it
    /// has been idle or open too long (it is then ended).
    pub async fn session(&self, secret: &str) -> Result<SessionRecord, GatewayError> {
        let hash = id_hash(secret);
        let Some(record) = self.store.get(&hash).await? else {
            return Err(GatewayError::unauthenticated(
                "the console session has ended: sign in again",
            ));
        };
        let now = self.now_ms();
        let idle = now - record.last_seen_ms > self.timeouts.idle.as_millis() as i64;
        let old = now - record.created_ms > self.timeouts.absolute.as_millis() as i64;
        if idle || old {
            self.store.delete(&hash).await?;
            return Err(GatewayError::unauthenticated(if idle {
                "the console session ended after a time without use: sign in again"
            } else {
                "the console session reached its longest lifetime: sign in again"
            }));
        }
        let touch_every = TOUCH_EVERY.min(self.timeouts.idle / 10);
        if now - record.last_seen_ms >= touch_every.as_millis() as i64 {
            self.store.touch(&hash, now).await?;
        }
        Ok(record)
    }

    /// The principal a live session acts as.
    pub fn principal(record: &SessionRecord) -> Principal {
        Principal {
            tenant: record.tenant.clone(),
            department: record.department.clone(),
            roles: record.roles.clone(),
            subject: record.subject.clone(),
            source: IdentitySource::Console,
        }
    }

    /// Ends the session behind `secret` (nothing when there is none).
    pub async fn sign_out(&self, secret: &str) -> Result<(), GatewayError> {
        self.store.delete(&id_hash(secret)).await
    }

    /// Records a one-time sign-in ticket: 401 when it was used already.
    pub async fn use_ticket(&self, jti: &str, expires_ms: i64) -> Result<(), GatewayError> {
        if self.store.use_ticket(jti, expires_ms).await? {
            Ok(())
        } else {
            Err(GatewayError::unauthenticated(
                "this sign-in link was used already: ask for a new one",
            ))
        }
    }
}

/// 256 random bits, base64url: a session secret, a sign-in's state or PKCE verifier.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The store's key for cookie value `secret`.
fn id_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The CSRF token of the session behind cookie value `secret`: derived from it, so that
/// only a page that can read the session's own answers learns it.
pub fn csrf_token(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"skyport console csrf\0");
    hasher.update(secret.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Whether `sent` is the CSRF token of `secret`, compared in constant time.
pub fn csrf_matches(secret: &str, sent: &str) -> bool {
    constant_time_eq(&csrf_token(secret), sent)
}

/// Whether `a` and `b` are equal, compared in constant time (for secrets).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::memory::MemorySessions;
    use skyport_core::clock::ManualClock;

    fn principal() -> Principal {
        Principal {
            tenant: "acme".into(),
            department: None,
            roles: vec![],
            subject: "ana".into(),
            source: IdentitySource::Jwt,
        }
    }

    fn service(clock: &Arc<ManualClock>) -> SessionService {
        SessionService::new(
            Arc::new(MemorySessions::default()),
            clock.clone(),
            SessionTimeouts {
                idle: Duration::from_secs(600),
                absolute: Duration::from_secs(3600),
            },
        )
    }

    #[tokio::test]
    async fn a_session_lives_while_used_and_ends_at_its_timeouts() {
        let clock = ManualClock::at_unix(1_000_000);
        let sessions = service(&clock);
        let signed = sessions.sign_in(&principal(), "dev-link").await.unwrap();
        assert_ne!(
            signed.record.id_hash, signed.secret,
            "only the hash is stored"
        );
        let back = sessions.session(&signed.secret).await.unwrap();
        assert_eq!(SessionService::principal(&back).tenant, "acme");
        assert_eq!(
            SessionService::principal(&back).source,
            IdentitySource::Console
        );
        assert!(sessions.session("forged").await.is_err());

        // Used every 9 minutes: alive past the idle timeout's 10 minutes...
        for _ in 0..6 {
            clock.advance(Duration::from_secs(540));
            sessions.session(&signed.secret).await.unwrap();
        }
        // ...until its hour is up.
        clock.advance(Duration::from_secs(540));
        let ended = sessions.session(&signed.secret).await.unwrap_err();
        assert!(
            ended.public.contains("longest lifetime"),
            "{}",
            ended.public
        );

        let idle = sessions.sign_in(&principal(), "dev-link").await.unwrap();
        clock.advance(Duration::from_secs(601));
        let ended = sessions.session(&idle.secret).await.unwrap_err();
        assert!(ended.public.contains("without use"), "{}", ended.public);

        let out = sessions.sign_in(&principal(), "dev-link").await.unwrap();
        sessions.sign_out(&out.secret).await.unwrap();
        assert!(sessions.session(&out.secret).await.is_err(), "signed out");
    }

    #[tokio::test]
    async fn a_ticket_opens_one_session() {
        let clock = ManualClock::at_unix(0);
        let sessions = service(&clock);
        sessions.use_ticket("j1", 10).await.unwrap();
        assert!(sessions.use_ticket("j1", 10).await.is_err());
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let token = csrf_token("secret-a");
        assert!(csrf_matches("secret-a", &token));
        assert!(!csrf_matches("secret-b", &token));
        assert!(!csrf_matches("secret-a", ""));
        assert!(!csrf_matches("secret-a", &token[1..]));
    }

    #[tokio::test]
    async fn conformance() {
        crate::sessions::conformance::run(&MemorySessions::default()).await;
    }
}
