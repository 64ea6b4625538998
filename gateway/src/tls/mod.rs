//! TLS termination: the rustls server configuration (aws-lc-rs), optional mTLS on the same
//! port, and reload on SIGHUP without dropping connections.
//!
//! Each accepted connection takes the configuration current at accept time; a reload swaps
//! it for new connections only. A bad new file is refused and the old configuration stays.

pub mod dev_certs;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the server's TLS material lives.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Client CA (PEM); `None` disables mTLS.
    pub client_ca: Option<PathBuf>,
}

/// The crypto provider used everywhere in the gateway.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a server configuration from files.
pub fn build_server_config(paths: &TlsPaths) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.cert)
        .with_context(|| format!("reading certificate {}", paths.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificate {}", paths.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", paths.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&paths.key)
        .with_context(|| format!("reading private key {}", paths.key.display()))?;
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &paths.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading client CA {}", ca.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("parsing client CA {}", ca.display()))?)
                    .with_context(|| format!("client CA {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The current server configuration, swappable at run time.
pub struct ReloadableTls {
    paths: TlsPaths,
    current: ArcSwap<ServerConfig>,
}

impl ReloadableTls {
    /// Loads the configuration once; fails if the files are bad.
    pub fn load(paths: TlsPaths) -> anyhow::Result<Self> {
        let config = build_server_config(&paths)?;
        Ok(Self {
            paths,
            current: ArcSwap::new(config),
        })
    }

    /// An acceptor with the configuration current now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Rebuilds from the same paths; on error the old configuration stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = build_server_config(&self.paths)?;
        self.current.store(config);
        Ok(())
    }

    /// Whether client certificates are requested.
    pub fn mtls_enabled(&self) -> bool {
        self.paths.client_ca.is_some()
    }
}
