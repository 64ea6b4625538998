//! [`SessionStore`] in the shared database (tables `console_sessions` and
//! `console_tickets`): a session opened on one replica is good on every other.

use async_trait::async_trait;
use skyport_core::error::GatewayError;
use skyport_domain::sessions::{SessionRecord, SessionStore};

use crate::db::Pg;

/// Console sessions, shared by every replica.
pub struct PgSessions {
    db: Pg,
}

impl PgSessions {
    /// The tables in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "console sessions";

#[async_trait]
impl SessionStore for PgSessions {
    async fn insert(&self, s: &SessionRecord) -> Result<(), GatewayError> {
        self.db
            .execute(
                WHAT,
                "INSERT INTO console_sessions (id_hash, created_ms, last_seen_ms, record)
                 VALUES ($1, $2, $3, $4)",
                &[&s.id_hash, &s.created_ms, &s.last_seen_ms, &s.to_record()],
            )
            .await
            .map(|_| ())
    }

    async fn get(&self, id_hash: &str) -> Result<Option<SessionRecord>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record, last_seen_ms FROM console_sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await?;
        rows.first()
            .map(|r| {
                let mut s = SessionRecord::from_record(r.get(0))?;
                s.last_seen_ms = r.get(1);
                Ok(s)
            })
            .transpose()
    }

    async fn touch(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), GatewayError> {
        self.db
            .execute(
                WHAT,
                "UPDATE console_sessions SET last_seen_ms = $2 WHERE id_hash = $1",
                &[&id_hash, &last_seen_ms],
            )
            .await
            .map(|_| ())
    }

    async fn delete(&self, id_hash: &str) -> Result<(), GatewayError> {
        self.db
            .execute(
                WHAT,
                "DELETE FROM console_sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await
            .map(|_| ())
    }

    async fn use_ticket(&self, jti: &str, expires_ms: i64) -> Result<bool, GatewayError> {
        self.db
            .execute(
                WHAT,
                "INSERT INTO console_tickets (jti, expires_ms) VALUES ($1, $2)
                 ON CONFLICT (jti) DO NOTHING",
                &[&jti, &expires_ms],
            )
            .await
            .map(|n| n == 1)
    }

    async fn purge(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
        now_ms: i64,
    ) -> Result<(), GatewayError> {
        self.db
            .execute(
                WHAT,
                "DELETE FROM console_sessions WHERE last_seen_ms < $1 OR created_ms < $2",
                &[&idle_before_ms, &created_before_ms],
            )
            .await?;
        self.db
            .execute(
                WHAT,
                "DELETE FROM console_tickets WHERE expires_ms < $1",
                &[&now_ms],
            )
            .await
            .map(|_| ())
    }
}
