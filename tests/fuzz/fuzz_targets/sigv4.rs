//! SigV4: parsing the signature out of a request and canonicalising it, checked against
//! the AWS SDK's own signer (`aws-sigv4`). Whatever request the SDK signs, Skyport's
//! verifier must accept it with the same secret and refuse it with another; any other
//! header, query or body must be parsed or refused without a panic.
#![no_main]

use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use libfuzzer_sys::fuzz_target;
use skyport_auth::sigv4;

const KEY_ID: &str = "AKIAFUZZFUZZFUZZFUZZ";
const SECRET: &str = "fuzz/secret+key/0123456789abcdefghijklmn";

#[derive(Debug, Arbitrary)]
struct Input {
    post: bool,
    /// Query pairs, sent percent-encoded as a client would.
    query: Vec<(String, String)>,
    /// Extra headers, signed by the SDK.
    headers: Vec<(HeaderName, String)>,
    body: Vec<u8>,
    region: Region,
    /// Seconds after 2020-01-01.
    at: u32,
    /// Raw material for the parser alone.
    raw_authorization: String,
    raw_query: String,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum HeaderName {
    ContentType,
    UserAgent,
    XAmzTarget,
    XCustom,
}

impl HeaderName {
    fn as_str(self) -> &'static str {
        match self {
            Self::ContentType => "content-type",
            Self::UserAgent => "user-agent",
            Self::XAmzTarget => "x-amz-target",
            Self::XCustom => "x-custom",
        }
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Region {
    Local,
    Federated,
    Aws,
}

impl Region {
    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local-1",
            Self::Federated => "skyport",
            Self::Aws => "us-east-1",
        }
    }
}

fuzz_target!(|input: Input| {
    parse_raw(&input);
    sign_and_verify(&input);
});

/// Whatever the Authorization header and query hold: parsed or refused, never a panic.
fn parse_raw(input: &Input) {
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(&input.raw_authorization) {
        headers.insert(http::header::AUTHORIZATION, value);
        headers.insert(
            "x-amz-date",
            http::HeaderValue::from_static("20240101T000000Z"),
        );
    }
    let parts = sigv4::RequestParts {
        method: "POST",
        path: "/",
        query: &input.raw_query,
        headers: &headers,
        authority: Some("127.0.0.1:8443"),
        body: &input.body,
    };
    let _ = sigv4::is_signed(&headers, &input.raw_query);
    if let Ok(signed) = sigv4::parse(&parts) {
        let _ = sigv4::check_time(&signed, SystemTime::UNIX_EPOCH, Duration::from_secs(300));
        let _ = sigv4::verify(&parts, &signed, SECRET);
    }
}

/// A request the SDK signs is accepted with the same secret and refused with another.
fn sign_and_verify(input: &Input) {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(input.query.iter().take(16))
        .finish();
    let url = if query.is_empty() {
        "https://127.0.0.1:8443/".to_string()
    } else {
        format!("https://127.0.0.1:8443/?{query}")
    };
    let mut pairs: Vec<(&str, &str)> = vec![("host", "127.0.0.1:8443")];
    for (name, value) in input.headers.iter().take(4) {
        // Header values a client can send: visible ASCII and spaces, not at the ends.
        let value = value.trim_matches(|c: char| c == ' ' || c == '\t');
        if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            continue;
        }
        if pairs.iter().any(|(n, _)| *n == name.as_str()) {
            continue;
        }
        pairs.push((name.as_str(), value));
    }
    let method = if input.post { "POST" } else { "GET" };
    let body: &[u8] = if input.post { &input.body } else { b"" };
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800 + u64::from(input.at));
    let identity: Identity = Credentials::new(KEY_ID, SECRET, None, None, "fuzz").into();
    let Ok(params) = v4::SigningParams::builder()
        .identity(&identity)
        .region(input.region.as_str())
        .name("ec2")
        .time(time)
        .settings(SigningSettings::default())
        .build()
    else {
        return;
    };
    let Ok(signable) = SignableRequest::new(
        method,
        url.as_str(),
        pairs.iter().copied(),
        SignableBody::Bytes(body),
    ) else {
        return;
    };
    let Ok(signed) = sign(signable, &params.into()) else {
        return;
    };
    let (instructions, _) = signed.into_parts();
    let mut headers = http::HeaderMap::new();
    for (name, value) in pairs.iter().copied().chain(instructions.headers()) {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("the SDK's header name"),
            http::HeaderValue::from_str(value).expect("the SDK's header value"),
        );
    }
    let parts = sigv4::RequestParts {
        method,
        path: "/",
        query: &query,
        headers: &headers,
        authority: None,
        body,
    };
    assert!(sigv4::is_signed(&headers, &query));
    let claims = sigv4::parse(&parts).expect("a request the SDK signed parses");
    assert_eq!(claims.access_key_id, KEY_ID);
    assert_eq!(claims.region, input.region.as_str());
    sigv4::check_time(&claims, time, Duration::from_secs(300)).expect("signed just now");
    if let Err(e) = sigv4::verify(&parts, &claims, SECRET) {
        panic!(
            "a request the SDK signed was refused: {e}\ncanonical request:\n{}",
            sigv4::canonical_request(&parts, &claims).unwrap_or_default()
        );
    }
    assert!(sigv4::verify(&parts, &claims, "another secret").is_err());
    if !body.is_empty() {
        let mut other = body.to_vec();
        other[0] ^= 1;
        let swapped = sigv4::RequestParts {
            body: &other,
            ..parts
        };
        assert!(
            sigv4::verify(&swapped, &claims, SECRET).is_err(),
            "a changed body kept its signature"
        );
    }
}
