//! `skyport serve`: the startup sequence and signal handling.
//!
//! Order: configuration -> logging -> state directory and development material -> TLS ->
//! JWT keys -> plugins -> regions -> tap -> listeners -> ready. SIGHUP reloads the server
//! certificate, client CA and JWT keys; SIGTERM or ctrl-c stops accepting, drains in-flight
//! requests up to the drain deadline, flushes the tap and shuts plugins down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use skyport_auth::jwt::JwtVerifier;
use skyport_core::clock::SystemClock;
use skyport_core::config::Config;
use skyport_core::metrics::Metrics;
use skyport_domain::metering_tap::forward_batches;
use skyport_plugin_host::PluginRegistry;

use crate::metrics_listener::{serve_metrics, Readiness};
use crate::tls::{dev_certs, ReloadableTls, TlsPaths};
use crate::wiring::Gateway;

/// Arguments of `skyport serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); default: the embedded configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (overrides server.state_dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// TLS listen address (overrides server.listen); port 0 picks a free port.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Metrics listen address (overrides server.metrics_listen).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Runs the gateway until it is told to stop.
pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    let mut config = super::load_config(args.config.as_deref(), args.state_dir.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(listen) = args.metrics_listen {
        config.server.metrics_listen = listen;
    }
    init_logging(&config.server.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skyport")
        .build()?;
    runtime.block_on(serve(config))
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKYPORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// The executable that hosts plugin processes and checks libraries: this one
/// (`skyport plugin-host`).
pub(super) fn plugin_host_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the skyport executable, which hosts plugins")
}

/// Where first-party plugins are looked up: the directory holding this executable.
pub(super) fn plugin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

async fn serve(config: Config) -> anyhow::Result<i32> {
    let clock = SystemClock::shared();
    let state_dir = config.server.state_dir.clone();
    // Created private (0700): it holds the database, keys and ledgers. One that exists is
    // left as its operator made it.
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    }
    let certs_dir = state_dir.join("certs");
    let needs_dev = config.tls.cert.is_none() || config.auth.jwt.keys.is_empty();
    if needs_dev {
        let material = dev_certs::ensure(&certs_dir, &config.auth.mtls.trust_domain)
            .context("creating development certificates")?;
        if !material.created.is_empty() {
            tracing::info!(dir = %certs_dir.display(), files = ?material.created, "created development certificates and keys");
        }
    }
    let tls_paths = tls_paths(&config, &certs_dir)?;
    let tls = Arc::new(ReloadableTls::load(tls_paths.clone()).context("loading TLS material")?);

    let metrics = Arc::new(Metrics::new());
    let (gateway, tap_receiver) = Gateway::build(
        config,
        &plugin_dir(),
        &plugin_host_exe()?,
        Arc::clone(&metrics),
        clock,
    )
    .await?;
    let gateway = Arc::new(gateway);
    let config = Arc::clone(&gateway.services.config);
    let plugins = Arc::clone(&gateway.services.plugins);
    let jwt = Arc::clone(&gateway.jwt);
    let forwarder = tokio::spawn(forward_batches(tap_receiver, config.tap.batch_max_events));

    // The ports are bound once plugins and regions are loaded: until then a connection is
    // refused rather than left hanging behind a JWKS fetch or a plugin's start.
    let (listener, metrics_listener) = match bind_both(&config).await {
        Ok(bound) => bound,
        Err(e) => {
            // The plugins were started: they are stopped as on any shutdown.
            plugins.shutdown().await;
            return Err(e);
        }
    };
    let api_addr = listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let readiness = Arc::new(Readiness::default());
    let metrics_task = tokio::spawn(serve_metrics(
        metrics_listener,
        Arc::clone(&metrics),
        Arc::clone(&readiness),
        shutdown_rx.clone(),
    ));
    let retain_task = {
        let gateway = Arc::clone(&gateway);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                gateway.stack.limiter.retain_recent();
            }
        })
    };
    let limits_upkeep = gateway.stack.limiter.spawn_shared_upkeep();
    let probe_task = tokio::spawn(Arc::clone(&plugins).probe_every(Duration::from_secs(
        config.server.health_probe_interval_secs,
    )));
    // Creates and deployments an earlier run left unfinished: the cutoff is taken before
    // the listener serves (so none of them is in flight), resolved in the background.
    let recovery_task =
        crate::recovery::spawn(Arc::clone(&gateway.services), config.storage.backend);
    let sync_task =
        Arc::clone(&gateway.sync).spawn(Duration::from_secs(config.inventory.sync_interval_secs));
    let lease_task = Arc::clone(&gateway.services.instances)
        .spawn_lease_upkeep(Duration::from_secs(config.inventory.lease_check_secs));
    let dispatch_task =
        Arc::clone(&gateway.dispatcher).spawn(Arc::clone(&gateway.leases), gateway.replica.clone());
    let sla = &gateway.services.sla;
    let sites = gateway
        .services
        .regions
        .sites()
        .map(|(p, r)| (p.to_string(), r.to_string()))
        .collect();
    let health_events = skyport_domain::events::health::HealthWatch::new(
        Arc::clone(&plugins) as Arc<dyn skyport_plugin_host::Plugins>,
        Arc::clone(&gateway.services.events),
        gateway.replica.clone(),
    )
    .with_sla(Arc::clone(sla.recorder()), sites)
    .spawn(Duration::from_secs(
        config.server.health_probe_interval_secs,
    ));
    let sla_flush = Arc::clone(sla.recorder()).spawn(Duration::from_secs(15));
    let sla_breaches = Arc::clone(sla).spawn_breach_watch(
        Arc::clone(&gateway.services.events),
        Arc::clone(&gateway.leases),
        gateway.replica.clone(),
        Duration::from_secs(60),
    );
    let budget_task = Arc::clone(&gateway.services.budgets).spawn_threshold_watch(
        Arc::clone(&gateway.services.events),
        Arc::clone(&gateway.leases),
        gateway.replica.clone(),
        Duration::from_secs(config.inventory.budget_check_secs),
    );
    let catalog_task = crate::catalog_refresh::spawn(
        Arc::clone(&gateway.services.catalog),
        config.storage.backend,
    );
    let server = tokio::spawn(crate::server::serve_tls(
        listener,
        Arc::clone(&gateway),
        Arc::clone(&tls),
        shutdown_rx,
        Duration::from_secs(config.server.drain_timeout_secs),
    ));

    // The handlers are in place before anyone learns where the gateway listens: a SIGTERM
    // sent as soon as it is ready drains and stops it, rather than killing it.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    write_listen_file(&state_dir, api_addr, metrics_addr)?;
    readiness.set(true);
    print_banner(
        &config,
        &state_dir,
        &tls_paths,
        api_addr,
        metrics_addr,
        &plugins,
    );
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                reload(&tls, &jwt);
                tokio::spawn(reload_changed_plugins(Arc::clone(&plugins)));
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down: no new connections; draining");
    readiness.set(false);
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    // Writes whose clients went away run on: the plugins stop only once they are done.
    gateway.writes.close();
    if tokio::time::timeout(
        Duration::from_secs(config.server.drain_timeout_secs),
        gateway.writes.wait(),
    )
    .await
    .is_err()
    {
        tracing::warn!(
            left = gateway.writes.len(),
            "writes still running at the drain deadline were stopped"
        );
    }
    retain_task.abort();
    if let Some(upkeep) = limits_upkeep {
        upkeep.abort();
    }
    probe_task.abort();
    sync_task.abort();
    lease_task.abort();
    dispatch_task.abort();
    health_events.abort();
    sla_flush.abort();
    sla_breaches.abort();
    if let Err(e) = gateway.services.sla.recorder().flush(true).await {
        tracing::warn!(error = %e.public, "the last SLA samples could not be written");
    }
    budget_task.abort();
    recovery_task.abort();
    if let Some(task) = catalog_task {
        task.abort();
    }
    let _ = metrics_task.await;
    // The tap's senders go with the gateway, which lets the forwarder finish.
    drop(gateway);
    if tokio::time::timeout(Duration::from_secs(10), forwarder)
        .await
        .is_err()
    {
        tracing::warn!("metering tap flush did not finish in 10 s");
    }
    plugins.shutdown().await;
    let _ = std::fs::remove_file(state_dir.join(LISTEN_FILE));
    tracing::info!("stopped");
    Ok(0)
}

/// The API and metrics listeners, bound to the configured addresses.
async fn bind_both(config: &Config) -> anyhow::Result<(TcpListener, TcpListener)> {
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let metrics_listener = TcpListener::bind(config.server.metrics_listen)
        .await
        .with_context(|| format!("binding {}", config.server.metrics_listen))?;
    Ok((listener, metrics_listener))
}

/// The server certificate, key and client CA: configured, or the development ones.
fn tls_paths(config: &Config, certs_dir: &Path) -> anyhow::Result<TlsPaths> {
    let client_ca = config
        .tls
        .client_ca
        .as_deref()
        .map(|p| config.state_path(p));
    Ok(match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => TlsPaths {
            cert: config.state_path(cert),
            key: config.state_path(key),
            client_ca,
        },
        (None, None) => TlsPaths {
            cert: certs_dir.join(dev_certs::files::SERVER),
            key: certs_dir.join(dev_certs::files::SERVER_KEY),
            client_ca: Some(client_ca.unwrap_or_else(|| certs_dir.join(dev_certs::files::CA))),
        },
        _ => anyhow::bail!("tls: set both cert and key, or neither (development certificates)"),
    })
}

fn reload(tls: &ReloadableTls, jwt: &JwtVerifier) {
    match tls.reload() {
        Ok(()) => tracing::info!("SIGHUP: TLS certificate and client CA reloaded"),
        Err(e) => tracing::error!(
            error = format!("{e:#}"),
            "SIGHUP: TLS reload refused; the previous certificate stays in use"
        ),
    }
    match jwt.reload() {
        Ok(()) => tracing::info!("SIGHUP: JWT keys reloaded"),
        Err(e) => tracing::error!(
            error = format!("{e:#}"),
            "SIGHUP: JWT key reload refused; the previous keys stay in use"
        ),
    }
}

/// SIGHUP for plugins: each whose file's bytes changed is reloaded (the old version keeps
/// serving when the new one is refused or unhealthy).
async fn reload_changed_plugins(plugins: Arc<skyport_plugin_host::PluginRegistry>) {
    use skyport_plugin_host::registry::Reloaded;
    for name in plugins.plugins().iter().map(|p| p.name.clone()) {
        match plugins.reload(&name, true).await {
            Ok(Reloaded::Unchanged) => {}
            Ok(Reloaded::Replaced { version, .. }) => {
                tracing::info!(plugin = %name, %version, "SIGHUP: plugin reloaded")
            }
            Err(e) => tracing::error!(
                plugin = %name,
                "SIGHUP: plugin reload refused; the running version keeps serving: {e}"
            ),
        }
    }
}

/// File in the state directory naming the bound addresses (port 0 resolves here).
pub const LISTEN_FILE: &str = "listen.json";

fn write_listen_file(
    state_dir: &Path,
    api: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let body = serde_json::json!({"api": api.to_string(), "metrics": metrics.to_string(), "pid": std::process::id()});
    let tmp = state_dir.join(format!("{LISTEN_FILE}.tmp"));
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(tmp, state_dir.join(LISTEN_FILE))?;
    Ok(())
}

fn print_banner(
    config: &Config,
    state_dir: &Path,
    tls: &TlsPaths,
    api: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
    plugins: &PluginRegistry,
) {
    let ca = tls
        .client_ca
        .clone()
        .unwrap_or_else(|| state_dir.join("certs").join(dev_certs::files::CA));
    let state_flag = if config.server.state_dir == Path::new("./var") {
        String::new()
    } else {
        format!(" --state-dir {}", state_dir.display())
    };
    eprintln!(
        "skyport {} listening on https://{api} (metrics on http://{metrics}/metrics)",
        env!("CARGO_PKG_VERSION")
    );
    eprintln!(
        "  certificates and keys: {}",
        state_dir.join("certs").display()
    );
    eprintln!(
        "  plugins: {} loaded, {} refused",
        plugins.plugins().len(),
        plugins.refusals().len()
    );
    let exe = std::env::args().next().unwrap_or_else(|| "skyport".into());
    eprintln!(
        "  try: curl --cacert {} -H \"Authorization: Bearer $({exe} token --tenant demo{state_flag})\" https://{api}/v1/whoami",
        ca.display()
    );
}
