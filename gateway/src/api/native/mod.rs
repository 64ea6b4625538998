//! The native JSON API (`/v1/*`) and the admin API (`/admin/*`): one front door
//! authenticated by JWT bearer tokens, mTLS client certificates or the web console's
//! session cookie (whose writes carry its CSRF token), routed by one table
//! ([`routes`]), every error an RFC 9457 problem document. Handlers translate JSON and
//! query strings to the domain's operations and back, nothing more.

mod admin;
mod approvals;
mod budgets;
mod catalog;
mod deployments;
mod identity;
mod images;
mod instances;
mod keys;
mod metering;
mod orders;
mod placement;
pub(crate) mod routes;
mod sla;
#[cfg(test)]
mod tests;
mod webhooks;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::de::DeserializeOwned;
use skyport_auth::Authenticator;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::tenancy::{Principal, TenantContext};
use skyport_domain::sessions::SessionService;

use super::problem;
use crate::services::Services;
use crate::stack::request::ConnInfo;
use crate::stack::{Call, FrontDoor, RouteFacts};
use routes::Matched;

/// A handler's answer.
pub(crate) type Answer = Result<Response<Full<Bytes>>, GatewayError>;

/// A route's handler.
pub(crate) type Handler = for<'a> fn(&'a NativeApi, NativeCall<'a>) -> BoxFuture<'a, Answer>;

/// The native and admin API.
pub struct NativeApi {
    services: Arc<Services>,
    auth: Arc<Authenticator>,
}

impl NativeApi {
    /// The API over `services`, callers authenticated by `auth`.
    pub fn new(services: Arc<Services>, auth: Arc<Authenticator>) -> Self {
        Self { services, auth }
    }
}

/// A request routed to a native route.
pub struct NativeRoute {
    route: &'static routes::Route,
    params: Vec<String>,
}

/// What a handler gets.
pub(crate) struct NativeCall<'a> {
    /// Who it acts for.
    pub(crate) ctx: &'a TenantContext,
    /// The request id.
    pub(crate) request_id: &'a str,
    /// The path parameters, in pattern order.
    pub(crate) params: Vec<String>,
    /// Method, URI and headers.
    pub(crate) head: Parts,
    /// The body (read only for routes that take one).
    pub(crate) body: Bytes,
}

impl NativeCall<'_> {
    /// Path parameter `i`.
    pub(crate) fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The query's pairs, decoded.
    pub(crate) fn query(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.head.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    /// The first value of query parameter `key`.
    pub(crate) fn query_value(&self, key: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The body as JSON of `T`; 400 naming `what` when it is not.
    pub(crate) fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, GatewayError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| GatewayError::invalid(format!("invalid {what}: {e}")))
    }
}

/// Refuses query parameters other than `allowed`.
pub(crate) fn check_params(
    query: &[(String, String)],
    allowed: &[&str],
) -> Result<(), GatewayError> {
    match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(GatewayError::invalid(format!(
            "unknown query parameter '{k}'; use {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The first value of `name` among `query`'s pairs.
pub(crate) fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A JSON response.
pub(crate) fn json_response(
    status: StatusCode,
    value: &serde_json::Value,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts are valid")
}

impl FrontDoor for NativeApi {
    type Route = NativeRoute;
    type Error = GatewayError;

    fn route(&self, head: &Parts) -> Result<NativeRoute, GatewayError> {
        match routes::find(&head.method, head.uri.path()) {
            Matched::Route(route, params) => Ok(NativeRoute { route, params }),
            Matched::MethodNotAllowed(template) => Err(GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{} is not allowed on {template}", head.method),
            )),
            Matched::NotFound => Err(GatewayError::not_found(format!(
                "no route for {}",
                head.uri.path()
            ))),
        }
    }

    fn template(&self, route: &NativeRoute) -> &'static str {
        route.route.template
    }

    fn body_before_auth(&self, _route: &NativeRoute) -> bool {
        false
    }

    async fn authenticate(
        &self,
        _route: &mut NativeRoute,
        head: &Parts,
        _body: &Bytes,
        conn: &ConnInfo,
    ) -> Result<Principal, GatewayError> {
        crate::console::csrf::refuse_cross_site(head)?;
        if !head.headers.contains_key(http::header::AUTHORIZATION) {
            if let Some(secret) = crate::console::session_cookie(&head.headers)
                .filter(|_| self.services.config.console.enabled)
            {
                let session = self.services.sessions.session(secret).await?;
                crate::console::csrf::require_token(head, secret)?;
                return Ok(SessionService::principal(&session));
            }
        }
        self.auth
            .authenticate(&head.headers, conn.identity.as_ref())
            .await
    }

    fn admit(
        &self,
        route: &mut NativeRoute,
        _ctx: &TenantContext,
        head: &Parts,
        _body: &Bytes,
    ) -> Result<RouteFacts, GatewayError> {
        let route = route.route;
        Ok(RouteFacts {
            template: route.template,
            admin: route.admin,
            approvers: route.approvers,
            writes: route.writes,
            cache_ttl: route.cache_ttl.filter(|_| head.method == http::Method::GET),
            takes_body: route.takes_body,
        })
    }

    fn cache_key(&self, _route: &NativeRoute, head: &Parts, _body: &Bytes) -> (String, String) {
        (
            head.uri.path().to_owned(),
            crate::stack::cache::normalise_query(head.uri.query().unwrap_or("")),
        )
    }

    async fn call(&self, route: NativeRoute, call: Call<'_>) -> Answer {
        let Call {
            ctx,
            request_id,
            head,
            body,
        } = call;
        let call = NativeCall {
            ctx,
            request_id,
            params: route.params,
            head,
            body,
        };
        (route.route.handler)(self, call).await
    }

    fn render_error(&self, err: GatewayError, request_id: &str) -> Response<Full<Bytes>> {
        if err.kind == ErrorKind::Internal || err.cause.is_some() {
            crate::api::failure_log::failed(
                request_id,
                err.kind.status(),
                err.kind.slug(),
                &err.public,
                err.cause.as_deref(),
            );
        }
        problem::problem_response(&err, request_id)
    }
}
