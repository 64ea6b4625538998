//! Signing in to the console through the enterprise's OpenID Connect identity provider:
//! the authorization code flow with PKCE (RFC 7636, `S256`).
//!
//! 1. `GET /console/oidc/login`: a random `state` and code verifier go into a short-lived
//!    cookie (`SameSite=Lax`, so that it comes back with the provider's redirect), and the
//!    browser goes to the provider's authorization endpoint with the verifier's challenge.
//! 2. `GET /console/oidc/callback?code=&state=`: the state must be the cookie's; the code
//!    is exchanged, with the verifier, at the token endpoint; the access token is verified
//!    as the API verifies any bearer token (`[auth.jwt]`: signature, issuer, audience,
//!    lifetime, the tenant claims), and a console session is opened for it.

use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use skyport_core::config::{Config, OidcConfig};
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_domain::sessions::{constant_time_eq, random_secret};
use tokio::sync::OnceCell;

use super::{redirect, sign_in::page, Console};

/// The cookie that carries a sign-in's state and code verifier to the callback.
const FLOW_COOKIE: &str = "__Host-skyport_oidc";

/// How long a sign-in at the provider may take.
const FLOW_SECS: u64 = 600;

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// The provider, as the console talks to it.
pub(crate) struct Oidc {
    config: OidcConfig,
    client_secret: Option<String>,
    http: reqwest::Client,
    endpoints: OnceCell<Endpoints>,
}

impl Oidc {
    /// The provider of `config`'s `[console.oidc]`, when there is one.
    pub(crate) fn new(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(oidc) = &config.console.oidc else {
            return Ok(None);
        };
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .user_agent(concat!("skyport-console/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = &oidc.ca_file {
            let path = config.state_path(ca_file);
            let pem = std::fs::read(&path)
                .with_context(|| format!("console.oidc.ca_file: reading {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .with_context(|| {
                    format!(
                        "console.oidc.ca_file: {} holds no PEM certificate",
                        path.display()
                    )
                })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client_secret = match &oidc.client_secret_file {
            Some(file) => {
                let path = config.state_path(file);
                Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| {
                            format!(
                                "console.oidc.client_secret_file: reading {}",
                                path.display()
                            )
                        })?
                        .trim()
                        .to_string(),
                )
            }
            None => None,
        };
        Ok(Some(Self {
            config: oidc.clone(),
            client_secret,
            http: builder.build().context("building the OIDC client")?,
            endpoints: OnceCell::new(),
        }))
    }

    /// The provider's endpoints, read once from its discovery document.
    async fn endpoints(&self) -> Result<&Endpoints, GatewayError> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let found: Endpoints = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| unreachable_provider(&url, &e))?
                    .json()
                    .await
                    .map_err(|e| unreachable_provider(&url, &e))?;
                if found.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
                    return Err(GatewayError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "the identity provider's discovery document names issuer {}, not {}",
                            found.issuer, self.config.issuer
                        ),
                    ));
                }
                Ok(found)
            })
            .await
    }

    fn redirect_uri(&self, head: &Parts) -> String {
        self.config.redirect_url.clone().unwrap_or_else(|| {
            let host = head
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| {
                    head.headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            format!("https://{host}/console/oidc/callback")
        })
    }
}

fn unreachable_provider(url: &str, e: &reqwest::Error) -> GatewayError {
    GatewayError::new(
        ErrorKind::Unavailable,
        "the identity provider could not be reached; try again shortly",
    )
    .with_cause(format!("{url}: {e}"))
}

/// The `S256` challenge of `verifier`.
pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The flow cookie's state and verifier, when the request carries it.
fn flow_cookie(head: &Parts) -> Option<(String, String)> {
    head.headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == FLOW_COOKIE)
        .and_then(|(_, value)| value.split_once('.'))
        .map(|(s, v)| (s.to_string(), v.to_string()))
}

fn query(head: &Parts, key: &str) -> Option<String> {
    form_urlencoded::parse(head.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

impl Console {
    /// `GET /console/oidc/login`: off to the provider.
    pub(super) async fn oidc_login(&self, head: &Parts) -> Response<Full<Bytes>> {
        let Some(oidc) = &self.oidc else {
            return page(
                StatusCode::NOT_FOUND,
                "Sign-in failed",
                "This gateway has no identity provider configured ([console.oidc]).",
            );
        };
        let endpoints = match oidc.endpoints().await {
            Ok(e) => e,
            Err(e) => return page(e.kind.status(), "Sign-in failed", &e.public),
        };
        let (state, verifier, nonce) = (random_secret(), random_secret(), random_secret());
        let mut scopes = vec!["openid".to_string()];
        scopes.extend(
            oidc.config
                .scopes
                .iter()
                .filter(|s| *s != "openid")
                .cloned(),
        );
        let params = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &oidc.config.client_id)
            .append_pair("redirect_uri", &oidc.redirect_uri(head))
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256")
            .finish();
        let separator = if endpoints.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut response = redirect(&format!(
            "{}{separator}{params}",
            endpoints.authorization_endpoint
        ));
        response.headers_mut().insert(
            header::SET_COOKIE,
            format!(
                "{FLOW_COOKIE}={state}.{verifier}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={FLOW_SECS}"
            )
            .parse()
            .expect("the cookie is ASCII"),
        );
        response
    }

    /// `GET /console/oidc/callback`: back from the provider.
    pub(super) async fn oidc_callback(&self, head: &Parts) -> Response<Full<Bytes>> {
        let mut response = match self.finish_oidc(head).await {
            Ok(secret) => {
                let mut response = redirect("/console/");
                response.headers_mut().append(
                    header::SET_COOKIE,
                    super::cookie::set(&secret, self.services.config.console.absolute_timeout_secs)
                        .parse()
                        .expect("the cookie is ASCII"),
                );
                response
            }
            Err(e) => {
                if e.cause.is_some() {
                    tracing::warn!(error = %e.public, cause = ?e.cause, "console sign-in failed");
                }
                page(e.kind.status(), "Sign-in failed", &e.public)
            }
        };
        response.headers_mut().append(
            header::SET_COOKIE,
            format!("{FLOW_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
                .parse()
                .expect("the cookie is ASCII"),
        );
        response
    }

    async fn finish_oidc(&self, head: &Parts) -> Result<String, GatewayError> {
        let oidc = self.oidc.as_ref().ok_or_else(|| {
            GatewayError::not_found("this gateway has no identity provider configured")
        })?;
        if let Some(error) = query(head, "error") {
            // Only the code: the description is whatever the link's author wrote.
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(GatewayError::unauthenticated(format!(
                "the identity provider refused the sign-in ({code})"
            )));
        }
        let (Some(code), Some(state)) = (query(head, "code"), query(head, "state")) else {
            return Err(GatewayError::invalid(
                "the identity provider's answer has no code or state",
            ));
        };
        let Some((expected, verifier)) = flow_cookie(head) else {
            return Err(GatewayError::unauthenticated(
                "this sign-in did not start here, or took longer than 10 minutes: sign in again",
            ));
        };
        if !constant_time_eq(&expected, &state) {
            return Err(GatewayError::unauthenticated(
                "the sign-in's state does not match: sign in again",
            ));
        }
        let endpoints = oidc.endpoints().await?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", &oidc.redirect_uri(head))
            .append_pair("client_id", &oidc.config.client_id)
            .append_pair("code_verifier", &verifier)
            .finish();
        let mut request = oidc
            .http
            .post(&endpoints.token_endpoint)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(form);
        if let Some(secret) = &oidc.client_secret {
            request = request.basic_auth(&oidc.config.client_id, Some(secret));
        }
        let answer = request
            .send()
            .await
            .map_err(|e| unreachable_provider(&endpoints.token_endpoint, &e))?;
        if !answer.status().is_success() {
            let status = answer.status();
            let body = answer.text().await.unwrap_or_default();
            return Err(GatewayError::unauthenticated(
                "the identity provider did not exchange the sign-in's code: sign in again",
            )
            .with_cause(format!("token endpoint {status}: {body}")));
        }
        let tokens: TokenAnswer = answer.json().await.map_err(|e| {
            GatewayError::unauthenticated("the identity provider's token answer is not valid")
                .with_cause(e)
        })?;
        let claims = self.jwt.verify(&tokens.access_token).await.map_err(|e| {
            GatewayError::unauthenticated(format!(
                "the identity provider's access token is not one this gateway accepts: {}",
                e.public
            ))
        })?;
        if claims.skyport_use.is_some() {
            return Err(GatewayError::unauthenticated(
                "the identity provider's token is not an access token",
            ));
        }
        let principal = self.known_principal(&claims)?;
        tracing::info!(tenant = %principal.tenant, subject = %principal.subject, via = "oidc", "console sign-in");
        Ok(self
            .services
            .sessions
            .sign_in(&principal, "oidc")
            .await?
            .secret)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            super::challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
