//! Reading the signature out of a request (header or presigned form) and checking its date.

use skyport_core::text::ascii_pieces;

use super::*;

pub(super) fn auth_failure(message: impl Into<String>) -> SigV4Error {
    SigV4Error::AuthFailure(message.into())
}

/// Whether the request carries SigV4 material at all (header or presigned form).
pub fn is_signed(headers: &http::HeaderMap, query: &str) -> bool {
    is_sigv4(headers.get(http::header::AUTHORIZATION)) || is_presigned(query)
}

/// Whether an `Authorization` header says SigV4. Its first bytes say so; the whole value
/// is checked when it is parsed.
fn is_sigv4(authorization: Option<&http::HeaderValue>) -> bool {
    authorization.is_some_and(|v| v.as_bytes().starts_with(b"AWS4-"))
}

/// Whether `query` carries a presigned request's signature.
fn is_presigned(query: &str) -> bool {
    query_pairs(query).any(|(k, _)| k == "X-Amz-Signature")
}

/// The SigV4 material of a request, or `None` when it carries none: [`is_signed`], then
/// [`parse`], with one look at the `Authorization` header.
pub fn parse_if_signed<'a>(
    parts: &RequestParts<'a>,
) -> Result<Option<SignedRequest<'a>>, SigV4Error> {
    let authorization = parts.headers.get(http::header::AUTHORIZATION);
    if !is_sigv4(authorization) && !is_presigned(parts.query) {
        return Ok(None);
    }
    parse_with(parts, authorization).map(Some)
}

pub(super) fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// Parses the SigV4 material of a request (header form first, then presigned).
pub fn parse<'a>(parts: &RequestParts<'a>) -> Result<SignedRequest<'a>, SigV4Error> {
    parse_with(parts, parts.headers.get(http::header::AUTHORIZATION))
}

/// [`parse`], with the request's `Authorization` header already looked up.
fn parse_with<'a>(
    parts: &RequestParts<'a>,
    authorization: Option<&'a http::HeaderValue>,
) -> Result<SignedRequest<'a>, SigV4Error> {
    if let Some(value) = authorization {
        // Text is all a parse needs (a field that is not ASCII matches no key, date or
        // signature). UTF-8 is checked words at a time; `to_str`'s visible-ASCII check
        // goes byte by byte.
        let value = std::str::from_utf8(value.as_bytes())
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
        for field in ascii_pieces(rest, b',') {
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

pub(super) fn build<'a>(
    credential: &'a str,
    signed: &'a str,
    signature: &'a str,
    amz_date: &'a str,
    expires: Option<u64>,
) -> Result<SignedRequest<'a>, SigV4Error> {
    let mut scope = ascii_pieces(credential, b'/');
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
    if !ascii_pieces(&signed_headers, b';').any(|h| h == "host") {
        return Err(auth_failure("the host header must be signed"));
    }
    Ok(SignedRequest {
        access_key_id: Cow::Borrowed(key),
        scope_date: Cow::Borrowed(date),
        region: Cow::Borrowed(region),
        amz_date: Cow::Borrowed(amz_date),
        signed_headers,
        signature: Cow::Borrowed(signature),
        expires,
    })
}

/// `YYYYMMDDTHHMMSSZ` as a time (no allocation: this runs on every EC2 request).
pub(super) fn parse_amz_date(date: &str) -> Option<SystemTime> {
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
    check_time_at(signed_at(signed)?, signed.expires, now, max_skew)
}

/// When `signed` says it was signed (its `X-Amz-Date`).
pub fn signed_at(signed: &SignedRequest) -> Result<SystemTime, SigV4Error> {
    parse_amz_date(&signed.amz_date).ok_or_else(|| auth_failure("X-Amz-Date is not a valid date"))
}

/// [`check_time`] for a request signed `at`, presigned for `expires` seconds if it was.
pub fn check_time_at(
    at: SystemTime,
    expires: Option<u64>,
    now: SystemTime,
    max_skew: Duration,
) -> Result<(), SigV4Error> {
    let ahead = at.duration_since(now).unwrap_or_default();
    if ahead > max_skew {
        return Err(SigV4Error::Expired(format!(
            "the request's X-Amz-Date is {}s ahead of the server's clock (at most {}s allowed)",
            ahead.as_secs(),
            max_skew.as_secs()
        )));
    }
    let behind = now.duration_since(at).unwrap_or_default();
    let allowed = match expires {
        Some(expires) => Duration::from_secs(expires),
        None => max_skew,
    };
    if behind > allowed {
        return Err(SigV4Error::Expired(match expires {
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
