//! The canonical request and the string to sign (AWS "Create a canonical request for
//! Signature Version 4").

use super::*;

pub(super) fn uri_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The canonical query string: every pair decoded, re-encoded, sorted; for a presigned
/// request, its signature (`X-Amz-Signature`) left out. A request signed in its
/// Authorization header signs every query parameter, whatever its name.
pub(super) fn canonical_query(query: &str, presigned: bool) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query_pairs(query)
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
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
    let payload = write_canonical_head(parts, signed, |piece| out.push_str(piece))?;
    let mut hex_buffer = [0u8; 64];
    out.push_str(payload.line(parts.body, &mut hex_buffer)?);
    Ok(out)
}

/// What a request declares of its payload in `x-amz-content-sha256`.
#[derive(Debug, Clone)]
pub(super) enum Payload {
    /// Nothing: the payload line is the body's SHA-256.
    Undeclared,
    /// `UNSIGNED-PAYLOAD`: allowed only without a body.
    Unsigned,
    /// A hash, which must be the body's.
    Declared(String),
}

impl Payload {
    /// The canonical request's last line for `body`, written into `buffer` when it is a
    /// hash; refused when the body is not what was declared.
    pub(super) fn line<'b>(
        &self,
        body: &[u8],
        buffer: &'b mut [u8; 64],
    ) -> Result<&'b str, SigV4Error> {
        if let Payload::Unsigned = self {
            // The EC2 Query API carries its action and parameters in the body: a
            // signature that does not cover it would let anyone who sees one request
            // send another.
            if !body.is_empty() {
                return Err(SigV4Error::AuthFailure(
                    "x-amz-content-sha256: UNSIGNED-PAYLOAD is refused for a request with a \
                     body; sign the payload (its SHA-256)"
                        .into(),
                ));
            }
            return Ok("UNSIGNED-PAYLOAD");
        }
        let actual = sha256_hex(body, buffer);
        if let Payload::Declared(declared) = self {
            if !declared.eq_ignore_ascii_case(actual) {
                return Err(SigV4Error::Mismatch(
                    "x-amz-content-sha256 does not match the body".into(),
                ));
            }
        }
        Ok(actual)
    }
}

/// Feeds `sink` the canonical request of `parts` under `signed` up to its last line, the
/// payload's, which needs the body (`parts.body` is not read): what can be hashed before
/// the body arrives.
pub(super) fn write_canonical_head(
    parts: &RequestParts<'_>,
    signed: &SignedRequest,
    mut sink: impl FnMut(&str),
) -> Result<Payload, SigV4Error> {
    sink(parts.method);
    sink("\n");
    sink(if parts.path.is_empty() {
        "/"
    } else {
        parts.path
    });
    sink("\n");
    sink(&canonical_query(parts.query, signed.expires.is_some()));
    sink("\n");
    for name in signed.signed_header_names() {
        sink(name);
        sink(":");
        let mut values = signed_values(parts.headers, name).iter().peekable();
        if values.peek().is_none() {
            if name != "host" {
                return Err(auth_failure(format!("signed header {name} is missing")));
            }
            let host = parts
                .authority
                .ok_or_else(|| auth_failure("the signed host header is missing"))?;
            sink(host);
        }
        for (i, value) in values.enumerate() {
            let (value, trimmed) = header_text(value)
                .ok_or_else(|| auth_failure(format!("signed header {name} is not valid text")))?;
            if i > 0 {
                sink(",");
            }
            // Trimmed, inner runs of spaces collapsed; most values already are.
            if trimmed {
                sink(value);
            } else {
                for (j, word) in value.split_whitespace().enumerate() {
                    if j > 0 {
                        sink(" ");
                    }
                    sink(word);
                }
            }
        }
        sink("\n");
    }
    sink("\n");
    sink(&signed.signed_headers);
    sink("\n");
    Ok(
        match parts
            .headers
            .get(X_AMZ_CONTENT_SHA256)
            .and_then(|v| v.to_str().ok())
        {
            None => Payload::Undeclared,
            Some("UNSIGNED-PAYLOAD") => Payload::Unsigned,
            Some(declared) => Payload::Declared(declared.to_string()),
        },
    )
}

/// The values of the signed header `name` (lower case). The names every SDK signs are
/// looked up by their known names, which saves parsing and checking them on each request.
fn signed_values<'h>(
    headers: &'h http::HeaderMap,
    name: &str,
) -> http::header::GetAll<'h, http::HeaderValue> {
    match name {
        "host" => headers.get_all(http::header::HOST),
        "x-amz-date" => headers.get_all(X_AMZ_DATE),
        "content-type" => headers.get_all(http::header::CONTENT_TYPE),
        other => headers.get_all(other),
    }
}

/// A header value as text (`HeaderValue::to_str`: visible ASCII, spaces and tabs), and
/// whether it is already as the canonical request holds it: no space at either end, no
/// tab, no two spaces in a row.
fn header_text(value: &http::HeaderValue) -> Option<(&str, bool)> {
    let text = value.to_str().ok()?;
    let bytes = text.as_bytes();
    let ends = bytes.first() != Some(&b' ') && bytes.last() != Some(&b' ');
    // Folds without an early exit, which the compiler turns into vector code: cheaper
    // for values this short than a search (a tab, then two spaces) or a loop that stops.
    let tab = bytes.iter().fold(false, |seen, &b| seen | (b == b'\t'));
    let next = bytes.get(1..).unwrap_or_default();
    let double = bytes
        .iter()
        .zip(next)
        .fold(false, |seen, (&a, &b)| seen | ((a == b' ') & (b == b' ')));
    let untidy = tab | double;
    Some((text, ends && !untidy))
}

/// The lower-case hex SHA-256 of `data`, written into `buffer` (no allocation).
pub(super) fn sha256_hex<'b>(data: &[u8], buffer: &'b mut [u8; 64]) -> &'b str {
    const_hex::encode_to_slice(Sha256::digest(data), buffer)
        .expect("64 bytes hold a SHA-256 in hex");
    std::str::from_utf8(buffer).expect("hex is ASCII")
}

pub(super) fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The string to sign for `canonical`.
pub fn string_to_sign(signed: &SignedRequest, canonical: &str) -> String {
    let mut out = String::with_capacity(128);
    let mut hex_buffer = [0u8; 64];
    write_string_to_sign_head(signed, |part| out.push_str(part));
    out.push_str(sha256_hex(canonical.as_bytes(), &mut hex_buffer));
    out
}

/// Feeds `sink` the string to sign up to its last line, the canonical request's hash, piece
/// by piece (no allocation).
pub(super) fn write_string_to_sign_head(signed: &SignedRequest, mut sink: impl FnMut(&str)) {
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
    ] {
        sink(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `header_text` replaces: `to_str`, then a check for ends, tabs and double
    /// spaces.
    fn by_parts(value: &http::HeaderValue) -> Option<(&str, bool)> {
        let text = value.to_str().ok()?;
        let bytes = text.as_bytes();
        let trimmed = bytes.first() != Some(&b' ')
            && bytes.last() != Some(&b' ')
            && !bytes.contains(&b'\t')
            && !bytes.windows(2).any(|pair| pair == b"  ");
        Some((text, trimmed))
    }

    #[test]
    fn header_text_is_to_str_and_the_trim_check_in_one_pass() {
        let values: &[&[u8]] = &[
            b"",
            b"ec2.amazonaws.com",
            b"application/x-www-form-urlencoded; charset=utf-8",
            b" leading",
            b"trailing ",
            b" ",
            b"  ",
            b"a  b",
            b"a b c",
            b"a\tb",
            b"\t",
            b"caf\xc3\xa9",
            b"obs\xfftext",
            b"a \t b",
            b"~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
        ];
        for bytes in values {
            let value = http::HeaderValue::from_bytes(bytes).unwrap();
            assert_eq!(
                header_text(&value),
                by_parts(&value),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
