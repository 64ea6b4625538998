//! `[console]`: the web console at `/console/`: whether it is served, how long its
//! sessions last, and `[console.oidc]`, the enterprise's identity provider.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[console]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Whether `/console/` is served (the API is served either way).
    pub enabled: bool,
    /// Seconds without a request after which a session ends (30 minutes).
    pub idle_timeout_secs: u64,
    /// Seconds after sign-in at which a session ends in any case (12 hours).
    pub absolute_timeout_secs: u64,
    /// Seconds a development sign-in link (`skyport console`) may be used within.
    pub sign_in_link_secs: u64,
    /// Sign-in through an OpenID Connect identity provider (authorization code flow with
    /// PKCE), when set.
    pub oidc: Option<OidcConfig>,
}

/// `[console.oidc]`: the identity provider whose access tokens the gateway already
/// verifies (`[auth.jwt]`: issuer, audience, keys), signing people in to the console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (`https://`); its endpoints are read from
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The console's client id at the provider.
    pub client_id: String,
    /// A file holding the client secret (relative to the state directory), for a
    /// confidential client; none for a public client (PKCE protects the code either way).
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for (`openid` is always among them).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Where the provider sends the browser back: `https://<gateway>/console/oidc/callback`
    /// as registered at the provider (default: built from the request's host).
    pub redirect_url: Option<String>,
    /// PEM file of CA certificates trusted for the provider besides the system's
    /// (relative to the state directory).
    pub ca_file: Option<PathBuf>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 12 * 3600,
            sign_in_link_secs: 300,
            oidc: None,
        }
    }
}

impl ConsoleConfig {
    /// What is wrong with these settings.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: &str| {
            errors.push(ConfigError {
                path: format!("console.{path}"),
                message: message.into(),
            })
        };
        if self.idle_timeout_secs == 0 {
            err("idle_timeout_secs", "must be at least 1");
        }
        if self.absolute_timeout_secs < self.idle_timeout_secs {
            err(
                "absolute_timeout_secs",
                "must be at least idle_timeout_secs",
            );
        }
        if !(1..=3600).contains(&self.sign_in_link_secs) {
            err("sign_in_link_secs", "must be between 1 and 3600");
        }
        if let Some(oidc) = &self.oidc {
            if !oidc.issuer.starts_with("https://") {
                err("oidc.issuer", "must be an https:// URL");
            }
            if oidc.client_id.is_empty() {
                err("oidc.client_id", "must not be empty");
            }
            if oidc.redirect_url.as_deref().is_some_and(|u| {
                !u.starts_with("https://") || !u.ends_with("/console/oidc/callback")
            }) {
                err(
                    "oidc.redirect_url",
                    "must be https://<gateway>/console/oidc/callback",
                );
            }
        }
        errors
    }
}
