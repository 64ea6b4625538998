//! The gateway's side of a plugin host on another machine (`isolation = "remote"`): one
//! TCP connection with mutual TLS to `skyport plugin-host --serve`, speaking the same
//! frames as a local plugin process ([`super::wire`]).
//!
//! A [`RemotePlugin`] fails fast while its host is out of reach: the calls in flight
//! when the connection drops fail at once (`UNAVAILABLE`, retryable), new calls fail
//! without waiting, and the instance reports unhealthy with the reason. It connects again
//! with a growing pause (0.5 s to 5 s) and reports healthy once its host answers.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use skyport_plugin_api::abi::{error_code, OpRequest, PluginError};
use skyport_plugin_api::sdk::CompletionReceiver;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::connection::{lock, relay, start_call_on, write_frames, Connection, Ended};
use super::supervisor::{Loaded, START_TIMEOUT};
use super::wire::{Limits, Purpose, ToChild};
use crate::health::HealthCell;
use crate::host::GatewayHost;

/// How long connecting (TCP and the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between two attempts to reach a host that is out of reach.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Where a remote plugin's host is, and how to trust it and be trusted by it.
#[derive(Clone)]
pub struct RemoteSpec {
    /// Instance name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// The name the host's certificate must carry.
    pub server_name: ServerName<'static>,
    /// Roots and this gateway's client identity.
    pub tls: Arc<rustls::ClientConfig>,
}

impl RemoteSpec {
    /// A spec for `name` at `address`, the host's certificate checked against `ca` and
    /// for `server_name` (default: the host part of `address`), this gateway presenting
    /// `cert` and `key`.
    pub fn from_files(
        name: &str,
        address: &str,
        server_name: Option<&str>,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for root in CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("remote.ca {}: {e}", ca.display()))?
        {
            let root = root.map_err(|e| format!("remote.ca {}: {e}", ca.display()))?;
            roots
                .add(root)
                .map_err(|e| format!("remote.ca {}: {e}", ca.display()))?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| format!("remote.cert {}: {e}", cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("remote.cert {}: {e}", cert.display()))?;
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("remote.key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, private)
            .map_err(|e| format!("remote.cert and remote.key: {e}"))?;
        let host = server_name.map_or_else(
            || {
                address
                    .rsplit_once(':')
                    .map_or(address, |(host, _)| host)
                    .trim_matches(['[', ']'])
                    .to_string()
            },
            str::to_string,
        );
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| format!("remote: '{host}' is not a host name or address"))?;
        Ok(Self {
            name: name.to_string(),
            address: address.to_string(),
            server_name,
            tls: Arc::new(tls),
        })
    }
}

/// A live connection to the host and the task reading it.
struct Link {
    connection: Arc<Connection>,
    relay: tokio::task::JoinHandle<Ended>,
}

/// Connects to `spec`'s host and waits for its `Ready`: what it serves.
async fn connect(spec: &RemoteSpec, host: Arc<GatewayHost>) -> Result<(Link, Loaded), String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&spec.address))
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&spec.tls));
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        connector.connect(spec.server_name.clone(), tcp),
    )
    .await
    .map_err(|_| format!("no TLS handshake within {CONNECT_TIMEOUT:?}"))?
    .map_err(|e| format!("TLS: {e}"))?;
    let (read_half, write_half) = tokio::io::split(stream);
    let (first_tx, first_rx) = oneshot::channel();
    let (frames_tx, frames_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(write_half, frames_rx));
    let connection = Connection::new(frames_tx, first_tx, None);
    let relay = tokio::spawn(relay(read_half, Arc::clone(&connection), Some(host)));
    // The host serves the library and configuration it was started with: the gateway
    // names only the instance.
    connection.send(&ToChild::Init {
        purpose: Purpose::Serve,
        name: spec.name.clone(),
        file: String::new(),
        sha256: None,
        config: "{}".into(),
        state_dir: String::new(),
        limits: Limits::default(),
    });
    let answer = tokio::time::timeout(START_TIMEOUT, first_rx).await;
    let loaded = match answer {
        Ok(Ok(Ok(loaded))) => loaded,
        Ok(Ok(Err((_, _, reason)))) => Err(format!("the plugin host refused: {reason}"))?,
        Ok(Err(_)) => Err("the plugin host closed the connection".to_string())?,
        Err(_) => Err(format!(
            "the plugin host did not answer within {START_TIMEOUT:?}"
        ))?,
    };
    Ok((Link { connection, relay }, loaded))
}

/// One plugin instance served by a plugin host on another machine.
pub struct RemotePlugin {
    spec: RemoteSpec,
    current: ArcSwapOption<Connection>,
    health: ArcSwap<HealthCell>,
    host: Arc<GatewayHost>,
    stopping: AtomicBool,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RemotePlugin {
    /// Connects to the host and returns what it serves, with the connection watched (and
    /// made again when lost) from then on. A host out of reach now is a refusal: what it
    /// serves is not known.
    pub async fn start(
        spec: RemoteSpec,
        health: Arc<HealthCell>,
        host: GatewayHost,
    ) -> Result<(Arc<Self>, Loaded), String> {
        let host = Arc::new(host);
        let (link, loaded) = connect(&spec, Arc::clone(&host))
            .await
            .map_err(|e| format!("plugin host at {}: {e}", spec.address))?;
        let plugin = Arc::new(Self {
            spec,
            current: ArcSwapOption::new(Some(Arc::clone(&link.connection))),
            health: ArcSwap::new(health),
            host,
            stopping: AtomicBool::new(false),
            supervisor: Mutex::new(None),
        });
        let supervisor = tokio::spawn(Arc::clone(&plugin).supervise(link));
        *lock(&plugin.supervisor) = Some(supervisor);
        Ok((plugin, loaded))
    }

    /// Sends a call; fails at once while the host is out of reach.
    pub fn start_call(
        &self,
        request: &OpRequest,
        timeout: Duration,
    ) -> Result<CompletionReceiver, PluginError> {
        let unavailable = || {
            PluginError::new(
                error_code::UNAVAILABLE,
                format!(
                    "plugin '{}' is unreachable: its plugin host at {} does not answer",
                    self.spec.name, self.spec.address
                ),
            )
            .retryable()
        };
        start_call_on(self.current.load_full(), request, timeout, unavailable)
    }

    /// From now on connection losses are reported to `health`.
    pub fn report_health_to(&self, health: Arc<HealthCell>) {
        self.health.store(health);
    }

    /// Asks the plugin to stop work on call `id`.
    pub fn cancel(&self, id: u64) {
        Connection::cancel_on(self.current.load_full(), id);
    }

    /// Leaves the host: the connection closes and is not made again. The host and its
    /// plugin keep serving the other gateways.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(connection) = self.current.swap(None) {
            connection.fail_all(|op| {
                PluginError::new(
                    error_code::UNAVAILABLE,
                    format!("the gateway is stopping; {op} was abandoned"),
                )
            });
        }
        if let Some(supervisor) = lock(&self.supervisor).take() {
            supervisor.abort();
        }
    }

    /// Watches the connection; when it is lost, fails what was in flight and connects
    /// again until it succeeds or the gateway stops.
    async fn supervise(self: Arc<Self>, first: Link) {
        let mut link = Some(first);
        let mut pause = Duration::from_millis(500);
        loop {
            if let Some(Link { connection, relay }) = link.take() {
                let ended = relay.await.unwrap_or(Ended::Stream);
                self.current.store(None);
                let (name, address) = (self.spec.name.clone(), self.spec.address.clone());
                let in_flight = connection.fail_all(|op| {
                    PluginError::new(
                        error_code::UNAVAILABLE,
                        format!(
                            "plugin '{name}' lost its plugin host at {address} while serving {op}"
                        ),
                    )
                    .retryable()
                });
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let why = match ended {
                    Ended::Stream => "the connection was lost".to_string(),
                    Ended::Stuck(op) => format!("{op} stayed unanswered past its deadline"),
                };
                tracing::error!(plugin = %self.spec.name, address = %self.spec.address,
                    ops_in_flight = ?in_flight, "plugin host unreachable: {why}");
                self.health.load().set(
                    false,
                    Some(format!(
                        "plugin host at {} unreachable: {why}",
                        self.spec.address
                    )),
                );
                pause = Duration::from_millis(500);
            }
            tokio::time::sleep(pause).await;
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            match connect(&self.spec, Arc::clone(&self.host)).await {
                Ok((connected, _)) => {
                    self.current.store(Some(Arc::clone(&connected.connection)));
                    tracing::info!(plugin = %self.spec.name, address = %self.spec.address,
                        "plugin host reachable again");
                    self.health.load().set(true, None);
                    link = Some(connected);
                }
                Err(e) => {
                    self.health.load().set(
                        false,
                        Some(format!(
                            "plugin host at {} unreachable: {e}",
                            self.spec.address
                        )),
                    );
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }
}
