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
    // Hex in capitals spells the same signature.
    let capitals = SignedRequest {
        signature: sig.to_ascii_uppercase().into(),
        ..signed.clone()
    };
    assert_eq!(verify(&parts, &capitals, secret), Ok(()));
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
        const_hex::encode(hmac(&k_service, b"aws4_request")),
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
    assert_eq!(
        signed.signature, "ABCD",
        "as sent; hex of either case is read the same"
    );
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
        canonical_query("b=2&a=x%20y&X-Amz-Signature=zz&c=%7E", true),
        "a=x%20y&b=2&c=~"
    );
    // Signed in the Authorization header, a parameter of that name is signed like any.
    assert_eq!(
        canonical_query("b=2&X-Amz-Signature=zz", false),
        "X-Amz-Signature=zz&b=2"
    );
}

/// Requests signed by the AWS SDK's own signer (`aws-sigv4`) verify. The first was found
/// by the `sigv4` fuzz target: a header-signed request whose query holds a parameter
/// named `X-Amz-Signature` was refused (the canonical query left it out as if presigned),
/// and the same parameter could be added to a captured request without breaking its
/// signature.
#[test]
fn requests_the_aws_sdk_signs_verify() {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        sign as sdk_sign, SignableBody, SignableRequest, SigningSettings,
    };
    use aws_smithy_runtime_api::client::identity::Identity;
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let identity: Identity = Credentials::new("AKIDEXAMPLE", secret, None, None, "test").into();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
    for (method, query, body) in [
        ("POST", "X-Amz-Signature=", &b""[..]),
        (
            "POST",
            "X-Amz-Signature=x&Action=DescribeRegions",
            &b"Version=2016-11-15"[..],
        ),
        (
            "GET",
            "Action=DescribeTags&Filter.1.Value.1=a%20b%2Bc%7E%2A",
            &b""[..],
        ),
        ("POST", "", &b"Action=CreateTags&Tag.1.Value=%E2%9C%93"[..]),
    ] {
        let url = format!("https://127.0.0.1:8443/?{query}");
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("local-1")
            .name("ec2")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            [("host", "127.0.0.1:8443")].into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sdk_sign(signable, &params).unwrap().into_parts();
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1:8443".parse().unwrap());
        for (name, value) in instructions.headers() {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let parts = RequestParts {
            method,
            path: "/",
            query,
            headers: &headers,
            authority: None,
            body,
        };
        let signed = parse(&parts).unwrap();
        assert_eq!(verify(&parts, &signed, secret), Ok(()), "{method} ?{query}");
        let added = format!("{query}&X-Amz-Signature=added");
        let tampered = RequestParts {
            query: &added,
            ..parts
        };
        assert!(
            verify(&tampered, &signed, secret).is_err(),
            "a query parameter added after signing was accepted: ?{added}"
        );
    }
}

/// An unsigned payload is taken only where there is no payload: the EC2 Query API's body
/// holds the action, so a signature that skips it would sign nothing that matters.
#[test]
fn unsigned_payload_is_refused_for_a_request_with_a_body() {
    let signed = claims("host;x-amz-content-sha256;x-amz-date");
    let mut headers = signed_headers();
    headers.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
    let parts = |body: &'static [u8]| post(&headers, body);
    let canonical = canonical_request(&parts(b""), &signed).unwrap();
    assert!(canonical.ends_with("\nUNSIGNED-PAYLOAD"), "{canonical}");
    let refused = canonical_request(&parts(b"Action=CreateKeyPair&KeyName=k"), &signed);
    assert!(
        matches!(&refused, Err(SigV4Error::AuthFailure(m)) if m.contains("UNSIGNED-PAYLOAD")),
        "{refused:?}"
    );
}

/// Split where the body starts, a verification checks the body it is finished with: the
/// head hashed before the body arrives, then the signed body verifies and any other does
/// not.
#[test]
fn a_verification_begun_on_the_head_is_finished_by_the_body() {
    let mut signed = claims("host;x-amz-date");
    let headers = signed_headers();
    let parts = |body: &'static [u8]| post(&headers, body);
    let body: &[u8] = b"Action=DescribeRegions&Version=2016-11-15";
    let secret = "secret";
    let canonical = canonical_request(&parts(body), &signed).unwrap();
    signed.signature = sign(secret, &signed, &string_to_sign(&signed, &canonical)).into();
    // The head's share sees no body.
    let pending = PendingVerification::new(&parts(b""), &signed, signing_mac(secret, &signed))
        .expect("the head is well formed");
    assert_eq!(pending.clone().finish(body), Ok(()));
    for other in [&b""[..], b"Action=DescribeRegions&Version=2016-11-16"] {
        assert!(matches!(
            pending.clone().finish(other),
            Err(SigV4Error::Mismatch(_))
        ));
    }
}

/// The claims of a request signed on 2015-08-30 in us-east-1 over `signed_headers`.
fn claims(signed_headers: &str) -> SignedRequest<'static> {
    SignedRequest {
        access_key_id: "AK".into(),
        scope_date: "20150830".into(),
        region: "us-east-1".into(),
        amz_date: "20150830T123600Z".into(),
        signed_headers: signed_headers.to_string().into(),
        signature: "".into(),
        expires: None,
    }
}

/// `host` and `x-amz-date` as [`claims`] signs them.
fn signed_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("host", "ec2.amazonaws.com".parse().unwrap());
    headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
    headers
}

/// A `POST /` with `headers` and `body`.
fn post<'a>(headers: &'a http::HeaderMap, body: &'a [u8]) -> RequestParts<'a> {
    RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers,
        authority: None,
        body,
    }
}

/// Header values enter the canonical request trimmed, runs of spaces and tabs one space,
/// several values of one name joined by commas; values already so are taken whole.
#[test]
fn header_values_are_trimmed_and_their_spaces_collapsed() {
    let cases = [
        ("a b c", "a b c"),
        ("  a   b\tc  ", "a b c"),
        (" a", "a"),
        ("a ", "a"),
        ("a\tb", "a b"),
        ("a  b", "a b"),
        ("", ""),
    ];
    for (value, expected) in cases {
        let mut headers = signed_headers();
        headers.insert("x-custom", value.parse().unwrap());
        let canonical =
            canonical_request(&post(&headers, b""), &claims("host;x-amz-date;x-custom")).unwrap();
        assert!(
            canonical.contains(&format!("\nx-custom:{expected}\n\n")),
            "{value:?}: {canonical}"
        );
    }
    let mut headers = signed_headers();
    headers.append("x-custom", "one".parse().unwrap());
    headers.append("x-custom", " two  too ".parse().unwrap());
    let canonical =
        canonical_request(&post(&headers, b""), &claims("host;x-amz-date;x-custom")).unwrap();
    assert!(
        canonical.contains("\nx-custom:one,two too\n\n"),
        "{canonical}"
    );
}
