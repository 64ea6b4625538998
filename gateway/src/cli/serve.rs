//! `skyport serve`: the startup sequence and signal handling.
//!
//! Order: configuration -> logging -> state directory and development material -> TLS ->
//! JWT keys -> plugins -> regions -> tap -> listeners -> ready. SIGHUP reloads the server
//! certificate, client CA and JWT keys; SIGTERM or ctrl-c stops accepting, drains in-flight
//! requests up to the drain deadline, flushes the tap and shuts plugins down.

use skyport_plugin_host::Plugins as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::native::{RegionView, FEDERATED_REGION};
use crate::auth::jwt::JwtVerifier;
use crate::auth::{Authenticator, TenantDirectory};
use crate::cache::ResponseCache;
use crate::config::{Config, JwtKeyConfig};
use crate::limit::TenantRateLimiter;
use crate::metering_tap::{forward_batches, MeteringTap};
use crate::metrics::Metrics;
use crate::metrics_listener::{serve_metrics, Readiness};
use crate::plugins::PluginRegistry;
use crate::state::AppState;
use crate::tls::{dev_certs, ReloadableTls, TlsPaths};
use skyport_plugin_api::ops::{Region, REGIONS};
use skyport_plugin_api::sdk::CallContext;

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
    let mut config = match &args.config {
        Some(path) => crate::config_check::load(path)
            .map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?,
        None => Config::embedded(),
    };
    if let Some(dir) = args.state_dir {
        config.server.state_dir = dir;
    }
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

/// Where first-party plugins are looked up: the directory holding this executable.
pub(super) fn plugin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

async fn serve(config: Config) -> anyhow::Result<i32> {
    let clock = crate::clock::SystemClock::shared();
    let state_dir = config.server.state_dir.clone();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let certs_dir = state_dir.join("certs");
    let needs_dev = config.tls.cert.is_none() || config.auth.jwt.keys.is_empty();
    if needs_dev {
        let material = dev_certs::ensure(&certs_dir, &config.auth.mtls.trust_domain)
            .context("creating development certificates")?;
        if !material.created.is_empty() {
            tracing::info!(dir = %certs_dir.display(), files = ?material.created, "created development certificates and keys");
        }
    }

    let tls_paths = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => TlsPaths {
            cert: config.state_path(cert),
            key: config.state_path(key),
            client_ca: config
                .tls
                .client_ca
                .as_deref()
                .map(|p| config.state_path(p)),
        },
        (None, None) => TlsPaths {
            cert: certs_dir.join(dev_certs::files::SERVER),
            key: certs_dir.join(dev_certs::files::SERVER_KEY),
            client_ca: Some(
                config
                    .tls
                    .client_ca
                    .as_deref()
                    .map(|p| config.state_path(p))
                    .unwrap_or_else(|| certs_dir.join(dev_certs::files::CA)),
            ),
        },
        _ => anyhow::bail!("tls: set both cert and key, or neither (development certificates)"),
    };
    let tls = Arc::new(ReloadableTls::load(tls_paths.clone()).context("loading TLS material")?);

    let key_sources: Vec<JwtKeyConfig> = if config.auth.jwt.keys.is_empty() {
        vec![JwtKeyConfig {
            kid: Some(dev_certs::DEV_JWT_KID.to_string()),
            algorithm: Some("ES256".to_string()),
            pem: Some(certs_dir.join(dev_certs::files::JWT_PUBLIC)),
            jwks_file: None,
            jwks_url: None,
        }]
    } else {
        config
            .auth
            .jwt
            .keys
            .iter()
            .map(|k| JwtKeyConfig {
                pem: k.pem.as_deref().map(|p| config.state_path(p)),
                jwks_file: k.jwks_file.as_deref().map(|p| config.state_path(p)),
                ..k.clone()
            })
            .collect()
    };
    let jwt = Arc::new(
        JwtVerifier::new(&config.auth.jwt, key_sources, clock.clone())
            .context("loading JWT keys")?,
    );
    jwt.prefetch().await;

    let metrics = Arc::new(Metrics::new());
    let plugins = Arc::new(
        PluginRegistry::load_all(
            &config.plugins,
            &plugin_dir(),
            &state_dir,
            Arc::clone(&metrics),
            clock.clone(),
        )
        .await
        .map_err(|refusal| anyhow::anyhow!("{refusal} (required = true)"))?,
    );
    let regions = gather_regions(&plugins).await;
    for (tenant, t) in &config.tenants {
        if let Some(region) = &t.default_region {
            if !regions
                .iter()
                .any(|r| r.kind == "provider" && &r.name == region)
            {
                tracing::warn!(tenant = %tenant, region = %region, "tenants.{tenant}.default_region names no provider region served now; its raw requests are placed as if it were not set");
            }
        }
    }

    let (tap, tap_rx) = MeteringTap::new(
        config.tap.queue_capacity,
        Arc::clone(&plugins),
        Arc::clone(&metrics),
    );
    let forwarder = tokio::spawn(forward_batches(tap_rx, config.tap.batch_max_events));

    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let metrics_listener = TcpListener::bind(config.server.metrics_listen)
        .await
        .with_context(|| format!("binding {}", config.server.metrics_listen))?;
    let api_addr = listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;

    let inventory =
        crate::inventory::Inventory::open(&state_dir).context("opening the inventory")?;
    let access_keys = Arc::new(crate::auth::access_keys::AccessKeys::new(
        Arc::new(
            skyport_store_sqlite::SqliteAccessKeys::open(&state_dir)
                .context("opening the access keys")?,
        ),
        clock.clone(),
    ));
    let key_pairs = crate::operations::keypairs::KeyPairStore::open(&state_dir)
        .context("opening the key pairs")?;
    let placements = crate::placement::audit::PlacementAudit::open(&state_dir)
        .context("opening the placement audit")?;
    let deployments = crate::operations::deployments::DeploymentStore::open(&state_dir)
        .context("opening the deployments")?;
    let rules =
        crate::placement::rules::RuleSet::compile(&config.placement.rules, "placement.rules")
            .map_err(|errors| anyhow::anyhow!(crate::config::ConfigErrors(errors)))?;
    for (rule, provider) in rules.named_providers() {
        if plugins.get(provider).is_none() {
            tracing::warn!(
                rule,
                provider,
                "a placement rule names a provider that is not loaded"
            );
        }
    }
    let catalog_store = crate::catalog::store::CatalogStore::open(&state_dir)
        .context("opening the catalog changes")?;
    let catalog = arc_swap::ArcSwap::from_pointee(effective_catalog(&config, &catalog_store)?);
    let config = Arc::new(config);
    let state = Arc::new(AppState {
        catalog,
        catalog_store,
        catalog_writes: tokio::sync::Mutex::new(()),
        rules,
        deployments,
        inventory,
        auth: Authenticator::new(
            Arc::clone(&jwt),
            config.auth.mtls.admin_services.clone(),
            Arc::clone(&access_keys),
            Duration::from_secs(config.auth.sigv4.max_skew_secs),
            clock.clone(),
        ),
        access_keys,
        key_pairs,
        placements,
        tenants: TenantDirectory::new(config.tenants.clone()),
        limiter: TenantRateLimiter::from_config(&config),
        cache: ResponseCache::new(config.cache.max_entries),
        plugins: Arc::clone(&plugins),
        regions,
        tap,
        metrics: Arc::clone(&metrics),
        tls: Arc::clone(&tls),
        config: Arc::clone(&config),
    });

    plugins.bind_host_ops(Arc::new(crate::host_ops::GatewayHostOps(Arc::downgrade(
        &state,
    ))));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let readiness = Arc::new(Readiness::default());
    let metrics_task = tokio::spawn(serve_metrics(
        metrics_listener,
        Arc::clone(&metrics),
        Arc::clone(&readiness),
        shutdown_rx.clone(),
    ));
    let retain_task = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.limiter.retain_recent();
            }
        })
    };
    // Health probes: every plugin answers `health@1` every
    // `server.health_probe_interval_secs`; an unhealthy plugin (also one whose circuit a
    // panic opened) serves again once it answers healthy.
    let probe_task = {
        let plugins = Arc::clone(&plugins);
        let interval = Duration::from_secs(config.server.health_probe_interval_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                for plugin in plugins.plugins() {
                    plugins.probe(plugin).await;
                }
            }
        })
    };
    let sync_task = crate::inventory::sync::spawn(
        Arc::clone(&state),
        Duration::from_secs(config.inventory.sync_interval_secs),
    );
    let server = tokio::spawn(crate::server::serve_tls(
        listener,
        Arc::clone(&state),
        shutdown_rx,
        Duration::from_secs(config.server.drain_timeout_secs),
    ));

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

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&tls, &jwt),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down: no new connections; draining");
    readiness.set(false);
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    retain_task.abort();
    probe_task.abort();
    sync_task.abort();
    let _ = metrics_task.await;
    drop(state);
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

async fn gather_regions(plugins: &PluginRegistry) -> Vec<RegionView> {
    let mut regions: Vec<RegionView> = Vec::new();
    for plugin in plugins.plugins() {
        if plugin.manifest.kind != "provider" || !plugin.ops.iter().any(|o| o == "regions@1") {
            continue;
        }
        let answer = plugins
            .call(
                &plugin.name,
                REGIONS,
                1,
                serde_json::json!({}),
                CallContext::default(),
                Duration::from_secs(10),
            )
            .await
            .and_then(|v| {
                serde_json::from_value::<Vec<Region>>(v)
                    .map_err(crate::error::GatewayError::internal)
            });
        match answer {
            Ok(list) => {
                for region in list {
                    match regions.iter_mut().find(|r| r.name == region.name) {
                        Some(existing) => existing.providers.push(plugin.name.clone()),
                        None => regions.push(RegionView {
                            name: region.name,
                            kind: "provider",
                            providers: vec![plugin.name.clone()],
                            zones: region.zones,
                        }),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(plugin = %plugin.name, error = %e.public, cause = ?e.cause, "regions unavailable")
            }
        }
    }
    let all: Vec<String> = plugins
        .plugins()
        .iter()
        .filter(|p| p.manifest.kind == "provider")
        .map(|p| p.name.clone())
        .collect();
    regions.insert(
        0,
        RegionView {
            name: FEDERATED_REGION.to_string(),
            kind: "federated",
            providers: all,
            zones: Vec::new(),
        },
    );
    regions
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

/// The configuration's catalog with the administrators' stored changes laid over it. When
/// the changes no longer fit the configuration (it was edited since), the configuration's
/// catalog alone is served, and the problems are logged with their key paths.
fn effective_catalog(
    config: &crate::config::Config,
    store: &crate::catalog::store::CatalogStore,
) -> anyhow::Result<crate::catalog::Catalog> {
    let configured = crate::catalog::Catalog::from_config(config);
    let changes = store.load().context("reading the catalog changes")?;
    if changes.is_empty() {
        return Ok(configured);
    }
    let mut overlaid = configured.clone();
    let problems = match changes.iter().try_for_each(|c| overlaid.apply(c)) {
        Ok(()) => crate::catalog::validate(&overlaid, &config.tenants),
        Err(e) => vec![e],
    };
    if problems.is_empty() {
        tracing::info!(
            changes = changes.len(),
            "catalog changes from the admin API applied"
        );
        return Ok(overlaid);
    }
    for p in &problems {
        tracing::error!(path = %p.path, problem = %p.message,
            "the admin API's catalog changes no longer fit the configuration");
    }
    tracing::error!("serving the configuration's catalog alone; fix the changes through /admin/blueprints, /admin/offerings or /admin/plans");
    Ok(configured)
}
