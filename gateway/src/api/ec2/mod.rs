//! The EC2 Query API front door (`POST /`, `GET /?Action=...`, also at
//! `/services/compute`), so that the AWS CLI and boto3 work unchanged against Skyport.
//!
//! As a [`FrontDoor`]: the body is read before authentication (the signature covers it);
//! SigV4 authenticates, and the credential scope's region selects a provider region (or
//! the federated one); once the caller is known the `Action` is looked up in one table
//! ([`actions`]), which says whether it writes and how long it is cached. Actions call the
//! domain's operations and render EC2's 2016-11-15 XML; every error is EC2's
//! `<Response><Errors>` envelope with EC2's code and status ([`errors`]).

mod actions;
mod addresses;
mod attributes;
mod describe;
mod dry_run;
pub mod errors;
mod instances;
mod interfaces;
mod key_pairs;
mod model;
mod networks;
pub mod query;
mod security_groups;
mod tags;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tool_calls_tests;
mod unsupported;
mod volumes;
mod vpcs;
pub mod xml;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use skyport_auth::{sigv2, sigv4, Authenticator};
use skyport_core::metrics::Metrics;
use skyport_core::tenancy::{Principal, TenantContext};
use skyport_core::text::{ascii_pieces, ascii_split_once};
use skyport_domain::regions::{RegionView, FEDERATED_REGION};

use crate::services::Services;
use crate::stack::request::ConnInfo;
use crate::stack::{Call, FrontDoor, RouteFacts, Writes};
pub use errors::Ec2Error;
use query::Params;

/// Template of every EC2 request in logs and metrics until its action is known.
const ENDPOINT: &str = "/ (EC2 Query API)";

/// The EC2 Query API.
pub struct Ec2Api {
    services: Arc<Services>,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
}

impl Ec2Api {
    /// The API over `services`, callers authenticated by `auth` (SigV4, and SigV2 unless
    /// `[auth.sigv2] enabled = false`), counted in `metrics`.
    pub fn new(services: Arc<Services>, auth: Arc<Authenticator>, metrics: Arc<Metrics>) -> Self {
        Self {
            services,
            auth,
            metrics,
        }
    }

    /// Whether `path` is the EC2 endpoint's (`/`, `/services/compute`, or
    /// `/services/Eucalyptus` where Eucalyptus 1.x/2.x tools look for it).
    pub fn serves(path: &str) -> bool {
        matches!(
            path.trim_end_matches('/'),
            "" | "/services/compute" | "/services/Eucalyptus"
        )
    }

    /// Authenticates a request signed with Signature Version 2 (`params`: its decoded
    /// query and form). SigV2 names no region: the request acts in the tenant's
    /// `default_region`, else in the federated region.
    async fn authenticate_sigv2(
        &self,
        route: &mut Ec2Route,
        head: &Parts,
        params: &[(String, String)],
    ) -> Result<Principal, Ec2Error> {
        if !self.services.config.auth.sigv2.enabled {
            return Err(Ec2Error::new(
                StatusCode::UNAUTHORIZED,
                "AuthFailure",
                "Signature Version 2 is disabled on this gateway; sign requests with Signature Version 4",
            ));
        }
        let host = head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| head.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let (principal, method) = self
            .auth
            .authenticate_sigv2(head.method.as_str(), host, head.uri.path(), params)
            .await?;
        self.metrics
            .ec2_sigv2_requests
            .get_or_create(&vec![("method", method.as_str().to_string())])
            .inc();
        route.region = self
            .services
            .tenants
            .get(&principal.tenant)
            .and_then(|t| t.default_region.clone())
            .filter(|r| self.services.regions.serves(r))
            .unwrap_or_else(|| FEDERATED_REGION.to_string());
        Ok(principal)
    }
}

/// The largest body an EC2 request without a SigV4 signature may announce and still be
/// read (to look for a SigV2 signature in it): a query form with the largest user data
/// (16 KiB, base64) and its other parameters fits.
const MAX_SIGV2_FORM_BYTES: u64 = 64 * 1024;

/// Whether `head` is a POST announcing a body of at most [`MAX_SIGV2_FORM_BYTES`] (the
/// form that may hold a SigV2 signature; not every SigV2 client names its content type).
fn small_form(head: &Parts) -> bool {
    let length = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    head.method == http::Method::POST && length.is_some_and(|n| n <= MAX_SIGV2_FORM_BYTES)
}

/// The decoded parameters of a request: its query string, then its form body.
fn all_params(head: &Parts, body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(head.uri.query().unwrap_or("").as_bytes())
        .chain(form_urlencoded::parse(body))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// An EC2 request on its way: the credential scope's region once authenticated, the
/// action once admitted.
pub struct Ec2Route {
    region: String,
    /// A SigV4 request's head, checked by `screen`, waiting for the body. Boxed: it holds
    /// three hash states, and only a request whose body is still on its way has one, so
    /// every route, moved at each step, stays small.
    sigv4: Option<Box<skyport_auth::SigV4Head>>,
    action: Option<&'static actions::Action>,
    /// The log and metrics template of an action Skyport does not serve, once named.
    refused: Option<&'static str>,
}

/// What an action gets.
pub(crate) struct Ec2Call<'a> {
    pub(crate) services: &'a Services,
    pub(crate) ctx: &'a TenantContext,
    pub(crate) request_id: &'a str,
    /// The credential scope's region (a provider region or the federated one).
    pub(crate) region: &'a RegionView,
    pub(crate) params: &'a Params,
}

impl Ec2Call<'_> {
    /// Whether the request is in the federated region (sees every provider).
    pub(crate) fn federated(&self) -> bool {
        self.region.name == FEDERATED_REGION
    }
}

/// An action's answer: the response document.
pub(crate) type ActionResult = Result<String, Ec2Error>;

/// An action.
pub(crate) type ActionFn = for<'a> fn(&'a Ec2Call<'a>) -> BoxFuture<'a, ActionResult>;

/// The form body of a POST (the query string carries the rest).
fn form<'b>(head: &Parts, body: &'b Bytes) -> &'b [u8] {
    if head.method == http::Method::POST {
        body
    } else {
        &[]
    }
}

impl FrontDoor for Ec2Api {
    type Route = Ec2Route;
    type Error = Ec2Error;

    fn route(&self, head: &Parts) -> Result<Ec2Route, Ec2Error> {
        match head.method {
            http::Method::GET | http::Method::POST => Ok(Ec2Route {
                region: String::new(),
                sigv4: None,
                action: None,
                refused: None,
            }),
            ref other => Err(Ec2Error::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "InvalidAction",
                format!("{other} is not allowed on {ENDPOINT}"),
            )),
        }
    }

    fn template(&self, route: &Ec2Route) -> &'static str {
        route.refused.unwrap_or(ENDPOINT)
    }

    fn body_before_auth(&self, _route: &Ec2Route) -> bool {
        true
    }

    async fn screen(&self, route: &mut Ec2Route, head: &Parts) -> Result<(), Ec2Error> {
        let query = head.uri.query().unwrap_or("");
        if !sigv4::is_signed(&head.headers, query) {
            // A SigV2 request carries its signature as parameters: in the query (judged
            // with the rest by `authenticate`) or, for a POST, in a form body not read yet.
            // Only a body the size of a query form is read to find out: an unsigned
            // request announcing more is refused before a byte of it is read.
            // (Also when SigV2 is off: `authenticate` then says so.)
            let sigv2_possible = sigv2::is_signed(&all_params(head, b"")) || small_form(head);
            return if sigv2_possible {
                Ok(())
            } else {
                Err(unsigned())
            };
        }
        route.sigv4 = Some(Box::new(
            self.auth.sigv4_head(&signed_parts(head, b"")).await?,
        ));
        Ok(())
    }

    async fn authenticate(
        &self,
        route: &mut Ec2Route,
        head: &Parts,
        body: &Bytes,
        _conn: &ConnInfo,
    ) -> Result<Principal, Ec2Error> {
        let (principal, region) = match route.sigv4.take() {
            // Screened: its head is checked already.
            Some(checked) => self.auth.sigv4_body(*checked, &signed_parts(head, body))?,
            // Not screened (its body came whole with its head), or not SigV4.
            None => {
                let parts = signed_parts(head, body);
                match sigv4::parse_if_signed(&parts)? {
                    Some(signed) => self.auth.authenticate_sigv4(&parts, signed).await?,
                    None => {
                        let params = all_params(head, form(head, body));
                        if sigv2::is_signed(&params) {
                            return self.authenticate_sigv2(route, head, &params).await;
                        }
                        return Err(unsigned());
                    }
                }
            }
        };
        route.region = region;
        Ok(principal)
    }

    fn admit(
        &self,
        route: &mut Ec2Route,
        _ctx: &TenantContext,
        head: &Parts,
        body: &Bytes,
    ) -> Result<RouteFacts, Ec2Error> {
        let regions = &self.services.regions;
        if regions.get(&route.region).is_none() {
            if let Some(target) = self.services.config.ec2.region_aliases.get(&route.region) {
                route.region = target.clone();
            }
        }
        if regions.get(&route.region).is_none() {
            let known: Vec<&str> = regions.all().iter().map(|r| r.name.as_str()).collect();
            return Err(Ec2Error::new(
                StatusCode::UNAUTHORIZED,
                "AuthFailure",
                format!(
                    "Credential should be scoped to a valid region: '{}' is not one of {}",
                    route.region,
                    known.join(", ")
                ),
            ));
        }
        let query = head.uri.query().unwrap_or("");
        let name = query::action(query, form(head, body))?;
        let Some(action) = actions::find(&name) else {
            let template = unsupported::template(&name);
            route.refused = Some(template);
            self.metrics
                .ec2_unsupported_actions
                .get_or_create(&vec![("action", template.to_string())])
                .inc();
            return Err(Ec2Error::invalid_action(&name));
        };
        route.action = Some(action);
        Ok(RouteFacts {
            template: action.route,
            admin: false,
            approvers: false,
            writes: if action.writes {
                Writes::Tenant
            } else {
                Writes::Nothing
            },
            cache_ttl: action.cache_ttl,
            takes_body: false,
        })
    }

    /// Keyed by the raw parameters (sorted), which is what the signature covered; the
    /// signature parameters themselves are left out, so re-signed requests share entries.
    /// Only successful non-`DryRun` calls are ever stored.
    fn cache_key(&self, route: &Ec2Route, head: &Parts, body: &Bytes) -> (String, String) {
        // `admit` refused a form that is not UTF-8 before any cache lookup.
        let form = std::str::from_utf8(form(head, body)).unwrap_or_default();
        let unsigned = unsigned_parameters(head.uri.query().unwrap_or(""), form);
        let mut path = String::with_capacity(4 + route.region.len());
        path.push_str("ec2/");
        path.push_str(&route.region);
        (path, unsigned)
    }

    fn request_id_in(&self, body: &[u8]) -> Option<std::ops::Range<usize>> {
        xml::request_id_in(body)
    }

    fn request_id_text<'i>(&self, request_id: &'i str) -> std::borrow::Cow<'i, str> {
        xml::id_text(request_id)
    }

    async fn call(
        &self,
        route: Ec2Route,
        call: Call<'_>,
    ) -> Result<Response<Full<Bytes>>, Ec2Error> {
        let (Some(action), Some(region)) = (route.action, self.services.regions.get(&route.region))
        else {
            return Err(Ec2Error::from(skyport_core::error::GatewayError::internal(
                "an EC2 call without its action or region",
            )));
        };
        let query = call.head.uri.query().unwrap_or("");
        let params = Params::from_request(query, form(&call.head, &call.body));
        let dry_run = params.flag("DryRun", false)?;
        let ec2 = Ec2Call {
            services: &self.services,
            ctx: call.ctx,
            request_id: call.request_id,
            region,
            params: &params,
        };
        if dry_run {
            // Everything is checked as the action would check it; nothing is done.
            dry_run::check(action.name, &ec2).await?;
            return Err(Ec2Error::new(
                StatusCode::PRECONDITION_FAILED,
                "DryRunOperation",
                "Request would have succeeded, but DryRun flag is set.",
            ));
        }
        (action.run)(&ec2).await.map(xml::ok)
    }

    fn render_error(&self, err: Ec2Error, request_id: &str) -> Response<Full<Bytes>> {
        if err.status.is_server_error() || err.cause.is_some() {
            crate::api::failure_log::failed(
                request_id,
                err.status,
                err.code,
                &err.message,
                err.cause.as_deref(),
            );
        }
        xml::xml_response(
            err.status,
            xml::error_document(err.code, &err.message, request_id),
        )
    }
}

/// The raw parameters of `query` and `form` but the signature's, sorted and joined with
/// `&`: what a read's cache key holds of its request.
fn unsigned_parameters(query: &str, form: &str) -> String {
    let unsigned = || {
        ascii_pieces(query, b'&')
            .chain(ascii_pieces(form, b'&'))
            .filter(|pair| {
                let name = ascii_split_once(pair, b'=').map_or(*pair, |(name, _)| name);
                !pair.is_empty() && !name.starts_with("X-Amz-") && !query::is_sigv2_param(name)
            })
    };
    let mut joined = String::with_capacity(query.len() + form.len() + 1);
    // Clients send their parameters in one order, mostly sorted already: joined as they
    // come while they are, sorted in a list only when they are not.
    let mut last: Option<&str> = None;
    for pair in unsigned() {
        if last.is_some_and(|last| last > pair) {
            let mut pairs: Vec<&str> = unsigned().collect();
            pairs.sort_unstable();
            joined.clear();
            for pair in pairs {
                push_pair(&mut joined, pair);
            }
            return joined;
        }
        push_pair(&mut joined, pair);
        last = Some(pair);
    }
    joined
}

/// Appends `pair` to `joined` parameters, after a `&` unless it is the first.
fn push_pair(joined: &mut String, pair: &str) {
    if !joined.is_empty() {
        joined.push('&');
    }
    joined.push_str(pair);
}

/// What a SigV4 signature covers of a request whose head is `head` and body `body`.
fn signed_parts<'a>(head: &'a Parts, body: &'a [u8]) -> sigv4::RequestParts<'a> {
    sigv4::RequestParts {
        method: head.method.as_str(),
        path: head.uri.path(),
        query: head.uri.query().unwrap_or(""),
        headers: &head.headers,
        authority: head.uri.authority().map(|a| a.as_str()),
        body,
    }
}

/// The refusal of a request that carries no signature.
fn unsigned() -> Ec2Error {
    Ec2Error::new(
        StatusCode::UNAUTHORIZED,
        "AuthFailure",
        "this endpoint needs an AWS signature, Version 4 (or 2), with an access key from `skyport keys create`",
    )
}
