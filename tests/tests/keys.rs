//! Key rotation: JWKS URL refetch on an unknown `kid` (single-flight, with a cooldown so
//! random kids cannot storm the identity provider) and SIGHUP reload of the server
//! certificate without dropping connections.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use skyport_e2e::{default_config, standard_claims, Gateway, GatewayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct SigningKey {
    kid: String,
    key: rcgen::KeyPair,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            key: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    fn jwk(&self) -> serde_json::Value {
        let raw = self.key.public_key_raw(); // 0x04 || X || Y
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": b64.encode(&raw[1..33]), "y": b64.encode(&raw[33..65]),
        })
    }

    fn sign(&self, kid: &str, tenant: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes()).unwrap();
        encode(&header, &standard_claims(tenant), &key).unwrap()
    }
}

/// A minimal identity provider: serves the current JWKS over plain HTTP and counts fetches.
async fn jwks_server(jwks: Arc<Mutex<serde_json::Value>>, hits: Arc<AtomicUsize>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let jwks = Arc::clone(&jwks);
            let hits = Arc::clone(&hits);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                hits.fetch_add(1, Ordering::SeqCst);
                let body = jwks.lock().unwrap().to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_rotation_accepts_new_kids_and_random_kids_do_not_storm() {
    let k1 = SigningKey::new("k1");
    let k2 = SigningKey::new("k2");
    let jwks = Arc::new(Mutex::new(serde_json::json!({"keys": [k1.jwk()]})));
    let hits = Arc::new(AtomicUsize::new(0));
    let port = jwks_server(Arc::clone(&jwks), Arc::clone(&hits)).await;
    let config = default_config().replace(
        "jwks_refetch_cooldown_secs = 30",
        "jwks_refetch_cooldown_secs = 2",
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: format!("[[auth.jwt.keys]]\njwks_url = \"http://127.0.0.1:{port}/jwks\"\n"),
    });
    let client = gw.client();
    let whoami = |token: String| {
        let request = client.get(gw.url("/v1/whoami")).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once at startup");
    assert_eq!(whoami(k1.sign("k1", "demo")).await, 200);

    // Fifty tokens with random kids: every one refused, at most one refetch (cooldown).
    for i in 0..50 {
        assert_eq!(whoami(k1.sign(&format!("random-{i}"), "demo")).await, 401);
    }
    let after_storm = hits.load(Ordering::SeqCst);
    assert!(after_storm <= 2, "random kids caused {after_storm} fetches");

    // The identity provider rotates in k2; after the cooldown a k2 token works.
    *jwks.lock().unwrap() = serde_json::json!({"keys": [k1.jwk(), k2.jwk()]});
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(whoami(k2.sign("k2", "acme")).await, 200);
    assert_eq!(hits.load(Ordering::SeqCst), after_storm + 1);
    // ... and keeps working from the fetched set without further fetches.
    assert_eq!(whoami(k2.sign("k2", "demo")).await, 200);
    assert_eq!(hits.load(Ordering::SeqCst), after_storm + 1);
}

fn served_certificate(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn http_get(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    token: &str,
) -> String {
    let request = format!(
        "GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tls.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn sighup_reloads_the_server_certificate_without_dropping_connections() {
    let gw = Gateway::start();
    let token = gw.token("demo", None, &[]);
    let mut before = gw.tls_connect(None).await;
    let old_cert = served_certificate(&before);
    assert!(http_get(&mut before, &token)
        .await
        .starts_with("HTTP/1.1 200"));

    // A bad new certificate is refused and the old one stays in use.
    let server_pem = gw.cert_path("server.pem");
    let original = std::fs::read(&server_pem).unwrap();
    std::fs::write(
        &server_pem,
        b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    gw.signal(skyport_e2e::Signal::HUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(gw.log().contains("TLS reload refused"), "{}", gw.log());
    let still_old = gw.tls_connect(None).await;
    assert_eq!(served_certificate(&still_old), old_cert);
    std::fs::write(&server_pem, original).unwrap();

    // A new certificate from the same CA is served to new connections after SIGHUP.
    let issuer = gw.dev_ca();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(gw.cert_path("server-key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(&server_pem, cert.pem()).unwrap();
    gw.signal(skyport_e2e::Signal::HUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = gw.tls_connect(None).await;
    assert_eq!(served_certificate(&after), cert.der().to_vec());
    assert_ne!(served_certificate(&after), old_cert);

    // The connection opened before the reload still serves requests.
    assert!(http_get(&mut before, &token)
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn rs256_es256_and_eddsa_pem_keys_each_verify_with_their_pinned_algorithm() {
    let dir = skyport_e2e::temp_state_dir("pem-keys");
    let keys = [
        ("rsa", "RS256", &rcgen::PKCS_RSA_SHA256, Algorithm::RS256),
        (
            "ec",
            "ES256",
            &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES256,
        ),
        ("ed", "EdDSA", &rcgen::PKCS_ED25519, Algorithm::EdDSA),
    ];
    let mut extra = String::new();
    let mut signers = Vec::new();
    for (kid, alg_name, rcgen_alg, alg) in keys {
        let key = rcgen::KeyPair::generate_for(rcgen_alg).unwrap();
        let public = dir.join(format!("{kid}.pub.pem"));
        std::fs::write(&public, key.public_key_pem()).unwrap();
        extra += &format!(
            "[[auth.jwt.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg_name}\"\npem = \"{}\"\n",
            public.display()
        );
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()),
            _ => EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()),
        }
        .unwrap();
        signers.push((kid, alg, encoding));
    }
    let gw = Gateway::start_with(GatewayOptions {
        extra,
        ..Default::default()
    });
    let client = gw.client();
    for (kid, alg, encoding) in &signers {
        let mut header = Header::new(*alg);
        header.kid = Some(kid.to_string());
        let token = encode(&header, &standard_claims("demo"), encoding).unwrap();
        let status = client
            .get(gw.url("/v1/whoami"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{kid}");
    }
    // An ES256 token that names the RS256 key's kid is refused: the algorithm is pinned.
    let (_, _, es_key) = &signers[1];
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa".into());
    let token = encode(&header, &standard_claims("demo"), es_key).unwrap();
    let response = client
        .get(gw.url("/v1/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body = skyport_e2e::expect_problem(response, 401).await;
    assert!(
        body["detail"].as_str().unwrap().contains("algorithm"),
        "{body}"
    );
    // The development key is not accepted once keys are configured.
    let response = client
        .get(gw.url("/v1/whoami"))
        .bearer_auth(gw.token("demo", None, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    std::fs::remove_dir_all(dir).unwrap();
}
