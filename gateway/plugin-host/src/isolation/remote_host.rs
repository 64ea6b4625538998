//! `skyport plugin-host --serve FILE`: one plugin instance on this machine (a hypervisor's
//! `local-vmm`), served to every gateway replica that connects over TCP with mutual TLS.
//!
//! The host loads its library and configuration itself, at start, through the same loader
//! and ABI as the gateway. Each gateway connection is a session speaking the frames of a
//! local plugin process ([`super::wire`]): it names the instance (`Init`), is told what
//! the host serves (`Ready`), then starts and cancels calls. Call ids are the sessions'
//! own, mapped to ids unique in the host. The plugin's host calls are answered here for
//! `host.info@1` (its state and base directories are this machine's) and otherwise sent
//! to the longest-connected gateway; its logs go to this process's standard error and to
//! that gateway. A gateway that disconnects leaves the plugin serving the others.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use skyport_plugin_api::abi::{
    error_code, CompletionBox, CompletionSink, CompletionSink_TO, HostServices, HostServices_TO,
    LogLevel, MetricKind, OpRequest, OpResult, PluginBox, PluginError,
};
use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::connection::{lock, write_frames};
use super::wire::{self, FromChild, ToChild, WireResult};
use crate::host::host_info;
use crate::loader::{load_library, validate_config};

/// The host's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Where gateways connect (`host:port`).
    pub listen: String,
    /// Its TLS identity and the CA its gateways' certificates are checked against.
    pub tls: HostTls,
    /// The plugin it serves.
    pub plugin: HostedPlugin,
}

/// `[tls]` of the host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// The CA of the gateways' client certificates (PEM): a gateway without one of its
    /// certificates is refused in the handshake.
    pub client_ca: PathBuf,
}

/// `[plugin]` of the host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostedPlugin {
    /// Instance name (default: the plugin's own).
    pub name: Option<String>,
    /// The library.
    pub file: PathBuf,
    /// Its state directory on this machine.
    pub state_dir: PathBuf,
    /// Its configuration, validated against its schema.
    #[serde(default = "empty_table")]
    pub config: toml::Value,
}

fn empty_table() -> toml::Value {
    toml::Value::Table(Default::default())
}

/// The gateways connected now, and the calls and host calls between them and the plugin.
#[derive(Default)]
struct Sessions {
    next_session: AtomicU64,
    /// Each session's frame queue, by session id (the lowest is the longest connected).
    outboxes: Mutex<BTreeMap<u64, mpsc::UnboundedSender<Vec<u8>>>>,
    next_call: AtomicU64,
    /// Host-wide call id -> (session, the session's call id), while the call is in
    /// flight (a cancel looks its call up here: cancels are rare, the map small).
    calls: Mutex<HashMap<u64, (u64, u64)>>,
    next_host_call: AtomicU64,
    host_calls: Mutex<HashMap<u64, CompletionBox>>,
}

impl Sessions {
    fn send_to(&self, session: u64, message: &FromChild) {
        if let Some(outbox) = lock(&self.outboxes).get(&session) {
            let _ = outbox.send(wire::encode(message));
        }
    }

    /// Sends to the longest-connected gateway; false when none is connected.
    fn send_first(&self, message: &FromChild) -> bool {
        lock(&self.outboxes)
            .values()
            .next()
            .is_some_and(|outbox| outbox.send(wire::encode(message)).is_ok())
    }
}

/// Delivers one call's result to the session that made it.
struct SessionCompletion {
    global: u64,
    sessions: Arc<Sessions>,
}

impl CompletionSink for SessionCompletion {
    fn complete(&self, result: OpResult) {
        let Some((session, id)) = lock(&self.sessions.calls).remove(&self.global) else {
            return;
        };
        self.sessions.send_to(
            session,
            &FromChild::Complete {
                id,
                result: WireResult::from(result),
            },
        );
    }
}

/// The host services the served plugin sees.
struct ServedHost {
    name: String,
    state_dir: PathBuf,
    base_dir: PathBuf,
    sessions: Arc<Sessions>,
}

impl HostServices for ServedHost {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        eprintln!("{:?} {}: {}", level, self.name, message.as_str());
        self.sessions
            .send_first(&FromChild::log(level, target, message));
    }

    fn metric(&self, kind: MetricKind, name: RStr<'_>, value: f64, labels: RStr<'_>) {
        self.sessions
            .send_first(&FromChild::metric(kind, name, value, labels));
    }

    fn call(&self, request: OpRequest, completion: CompletionBox) {
        if (request.op.as_str(), request.version) == ("host.info", 1) {
            completion.complete(RResult::ROk(RString::from(host_info(
                "skyport plugin-host",
                &self.name,
                &self.state_dir,
                &self.base_dir,
            ))));
            return;
        }
        let id = self.sessions.next_host_call.fetch_add(1, Ordering::Relaxed);
        lock(&self.sessions.host_calls).insert(id, completion);
        let sent = self
            .sessions
            .send_first(&FromChild::host_call(id, &request));
        if !sent {
            if let Some(completion) = lock(&self.sessions.host_calls).remove(&id) {
                completion.complete(RResult::RErr(PluginError::new(
                    error_code::UNAVAILABLE,
                    "no gateway is connected to this plugin host",
                )));
            }
        }
    }
}

/// Reads `file`, loads its plugin, and serves it until terminated; the exit code.
pub fn run(file: &Path) -> i32 {
    let config: HostConfig = match std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|text| toml::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("skyport plugin-host: {}: {e}", file.display());
            return 2;
        }
    };
    let base_dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("skyport plugin-host: {e}");
            return 2;
        }
    };
    match runtime.block_on(serve(config, base_dir)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("skyport plugin-host: {e}");
            1
        }
    }
}

/// The TLS configuration that requires a client certificate from `tls.client_ca`.
fn server_tls(tls: &HostTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| format!("tls.cert {}: {e}", tls.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert {}: {e}", tls.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("tls.key {}: {e}", tls.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_file_iter(&tls.client_ca)
        .map_err(|e| format!("tls.client_ca {}: {e}", tls.client_ca.display()))?
    {
        roots
            .add(root.map_err(|e| format!("tls.client_ca: {e}"))?)
            .map_err(|e| format!("tls.client_ca: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| format!("tls.client_ca: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls.cert and tls.key: {e}"))?;
    Ok(Arc::new(config))
}

async fn serve(config: HostConfig, base_dir: PathBuf) -> Result<(), String> {
    let tls = server_tls(&config.tls)?;
    let plugin = config.plugin;
    let fallback = plugin.name.clone().unwrap_or_else(|| {
        plugin
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().trim_start_matches("lib").to_string())
            .unwrap_or_default()
    });
    let library = {
        let (file, fallback) = (plugin.file.clone(), fallback.clone());
        tokio::task::spawn_blocking(move || load_library(&file, &fallback, None))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|refusal| refusal.to_string())?
    };
    let name = plugin.name.clone().unwrap_or(library.manifest.name.clone());
    let config_json = serde_json::to_value(&plugin.config).map_err(|e| e.to_string())?;
    validate_config(&library.description.config_schema, &config_json)
        .map_err(|e| format!("plugin config: {e}"))?;
    std::fs::create_dir_all(&plugin.state_dir)
        .map_err(|e| format!("{}: {e}", plugin.state_dir.display()))?;
    let sessions = Arc::new(Sessions::default());
    let host = HostServices_TO::from_value(
        ServedHost {
            name: name.clone(),
            state_dir: plugin.state_dir.clone(),
            base_dir,
            sessions: Arc::clone(&sessions),
        },
        TD_Opaque,
    );
    let instantiate = library.module.instantiate();
    let config_text = config_json.to_string();
    let instance: PluginBox = tokio::task::spawn_blocking(move || {
        match instantiate(RStr::from(config_text.as_str()), host) {
            RResult::ROk(instance) => Ok(instance),
            RResult::RErr(e) => Err(format!("init failure: {e}")),
        }
    })
    .await
    .map_err(|e| e.to_string())??;
    let instance = Arc::new(instance);
    let ready = FromChild::Ready {
        manifest: library.manifest.clone(),
        description: Box::new(library.description.clone()),
        sha256: library.sha256.clone(),
    };
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", config.listen))?;
    eprintln!(
        "skyport plugin-host: serving {name} {} on {} (mutual TLS)",
        library.manifest.version, config.listen
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("skyport plugin-host: accept: {e}");
                    continue;
                }
            },
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let (acceptor, sessions, instance, ready) = (
            acceptor.clone(),
            Arc::clone(&sessions),
            Arc::clone(&instance),
            ready.clone(),
        );
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match acceptor.accept(tcp).await {
                Ok(stream) => session(stream, sessions, instance, ready).await,
                // A connection closed before any handshake is a port probe, not a peer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => eprintln!("skyport plugin-host: {peer} refused in the handshake: {e}"),
            }
        });
    }
    let stopping = Arc::clone(&instance);
    let _ = tokio::task::spawn_blocking(move || stopping.shutdown()).await;
    drop(library);
    Ok(())
}

/// Serves one gateway until it disconnects.
async fn session(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    sessions: Arc<Sessions>,
    instance: Arc<PluginBox>,
    ready: FromChild,
) {
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = BufReader::new(read_half);
    let (outbox, frames) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(write_half, frames));
    match wire::read_frame::<ToChild>(&mut reader).await {
        Ok(Some(ToChild::Init { .. })) => {}
        _ => return,
    }
    let _ = outbox.send(wire::encode(&ready));
    let id = sessions.next_session.fetch_add(1, Ordering::Relaxed);
    lock(&sessions.outboxes).insert(id, outbox);
    loop {
        match wire::read_frame::<ToChild>(&mut reader).await {
            Ok(Some(ToChild::Start {
                id: call,
                op,
                version,
                params,
                context,
                deadline_unix_ms,
            })) => {
                let global = sessions.next_call.fetch_add(1, Ordering::Relaxed);
                lock(&sessions.calls).insert(global, (id, call));
                let completion = CompletionSink_TO::from_value(
                    SessionCompletion {
                        global,
                        sessions: Arc::clone(&sessions),
                    },
                    TD_Opaque,
                );
                instance.start(
                    wire::op_request(global, op, version, params, context, deadline_unix_ms),
                    completion,
                );
            }
            Ok(Some(ToChild::Cancel { id: call })) => {
                let global = lock(&sessions.calls)
                    .iter()
                    .find(|(_, mine)| **mine == (id, call))
                    .map(|(global, _)| *global);
                if let Some(global) = global {
                    instance.cancel(global);
                }
            }
            Ok(Some(ToChild::HostReply {
                id: host_call,
                result,
            })) => {
                let waiting = lock(&sessions.host_calls).remove(&host_call);
                if let Some(completion) = waiting {
                    completion.complete(OpResult::from(result));
                }
            }
            Ok(Some(ToChild::Init { .. })) => {}
            // A gateway leaving (or stopping) ends its session, not the plugin.
            Ok(Some(ToChild::Shutdown)) | Ok(None) | Err(_) => break,
        }
    }
    lock(&sessions.outboxes).remove(&id);
    lock(&sessions.calls).retain(|_, (session, _)| *session != id);
}
