//! Front door: TLS with the development CA, JWT and mTLS identities, and every way a
//! token can be wrong.
#![forbid(unsafe_code)]

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use skyport_e2e::{expect_problem, standard_claims, unix_now, Gateway};

#[tokio::test]
async fn whoami_by_jwt_names_tenant_department_and_roles() {
    let gw = Gateway::start();
    let token = gw.token("demo", Some("finance"), &["auditor"]);
    let response = gw.get("/v1/whoami", &token).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["tenant"], "demo");
    assert_eq!(body["department"], "finance");
    assert_eq!(body["roles"], serde_json::json!(["auditor"]));
    assert_eq!(body["identity_source"], "jwt");
}

#[tokio::test]
async fn whoami_by_mtls_client_certificate() {
    let gw = Gateway::start();
    let client = gw.mtls_client(
        &gw.cert_path("client-demo.pem"),
        &gw.cert_path("client-demo-key.pem"),
    );
    let body: serde_json::Value = client
        .get(gw.url("/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tenant"], "demo");
    assert_eq!(body["identity_source"], "mtls");
    assert_eq!(body["subject"], "demo-cli");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused_at_the_handshake() {
    let gw = Gateway::start();
    let dir = skyport_e2e::temp_state_dir("foreign-ca");
    let status = std::process::Command::new(skyport_e2e::skyport_bin())
        .args(["certs", "init", "--out"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let client = gw.mtls_client(
        &dir.join("client-demo.pem"),
        &dir.join("client-demo-key.pem"),
    );
    let result = client.get(gw.url("/v1/whoami")).send().await;
    assert!(
        result.is_err(),
        "a certificate from a foreign CA must not be accepted"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn alg_none_token(tenant: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(standard_claims(tenant).to_string())
    )
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_problems() {
    let gw = Gateway::start();
    let now = unix_now();
    let mut cases: Vec<(&str, Option<String>)> = vec![("no token", None)];
    let mut expired = standard_claims("demo");
    expired["exp"] = (now - 120).into();
    cases.push(("expired", Some(gw.sign(&expired))));
    let mut wrong_iss = standard_claims("demo");
    wrong_iss["iss"] = "someone-else".into();
    cases.push(("wrong iss", Some(gw.sign(&wrong_iss))));
    let mut wrong_aud = standard_claims("demo");
    wrong_aud["aud"] = "not-skyport".into();
    cases.push(("wrong aud", Some(gw.sign(&wrong_aud))));
    let mut no_tenant = standard_claims("demo");
    no_tenant.as_object_mut().unwrap().remove("tenant");
    cases.push(("no tenant claim", Some(gw.sign(&no_tenant))));
    let mut no_sub = standard_claims("demo");
    no_sub.as_object_mut().unwrap().remove("sub");
    cases.push(("no sub claim", Some(gw.sign(&no_sub))));
    cases.push(("alg none", Some(alg_none_token("demo"))));
    let public_pem = std::fs::read(gw.cert_path("jwt-public.pem")).unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("skyport-dev".into());
    let hs256 = encode(
        &hs_header,
        &standard_claims("demo"),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    cases.push(("HS256 with the public key as secret", Some(hs256)));
    let good = gw.sign(&standard_claims("demo"));
    let (head, _sig) = good.rsplit_once('.').unwrap();
    let other = gw.sign(&standard_claims("acme"));
    let other_sig = other.rsplit_once('.').unwrap().1;
    cases.push(("bad signature", Some(format!("{head}.{other_sig}"))));
    let mut future_nbf = standard_claims("demo");
    future_nbf["nbf"] = (now + 600).into();
    cases.push(("nbf in the future", Some(gw.sign(&future_nbf))));
    cases.push(("garbage", Some("not.a.jwt".to_string())));
    let mut empty_sub = standard_claims("demo");
    empty_sub["sub"] = "".into();
    cases.push(("empty sub", Some(gw.sign(&empty_sub))));
    let mut year_long = standard_claims("demo");
    year_long["exp"] = (now + 365 * 86400).into();
    cases.push(("a year-long lifetime", Some(gw.sign(&year_long))));

    let client = gw.client();
    for (name, token) in cases {
        let mut request = client.get(gw.url("/v1/whoami"));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "case {name}");
        assert_eq!(
            response.headers().get("www-authenticate").unwrap(),
            "Bearer",
            "case {name}"
        );
        let body = expect_problem(response, 401).await;
        assert!(!body["detail"].as_str().unwrap().is_empty(), "case {name}");
    }
    // The valid token still works after all that.
    let ok = client
        .get(gw.url("/v1/whoami"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn verified_token_of_an_unregistered_tenant_is_403() {
    let gw = Gateway::start();
    let token = gw.token("nobody", None, &[]);
    let response = gw.get("/v1/whoami", &token).await;
    let body = expect_problem(response, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("nobody"));
}

#[tokio::test]
async fn spoofed_identity_headers_are_ignored() {
    let gw = Gateway::start();
    let token = gw.token("demo", Some("engineering"), &[]);
    let body: serde_json::Value = gw
        .client()
        .get(gw.url("/v1/whoami"))
        .bearer_auth(token)
        .header("x-skyport-tenant", "acme")
        .header("x-skyport-department", "ops")
        .header("x-skyport-roles", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tenant"], "demo");
    assert_eq!(body["department"], "engineering");
    assert_eq!(body["roles"], serde_json::json!([]));
}

#[tokio::test]
async fn admin_routes_are_403_for_tenant_tokens_and_open_to_admins() {
    let gw = Gateway::start();
    let client = gw.client();
    for path in ["/admin/plugins", "/admin/tenants"] {
        let response = client
            .get(gw.url(path))
            .bearer_auth(gw.token("demo", None, &[]))
            .send()
            .await
            .unwrap();
        expect_problem(response, 403).await;
        let response = client
            .get(gw.url(path))
            .bearer_auth(gw.token("demo", None, &["admin"]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let tenants: serde_json::Value = gw
        .get_json("/admin/tenants", &gw.token("demo", None, &["admin"]))
        .await;
    let ids: Vec<&str> = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "demo", "ops"]);
}

#[tokio::test]
async fn unknown_routes_answer_with_problems_and_the_ec2_path_with_ec2_errors() {
    let gw = Gateway::start();
    let client = gw.client();
    expect_problem(client.get(gw.url("/v9/nothing")).send().await.unwrap(), 404).await;
    let token = gw.token("demo", None, &[]);
    // A bearer token is not an EC2 credential: the EC2 path answers in its own format.
    let response = gw.post("/", &token, None).await;
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("<Response><Errors><Error><Code>AuthFailure</Code>"),
        "{body}"
    );
    let response = gw.post("/v1/whoami", &token, None).await;
    expect_problem(response, 405).await;
}

#[tokio::test]
async fn admin_mtls_identity_reaches_admin_routes_and_other_services_do_not() {
    let gw = Gateway::start();
    let issuer = gw.dev_ca();
    let dir = skyport_e2e::temp_state_dir("admin-mtls");
    // The admin service's certificate, under the operator tenant and under another one.
    let client_of = |tenant: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            format!("spiffe://skyport/tenant/{tenant}/svc/skyport-admin")
                .as_str()
                .try_into()
                .unwrap(),
        ));
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (pem, key_pem) = (
            dir.join(format!("{tenant}.pem")),
            dir.join(format!("{tenant}-key.pem")),
        );
        std::fs::write(&pem, cert.pem()).unwrap();
        std::fs::write(&key_pem, key.serialize_pem()).unwrap();
        gw.mtls_client(&pem, &key_pem)
    };

    let admin = client_of("demo");
    let r = admin.get(gw.url("/admin/tenants")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let who: serde_json::Value = admin
        .get(gw.url("/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["tenant"], "demo");
    assert_eq!(who["roles"], serde_json::json!(["admin"]));
    // The same service name under a tenant that is no operator is no operator.
    let elsewhere = client_of("acme");
    let r = elsewhere
        .get(gw.url("/admin/tenants"))
        .send()
        .await
        .unwrap();
    expect_problem(r, 403).await;

    let demo = gw.mtls_client(
        &gw.cert_path("client-demo.pem"),
        &gw.cert_path("client-demo-key.pem"),
    );
    let r = demo.get(gw.url("/admin/tenants")).send().await.unwrap();
    expect_problem(r, 403).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_admin_role_of_a_tenant_that_is_not_an_operator_reaches_no_admin_route() {
    let gw = Gateway::start();
    let tenant_admin = gw.token("acme", None, &["admin"]);
    let refused = expect_problem(gw.get("/admin/plugins", &tenant_admin).await, 403).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("admin"),
        "{refused}"
    );
    let operator = gw.token("demo", None, &["admin"]);
    assert_eq!(gw.get("/admin/plugins", &operator).await.status(), 200);
}

/// A refusal that is ready before the request's body has arrived (no token: 401; a tenant
/// token on an admin route: 403) waits for that body over HTTP/2 before it is sent. An
/// HTTP/2 client sends the headers first and the body after, as curl does: answered and
/// reset (RST_STREAM `NO_ERROR`, as RFC 9113 §8.1 allows) while it had not sent its body,
/// curl 7.x failed with error 92 instead of showing the problem. Here every body is sent
/// only once the refusal is surely ready; each is taken, and each stream ends with the
/// whole problem document.
#[tokio::test]
async fn early_refusals_over_http2_take_the_body_the_client_is_still_sending() {
    let gw = Gateway::start();
    let tenant = gw.token("demo", None, &[]);
    let mut h2 = gw.h2_connect().await;
    for i in 0..20 {
        let (path, token, status) = if i % 2 == 0 {
            (
                "/admin/plugins/metering/ops/ledger.events",
                Some(&tenant),
                403,
            )
        } else {
            ("/v1/instances", None, 401)
        };
        let mut request = hyper::Request::post(gw.url(path))
            .header("content-type", "application/json")
            .header("content-length", "7");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let (head, document) =
            post_with_a_late_body(&mut h2, request.body(()).unwrap(), &format!("request {i}"))
                .await;
        assert_eq!(head.status.as_u16(), status, "request {i}");
        assert_eq!(
            head.headers["content-type"], "application/problem+json",
            "request {i}"
        );
        let problem: serde_json::Value = serde_json::from_slice(&document).unwrap();
        assert_eq!(problem["status"], status, "{problem}");
        assert!(problem["detail"].is_string(), "{problem}");
    }
}

/// The web console answers without reading a request's body too (a sign-out, a method it
/// does not take): over HTTP/2 it takes that body first, as the API's doors do.
#[tokio::test]
async fn the_console_takes_the_body_of_a_request_it_answers_over_http2() {
    let gw = Gateway::start();
    let mut h2 = gw.h2_connect().await;
    for (i, (path, status)) in [("/console/signout", 204), ("/console/", 405)]
        .into_iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let request = hyper::Request::post(gw.url(path))
            .header("origin", gw.url(""))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", "7")
            .body(())
            .unwrap();
        let (head, _) = post_with_a_late_body(&mut h2, request, &format!("{path} ({i})")).await;
        assert_eq!(head.status.as_u16(), status, "{path} ({i})");
    }
}

/// Sends `request` over `h2` with a 7-byte body that follows its headers 50 ms later, as
/// curl sends a small body, and once an early answer is surely ready. Panics unless the
/// body is taken and the answer arrives whole; returns the answer's head and body.
async fn post_with_a_late_body(
    h2: &mut h2::client::SendRequest<bytes::Bytes>,
    request: hyper::Request<()>,
    what: &str,
) -> (hyper::http::response::Parts, Vec<u8>) {
    *h2 = h2.clone().ready().await.expect("a stream to open");
    let (response, mut body) = h2
        .send_request(request, false)
        .expect("request headers sent");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    body.send_data(bytes::Bytes::from_static(br#"{"x":1}"#), true)
        .unwrap_or_else(|e| panic!("{what}: its body was not taken: {e}"));
    let (head, mut received) = response.await.expect("answered").into_parts();
    let mut document = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{what}: the answer was cut: {e}"));
        let _ = received.flow_control().release_capacity(chunk.len());
        document.extend_from_slice(&chunk);
    }
    (head, document)
}
