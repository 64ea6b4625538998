//! Sessions in memory, for tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{SessionRecord, SessionStore};

/// Sessions and tickets in maps.
#[derive(Default)]
pub struct MemorySessions {
    sessions: Mutex<HashMap<String, SessionRecord>>,
    tickets: Mutex<HashMap<String, i64>>,
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn insert(&self, session: &SessionRecord) -> Result<(), GatewayError> {
        let mut sessions = self.sessions.lock().unwrap();
        sessions.insert(session.id_hash.clone(), session.clone());
        Ok(())
    }

    async fn get(&self, id_hash: &str) -> Result<Option<SessionRecord>, GatewayError> {
        Ok(self.sessions.lock().unwrap().get(id_hash).cloned())
    }

    async fn touch(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), GatewayError> {
        if let Some(s) = self.sessions.lock().unwrap().get_mut(id_hash) {
            s.last_seen_ms = last_seen_ms;
        }
        Ok(())
    }

    async fn delete(&self, id_hash: &str) -> Result<(), GatewayError> {
        self.sessions.lock().unwrap().remove(id_hash);
        Ok(())
    }

    async fn use_ticket(&self, jti: &str, expires_ms: i64) -> Result<bool, GatewayError> {
        let mut tickets = self.tickets.lock().unwrap();
        if tickets.contains_key(jti) {
            return Ok(false);
        }
        tickets.insert(jti.to_string(), expires_ms);
        Ok(true)
    }

    async fn purge(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
        now_ms: i64,
    ) -> Result<(), GatewayError> {
        self.sessions
            .lock()
            .unwrap()
            .retain(|_, s| s.last_seen_ms >= idle_before_ms && s.created_ms >= created_before_ms);
        self.tickets.lock().unwrap().retain(|_, e| *e >= now_ms);
        Ok(())
    }
}
