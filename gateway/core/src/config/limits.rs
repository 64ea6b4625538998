//! `[limits]`'s engine: each replica's own buckets, or buckets shared by every replica
//! on Redis.

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

/// `[limits.redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisLimitsConfig {
    /// `redis://HOST:PORT[/DB]`, without a password.
    pub url: String,
    /// A file holding the password (resolved against the state directory).
    pub password_file: Option<PathBuf>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// What to do while Redis cannot be reached.
    #[serde(default)]
    pub on_error: OnRedisError,
    /// Milliseconds a Redis call may take before it counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    50
}

/// Problems with `[limits]`'s engine settings, each with its key path.
pub(super) fn check(backend: LimitsBackend, redis: Option<&RedisLimitsConfig>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |path: &str, message: &str| {
        errors.push(ConfigError {
            path: path.to_string(),
            message: message.to_string(),
        })
    };
    match (backend, redis) {
        (LimitsBackend::Redis, None) => err(
            "limits.redis",
            "backend = \"redis\" needs [limits.redis] with a url",
        ),
        (LimitsBackend::Local, Some(_)) => err(
            "limits.backend",
            "[limits.redis] is set but backend is \"local\"; set backend = \"redis\" or remove it",
        ),
        _ => {}
    }
    if let Some(redis) = redis {
        let authority = redis
            .url
            .strip_prefix("redis://")
            .map(|rest| rest.split('/').next().unwrap_or(""));
        match authority {
            None => err("limits.redis.url", "must start with redis://"),
            Some(authority) if authority.contains('@') => err(
                "limits.redis.url",
                "must not carry a user or password; put the password in password_file or password_env",
            ),
            Some(_) => {}
        }
        if redis.password_file.is_some() && redis.password_env.is_some() {
            err(
                "limits.redis.password_file",
                "set password_file or password_env, not both",
            );
        }
        if !(1..=5000).contains(&redis.timeout_ms) {
            err("limits.redis.timeout_ms", "must be 1-5000");
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(url: &str) -> RedisLimitsConfig {
        RedisLimitsConfig {
            url: url.into(),
            password_file: None,
            password_env: None,
            on_error: OnRedisError::LocalShare,
            timeout_ms: 50,
        }
    }

    #[test]
    fn redis_needs_its_table_and_a_url_without_a_password() {
        assert!(check(LimitsBackend::Local, None).is_empty());
        assert!(check(
            LimitsBackend::Redis,
            Some(&redis("redis://127.0.0.1:6379/0"))
        )
        .is_empty());
        assert_eq!(check(LimitsBackend::Redis, None)[0].path, "limits.redis");
        let inline = check(LimitsBackend::Redis, Some(&redis("redis://:secret@h:6379")));
        assert_eq!(inline[0].path, "limits.redis.url");
        assert!(inline[0].message.contains("password_file"));
        let scheme = check(LimitsBackend::Redis, Some(&redis("http://h:6379")));
        assert_eq!(scheme[0].message, "must start with redis://");
        assert_eq!(
            check(LimitsBackend::Local, Some(&redis("redis://h")))[0].path,
            "limits.backend"
        );
    }
}
