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

/// Makes the database and its WAL and shared-memory files readable by their owner only
/// (created so if missing): SQLite gives the files it creates the database's mode, and
/// what they hold (access-key secrets among it) is no other user's to read, such as a
/// plugin's process running as another user.
///
/// The database file is opened here only when it does not exist yet. Closing any
/// descriptor of a file drops every POSIX lock the process holds on it, SQLite's
/// included: a store opened after another (each store has its own connection) would
/// otherwise release the locks of the connections before it. Another process (`skyport
/// keys`) would then take itself for the database's only user and, closing, remove the
/// WAL file those connections still read: they would no longer see anything it wrote.
fn restrict_to_owner(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !db.exists() {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(db)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

impl Db {
    /// Opens `<state_dir>/skyport.db` in WAL mode and runs `schema` (idempotent DDL).
    pub fn open(state_dir: &Path, what: &'static str, schema: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join("skyport.db");
        restrict_to_owner(&path)?;
        let conn = Connection::open(&path)?;
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

    /// Adds to `table` each of `columns` (name, column definition) it does not have yet:
    /// columns added after the first release, added in place to older databases.
    pub fn add_missing_columns(&self, table: &str, columns: &[(&str, &str)]) -> anyhow::Result<()> {
        self.migrate(|conn| {
            for (column, definition) in columns {
                let present: bool = conn.query_row(
                    "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    rusqlite::params![table, column],
                    |row| row.get::<_, i64>(0).map(|n| n > 0),
                )?;
                if !present {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                    ))?;
                }
            }
            Ok(())
        })
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
