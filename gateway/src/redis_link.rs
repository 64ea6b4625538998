//! The connection to `[redis]`, the Redis replicas share: one auto-reconnecting,
//! multiplexed connection per gateway, used by the shared rate-limit buckets and the cache
//! epochs, each call bounded by `timeout_ms`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;
use skyport_core::config::RedisConfig;

/// The connection, and how long a call on it may take.
#[derive(Clone)]
pub struct RedisLink {
    /// The connection (clones share it).
    pub connection: ConnectionManager,
    /// The longest a call may take before it counts as failed.
    pub timeout: Duration,
}

/// `url` with `password` in it (percent-encoded).
fn with_password(url: &str, password: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(password.as_bytes()).collect();
    match url.strip_prefix("redis://") {
        Some(rest) => format!("redis://:{encoded}@{rest}"),
        None => url.to_string(),
    }
}

impl RedisLink {
    /// Connects to `config`'s Redis, the password from its file (resolved against
    /// `state_dir`) or variable. An unreachable Redis is an error naming it.
    pub async fn connect(config: &RedisConfig, state_dir: &Path) -> anyhow::Result<Self> {
        let password = skyport_core::config::read_secret(
            "redis",
            config.password_file.as_deref(),
            config.password_env.as_deref(),
            state_dir,
        )
        .map_err(anyhow::Error::msg)?;
        let url = match &password {
            Some(p) => with_password(&config.url, p),
            None => config.url.clone(),
        };
        let client = redis::Client::open(url).context("redis.url")?;
        let connection =
            tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
                .await
                .map_err(|_| anyhow::anyhow!("no answer in 5 s"))
                .and_then(|r| r.map_err(anyhow::Error::from))
                .with_context(|| format!("connecting to Redis at {}", config.url))?;
        Ok(Self {
            connection,
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_percent_encoded_into_the_url() {
        assert_eq!(
            with_password("redis://127.0.0.1:6379/0", "p@ss:w/rd"),
            "redis://:p%40ss%3Aw%2Frd@127.0.0.1:6379/0"
        );
    }
}
