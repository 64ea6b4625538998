//! The pipeline benchmark's lower bound: the least a TLS + JWT server can do per request.
//! hyper + rustls (aws-lc-rs) + jsonwebtoken, verifying the bearer token's signature and
//! standard claims on every request, then answering a fixed JSON body. No cache, no rate
//! limit, no logging, no metrics.
//!
//! Usage: skyport-lowerbound <listen> <cert.pem> <key.pem> <jwt-public.pem>
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const BODY: &str =
    r#"{"regions":[{"kind":"federated","name":"skyport","providers":[],"zones":[]}]}"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: skyport-lowerbound <listen> <cert.pem> <key.pem> <jwt-public.pem>");
        std::process::exit(2);
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&args[2])
        .expect("cert")
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&args[3]).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let decoding = Arc::new(DecodingKey::from_ec_pem(&std::fs::read(&args[4]).unwrap()).unwrap());
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&["skyport-dev"]);
    validation.set_audience(&["skyport"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let validation = Arc::new(validation);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args[1]).await.unwrap();
        eprintln!(
            "lower bound listening on {}",
            listener.local_addr().unwrap()
        );
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let decoding = Arc::clone(&decoding);
            let validation = Arc::clone(&validation);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let ok = req
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .map(|t| decode::<serde_json::Value>(t, &decoding, &validation).is_ok())
                        .unwrap_or(false);
                    let (status, body) = if ok { (200, BODY) } else { (401, "{}") };
                    let response = http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}
