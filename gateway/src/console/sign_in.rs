//! Signing in and out of the console: the one-time development link
//! (`GET /console/signin?ticket=`), who the browser is signed in as
//! (`GET /console/session`, with the session's CSRF token), and sign-out
//! (`POST /console/signout`).

use bytes::Bytes;
use http::request::Parts;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use skyport_auth::claims::{TokenClaims, CONSOLE_SIGN_IN};
use skyport_core::error::GatewayError;
use skyport_core::tenancy::{IdentitySource, Principal};
use skyport_domain::sessions::{csrf_token, SessionService};

use super::{cookie, csrf, redirect, Console};
use crate::api::problem::problem_response;
use crate::stack::request::ConnInfo;

impl Console {
    /// `GET /console/signin?ticket=`: a development link opens a session, once, and the
    /// browser goes on to the console.
    pub(super) async fn sign_in_link(&self, head: &Parts) -> Response<Full<Bytes>> {
        match self.open_by_link(head).await {
            Ok(secret) => {
                let mut response = redirect("/console/");
                let max_age = self.services.config.console.absolute_timeout_secs;
                response.headers_mut().insert(
                    header::SET_COOKIE,
                    cookie::set(&secret, max_age)
                        .parse()
                        .expect("the cookie is ASCII"),
                );
                response
            }
            Err(e) => page(e.kind.status(), "Sign-in failed", &e.public),
        }
    }

    async fn open_by_link(&self, head: &Parts) -> Result<String, GatewayError> {
        if !self.dev_links {
            return Err(GatewayError::forbidden(
                "development sign-in links are off: this gateway has its own JWT keys; \
                 sign in through the identity provider",
            ));
        }
        let ticket = form_urlencoded::parse(head.uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "ticket")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| {
                GatewayError::invalid("the link has no ticket: run `skyport console` for one")
            })?;
        let claims = self.jwt.verify(&ticket).await.map_err(|e| {
            GatewayError::unauthenticated(format!(
                "the sign-in link is not valid ({}): run `skyport console` for a new one",
                e.public
            ))
        })?;
        let jti = match (&claims.skyport_use, &claims.jti) {
            (Some(use_), Some(jti)) if use_ == CONSOLE_SIGN_IN => jti.clone(),
            _ => {
                return Err(GatewayError::unauthenticated(
                    "this token is not a console sign-in link: run `skyport console` for one",
                ))
            }
        };
        let principal = self.known_principal(&claims)?;
        let sessions = &self.services.sessions;
        sessions
            // Kept past the verifier's leeway (at most 30 s after `exp`), so that it is
            // refused for as long as the token itself is accepted.
            .use_ticket(&jti, (claims.exp as i64 + 60).saturating_mul(1000))
            .await?;
        let signed = sessions.sign_in(&principal, "dev-link").await?;
        tracing::info!(tenant = %principal.tenant, subject = %principal.subject, via = "dev-link", "console sign-in");
        Ok(signed.secret)
    }

    /// Who verified `claims` name, once the tenant (and department) is known to exist: a
    /// session is opened only for them.
    pub(super) fn known_principal(&self, claims: &TokenClaims) -> Result<Principal, GatewayError> {
        let principal = Principal {
            tenant: claims.tenant.clone(),
            department: claims.dept.clone(),
            roles: claims.roles.clone(),
            subject: claims.sub.clone(),
            source: IdentitySource::Jwt,
        };
        self.services.tenants.resolve(principal.clone())?;
        Ok(principal)
    }

    /// `GET /console/session`: who the browser is signed in as, how, until when, and the
    /// CSRF token its writes carry; 401 (a problem document) when it is not.
    pub(super) async fn session(&self, conn: &ConnInfo, head: &Parts) -> Response<Full<Bytes>> {
        match self.who(conn, head).await {
            Ok(body) => crate::api::native::json_response(StatusCode::OK, &body),
            Err(e) => problem_response(&e, "console"),
        }
    }

    async fn who(&self, conn: &ConnInfo, head: &Parts) -> Result<serde_json::Value, GatewayError> {
        let timeouts = self.services.sessions.timeouts();
        if let Some(secret) = cookie::session_cookie(&head.headers) {
            let record = self.services.sessions.session(secret).await?;
            let principal = SessionService::principal(&record);
            let ctx = self.services.tenants.resolve(principal)?;
            return Ok(json!({
                "tenant": record.tenant,
                "department": record.department,
                "roles": record.roles,
                "subject": record.subject,
                "operator": ctx.operator,
                "operator_tenant": self.operator_tenant(&record.tenant),
                "via": record.via,
                "csrf_token": csrf_token(secret),
                "idle_timeout_secs": timeouts.idle.as_secs(),
                "expires_at_ms": record.created_ms + timeouts.absolute.as_millis() as i64,
            }));
        }
        if conn.identity.is_some() {
            // A browser that presented a client certificate is signed in by it, for as long
            // as its connection holds it; its writes need no token (no cookie rides along).
            let principal = self
                .auth
                .authenticate(&http::HeaderMap::new(), conn.identity.as_ref())
                .await?;
            let ctx = self.services.tenants.resolve(principal.clone())?;
            return Ok(json!({
                "tenant": principal.tenant,
                "department": principal.department,
                "roles": principal.roles,
                "subject": principal.subject,
                "operator": ctx.operator,
                "operator_tenant": self.operator_tenant(&principal.tenant),
                "via": "mtls",
                "csrf_token": null,
            }));
        }
        Err(GatewayError::unauthenticated(
            "not signed in: open a sign-in link (`skyport console`) or present a client certificate",
        ))
    }

    /// `GET /console/signin-options`: how one can sign in here (for the sign-in page).
    pub(super) fn sign_in_options(&self) -> Response<Full<Bytes>> {
        crate::api::native::json_response(
            StatusCode::OK,
            &json!({
                "oidc": self.oidc.is_some(),
                "dev_links": self.dev_links,
                "client_certificates": self.services.config.tls.client_ca.is_some(),
            }),
        )
    }

    /// Whether `tenant` is an operator tenant (whose approvers use the approval queue).
    fn operator_tenant(&self, tenant: &str) -> bool {
        self.services
            .tenants
            .get(tenant)
            .is_some_and(|t| t.operator)
    }

    /// `POST /console/signout`: ends the session and removes its cookie (204), from the
    /// console's own pages only.
    pub(super) async fn sign_out(&self, head: &Parts) -> Response<Full<Bytes>> {
        let ended = async {
            csrf::refuse_cross_site(head)?;
            if let Some(secret) = cookie::session_cookie(&head.headers) {
                csrf::require_token(head, secret)?;
                self.services.sessions.sign_out(secret).await?;
                tracing::info!("console sign-out");
            }
            Ok::<_, GatewayError>(())
        };
        match ended.await {
            Ok(()) => Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(header::SET_COOKIE, cookie::clear())
                .body(Full::new(Bytes::new()))
                .expect("static response parts are valid"),
            Err(e) => problem_response(&e, "console"),
        }
    }
}

/// A small HTML page with a title and a message (escaped), linking back to the console.
pub(super) fn page(status: StatusCode, title: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - Skyport</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         </head><body><main class=\"message\"><h1>{title}</h1><p role=\"alert\">{message}</p>\
         <p><a href=\"/console/\">Back to the console</a></p></main></body></html>",
        title = escape(title),
        message = escape(message),
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// `text` safe inside HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_escaped() {
        assert_eq!(
            super::escape("<img src=x onerror='a'>&"),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;"
        );
    }
}
