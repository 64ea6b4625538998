//! An HTTPS webhook endpoint of the test's own: a CA and a certificate for 127.0.0.1
//! made for it, every request recorded, and a switch that takes it off the network and
//! back on the same port (an endpoint that is down for a while).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its path.
    pub path: String,
    /// Its headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// Its body.
    pub body: String,
}

/// A running (or switched off) HTTPS endpoint.
pub struct WebhookReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The PEM file of the CA its certificate chains to (`[webhooks] ca_file`).
    pub ca_file: PathBuf,
    acceptor: TlsAcceptor,
    received: Arc<Mutex<Vec<Received>>>,
    serving: Option<JoinSet<()>>,
}

impl WebhookReceiver {
    /// Makes the TLS material in `dir` and starts listening on a free loopback port.
    pub async fn start(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let ca_file = dir.join("webhook-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &issuer).unwrap();
        let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut receiver = Self {
            addr: listener.local_addr().unwrap(),
            ca_file,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            received: Arc::default(),
            serving: None,
        };
        receiver.serve(listener);
        receiver
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let mut set = JoinSet::new();
        let (acceptor, received) = (self.acceptor.clone(), Arc::clone(&self.received));
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let held = Arc::clone(&connections);
        set.spawn(async move {
            let _held = held;
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, received) = (acceptor.clone(), Arc::clone(&received));
                connections.lock().await.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let received = Arc::clone(&received);
                            async move {
                                let path = request.uri().path().to_string();
                                let headers = request
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_string(),
                                            v.to_str().unwrap_or("").to_string(),
                                        )
                                    })
                                    .collect();
                                let body = request.into_body().collect().await?.to_bytes();
                                received.lock().unwrap().push(Received {
                                    path,
                                    headers,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                });
                                Ok::<_, hyper::Error>(
                                    hyper::Response::builder()
                                        .status(204)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        self.serving = Some(set);
    }

    /// Closes the port and every open connection: senders get connection refused.
    pub fn down(&mut self) {
        if let Some(mut set) = self.serving.take() {
            set.abort_all();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// How many requests arrived, at any path.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// What arrived at `path`, in order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

/// Checks `received`'s Standard Webhooks signature under `secret` (`whsec_...`) and
/// that its timestamp is within five minutes of now, as a receiver must; returns the
/// body as JSON.
pub fn verify(secret: &str, received: &Received) -> Result<Value, String> {
    let header = |name: &str| {
        received
            .headers
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no {name} header"))
    };
    let (id, timestamp, signatures) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let sent: u64 = timestamp.parse().map_err(|_| "bad timestamp".to_string())?;
    if sent.abs_diff(crate::unix_now()) > 300 {
        return Err(format!("timestamp {sent} is too far from now"));
    }
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").ok_or("not a whsec_ secret")?)
        .map_err(|e| e.to_string())?;
    let matches = signatures.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| STANDARD.decode(b).ok())
            .is_some_and(|given| {
                let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                mac.update(format!("{id}.{timestamp}.{}", received.body).as_bytes());
                mac.verify_slice(&given).is_ok()
            })
    });
    if !matches {
        return Err("no signature matches".into());
    }
    let body: Value = serde_json::from_str(&received.body).map_err(|e| e.to_string())?;
    if body["id"] != id.as_str() {
        return Err(format!(
            "webhook-id {id} is not the event's id {}",
            body["id"]
        ));
    }
    Ok(body)
}
