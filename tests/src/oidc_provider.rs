//! An OpenID Connect identity provider of the test's own, over HTTPS with a CA of its
//! own: discovery, an authorization endpoint that signs in whoever the test says (no
//! login form), and a token endpoint that checks the PKCE verifier against the challenge
//! and issues ES256 access tokens with Skyport's tenant claims. Its public key is written
//! for `[[auth.jwt.keys]]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The client id the console is registered under.
pub const CLIENT_ID: &str = "skyport-console";
/// The audience of the access tokens (the gateway's `[auth.jwt] audience`).
pub const AUDIENCE: &str = "skyport";
const KID: &str = "idp-1";

/// A code handed out and not yet exchanged.
#[derive(Debug, Clone)]
struct Grant {
    challenge: String,
    redirect_uri: String,
    claims: Value,
}

/// What the provider saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every authorization request's query, decoded.
    pub authorizations: Vec<HashMap<String, String>>,
    /// Every token request's form, decoded, with the answer's status.
    pub exchanges: Vec<(HashMap<String, String>, u16)>,
}

struct State {
    issuer: String,
    key: EncodingKey,
    /// Who the next sign-in is: tenant, department, roles, subject.
    user: Mutex<Value>,
    grants: Mutex<HashMap<String, Grant>>,
    seen: Mutex<Seen>,
}

/// A running provider; stopped on drop.
pub struct OidcProvider {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The PEM file of its TLS CA (`[console.oidc] ca_file`).
    pub ca_file: PathBuf,
    /// Its TLS certificate (DER), for a browser to trust.
    pub cert_der: Vec<u8>,
    /// The PEM file of its token-signing public key (`[[auth.jwt.keys]] pem`).
    pub public_key_file: PathBuf,
    state: Arc<State>,
    task: JoinHandle<()>,
    dir: PathBuf,
}

impl OidcProvider {
    /// Makes its keys in a directory of its own (removed on drop) and starts listening on
    /// a free loopback port.
    pub async fn start() -> Self {
        let dir = crate::temp_state_dir("idp");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let ca_file = dir.join("idp-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let issuer_ca = Issuer::new(ca, ca_key);
        let tls_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&tls_key, &issuer_ca).unwrap();
        let cert_der = cert.der().to_vec();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(tls_key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();

        let signing = KeyPair::generate().unwrap();
        let public_key_file = dir.join("idp-signing-public.pem");
        std::fs::write(&public_key_file, signing.public_key_pem()).unwrap();
        let key = EncodingKey::from_ec_pem(signing.serialize_pem().as_bytes()).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            issuer: format!("https://{addr}"),
            key,
            user: Mutex::new(json!({"tenant": "demo", "sub": "ana@example.com"})),
            grants: Mutex::default(),
            seen: Mutex::default(),
        });
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let served = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&served));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, hyper::Error>(answer(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            ca_file,
            cert_der,
            public_key_file,
            state,
            task,
            dir,
        }
    }

    /// Its issuer URL.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// The next sign-in is `user` (claims: `tenant`, `sub`, and `dept`, `roles` if any).
    pub fn sign_in_as(&self, user: Value) {
        *self.state.user.lock().unwrap() = user;
    }

    /// What it saw so far.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.state.seen.lock().unwrap())
    }

    /// The configuration a gateway needs to trust it: `[auth.jwt]` naming it as issuer,
    /// its key, and `[console.oidc]`. `config` is the gateway's configuration text.
    pub fn configure(&self, config: &str) -> String {
        let shipped = "issuer = \"skyport-dev\"";
        assert!(config.contains(shipped), "the shipped [auth.jwt] changed");
        format!(
            "{}\n[[auth.jwt.keys]]\nkid = \"{KID}\"\nalgorithm = \"ES256\"\npem = \"{}\"\n\n\
             [console.oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nscopes = [\"openid\", \"profile\"]\n\
             ca_file = \"{}\"\n",
            config.replace(shipped, &format!("issuer = \"{}\"", self.issuer())),
            self.public_key_file.display(),
            self.issuer(),
            self.ca_file.display()
        )
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn respond(status: u16, headers: &[(&str, &str)], body: String) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

fn decode(text: &str) -> HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

async fn answer(
    state: &State,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let query = decode(request.uri().query().unwrap_or(""));
    let json = [("content-type", "application/json")];
    match path.as_str() {
        "/.well-known/openid-configuration" => respond(
            200,
            &json,
            json!({
                "issuer": state.issuer,
                "authorization_endpoint": format!("{}/authorize", state.issuer),
                "token_endpoint": format!("{}/token", state.issuer),
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            })
            .to_string(),
        ),
        "/authorize" => {
            state
                .seen
                .lock()
                .unwrap()
                .authorizations
                .push(query.clone());
            let (Some(redirect), Some(challenge), Some(app_state)) = (
                query.get("redirect_uri"),
                query.get("code_challenge"),
                query.get("state"),
            ) else {
                return respond(
                    400,
                    &[],
                    "missing redirect_uri, code_challenge or state".into(),
                );
            };
            if query.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || query.get("code_challenge_method").map(String::as_str) != Some("S256")
                || query.get("response_type").map(String::as_str) != Some("code")
            {
                return respond(400, &[], "bad authorization request".into());
            }
            let code = format!("code-{}", new_code());
            state.grants.lock().unwrap().insert(
                code.clone(),
                Grant {
                    challenge: challenge.clone(),
                    redirect_uri: redirect.clone(),
                    claims: state.user.lock().unwrap().clone(),
                },
            );
            let location = format!(
                "{redirect}?code={}&state={}",
                code,
                form_urlencoded::byte_serialize(app_state.as_bytes()).collect::<String>()
            );
            respond(302, &[("location", &location)], String::new())
        }
        "/token" => {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let form = decode(&String::from_utf8_lossy(&body));
            let (status, body) = exchange(state, &form);
            state.seen.lock().unwrap().exchanges.push((form, status));
            respond(status, &json, body.to_string())
        }
        _ => respond(404, &[], "not found".into()),
    }
}

fn exchange(state: &State, form: &HashMap<String, String>) -> (u16, Value) {
    let invalid = |why: &str| {
        (
            400,
            json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
    {
        return invalid("bad grant_type or client_id");
    }
    let Some(grant) = form
        .get("code")
        .and_then(|c| state.grants.lock().unwrap().remove(c))
    else {
        return invalid("unknown or used code");
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return invalid("redirect_uri differs");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return invalid("the code_verifier does not match the challenge");
    }
    let now = crate::unix_now();
    let mut claims = grant.claims.clone();
    claims["iss"] = json!(state.issuer);
    claims["aud"] = json!(AUDIENCE);
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 300);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KID.into());
    let access_token = encode(&header, &claims, &state.key).unwrap();
    (
        200,
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300}),
    )
}

/// A code no other grant has: 128 random bits would do; a counter and the time do here.
fn new_code() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        crate::unix_now(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}
