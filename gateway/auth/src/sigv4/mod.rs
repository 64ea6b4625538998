//! AWS Signature Version 4, verified on the server: the EC2 Query API's authentication.
//!
//! Both forms are accepted: the `Authorization: AWS4-HMAC-SHA256 ...` header (what the AWS
//! CLI and boto3 send) and presigned query parameters (`X-Amz-Algorithm`,
//! `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`,
//! `X-Amz-Signature`). The signature is recomputed from the request as received (raw
//! body hashed, never a re-encoded form) and compared in constant time.
//!
//! Steps (AWS "Create a signed AWS API request"): canonical request -> string to sign ->
//! signing key (HMAC chain over date, region, service, `aws4_request`) -> signature.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

mod canonical;
mod request;
#[cfg(test)]
mod tests;
mod verify;

use canonical::hmac;
pub use canonical::{canonical_request, string_to_sign};
use request::{auth_failure, query_pairs};
pub use request::{check_time, check_time_at, is_signed, parse, parse_if_signed, signed_at};
pub use verify::{
    explain_mismatch, sign, signing_key, signing_mac, verify, verify_with_mac, PendingVerification,
};
#[cfg(test)]
use {canonical::canonical_query, request::parse_amz_date};

/// HMAC-SHA256, the MAC of every SigV4 step.
pub type HmacSha256 = Hmac<Sha256>;

const X_AMZ_DATE: http::HeaderName = http::HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: http::HeaderName =
    http::HeaderName::from_static("x-amz-content-sha256");

/// The only algorithm SigV4 defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service every credential scope must name.
pub const SERVICE: &str = "ec2";
/// Longest presigned URL lifetime (as on AWS: seven days).
const MAX_EXPIRES: u64 = 7 * 24 * 3600;

/// Why a request's signature was not accepted; each maps to one EC2 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No or malformed SigV4 material, wrong scope or service, unknown key (`AuthFailure`).
    #[error("{0}")]
    AuthFailure(String),
    /// `X-Amz-Date` outside the allowed window, or a presigned URL past its expiry
    /// (`RequestExpired`).
    #[error("{0}")]
    Expired(String),
    /// The recomputed signature differs (`SignatureDoesNotMatch`).
    #[error("{0}")]
    Mismatch(String),
}

/// What a request claims before its signature is checked. Its text is borrowed from the
/// request where it can be (the header form: this runs on every EC2 request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest<'a> {
    /// Access key id.
    pub access_key_id: Cow<'a, str>,
    /// Scope date, `YYYYMMDD`.
    pub scope_date: Cow<'a, str>,
    /// Scope region: selects the provider region.
    pub region: Cow<'a, str>,
    /// `X-Amz-Date`, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: Cow<'a, str>,
    /// Signed header names, lower case, `;`-separated in the order given (as they enter
    /// the canonical request); see [`SignedRequest::signed_header_names`].
    pub signed_headers: Cow<'a, str>,
    /// Hex signature, as sent (read as the 32 bytes it spells, so of either case).
    pub signature: Cow<'a, str>,
    /// Presigned lifetime (query form only).
    pub expires: Option<u64>,
}

impl SignedRequest<'_> {
    /// The signed header names, lower case, in the order given.
    pub fn signed_header_names(&self) -> impl Iterator<Item = &str> {
        skyport_core::text::ascii_pieces(&self.signed_headers, b';')
    }

    /// The same claims, owning their text.
    pub fn into_owned(self) -> SignedRequest<'static> {
        SignedRequest {
            access_key_id: Cow::Owned(self.access_key_id.into_owned()),
            scope_date: Cow::Owned(self.scope_date.into_owned()),
            region: Cow::Owned(self.region.into_owned()),
            amz_date: Cow::Owned(self.amz_date.into_owned()),
            signed_headers: Cow::Owned(self.signed_headers.into_owned()),
            signature: Cow::Owned(self.signature.into_owned()),
            expires: self.expires,
        }
    }
}

/// `text` in lower case, borrowed when it already is.
fn lower_case(text: &str) -> Cow<'_, str> {
    // A fold without an early exit: vector code, for these short texts.
    if text
        .bytes()
        .fold(false, |seen, b| seen | b.is_ascii_uppercase())
    {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// The parts of an HTTP request a signature covers.
pub struct RequestParts<'a> {
    /// Method.
    pub method: &'a str,
    /// Path as received (still percent-encoded).
    pub path: &'a str,
    /// Raw query string (without `?`).
    pub query: &'a str,
    /// Headers.
    pub headers: &'a http::HeaderMap,
    /// Host from the request URI (HTTP/2 `:authority`), when not in the headers.
    pub authority: Option<&'a str>,
    /// Raw body.
    pub body: &'a [u8],
}
