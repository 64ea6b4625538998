//! The gateway database, `<state-dir>/skyport.db` (SQLite, WAL): one connection per
//! store, statements run on the blocking pool, never on the async workers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use skyport_core::error::GatewayError;

/// One store's connection to the gateway database.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// What the store keeps, for error messages (`inventory`, `access keys`, ...).
    what: &'static str,
}

impl Db {
    /// Opens `<state_dir>/skyport.db` in WAL mode and runs `schema` (idempotent DDL).
    pub fn open(state_dir: &Path, what: &'static str, schema: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(state_dir)?;
        let conn = Connection::open(state_dir.join("skyport.db"))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(schema)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            what,
        })
    }

    /// Runs `f` on the connection now, on this thread (for migrations at startup).
    pub fn migrate<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> anyhow::Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Runs `f` on the connection on the blocking pool.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, GatewayError> {
        let conn = Arc::clone(&self.conn);
        let what = self.what;
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(GatewayError::internal)?
        .map_err(|e| GatewayError::internal(format!("{what}: {e}")))
    }
}
