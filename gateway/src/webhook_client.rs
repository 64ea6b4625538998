//! The HTTPS client deliveries go out on: the system's roots plus `[webhooks] ca_file`,
//! a deadline per attempt, no redirects (a signed delivery goes where it was subscribed,
//! nowhere else), connections kept alive per endpoint (as many as were in flight).

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use skyport_core::config::Config;
use skyport_domain::events::dispatch::Transport;

/// Deliveries over reqwest (rustls).
pub struct HttpsTransport {
    client: reqwest::Client,
}

impl HttpsTransport {
    /// A client for `config`'s `[webhooks]`.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let webhooks = &config.webhooks;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(webhooks.timeout_secs))
            .connect_timeout(Duration::from_secs(webhooks.timeout_secs.min(10)))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .user_agent(concat!("skyport-webhooks/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = &webhooks.ca_file {
            let path = config.state_path(ca_file);
            let pem = std::fs::read(&path)
                .with_context(|| format!("webhooks.ca_file: reading {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "webhooks.ca_file: {} holds no PEM certificate",
                    path.display()
                )
            })?;
            anyhow::ensure!(
                !certs.is_empty(),
                "webhooks.ca_file: {} holds no PEM certificate",
                path.display()
            );
            builder = builder.tls_certs_merge(certs);
        }
        Ok(Self {
            client: builder.build().context("building the webhook client")?,
        })
    }
}

#[async_trait]
impl Transport for HttpsTransport {
    async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Result<u16, String> {
        let mut request = self.client.post(url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) if e.is_timeout() => Err("the endpoint did not answer in time".into()),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// `e` with its causes (a TLS refusal names the certificate problem).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
