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
    /// Hex signature, lower case.
    pub signature: Cow<'a, str>,
    /// Presigned lifetime (query form only).
    pub expires: Option<u64>,
}

impl SignedRequest<'_> {
    /// The signed header names, lower case, in the order given.
    pub fn signed_header_names(&self) -> impl Iterator<Item = &str> {
        self.signed_headers.split(';')
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
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
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

fn auth_failure(message: impl Into<String>) -> SigV4Error {
    SigV4Error::AuthFailure(message.into())
}

/// Whether the request carries SigV4 material at all (header or presigned form).
pub fn is_signed(headers: &http::HeaderMap, query: &str) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-"))
        || query_pairs(query).any(|(k, _)| k == "X-Amz-Signature")
}

fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// Parses the SigV4 material of a request (header form first, then presigned).
pub fn parse<'a>(parts: &RequestParts<'a>) -> Result<SignedRequest<'a>, SigV4Error> {
    if let Some(value) = parts.headers.get(http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| auth_failure("the Authorization header is not valid text"))?;
        let rest = value
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| {
                auth_failure(format!("the Authorization header must use {ALGORITHM}"))
            })?;
        let mut credential = None;
        let mut signed = None;
        let mut signature = None;
        for field in rest.split(',') {
            let field = field.trim();
            if let Some(v) = field.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = field.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = field.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(auth_failure(
                "the Authorization header needs Credential, SignedHeaders and Signature",
            ));
        };
        let amz_date = parts
            .headers
            .get(X_AMZ_DATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| auth_failure("the X-Amz-Date header is missing"))?;
        return build(credential, signed, signature, amz_date, None);
    }
    let mut fields = std::collections::HashMap::new();
    for (k, v) in query_pairs(parts.query) {
        if k.starts_with("X-Amz-") {
            fields.insert(k, v);
        }
    }
    let get = |k: &str| {
        fields
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| auth_failure(format!("the presigned request lacks {k}")))
    };
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(auth_failure(format!("X-Amz-Algorithm must be {ALGORITHM}")));
    }
    let expires = get("X-Amz-Expires")?
        .parse::<u64>()
        .ok()
        .filter(|e| (1..=MAX_EXPIRES).contains(e))
        .ok_or_else(|| auth_failure(format!("X-Amz-Expires must be 1-{MAX_EXPIRES}")))?;
    build(
        get("X-Amz-Credential")?,
        get("X-Amz-SignedHeaders")?,
        get("X-Amz-Signature")?,
        get("X-Amz-Date")?,
        Some(expires),
    )
    .map(SignedRequest::into_owned)
}

fn build<'a>(
    credential: &'a str,
    signed: &'a str,
    signature: &'a str,
    amz_date: &'a str,
    expires: Option<u64>,
) -> Result<SignedRequest<'a>, SigV4Error> {
    let mut scope = credential.split('/');
    let (Some(key), Some(date), Some(region), Some(service), Some(terminator), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(auth_failure(
            "the credential must be <key>/<date>/<region>/ec2/aws4_request",
        ));
    };
    if service != SERVICE {
        return Err(auth_failure(format!(
            "the credential scope names service '{service}'; this endpoint is 'ec2'"
        )));
    }
    if terminator != "aws4_request" {
        return Err(auth_failure(
            "the credential scope must end in aws4_request",
        ));
    }
    if amz_date.len() != 16 || !amz_date.starts_with(date) {
        return Err(auth_failure(
            "X-Amz-Date must be YYYYMMDDTHHMMSSZ on the credential scope's date",
        ));
    }
    let signed_headers = lower_case(signed);
    if !signed_headers.split(';').any(|h| h == "host") {
        return Err(auth_failure("the host header must be signed"));
    }
    Ok(SignedRequest {
        access_key_id: Cow::Borrowed(key),
        scope_date: Cow::Borrowed(date),
        region: Cow::Borrowed(region),
        amz_date: Cow::Borrowed(amz_date),
        signed_headers,
        signature: lower_case(signature),
        expires,
    })
}

/// `YYYYMMDDTHHMMSSZ` as a time (no allocation: this runs on every EC2 request).
fn parse_amz_date(date: &str) -> Option<SystemTime> {
    let b = date.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// Checks the request's date against `now`: within `max_skew` either way, and for a
/// presigned request not past `X-Amz-Date + X-Amz-Expires`.
pub fn check_time(
    signed: &SignedRequest,
    now: SystemTime,
    max_skew: Duration,
) -> Result<(), SigV4Error> {
    let at = parse_amz_date(&signed.amz_date)
        .ok_or_else(|| auth_failure("X-Amz-Date is not a valid date"))?;
    let ahead = at.duration_since(now).unwrap_or_default();
    if ahead > max_skew {
        return Err(SigV4Error::Expired(format!(
            "the request's X-Amz-Date is {}s ahead of the server's clock (at most {}s allowed)",
            ahead.as_secs(),
            max_skew.as_secs()
        )));
    }
    let behind = now.duration_since(at).unwrap_or_default();
    let allowed = match signed.expires {
        Some(expires) => Duration::from_secs(expires),
        None => max_skew,
    };
    if behind > allowed {
        return Err(SigV4Error::Expired(match signed.expires {
            Some(_) => "the presigned request has expired".to_string(),
            None => format!(
                "the request's X-Amz-Date is {}s behind the server's clock (at most {}s allowed)",
                behind.as_secs(),
                max_skew.as_secs()
            ),
        }));
    }
    Ok(())
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, the rest `%XX`.
fn uri_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The canonical query string: every pair decoded, re-encoded, sorted; the presigned
/// signature itself left out.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query_pairs(query)
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| {
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&k, &mut ek);
            uri_encode(&v, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request of `parts` under `signed`.
pub fn canonical_request(
    parts: &RequestParts<'_>,
    signed: &SignedRequest,
) -> Result<String, SigV4Error> {
    let mut out = String::with_capacity(256);
    out.push_str(parts.method);
    out.push('\n');
    out.push_str(if parts.path.is_empty() {
        "/"
    } else {
        parts.path
    });
    out.push('\n');
    out.push_str(&canonical_query(parts.query));
    out.push('\n');
    for name in signed.signed_header_names() {
        out.push_str(name);
        out.push(':');
        let mut values = parts.headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            if name != "host" {
                return Err(auth_failure(format!("signed header {name} is missing")));
            }
            let host = parts
                .authority
                .ok_or_else(|| auth_failure("the signed host header is missing"))?;
            out.push_str(host);
        }
        for (i, value) in values.enumerate() {
            let value = value
                .to_str()
                .map_err(|_| auth_failure(format!("signed header {name} is not valid text")))?;
            if i > 0 {
                out.push(',');
            }
            // Trimmed, inner runs of spaces collapsed; most values already are.
            for (j, word) in value.split_whitespace().enumerate() {
                if j > 0 {
                    out.push(' ');
                }
                out.push_str(word);
            }
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.signed_headers);
    out.push('\n');
    let declared = parts
        .headers
        .get(X_AMZ_CONTENT_SHA256)
        .and_then(|v| v.to_str().ok());
    if declared == Some("UNSIGNED-PAYLOAD") {
        out.push_str("UNSIGNED-PAYLOAD");
        return Ok(out);
    }
    let mut hex_buffer = [0u8; 64];
    let actual = sha256_hex(parts.body, &mut hex_buffer);
    if declared.is_some_and(|d| !d.eq_ignore_ascii_case(actual)) {
        return Err(SigV4Error::Mismatch(
            "x-amz-content-sha256 does not match the body".into(),
        ));
    }
    out.push_str(actual);
    Ok(out)
}

/// The lower-case hex SHA-256 of `data`, written into `buffer` (no allocation).
fn sha256_hex<'b>(data: &[u8], buffer: &'b mut [u8; 64]) -> &'b str {
    hex::encode_to_slice(Sha256::digest(data), buffer).expect("64 bytes hold a SHA-256 in hex");
    std::str::from_utf8(buffer).expect("hex is ASCII")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The string to sign for `canonical`.
pub fn string_to_sign(signed: &SignedRequest, canonical: &str) -> String {
    let mut out = Vec::with_capacity(128);
    write_string_to_sign(signed, canonical, |part| out.extend_from_slice(part));
    String::from_utf8(out).expect("the string to sign is text")
}

/// Feeds the string to sign for `canonical` to `sink`, piece by piece (no allocation).
fn write_string_to_sign(signed: &SignedRequest, canonical: &str, mut sink: impl FnMut(&[u8])) {
    let mut hex_buffer = [0u8; 64];
    for part in [
        ALGORITHM,
        "\n",
        &signed.amz_date,
        "\n",
        &signed.scope_date,
        "/",
        &signed.region,
        "/",
        SERVICE,
        "/aws4_request\n",
        sha256_hex(canonical.as_bytes(), &mut hex_buffer),
    ] {
        sink(part.as_bytes());
    }
}

/// The signing key of `secret` for this request's scope (date and region): the same for
/// every request of that day and region, so callers may keep it.
pub fn signing_key(secret: &str, signed: &SignedRequest) -> Vec<u8> {
    let k_date = hmac(
        format!("AWS4{secret}").as_bytes(),
        signed.scope_date.as_bytes(),
    );
    let k_region = hmac(&k_date, signed.region.as_bytes());
    let k_service = hmac(&k_region, SERVICE.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The hex signature of `string_to_sign` with `secret` (used by clients and tests).
pub fn sign(secret: &str, signed: &SignedRequest, string_to_sign: &str) -> String {
    hex::encode(hmac(
        &signing_key(secret, signed),
        string_to_sign.as_bytes(),
    ))
}

/// An HMAC keyed with the signing key of `secret` for this request's scope: what a caller
/// keeps per date and region (keying it costs two SHA-256 blocks a request otherwise).
pub fn signing_mac(secret: &str, signed: &SignedRequest) -> HmacSha256 {
    HmacSha256::new_from_slice(&signing_key(secret, signed)).expect("HMAC takes keys of any length")
}

/// Recomputes the signature with `secret` and compares it in constant time.
pub fn verify(
    parts: &RequestParts<'_>,
    signed: &SignedRequest,
    secret: &str,
) -> Result<(), SigV4Error> {
    verify_with_mac(parts, signed, signing_mac(secret, signed))
}

/// [`verify`] with the scope's [`signing_mac`] already made.
pub fn verify_with_mac(
    parts: &RequestParts<'_>,
    signed: &SignedRequest,
    mut mac: HmacSha256,
) -> Result<(), SigV4Error> {
    let mut claimed = [0u8; 32];
    hex::decode_to_slice(signed.signature.as_bytes(), &mut claimed)
        .map_err(|_| SigV4Error::Mismatch("the signature is not a 64-digit hex string".into()))?;
    let canonical = canonical_request(parts, signed)?;
    write_string_to_sign(signed, &canonical, |part| mac.update(part));
    // `verify_slice` compares in constant time.
    if mac.verify_slice(&claimed).is_ok() {
        return Ok(());
    }
    // The canonical request holds no secret; it is what a client author needs to find
    // where their signer differs.
    tracing::debug!(access_key_id = %signed.access_key_id, canonical_request = %canonical, "SigV4 signature mismatch");
    Err(SigV4Error::Mismatch(
        "the request signature we calculated does not match the signature you provided; check your secret access key and signing method".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical request of a GET, then sign/verify round trip: the right secret
    /// verifies, one flipped signature digit or another secret does not.
    #[test]
    fn canonical_request_and_constant_time_verification() {
        let signed = SignedRequest {
            access_key_id: "AKIDEXAMPLE".into(),
            scope_date: "20150830".into(),
            region: "us-east-1".into(),
            amz_date: "20150830T123600Z".into(),
            signed_headers: "host;x-amz-date".into(),
            signature: "".into(),
            expires: None,
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "ec2.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let parts = RequestParts {
            method: "GET",
            path: "/",
            query: "Action=DescribeRegions&Version=2016-11-15",
            headers: &headers,
            authority: None,
            body: b"",
        };
        let canonical = canonical_request(&parts, &signed).unwrap();
        assert_eq!(
            canonical,
            "GET\n/\nAction=DescribeRegions&Version=2016-11-15\nhost:ec2.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let sig = sign(secret, &signed, &string_to_sign(&signed, &canonical));
        let good = SignedRequest {
            signature: sig.clone().into(),
            ..signed.clone()
        };
        assert_eq!(verify(&parts, &good, secret), Ok(()));
        let mut flipped = sig.into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let bad = SignedRequest {
            signature: String::from_utf8(flipped).unwrap().into(),
            ..signed
        };
        assert!(matches!(
            verify(&parts, &bad, secret),
            Err(SigV4Error::Mismatch(_))
        ));
        assert!(matches!(
            verify(&parts, &good, "another secret"),
            Err(SigV4Error::Mismatch(_))
        ));
    }

    #[test]
    fn aws_documented_signing_key() {
        // docs.aws.amazon.com "Examples of how to derive a signing key for Signature
        // Version 4": secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215,
        // us-east-1, iam -> f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d.
        let k_date = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        let k_region = hmac(&k_date, b"us-east-1");
        let k_service = hmac(&k_region, b"iam");
        assert_eq!(
            hex::encode(hmac(&k_service, b"aws4_request")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn header_parsing_checks_scope_and_service() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amz-date", "20261123T113901Z".parse().unwrap());
        let parts = |h: &http::HeaderMap| -> Result<SignedRequest<'static>, SigV4Error> {
            parse(&RequestParts {
                method: "POST",
                path: "/",
                query: "",
                headers: h,
                authority: None,
                body: b"",
            })
            .map(SignedRequest::into_owned)
        };
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20261123/local-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=ABCD"
                .parse()
                .unwrap(),
        );
        let signed = parts(&headers).unwrap();
        assert_eq!(signed.region, "local-1");
        assert_eq!(signed.signature, "abcd");
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20261123/local-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab"
                .parse()
                .unwrap(),
        );
        assert!(matches!(parts(&headers), Err(SigV4Error::AuthFailure(m)) if m.contains("'s3'")));
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20261122/local-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab"
                .parse()
                .unwrap(),
        );
        assert!(parts(&headers).is_err());
    }

    #[test]
    fn skew_window_and_presigned_expiry() {
        let signed = SignedRequest {
            access_key_id: "AK".into(),
            scope_date: "20261123".into(),
            region: "local-1".into(),
            amz_date: "20261123T120000Z".into(),
            signed_headers: "host".into(),
            signature: "".into(),
            expires: None,
        };
        let at = parse_amz_date("20261123T120000Z").unwrap();
        assert_eq!(
            at,
            humantime::parse_rfc3339("2026-11-23T12:00:00Z").unwrap()
        );
        assert_eq!(
            parse_amz_date("20240229T235959Z").unwrap(),
            humantime::parse_rfc3339("2024-02-29T23:59:59Z").unwrap()
        );
        assert!(parse_amz_date("20261323T120000Z").is_none());
        assert!(parse_amz_date("2026112xT120000Z").is_none());
        let skew = Duration::from_secs(900);
        assert!(check_time(&signed, at + Duration::from_secs(899), skew).is_ok());
        assert!(matches!(
            check_time(&signed, at + Duration::from_secs(901), skew),
            Err(SigV4Error::Expired(_))
        ));
        assert!(matches!(
            check_time(&signed, at - Duration::from_secs(901), skew),
            Err(SigV4Error::Expired(_))
        ));
        let presigned = SignedRequest {
            expires: Some(60),
            ..signed
        };
        assert!(check_time(&presigned, at + Duration::from_secs(59), skew).is_ok());
        assert!(check_time(&presigned, at + Duration::from_secs(61), skew).is_err());
    }

    #[test]
    fn canonical_query_sorts_and_reencodes() {
        assert_eq!(
            canonical_query("b=2&a=x%20y&X-Amz-Signature=zz&c=%7E"),
            "a=x%20y&b=2&c=~"
        );
    }
}
