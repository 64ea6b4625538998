//! AWS Signature Version 2, verified on the server: what older EC2 tools send (Libcloud's
//! EC2 and Eucalyptus drivers, euca2ools, boto 2).
//!
//! The signing material travels as parameters beside the action's own, in the query
//! string (GET) or the form body (POST): `AWSAccessKeyId`, `SignatureVersion=2`,
//! `SignatureMethod` (`HmacSHA256` or `HmacSHA1`), `Timestamp` (or `Expires`) and
//! `Signature`, the base64 HMAC with the secret of
//! `METHOD\nhost\npath\n<every other parameter, RFC 3986-encoded, sorted by name>`.
//! The parameters are taken as decoded from the request and encoded again, as AWS does;
//! the signature is compared in constant time. Errors are SigV4's ([`SigV4Error`]), so
//! both versions answer with the same EC2 codes.

use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use base64::Engine;

use crate::sigv4::SigV4Error;

/// The version number SigV2 requests carry.
pub const VERSION: &str = "2";

/// A SigV2 HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// `HmacSHA256`.
    HmacSha256,
    /// `HmacSHA1` (legacy; still sent by some tools).
    HmacSha1,
}

impl SignatureMethod {
    /// Its name on the wire (and in metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "HmacSHA256",
            Self::HmacSha1 => "HmacSHA1",
        }
    }

    fn algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
}

/// What a SigV2 request claims before its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedV2 {
    /// Access key id.
    pub access_key_id: String,
    /// The HMAC.
    pub method: SignatureMethod,
    /// The signature, decoded from base64.
    signature: Vec<u8>,
    /// `Timestamp`: when it was signed.
    timestamp: Option<SystemTime>,
    /// `Expires`: when it stops being valid.
    expires: Option<SystemTime>,
}

/// Whether `params` (the request's decoded query and form parameters) are SigV2-signed.
pub fn is_signed(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(k, v)| k == "SignatureVersion" && v == VERSION)
}

fn failure(message: impl Into<String>) -> SigV4Error {
    SigV4Error::AuthFailure(message.into())
}

/// Parses the SigV2 material of `params`.
pub fn parse(params: &[(String, String)]) -> Result<SignedV2, SigV4Error> {
    let one = |name: &str| -> Result<Option<&str>, SigV4Error> {
        let mut found = params.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(failure(format!("{name} is given more than once")));
        }
        Ok(first)
    };
    let access_key_id = one("AWSAccessKeyId")?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| failure("AWSAccessKeyId is missing"))?
        .to_string();
    let method = match one("SignatureMethod")? {
        Some("HmacSHA256") => SignatureMethod::HmacSha256,
        Some("HmacSHA1") => SignatureMethod::HmacSha1,
        Some(other) => {
            return Err(failure(format!(
                "SignatureMethod '{other}' is not supported; use HmacSHA256 or HmacSHA1"
            )))
        }
        None => return Err(failure("SignatureMethod is missing")),
    };
    let signature = one("Signature")?.ok_or_else(|| failure("Signature is missing"))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| failure("Signature is not base64"))?;
    let time = |name: &str| -> Result<Option<SystemTime>, SigV4Error> {
        one(name)?
            .map(|text| {
                humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
                    .map_err(|_| failure(format!("{name} '{text}' is not an ISO 8601 UTC time")))
            })
            .transpose()
    };
    let (timestamp, expires) = (time("Timestamp")?, time("Expires")?);
    match (timestamp, expires) {
        (None, None) => Err(failure("Timestamp or Expires is required")),
        (Some(_), Some(_)) => Err(failure("give Timestamp or Expires, not both")),
        _ => Ok(SignedV2 {
            access_key_id,
            method,
            signature,
            timestamp,
            expires,
        }),
    }
}

/// RFC 3986 encoding, as SigV2 signs: unreserved characters kept, the rest `%XX`.
fn encode(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The string a SigV2 signature covers: `METHOD\nhost\npath\nquery`, where the query is
/// every parameter but `Signature`, encoded and sorted by encoded name (byte order).
pub fn string_to_sign(method: &str, host: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| {
            let (mut key, mut value) = (String::new(), String::new());
            encode(k, &mut key);
            encode(v, &mut value);
            (key, value)
        })
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = if path.is_empty() { "/" } else { path };
    format!(
        "{method}\n{}\n{path}\n{}",
        host.to_ascii_lowercase(),
        query.join("&")
    )
}

/// The base64 signature of `string_to_sign` with `secret` (what a client sends).
pub fn sign(secret: &str, method: SignatureMethod, string_to_sign: &str) -> String {
    let key = hmac::Key::new(method.algorithm(), secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, string_to_sign.as_bytes()))
}

/// Checks the signature with `secret`, in constant time.
pub fn verify(secret: &str, signed: &SignedV2, string_to_sign: &str) -> Result<(), SigV4Error> {
    let key = hmac::Key::new(signed.method.algorithm(), secret.as_bytes());
    hmac::verify(&key, string_to_sign.as_bytes(), &signed.signature).map_err(|_| {
        SigV4Error::Mismatch(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method."
                .into(),
        )
    })
}

/// Checks the request's time against `now`: a `Timestamp` within `max_skew` either way,
/// or an `Expires` not yet past.
pub fn check_time(
    signed: &SignedV2,
    now: SystemTime,
    max_skew: Duration,
) -> Result<(), SigV4Error> {
    if let Some(expires) = signed.expires {
        if now > expires {
            return Err(SigV4Error::Expired(
                "the request has expired (Expires)".into(),
            ));
        }
        return Ok(());
    }
    let at = signed
        .timestamp
        .expect("parse requires Timestamp or Expires");
    let ahead = at.duration_since(now).unwrap_or_default();
    let behind = now.duration_since(at).unwrap_or_default();
    if ahead > max_skew || behind > max_skew {
        return Err(SigV4Error::Expired(format!(
            "the request's Timestamp is {}s {} the server's clock (at most {}s allowed)",
            ahead.max(behind).as_secs(),
            if ahead > behind { "ahead of" } else { "behind" },
            max_skew.as_secs()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// AWS's documented SigV2 example (the General Reference's "Signature Version 2
    /// signing process": Elastic MapReduce `DescribeJobFlows`), with its published
    /// signature.
    #[test]
    fn the_documented_example_signs_to_the_documented_signature() {
        let request = params(&[
            ("Action", "DescribeJobFlows"),
            ("Version", "2009-03-31"),
            ("AWSAccessKeyId", "AKIAIOSFODNN7EXAMPLE"),
            ("SignatureVersion", "2"),
            ("SignatureMethod", "HmacSHA256"),
            ("Timestamp", "2011-10-03T15:19:30"),
        ]);
        let sts = string_to_sign("GET", "elasticmapreduce.amazonaws.com", "/", &request);
        assert_eq!(
            sts,
            "GET\nelasticmapreduce.amazonaws.com\n/\nAWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Action=DescribeJobFlows&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2011-10-03T15%3A19%3A30&Version=2009-03-31"
        );
        assert_eq!(
            sign(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                SignatureMethod::HmacSha256,
                &sts
            ),
            "i91nKc4PWAt0JJIdXwz9HxZCJDdiy6cf/Mj6vPxyYIs="
        );
    }

    #[test]
    fn parsing_names_what_is_missing_or_wrong() {
        let good = params(&[
            ("AWSAccessKeyId", "AKSPEXAMPLE"),
            ("SignatureVersion", "2"),
            ("SignatureMethod", "HmacSHA1"),
            ("Timestamp", "2026-12-05T10:00:00Z"),
            ("Signature", "AAAA"),
        ]);
        assert!(is_signed(&good));
        assert_eq!(parse(&good).unwrap().method, SignatureMethod::HmacSha1);
        let without = |name: &str| -> Vec<(String, String)> {
            good.iter().filter(|(k, _)| k != name).cloned().collect()
        };
        for (name, says) in [
            ("AWSAccessKeyId", "AWSAccessKeyId is missing"),
            ("SignatureMethod", "SignatureMethod is missing"),
            ("Signature", "Signature is missing"),
            ("Timestamp", "Timestamp or Expires is required"),
        ] {
            let refused = parse(&without(name)).unwrap_err();
            assert!(refused.to_string().contains(says), "{name}: {refused}");
        }
        let mut md5 = good.clone();
        md5[2].1 = "HmacMD5".into();
        assert!(parse(&md5).unwrap_err().to_string().contains("HmacMD5"));
        let mut twice = good.clone();
        twice.push(("Signature".into(), "BBBB".into()));
        assert!(parse(&twice).is_err());
    }

    #[test]
    fn a_signature_verifies_only_with_its_secret_and_request() {
        for method in [SignatureMethod::HmacSha256, SignatureMethod::HmacSha1] {
            let mut request = params(&[
                ("Action", "DescribeInstances"),
                ("Filter.1.Name", "tag:Name"),
                ("Filter.1.Value.1", "a b/c*"),
                ("AWSAccessKeyId", "AKSPEXAMPLE"),
                ("SignatureVersion", "2"),
                ("SignatureMethod", method.as_str()),
                ("Timestamp", "2026-12-05T10:00:00Z"),
            ]);
            let sts = string_to_sign("POST", "127.0.0.1:8443", "/", &request);
            assert!(sts.contains("a%20b%2Fc%2A"), "{sts}");
            request.push(("Signature".into(), sign("secret", method, &sts)));
            let signed = parse(&request).unwrap();
            assert_eq!(verify("secret", &signed, &sts), Ok(()));
            assert!(matches!(
                verify("other", &signed, &sts),
                Err(SigV4Error::Mismatch(_))
            ));
            let changed = string_to_sign("POST", "127.0.0.1:8443", "/services/compute", &request);
            assert!(verify("secret", &signed, &changed).is_err());
        }
    }

    #[test]
    fn timestamps_outside_the_window_and_past_expiries_are_refused() {
        let at = |text: &str| {
            parse(&params(&[
                ("AWSAccessKeyId", "AKSPEXAMPLE"),
                ("SignatureVersion", "2"),
                ("SignatureMethod", "HmacSHA256"),
                ("Signature", "AAAA"),
                (
                    if text.starts_with('E') {
                        "Expires"
                    } else {
                        "Timestamp"
                    },
                    text.trim_start_matches('E'),
                ),
            ]))
            .unwrap()
        };
        let now = humantime::parse_rfc3339("2026-12-05T10:00:00Z").unwrap();
        let skew = Duration::from_secs(900);
        assert_eq!(check_time(&at("2026-12-05T10:10:00Z"), now, skew), Ok(()));
        assert_eq!(
            check_time(&at("2026-12-05T09:50:00.123Z"), now, skew),
            Ok(())
        );
        assert!(matches!(
            check_time(&at("2026-12-05T09:30:00Z"), now, skew),
            Err(SigV4Error::Expired(_))
        ));
        assert!(matches!(
            check_time(&at("2026-12-05T10:30:00Z"), now, skew),
            Err(SigV4Error::Expired(_))
        ));
        assert_eq!(check_time(&at("E2026-12-05T12:00:00Z"), now, skew), Ok(()));
        assert!(check_time(&at("E2026-12-05T09:59:00Z"), now, skew).is_err());
    }
}
