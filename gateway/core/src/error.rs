//! The gateway's one error type. Each front end maps it to its own wire format (the
//! native API to RFC 9457 problem documents, the EC2 Query API to EC2 error codes, from the
//! [`ErrorKind`] and the [`Detail`], never from the message); the internal cause is logged
//! with the request id and never sent to a client.

use std::time::Duration;

/// What went wrong, as far as a client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Missing or invalid credentials (401).
    Unauthenticated,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// No such route or resource, or another tenant's (404).
    NotFound,
    /// Method not allowed on this route (405).
    MethodNotAllowed,
    /// Malformed or invalid input (400).
    InvalidInput,
    /// The resource's state forbids the operation (409).
    Conflict,
    /// The request would exceed one of the tenant's quotas (409).
    QuotaExceeded,
    /// The order would take an enforced budget past its amount (409).
    BudgetExceeded,
    /// Rate limited (429).
    Throttled,
    /// A provider failed (502).
    Upstream,
    /// A deadline passed (504).
    Timeout,
    /// Not available now (503).
    Unavailable,
    /// Reserved for a later release (501).
    NotImplemented,
    /// The request body is larger than the gateway accepts (413).
    PayloadTooLarge,
    /// The client did not send its request body in time (408).
    RequestTimeout,
    /// A bug (500).
    Internal,
}

impl ErrorKind {
    /// HTTP status for the native and admin APIs.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::Unauthenticated => S::UNAUTHORIZED,
            Self::Forbidden => S::FORBIDDEN,
            Self::NotFound => S::NOT_FOUND,
            Self::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            Self::InvalidInput => S::BAD_REQUEST,
            Self::Conflict | Self::QuotaExceeded | Self::BudgetExceeded => S::CONFLICT,
            Self::Throttled => S::TOO_MANY_REQUESTS,
            Self::Upstream => S::BAD_GATEWAY,
            Self::Timeout => S::GATEWAY_TIMEOUT,
            Self::Unavailable => S::SERVICE_UNAVAILABLE,
            Self::NotImplemented => S::NOT_IMPLEMENTED,
            Self::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => S::REQUEST_TIMEOUT,
            Self::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short title for problem documents.
    pub fn title(self) -> &'static str {
        match self {
            Self::Unauthenticated => "Unauthenticated",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::InvalidInput => "Invalid Input",
            Self::Conflict => "Conflict",
            Self::QuotaExceeded => "Quota Exceeded",
            Self::BudgetExceeded => "Budget Exceeded",
            Self::Throttled => "Too Many Requests",
            Self::Upstream => "Upstream Error",
            Self::Timeout => "Timeout",
            Self::Unavailable => "Unavailable",
            Self::NotImplemented => "Not Implemented",
            Self::PayloadTooLarge => "Payload Too Large",
            Self::RequestTimeout => "Request Timeout",
            Self::Internal => "Internal Error",
        }
    }

    /// Stable slug used in the problem `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::InvalidInput => "invalid-input",
            Self::Conflict => "conflict",
            Self::QuotaExceeded => "quota-exceeded",
            Self::BudgetExceeded => "budget-exceeded",
            Self::Throttled => "throttled",
            Self::Upstream => "upstream",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::NotImplemented => "not-implemented",
            Self::PayloadTooLarge => "payload-too-large",
            Self::RequestTimeout => "request-timeout",
            Self::Internal => "internal",
        }
    }
}

/// Rate-limit facts carried by a throttling error and echoed in headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// Burst size (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left in the burst (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Seconds until the bucket is full again (`RateLimit-Reset`).
    pub reset_secs: u64,
    /// Seconds to wait before retrying (`Retry-After`), when refused.
    pub retry_after: Option<Duration>,
}

/// The kinds of resource an error can concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// An instance (`i-...`).
    Instance,
    /// An SSH key pair.
    KeyPair,
}

/// What an error says about a resource, finer than its [`ErrorKind`]: what front ends
/// whose wire format names such failures (EC2's `InvalidInstanceID.Malformed`,
/// `InvalidKeyPair.Duplicate`, ...) map from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The id given cannot be one of this resource's (wrong shape).
    MalformedId(Resource),
    /// No such resource for this caller (another tenant's is not found either).
    NotFound(Resource),
    /// One with this name exists already.
    Duplicate(Resource),
    /// Its state forbids the operation.
    WrongState(Resource),
}

/// A gateway error: kind, a message safe for clients, and the internal cause for logs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {public}")]
pub struct GatewayError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Safe, useful message for the client.
    pub public: String,
    /// Internal detail for the log only.
    pub cause: Option<String>,
    /// Whether a retry may succeed.
    pub retryable: bool,
    /// Present on throttling errors.
    pub rate_limit: Option<RateLimitInfo>,
    /// What it says about a resource, when it concerns one.
    pub detail: Option<Detail>,
}

impl GatewayError {
    /// An error of `kind` with a public message.
    pub fn new(kind: ErrorKind, public: impl Into<String>) -> Self {
        Self {
            kind,
            public: public.into(),
            cause: None,
            retryable: matches!(
                kind,
                ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Timeout
            ),
            rate_limit: None,
            detail: None,
        }
    }

    /// Says what the error is about (see [`Detail`]).
    pub fn with_detail(mut self, detail: Detail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Attaches an internal cause (logged, never sent).
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// 401 with `public`.
    pub fn unauthenticated(public: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, public)
    }

    /// 403 with `public`.
    pub fn forbidden(public: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, public)
    }

    /// 400 with `public`.
    pub fn invalid(public: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, public)
    }

    /// 404 with `public`.
    pub fn not_found(public: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, public)
    }

    /// 500 with a generic message and `cause` for the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, "internal error; see the gateway log").with_cause(cause)
    }
}
