//! `skyport bill`: a tenant's bill, or a period's finalization, offline from the ledger.
//!
//! It loads the configured metering plugin itself (no gateway needs to run) and asks it
//! through the same ops the API uses, so the bytes are those `GET /v1/bill` would serve.

use skyport_plugin_host::Plugins as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use skyport_plugin_api::sdk::CallContext;

use skyport_core::metrics::Metrics;
use skyport_plugin_host::PluginRegistry;

/// `skyport bill ...`.
#[derive(Debug, Args)]
pub(super) struct BillArgs {
    /// What to do (default: print a bill).
    #[command(subcommand)]
    command: Option<BillCommand>,
    /// Tenant whose bill to print.
    #[arg(long)]
    tenant: Option<String>,
    /// Billing period, YYYY-MM (default: the current one).
    #[arg(long)]
    period: Option<String>,
    /// Only this department's lines.
    #[arg(long)]
    dept: Option<String>,
    /// json, focus or csr.
    #[arg(long, default_value = "json")]
    format: String,
    /// Configuration file (default: the embedded configuration).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// State directory (overrides server.state_dir).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// The metering plugin instance to use.
    #[arg(long, global = true, default_value = "metering")]
    plugin: String,
}

#[derive(Debug, Subcommand)]
enum BillCommand {
    /// Freeze a period that has ended: its bill never changes afterwards, and late events
    /// for it become corrections in the open period.
    Finalize {
        /// The period, YYYY-MM.
        #[arg(long)]
        period: String,
    },
}

/// Runs `skyport bill`.
pub(super) fn run(args: BillArgs) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.as_deref(), args.state_dir.as_deref())?;
    let plugin_config: Vec<_> = config
        .plugins
        .iter()
        .filter(|p| p.name.as_deref() == Some(args.plugin.as_str()))
        .cloned()
        .collect();
    if plugin_config.is_empty() {
        anyhow::bail!("no plugin named '{}' in the configuration", args.plugin);
    }
    let (op, params) = match &args.command {
        Some(BillCommand::Finalize { period }) => ("period.finalize", json!({"period": period})),
        None => {
            let tenant = args
                .tenant
                .as_deref()
                .context("--tenant is required to print a bill")?;
            let mut params =
                json!({"tenant": tenant, "department": args.dept, "format": args.format});
            if let Some(period) = &args.period {
                params["period"] = json!(period);
            }
            ("bill.render", params)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let registry = PluginRegistry::load_all(
            &plugin_config,
            &super::serve::plugin_dir(),
            &config.server.state_dir,
            &super::serve::plugin_host_exe()?,
            Arc::new(Metrics::new()),
            skyport_core::clock::SystemClock::shared(),
        )
        .await
        .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
        if let Some(refusal) = registry.refusals().first() {
            anyhow::bail!("{refusal}");
        }
        let answer = registry
            .call(
                &args.plugin,
                op,
                1,
                params,
                CallContext::default(),
                Duration::from_secs(300),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.public))?;
        match op {
            "bill.render" => print!("{}", answer["body"].as_str().unwrap_or_default()),
            _ => println!("{answer}"),
        }
        registry.shutdown().await;
        Ok(0)
    })
}
