//! The shared database: a pool of connections to PostgreSQL, and how its failures reach
//! callers (an engine that cannot be reached is `Unavailable`, 503, so writes fail closed
//! and clients retry; anything else is the store's own fault).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use skyport_core::config::StorageConfig;
use skyport_core::error::{ErrorKind, GatewayError};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

/// A replica's connections to the shared database.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
}

/// The password `[storage]` names: from `password_file` (resolved against `state_dir`,
/// trailing newline dropped) or the variable `password_env`; `None` when neither is set.
pub fn password(config: &StorageConfig, state_dir: &Path) -> anyhow::Result<Option<String>> {
    skyport_core::config::read_secret(
        "storage",
        config.password_file.as_deref(),
        config.password_env.as_deref(),
        state_dir,
    )
    .map_err(anyhow::Error::msg)
}

impl Pg {
    /// A pool over `config.url` with `password`. Connects once to fail fast on a wrong
    /// address or password.
    pub async fn connect(config: &StorageConfig, password: Option<&str>) -> anyhow::Result<Self> {
        let url = config.url.as_deref().context("storage.url is not set")?;
        let mut pg: tokio_postgres::Config = url.parse().context("storage.url")?;
        if let Some(password) = password {
            pg.password(password);
        }
        let timeout = Duration::from_secs(config.statement_timeout_secs);
        pg.connect_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("skyport")
            .options(format!(
                "-c statement_timeout={} -c lock_timeout={}",
                timeout.as_millis(),
                timeout.as_millis()
            ));
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .context("building the PostgreSQL pool")?;
        let db = Self { pool };
        drop(
            db.pool.get().await.map_err(|e| {
                anyhow::anyhow!("connecting to PostgreSQL at {}: {e}", redacted(url))
            })?,
        );
        Ok(db)
    }

    /// A connection from the pool, for a store that keeps `what`.
    pub async fn client(&self, what: &str) -> Result<Object, GatewayError> {
        self.pool.get().await.map_err(|e| pool_error(what, e))
    }

    /// A connection and `sql` prepared on it (once per connection, then cached).
    async fn prepared(&self, what: &str, sql: &str) -> Result<(Object, Statement), GatewayError> {
        let client = self.client(what).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| db_error(what, e))?;
        Ok((client, statement))
    }

    /// The rows `sql` selects, for a store of `what`.
    pub async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, GatewayError> {
        let (client, statement) = self.prepared(what, sql).await?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| db_error(what, e))
    }

    /// Runs `sql`; the rows it changed.
    pub async fn execute(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, GatewayError> {
        let (client, statement) = self.prepared(what, sql).await?;
        client
            .execute(&statement, params)
            .await
            .map_err(|e| db_error(what, e))
    }
}

/// `url` for logs: the user, host and database, never a password.
fn redacted(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// A failure to get a connection: the database cannot be reached now.
fn pool_error(what: &str, e: PoolError) -> GatewayError {
    GatewayError::new(
        ErrorKind::Unavailable,
        "the gateway's database is unavailable; retry shortly",
    )
    .with_cause(format!("{what}: {e}"))
}

/// A failed statement: `Unavailable` when the connection or the server is the cause
/// (closed, shutting down, timed out), internal otherwise.
pub fn db_error(what: &str, e: tokio_postgres::Error) -> GatewayError {
    let broken_connection = std::error::Error::source(&e)
        .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
    let unavailable = e.is_closed()
        || broken_connection
        || e.code().is_some_and(|code| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::QUERY_CANCELED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code)
        });
    if unavailable {
        GatewayError::new(
            ErrorKind::Unavailable,
            "the gateway's database is unavailable; retry shortly",
        )
        .with_cause(format!("{what}: {e}"))
    } else {
        GatewayError::internal(format!("{what}: {e}"))
    }
}

/// Whether `e` is a unique or primary-key violation.
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_comes_from_a_file_or_the_environment() {
        let dir = std::env::temp_dir().join(skyport_core::ids::new_id("skyport-pgpw"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
        let from_file = StorageConfig {
            password_file: Some("pw".into()),
            ..StorageConfig::default()
        };
        assert_eq!(
            password(&from_file, &dir).unwrap().as_deref(),
            Some("s3cret")
        );
        let var = "SKYPORT_TEST_PG_PASSWORD_VAR";
        std::env::set_var(var, "from-env");
        let from_env = StorageConfig {
            password_env: Some(var.into()),
            ..StorageConfig::default()
        };
        assert_eq!(
            password(&from_env, &dir).unwrap().as_deref(),
            Some("from-env")
        );
        let missing = StorageConfig {
            password_env: Some("SKYPORT_TEST_PG_UNSET_VAR".into()),
            ..StorageConfig::default()
        };
        let e = password(&missing, &dir).unwrap_err().to_string();
        assert!(e.contains("SKYPORT_TEST_PG_UNSET_VAR"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
