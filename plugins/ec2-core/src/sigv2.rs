//! AWS Signature Version 2 (`SignatureVersion=2`, `HmacSHA256`), as Eucalyptus and
//! euca2ools 3.x used it for the EC2 Query API: the signature is the base64 HMAC-SHA256 of
//! `METHOD\nhost\npath\n<sorted, RFC 3986-encoded parameters>` and travels as the
//! `Signature` parameter, beside `AWSAccessKeyId`, `SignatureVersion`, `SignatureMethod`
//! and `Timestamp`.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// RFC 3986 encoding: unreserved characters kept, everything else `%XX` (upper case).
pub fn uri_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The sorted, encoded parameter string both the signature and the body use.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(k, &mut ek);
            uri_encode(v, &mut ev);
            (ek, ev)
        })
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Signature` value for `params` (which must already hold `AWSAccessKeyId`,
/// `SignatureVersion`, `SignatureMethod` and `Timestamp`, and not `Signature`).
pub fn signature(
    method: &str,
    host: &str,
    path: &str,
    params: &[(String, String)],
    secret: &str,
) -> String {
    let string_to_sign = format!(
        "{method}\n{}\n{path}\n{}",
        host.to_ascii_lowercase(),
        canonical_query(params)
    );
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Adds the SigV2 parameters and the signature to `params`.
pub fn sign(
    method: &str,
    host: &str,
    path: &str,
    params: &mut Vec<(String, String)>,
    access_key_id: &str,
    secret: &str,
    timestamp: &str,
) {
    params.push(("AWSAccessKeyId".into(), access_key_id.into()));
    params.push(("SignatureVersion".into(), "2".into()));
    params.push(("SignatureMethod".into(), "HmacSHA256".into()));
    params.push(("Timestamp".into(), timestamp.into()));
    let sig = signature(method, host, path, params, secret);
    params.push(("Signature".into(), sig));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The worked example of AWS's "Signature Version 2 signing process" (Elastic
    /// MapReduce DescribeJobFlows, 2011-10-03).
    #[test]
    fn aws_documented_example() {
        let params = pairs(&[
            ("Action", "DescribeJobFlows"),
            ("Version", "2009-03-31"),
            ("AWSAccessKeyId", "AKIAIOSFODNN7EXAMPLE"),
            ("SignatureVersion", "2"),
            ("SignatureMethod", "HmacSHA256"),
            ("Timestamp", "2011-10-03T15:19:30"),
        ]);
        assert_eq!(
            canonical_query(&params),
            "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Action=DescribeJobFlows&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2011-10-03T15%3A19%3A30&Version=2009-03-31"
        );
        assert_eq!(
            signature(
                "GET",
                "elasticmapreduce.amazonaws.com",
                "/",
                &params,
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
            ),
            "i91nKc4PWAt0JJIdXwz9HxZCJDdiy6cf/Mj6vPxyYIs="
        );
    }

    #[test]
    fn sign_adds_the_parameters_and_covers_them() {
        let mut params = pairs(&[("Action", "DescribeInstances"), ("Version", "2014-06-15")]);
        sign(
            "POST",
            "Cloud:8773",
            "/services/compute",
            &mut params,
            "AK",
            "secret",
            "2026-11-23T11:39:01Z",
        );
        let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Action",
                "Version",
                "AWSAccessKeyId",
                "SignatureVersion",
                "SignatureMethod",
                "Timestamp",
                "Signature"
            ]
        );
        let (signed, sig) = params.split_at(params.len() - 1);
        // The host is lower-cased; any parameter change changes the signature.
        assert_eq!(
            sig[0].1,
            signature("POST", "cloud:8773", "/services/compute", signed, "secret")
        );
        let mut altered = signed.to_vec();
        altered[0].1 = "TerminateInstances".into();
        assert_ne!(
            sig[0].1,
            signature(
                "POST",
                "cloud:8773",
                "/services/compute",
                &altered,
                "secret"
            )
        );
    }
}
