//! The web console at `/console/`, on the API's own TLS listener: its assets, embedded in
//! the binary ([`assets`]), and its sign-in ([`sign_in`]). Every page is drawn in the
//! browser from the public API, which it calls with the session's cookie; the console
//! itself serves no data.
//!
//! Every console response carries a strict Content-Security-Policy: scripts, styles and
//! connections from this origin only, no inline script, no framing.

mod assets;
mod cookie;
pub(crate) mod csrf;
mod oidc;
mod sign_in;
mod sign_in_rate;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use skyport_auth::jwt::JwtVerifier;
use skyport_auth::Authenticator;

use crate::services::Services;
use crate::stack::request::ConnInfo;

pub(crate) use cookie::session_cookie;

/// `Content-Security-Policy` of every console response.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

/// The web console.
pub struct Console {
    services: Arc<Services>,
    auth: Arc<Authenticator>,
    jwt: Arc<JwtVerifier>,
    /// Whether development sign-in links are accepted (the development JWT key is in use).
    dev_links: bool,
    /// The identity provider, when `[console.oidc]` names one.
    oidc: Option<oidc::Oidc>,
    /// How often each address may try to sign in.
    sign_in_rate: crate::peer_rate::PeerRate,
}

impl Console {
    /// The console over `services`; development links verified by `jwt` when `dev_links`;
    /// sign-in through the identity provider of `[console.oidc]`, when there is one.
    pub fn new(
        services: Arc<Services>,
        auth: Arc<Authenticator>,
        jwt: Arc<JwtVerifier>,
        dev_links: bool,
    ) -> anyhow::Result<Self> {
        let oidc = oidc::Oidc::new(&services.config)?;
        let sign_in_rate = sign_in_rate::sign_in_rate(services.clock.clone());
        Ok(Self {
            services,
            auth,
            jwt,
            dev_links,
            oidc,
            sign_in_rate,
        })
    }

    /// Whether `path` is the console's.
    pub fn serves(path: &str) -> bool {
        path == "/console" || path.starts_with("/console/")
    }

    /// Serves one console request.
    pub async fn handle<B>(&self, conn: &ConnInfo, req: Request<B>) -> Response<Full<Bytes>> {
        let (head, _body) = req.into_parts();
        let mut response = if !self.services.config.console.enabled {
            sign_in::page(
                StatusCode::NOT_FOUND,
                "The console is off",
                "This gateway does not serve the web console ([console] enabled = false).",
            )
        } else {
            self.route(conn, &head).await
        };
        secure(response.headers_mut());
        response
    }

    async fn route(&self, conn: &ConnInfo, head: &http::request::Parts) -> Response<Full<Bytes>> {
        let path = head.uri.path();
        let signs_in = matches!(
            path,
            "/console/signin" | "/console/oidc/login" | "/console/oidc/callback"
        );
        if signs_in && !self.sign_in_rate.allows(conn.peer.ip()) {
            let mut refused = sign_in::page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ins",
                "This address has tried to sign in too often. Wait a moment and try again.",
            );
            refused
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return refused;
        }
        match (&head.method, path) {
            (&Method::GET | &Method::HEAD, "/console") => redirect("/console/"),
            (&Method::GET | &Method::HEAD, "/console/") => assets::index(),
            // GET only: a HEAD (a link checker's) must not use the link up.
            (&Method::GET, "/console/signin") => self.sign_in_link(head).await,
            (&Method::GET | &Method::HEAD, "/console/session") => self.session(conn, head).await,
            (&Method::POST, "/console/signout") => self.sign_out(head).await,
            (&Method::GET, "/console/oidc/login") => self.oidc_login(head).await,
            (&Method::GET, "/console/oidc/callback") => self.oidc_callback(head).await,
            (&Method::GET | &Method::HEAD, "/console/signin-options") => self.sign_in_options(),
            (&Method::GET | &Method::HEAD, _) => match path.strip_prefix("/console/assets/") {
                Some(name) => assets::asset(name, head),
                None => sign_in::page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is no such console page. Pages are under /console/#/.",
                ),
            },
            _ => sign_in::page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "The console does not take this method here.",
            ),
        }
    }
}

/// A `303 See Other` to `to`.
fn redirect(to: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}

/// The headers every console response carries.
fn secure(headers: &mut http::HeaderMap) {
    let set = |headers: &mut http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(headers, "strict-transport-security", "max-age=31536000");
}
