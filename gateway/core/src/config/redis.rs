//! `[redis]`: the Redis that replicas share, for rate-limit buckets (`[limits] backend =
//! "redis"`) and cache coherence (`[cache] coherence = "redis"`).

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Where the tenants' rate-limit buckets live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsBackend {
    /// In this process: each replica enforces the whole limit by itself.
    #[default]
    Local,
    /// On Redis: one bucket per tenant for every replica.
    Redis,
}

/// What the limiter does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRedisError {
    /// Local buckets at the limit divided by the replicas last seen alive.
    #[default]
    LocalShare,
    /// Admit every request.
    Open,
    /// Refuse every request (503).
    Closed,
}

/// How a write invalidates cached reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheCoherence {
    /// In this replica only.
    #[default]
    Local,
    /// On every replica: a per-tenant epoch in Redis is part of every cache key, pushed to
    /// every replica when a write moves it; the write answers once every replica holds the
    /// new epoch (or has stopped serving cached reads): a read after a write never sees the
    /// state before it, whichever replica answers, and a cached read costs no Redis round
    /// trip.
    Redis,
}

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://HOST:PORT[/DB]`, without a password.
    pub url: String,
    /// A file holding the password (resolved against the state directory).
    pub password_file: Option<PathBuf>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// Milliseconds a Redis call may take before it counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    50
}

/// Problems with `[redis]` and what uses it, each with its key path.
pub(super) fn check(
    redis: Option<&RedisConfig>,
    limits: LimitsBackend,
    cache: CacheCoherence,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |path: &str, message: &str| {
        errors.push(ConfigError {
            path: path.to_string(),
            message: message.to_string(),
        })
    };
    if redis.is_none() {
        if limits == LimitsBackend::Redis {
            err(
                "limits.backend",
                "\"redis\" needs a [redis] table with its url",
            );
        }
        if cache != CacheCoherence::Local {
            err(
                "cache.coherence",
                "\"redis\" needs a [redis] table with its url",
            );
        }
    }
    if let Some(redis) = redis {
        let authority = redis
            .url
            .strip_prefix("redis://")
            .map(|rest| rest.split('/').next().unwrap_or(""));
        match authority {
            None => err("redis.url", "must start with redis://"),
            Some(authority) if authority.contains('@') => err(
                "redis.url",
                "must not carry a user or password; put the password in password_file or password_env",
            ),
            Some(_) => {}
        }
        if redis.password_file.is_some() && redis.password_env.is_some() {
            err(
                "redis.password_file",
                "set password_file or password_env, not both",
            );
        }
        if !(1..=5000).contains(&redis.timeout_ms) {
            err("redis.timeout_ms", "must be 1-5000");
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            password_file: None,
            password_env: None,
            timeout_ms: 50,
        }
    }

    #[test]
    fn what_uses_redis_needs_it_and_its_url_carries_no_password() {
        let (local, cache) = (LimitsBackend::Local, CacheCoherence::Local);
        assert!(check(None, local, cache).is_empty());
        let good = redis("redis://127.0.0.1:6379/0");
        assert!(check(Some(&good), LimitsBackend::Redis, CacheCoherence::Redis).is_empty());
        assert_eq!(
            check(None, LimitsBackend::Redis, cache)[0].path,
            "limits.backend"
        );
        assert_eq!(
            check(None, local, CacheCoherence::Redis)[0].path,
            "cache.coherence"
        );
        let inline = check(Some(&redis("redis://:secret@h:6379")), local, cache);
        assert_eq!(inline[0].path, "redis.url");
        assert!(inline[0].message.contains("password_file"));
        let scheme = check(Some(&redis("http://h:6379")), local, cache);
        assert_eq!(scheme[0].message, "must start with redis://");
    }
}
