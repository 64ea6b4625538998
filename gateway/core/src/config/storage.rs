//! `[storage]`: where the gateway's state is kept. SQLite in the state directory is the
//! embedded default; replicas that share their state use PostgreSQL.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// The engine behind every store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// `<state-dir>/skyport.db`, one machine.
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by every replica.
    Postgres,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite` (default) or `postgres`.
    #[serde(default)]
    pub backend: StorageBackend,
    /// PostgreSQL: `postgres://USER@HOST:PORT/DATABASE`, without a password.
    pub url: Option<String>,
    /// PostgreSQL: a file holding the password (resolved against the state directory).
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: the environment variable holding the password.
    pub password_env: Option<String>,
    /// PostgreSQL: connections this replica keeps at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// PostgreSQL: seconds a statement (or the wait for a connection) may take before
    /// the request fails as unavailable.
    #[serde(default = "default_statement_timeout_secs")]
    pub statement_timeout_secs: u64,
}

fn default_pool_size() -> usize {
    16
}

fn default_statement_timeout_secs() -> u64 {
    5
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Sqlite,
            url: None,
            password_file: None,
            password_env: None,
            pool_size: default_pool_size(),
            statement_timeout_secs: default_statement_timeout_secs(),
        }
    }
}

/// Whether a PostgreSQL URL carries a password (`postgres://user:secret@host/db` or a
/// `password=` parameter).
fn has_inline_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let userinfo_has_password = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let query_has_password = url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("password=")));
    userinfo_has_password || query_has_password
}

impl StorageConfig {
    /// Problems with `[storage]`, each with its key path.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: &str| {
            errors.push(ConfigError {
                path: format!("storage.{path}"),
                message: message.to_string(),
            })
        };
        match self.backend {
            StorageBackend::Sqlite => {
                if self.url.is_some() || self.password_file.is_some() || self.password_env.is_some()
                {
                    err(
                        "backend",
                        "url, password_file and password_env need backend = \"postgres\"",
                    );
                }
            }
            StorageBackend::Postgres => match &self.url {
                None => err(
                    "url",
                    "backend = \"postgres\" needs a url (postgres://USER@HOST:PORT/DATABASE)",
                ),
                Some(url)
                    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
                {
                    err("url", "must start with postgres:// or postgresql://")
                }
                Some(url) if has_inline_password(url) => err(
                    "url",
                    "must not carry the password; put it in password_file or password_env",
                ),
                Some(_) => {}
            },
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            err(
                "password_file",
                "set password_file or password_env, not both",
            );
        }
        if !(1..=1024).contains(&self.pool_size) {
            err("pool_size", "must be 1-1024");
        }
        if !(1..=600).contains(&self.statement_timeout_secs) {
            err("statement_timeout_secs", "must be 1-600");
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres(url: &str) -> StorageConfig {
        StorageConfig {
            backend: StorageBackend::Postgres,
            url: Some(url.into()),
            ..StorageConfig::default()
        }
    }

    #[test]
    fn the_default_is_sqlite_and_valid() {
        let config = StorageConfig::default();
        assert_eq!(config.backend, StorageBackend::Sqlite);
        assert!(config.check().is_empty());
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        for url in [
            "postgres://skyport:secret@127.0.0.1:5432/skyport",
            "postgresql://skyport@127.0.0.1/skyport?sslmode=disable&password=secret",
        ] {
            let errors = postgres(url).check();
            assert_eq!(errors.len(), 1, "{url}: {errors:?}");
            assert!(errors[0].message.contains("password_file"), "{errors:?}");
        }
        assert!(postgres("postgres://skyport@127.0.0.1:5432/skyport")
            .check()
            .is_empty());
        // An '@' or ':' in the path or query is not a password.
        assert!(
            postgres("postgres://skyport@127.0.0.1:5432/db?application_name=a:b")
                .check()
                .is_empty()
        );
    }

    #[test]
    fn postgres_needs_a_url_and_sqlite_takes_none() {
        let missing = StorageConfig {
            backend: StorageBackend::Postgres,
            ..StorageConfig::default()
        };
        assert_eq!(missing.check()[0].path, "storage.url");
        let stray = StorageConfig {
            url: Some("postgres://x@h/d".into()),
            ..StorageConfig::default()
        };
        assert_eq!(stray.check()[0].path, "storage.backend");
        let both = StorageConfig {
            password_file: Some("pw".into()),
            password_env: Some("PW".into()),
            ..postgres("postgres://x@h/d")
        };
        assert_eq!(both.check()[0].path, "storage.password_file");
    }
}
