//! The EC2 Query API front door (`POST /`, `GET /?Action=...`, also at
//! `/services/compute`), so that the AWS CLI and boto3 work unchanged against Skyport.
//!
//! A request goes: body read (the signature covers it) -> SigV4 authentication (the
//! credential scope's region selects the provider region) -> tenant context -> rate limit
//! (throttling is `RequestLimitExceeded` with 503, which botocore retries) -> action ->
//! read cache for `Describe*` (per tenant, region and parameters) -> the shared operations
//! -> XML. Every error is EC2's `<Response><Errors>` envelope with EC2's code and status;
//! a provider's own error text never reaches the caller.

mod actions;
pub mod query;
pub mod xml;

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use crate::api::native::{RegionView, FEDERATED_REGION};
use crate::auth::sigv4::{self, SigV4Error};
use crate::auth::TenantContext;
use crate::cache::CachedResponse;
use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::Outcome;
use crate::state::AppState;
use query::Params;

/// An EC2 error: code, message and HTTP status, as EC2 sends them.
#[derive(Debug, Clone)]
pub struct Ec2Error {
    /// HTTP status.
    pub status: StatusCode,
    /// EC2 error code, e.g. `InvalidInstanceID.NotFound`.
    pub code: &'static str,
    /// Message for the caller.
    pub message: String,
    /// Internal cause, logged with the request id, never sent.
    pub cause: Option<String>,
}

impl Ec2Error {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// `MissingParameter` for `name`.
    pub fn missing(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    /// `InvalidParameterValue`.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValue", message)
    }

    /// The EC2 form of a gateway error; `not_found` is the code for a missing resource in
    /// the action's context (e.g. `InvalidInstanceID.NotFound`).
    pub fn from_gateway(err: GatewayError, not_found: &'static str) -> Self {
        use StatusCode as S;
        let (status, code) = match err.kind {
            ErrorKind::Unauthenticated => (S::UNAUTHORIZED, "AuthFailure"),
            ErrorKind::Forbidden => (S::FORBIDDEN, "UnauthorizedOperation"),
            ErrorKind::NotFound => (S::BAD_REQUEST, not_found),
            ErrorKind::MethodNotAllowed | ErrorKind::InvalidInput => {
                (S::BAD_REQUEST, "InvalidParameterValue")
            }
            ErrorKind::Conflict => (S::BAD_REQUEST, "IncorrectInstanceState"),
            ErrorKind::QuotaExceeded => (S::BAD_REQUEST, "InstanceLimitExceeded"),
            ErrorKind::Throttled => (S::SERVICE_UNAVAILABLE, "RequestLimitExceeded"),
            ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::Unavailable => {
                (S::SERVICE_UNAVAILABLE, "Unavailable")
            }
            ErrorKind::NotImplemented => (S::BAD_REQUEST, "InvalidAction"),
            ErrorKind::Internal => (S::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        let message = if err.kind == ErrorKind::Internal {
            "An internal error has occurred".to_string()
        } else {
            err.public
        };
        Self {
            status,
            code,
            message,
            cause: err.cause,
        }
    }

    fn from_sigv4(err: SigV4Error) -> Self {
        match err {
            SigV4Error::AuthFailure(m) => Self::new(StatusCode::UNAUTHORIZED, "AuthFailure", m),
            SigV4Error::Expired(m) => Self::new(StatusCode::BAD_REQUEST, "RequestExpired", m),
            SigV4Error::Mismatch(m) => Self::new(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", m),
        }
    }
}

impl From<GatewayError> for Ec2Error {
    fn from(err: GatewayError) -> Self {
        Self::from_gateway(err, "InvalidParameterValue")
    }
}

/// One EC2 action Skyport serves.
struct ActionSpec {
    name: &'static str,
    /// Metrics and log route: `ec2:<Action>`.
    route: &'static str,
    /// Changes state: the tenant's cached reads are invalidated after it.
    write: bool,
    /// Cached for this long (reads only).
    cache_ttl: Option<Duration>,
}

const fn read(name: &'static str, route: &'static str, ttl_secs: u64) -> ActionSpec {
    ActionSpec {
        name,
        route,
        write: false,
        cache_ttl: Some(Duration::from_secs(ttl_secs)),
    }
}

const fn write(name: &'static str, route: &'static str) -> ActionSpec {
    ActionSpec {
        name,
        route,
        write: true,
        cache_ttl: None,
    }
}

/// Every action, with its cache rule.
const ACTIONS: &[ActionSpec] = &[
    write("RunInstances", "ec2:RunInstances"),
    read("DescribeInstances", "ec2:DescribeInstances", 2),
    read("DescribeInstanceStatus", "ec2:DescribeInstanceStatus", 2),
    write("StartInstances", "ec2:StartInstances"),
    write("StopInstances", "ec2:StopInstances"),
    write("RebootInstances", "ec2:RebootInstances"),
    write("TerminateInstances", "ec2:TerminateInstances"),
    write("ModifyInstanceAttribute", "ec2:ModifyInstanceAttribute"),
    ActionSpec {
        // Console output changes as the guest writes; never cached.
        cache_ttl: None,
        ..read("GetConsoleOutput", "ec2:GetConsoleOutput", 0)
    },
    read("DescribeImages", "ec2:DescribeImages", 10),
    read("DescribeInstanceTypes", "ec2:DescribeInstanceTypes", 60),
    read("DescribeRegions", "ec2:DescribeRegions", 60),
    read(
        "DescribeAvailabilityZones",
        "ec2:DescribeAvailabilityZones",
        60,
    ),
    write("CreateTags", "ec2:CreateTags"),
    write("DeleteTags", "ec2:DeleteTags"),
    read("DescribeTags", "ec2:DescribeTags", 2),
    write("CreateKeyPair", "ec2:CreateKeyPair"),
    write("ImportKeyPair", "ec2:ImportKeyPair"),
    read("DescribeKeyPairs", "ec2:DescribeKeyPairs", 2),
    write("DeleteKeyPair", "ec2:DeleteKeyPair"),
];

/// Parameters that belong to the signature or the protocol, not to the action.
fn is_protocol_param(name: &str) -> bool {
    name.starts_with("X-Amz-") || name == "Action" || name == "Version"
}

/// The read-cache key of an EC2 read: tenant, department, region and the request's raw
/// parameters without the signature's own, sorted (the same call signed again shares it).
fn read_cache_key(
    state: &AppState,
    ctx: &TenantContext,
    region: &str,
    query: &str,
    form: &[u8],
) -> crate::cache::CacheKey {
    let form = std::str::from_utf8(form).unwrap_or_default();
    let mut unsigned: Vec<&str> = query
        .split('&')
        .chain(form.split('&'))
        .filter(|p| !p.is_empty() && !p.starts_with("X-Amz-"))
        .collect();
    unsigned.sort_unstable();
    state.cache.key_for(
        &ctx.tenant,
        ctx.department.as_deref(),
        &http::Method::POST,
        format!("ec2/{region}"),
        unsigned.join("&"),
    )
}

/// What an action handler gets.
pub(crate) struct Call<'a> {
    state: &'a AppState,
    ctx: &'a TenantContext,
    request_id: &'a str,
    /// The credential scope's region (a provider region or the federated one).
    region: &'a RegionView,
    params: &'a Params,
}

impl Call<'_> {
    /// Whether the request is in the federated region (sees every provider).
    fn federated(&self) -> bool {
        self.region.name == FEDERATED_REGION
    }
}

/// Serves one EC2 Query request, filling `outcome` for the pipeline's tail.
pub(crate) async fn serve(
    state: &AppState,
    req: Request<Incoming>,
    request_id: &str,
    outcome: &mut Outcome,
) {
    let response = match serve_inner(state, req, request_id, outcome).await {
        Ok(response) => response,
        Err(err) => {
            if err.status.is_server_error() || err.cause.is_some() {
                tracing::warn!(request_id, code = err.code, error = %err.message, cause = ?err.cause, "EC2 request failed");
            }
            xml::xml_response(
                err.status,
                xml::error_document(err.code, &err.message, request_id),
            )
        }
    };
    outcome.response = Ok(response);
}

async fn serve_inner(
    state: &AppState,
    req: Request<Incoming>,
    request_id: &str,
    outcome: &mut Outcome,
) -> Result<http::Response<http_body_util::Full<Bytes>>, Ec2Error> {
    let (parts, body) = req.into_parts();
    let body = crate::pipeline::read_incoming(body)
        .await
        .map_err(Ec2Error::from)?;
    let query = parts.uri.query().unwrap_or("");
    if !sigv4::is_signed(&parts.headers, query) {
        return Err(Ec2Error::new(
            StatusCode::UNAUTHORIZED,
            "AuthFailure",
            "this endpoint needs AWS Signature Version 4 (an access key from `skyport keys create`)",
        ));
    }
    let signed_parts = sigv4::RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query,
        headers: &parts.headers,
        authority: parts.uri.authority().map(|a| a.as_str()),
        body: &body,
    };
    let (principal, region_name) = state
        .auth
        .authenticate_sigv4(&signed_parts)
        .await
        .map_err(Ec2Error::from_sigv4)?;
    let ctx = state
        .tenants
        .resolve(principal)
        .map_err(|e| Ec2Error::from_gateway(e, "AuthFailure"))?;
    // Outcome fields are set directly below (not through `&mut outcome`): `ctx` borrows it.
    let ctx = &*outcome.tenant.insert(ctx);
    match state.limiter.check(&ctx.tenant) {
        Ok(info) => outcome.rate_limit = Some(info),
        Err(e) => {
            outcome.rate_limit = e.rate_limit;
            return Err(Ec2Error::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ));
        }
    }
    let region = state
        .regions
        .iter()
        .find(|r| r.name == region_name)
        .ok_or_else(|| {
            let known: Vec<&str> = state.regions.iter().map(|r| r.name.as_str()).collect();
            Ec2Error::new(
                StatusCode::UNAUTHORIZED,
                "AuthFailure",
                format!(
                    "Credential should be scoped to a valid region: '{region_name}' is not one of {}",
                    known.join(", ")
                ),
            )
        })?;

    // A cached read is answered from the action's name and the raw parameters alone
    // (decoded only up to `Action`, borrowed where nothing was escaped); the parameters are
    // decoded again, into the parameter map, only when an action runs.
    let form: &[u8] = if parts.method == http::Method::POST {
        &body
    } else {
        &[]
    };
    let all_pairs = || form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(form));
    let action_name: Cow<'_, str> = all_pairs()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v)
        .ok_or_else(|| Ec2Error::missing("Action"))?;
    let action_name = &*action_name;
    let spec = ACTIONS
        .iter()
        .find(|a| a.name == action_name)
        .ok_or_else(|| {
            Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!("The action {action_name} is not valid for this web service."),
            )
        })?;
    outcome.route = spec.route;

    // Keyed by the raw parameters (sorted), which is what the signature covered; the
    // signature parameters themselves are left out, so re-signed requests share entries.
    // Only successful non-`DryRun` calls are ever stored, so a hit needs no further checks.
    let cache_key = spec
        .cache_ttl
        .map(|_| read_cache_key(state, ctx, &region.name, query, form));
    if let Some(key) = &cache_key {
        if let Some(hit) = state.cache.get(key).await {
            outcome.cache = Some(crate::pipeline::count_cache_result(state, true));
            return Ok(xml::xml_response(StatusCode::OK, hit.body.clone()));
        }
    }
    let params = Params::from_pairs(
        all_pairs()
            .filter(|(k, _)| !is_protocol_param(k))
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    if params.flag("DryRun", false)? {
        return Err(Ec2Error::new(
            StatusCode::PRECONDITION_FAILED,
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
        ));
    }
    let call = Call {
        state,
        ctx,
        request_id,
        region,
        params: &params,
    };
    let (Some(key), Some(ttl)) = (cache_key, spec.cache_ttl) else {
        // Boxed, as in the fill below: the actions' futures together are large, and a
        // cached read should not carry them.
        let result = Box::pin(actions::run(spec.name, &call)).await;
        if spec.write {
            state.cache.invalidate_tenant(&ctx.tenant);
        }
        return result.map(xml::ok);
    };
    let fill = async {
        Box::pin(actions::run(spec.name, &call))
            .await
            .map(|document| CachedResponse {
                status: StatusCode::OK,
                content_type: http::HeaderValue::from_static(xml::CONTENT_TYPE),
                body: Bytes::from(document),
                ttl,
            })
    };
    let filled = state.cache.get_or_fill(key, fill).await;
    // A concurrent caller may have filled the entry meanwhile: that is a hit too.
    outcome.cache = Some(crate::pipeline::count_cache_result(
        state,
        matches!(filled, Ok((_, true))),
    ));
    let (entry, _) = filled.map_err(|e| (*e).clone())?;
    Ok(xml::xml_response(StatusCode::OK, entry.body.clone()))
}
