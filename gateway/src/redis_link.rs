//! The connection to `[redis]`, the Redis replicas share: one auto-reconnecting,
//! multiplexed connection per gateway, used by the shared rate-limit buckets and the cache
//! epochs, each call bounded by `timeout_ms`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use skyport_core::config::RedisConfig;

/// The connection (once Redis has answered), and how long a call on it may take.
#[derive(Clone)]
pub struct RedisLink {
    connection: Arc<ArcSwapOption<ConnectionManager>>,
    /// For connections of their own (a subscription cannot share the multiplexed one).
    client: redis::Client,
    /// The longest a call may take before it counts as failed.
    pub timeout: Duration,
}

/// How often a Redis that did not answer at startup is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// A connection to `client`'s Redis, within 5 s.
async fn open(client: &redis::Client) -> anyhow::Result<ConnectionManager> {
    tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
        .await
        .map_err(|_| anyhow::anyhow!("no answer in 5 s"))?
        .map_err(anyhow::Error::from)
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
    /// `state_dir`) or variable. A Redis that does not answer is logged and tried again
    /// every second; until then [`Self::connection`] is `None` and its users degrade.
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
        let link = Self {
            connection: Arc::new(ArcSwapOption::empty()),
            client: client.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
        };
        match open(&client).await {
            Ok(connection) => link.connection.store(Some(Arc::new(connection))),
            Err(e) => {
                // Started degraded, as if Redis had failed later: connected once it answers.
                tracing::warn!(redis = %config.url, error = %e,
                    "Redis does not answer; serving without it until it does");
                let slot = Arc::clone(&link.connection);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(RECONNECT_EVERY).await;
                        if let Ok(connection) = open(&client).await {
                            slot.store(Some(Arc::new(connection)));
                            tracing::info!("Redis answers now");
                            return;
                        }
                    }
                });
            }
        }
        Ok(link)
    }

    /// The client, for a connection of one's own.
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// The connection, once Redis has answered (clones share it).
    pub fn connection(&self) -> Option<ConnectionManager> {
        self.connection.load_full().map(|c| (*c).clone())
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
