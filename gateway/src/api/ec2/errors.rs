//! EC2 errors: what the EC2 front door sends, in EC2's `<Response><Errors>` envelope with
//! EC2's code and status, and the one table that maps the gateway's errors to them, from
//! their kind and detail (never from their text). A provider's own error text never
//! reaches the caller.

use http::StatusCode;
use skyport_auth::sigv4::SigV4Error;
use skyport_core::error::{Detail, ErrorKind, GatewayError, Resource};

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

    /// 400 `code` with `message`: how EC2 reports nearly every client error.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `MissingParameter` for `name`.
    pub fn missing(name: &str) -> Self {
        Self::bad_request(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    /// `InvalidParameterValue`.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::bad_request("InvalidParameterValue", message)
    }

    /// `InvalidAction` for action `name`.
    pub fn invalid_action(name: &str) -> Self {
        Self::bad_request(
            "InvalidAction",
            format!("The action {name} is not valid for this web service."),
        )
    }
}

/// EC2's status and code for a gateway error: by what it says about a resource first,
/// then by its kind.
fn code_of(kind: ErrorKind, detail: Option<Detail>) -> (StatusCode, &'static str) {
    use Resource::{Instance, KeyPair};
    use StatusCode as S;
    match detail {
        Some(Detail::MalformedId(Instance)) => {
            return (S::BAD_REQUEST, "InvalidInstanceID.Malformed")
        }
        Some(Detail::NotFound(Instance)) => return (S::BAD_REQUEST, "InvalidInstanceID.NotFound"),
        Some(Detail::Duplicate(KeyPair)) => return (S::BAD_REQUEST, "InvalidKeyPair.Duplicate"),
        Some(Detail::WrongState(Instance)) => return (S::BAD_REQUEST, "IncorrectInstanceState"),
        _ => {}
    }
    match kind {
        ErrorKind::Unauthenticated => (S::UNAUTHORIZED, "AuthFailure"),
        ErrorKind::Forbidden => (S::FORBIDDEN, "UnauthorizedOperation"),
        ErrorKind::NotFound | ErrorKind::MethodNotAllowed | ErrorKind::InvalidInput => {
            (S::BAD_REQUEST, "InvalidParameterValue")
        }
        ErrorKind::Conflict => (S::BAD_REQUEST, "IncorrectInstanceState"),
        ErrorKind::QuotaExceeded => (S::BAD_REQUEST, "InstanceLimitExceeded"),
        ErrorKind::BudgetExceeded => (S::BAD_REQUEST, "BudgetExceeded"),
        // botocore retries 503 RequestLimitExceeded with backoff.
        ErrorKind::Throttled => (S::SERVICE_UNAVAILABLE, "RequestLimitExceeded"),
        ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::Unavailable => {
            (S::SERVICE_UNAVAILABLE, "Unavailable")
        }
        ErrorKind::NotImplemented => (S::BAD_REQUEST, "InvalidAction"),
        ErrorKind::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
        ErrorKind::RequestTimeout => (S::REQUEST_TIMEOUT, "RequestTimeout"),
        ErrorKind::Internal => (S::INTERNAL_SERVER_ERROR, "InternalError"),
    }
}

impl From<GatewayError> for Ec2Error {
    fn from(err: GatewayError) -> Self {
        let (status, code) = code_of(err.kind, err.detail);
        let message = match err.kind {
            ErrorKind::Internal => "An internal error has occurred".to_string(),
            ErrorKind::Throttled => "Request limit exceeded.".to_string(),
            _ => err.public,
        };
        Self {
            status,
            code,
            message,
            cause: err.cause,
        }
    }
}

/// An error from an operation on instances the caller named: a "not found" that does not
/// say what was missing (a provider that no longer knows the instance, a plugin no longer
/// loaded) is reported as the instance not being found, as EC2 does.
pub(super) fn instance_error(mut err: GatewayError) -> Ec2Error {
    if err.kind == ErrorKind::NotFound && err.detail.is_none() {
        err.detail = Some(Detail::NotFound(Resource::Instance));
    }
    Ec2Error::from(err)
}

impl From<SigV4Error> for Ec2Error {
    fn from(err: SigV4Error) -> Self {
        match err {
            SigV4Error::AuthFailure(m) => Self::new(StatusCode::UNAUTHORIZED, "AuthFailure", m),
            SigV4Error::Expired(m) => Self::bad_request("RequestExpired", m),
            SigV4Error::Mismatch(m) => Self::new(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_errors_map_by_detail_then_kind_never_by_text() {
        let cases = [
            (
                GatewayError::invalid("whatever it says")
                    .with_detail(Detail::MalformedId(Resource::Instance)),
                "InvalidInstanceID.Malformed",
            ),
            (
                GatewayError::not_found("x").with_detail(Detail::NotFound(Resource::Instance)),
                "InvalidInstanceID.NotFound",
            ),
            (
                GatewayError::new(ErrorKind::Conflict, "x")
                    .with_detail(Detail::Duplicate(Resource::KeyPair)),
                "InvalidKeyPair.Duplicate",
            ),
            (
                GatewayError::invalid("'x' is not an instance id"),
                "InvalidParameterValue",
            ),
            (
                GatewayError::new(ErrorKind::Conflict, "x"),
                "IncorrectInstanceState",
            ),
            (
                GatewayError::new(ErrorKind::QuotaExceeded, "x"),
                "InstanceLimitExceeded",
            ),
            (GatewayError::forbidden("x"), "UnauthorizedOperation"),
        ];
        for (err, code) in cases {
            assert_eq!(Ec2Error::from(err).code, code);
        }
    }

    #[test]
    fn an_unspecific_not_found_on_named_instances_is_the_instance_not_being_found() {
        let gone = instance_error(GatewayError::not_found("no plugin named 'x' is loaded"));
        assert_eq!(gone.code, "InvalidInstanceID.NotFound");
        // Any other error keeps its own mapping.
        let busy = instance_error(GatewayError::new(ErrorKind::Conflict, "x"));
        assert_eq!(busy.code, "IncorrectInstanceState");
        let elsewhere = Ec2Error::from(GatewayError::not_found("x"));
        assert_eq!(elsewhere.code, "InvalidParameterValue");
    }

    #[test]
    fn internal_causes_and_throttling_details_are_not_sent() {
        let internal = Ec2Error::from(GatewayError::internal("disk on fire"));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.message.contains("disk"));
        assert_eq!(internal.cause.as_deref(), Some("disk on fire"));
        let throttled = Ec2Error::from(GatewayError::new(ErrorKind::Throttled, "tenant demo"));
        assert_eq!(
            (throttled.status, throttled.code, throttled.message.as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "RequestLimitExceeded",
                "Request limit exceeded."
            )
        );
    }
}
