//! `skyport sla`: the providers' service level for a month, read from the gateway's
//! storage, so it works whether or not a gateway is running (minutes a running gateway
//! has not written yet, at most the last one, are not in it).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use skyport_core::clock::SystemClock;
use skyport_domain::sla::{SlaRecorder, SlaReport, SlaService};

/// `skyport sla`.
#[derive(Debug, Args)]
pub(super) struct SlaArgs {
    /// The month, YYYY-MM (default: the current one).
    #[arg(long)]
    period: Option<String>,
    /// `table` or `json` (what `GET /admin/sla` answers).
    #[arg(long, default_value = "table")]
    format: String,
    /// Configuration file (default: the embedded configuration).
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (overrides server.state_dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// Runs `skyport sla`: exit 0, or 3 when a provider region is below its target.
pub(super) fn run(args: SlaArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        matches!(args.format.as_str(), "table" | "json"),
        "--format is table or json"
    );
    let config = super::load_config(args.config.as_deref(), args.state_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let store = crate::storage::Stores::sla(&config).await?;
        let clock = SystemClock::shared();
        let recorder = Arc::new(SlaRecorder::new(store, "cli".into(), clock.clone()));
        SlaService::new(recorder, config.sla.availability_target, clock)
            .report(args.period.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.public))
    })?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(if report.sites.iter().any(|s| s.breached) {
        3
    } else {
        0
    })
}

/// The report as a table, one line per provider region.
fn table(report: &SlaReport) -> String {
    let mut out = format!(
        "SLA {} (availability target {}%)\n{:<16} {:<16} {:>12} {:>9} {:>9} {:>10} {:>8} {:>8}  {}\n",
        report.period,
        report.target,
        "PROVIDER",
        "REGION",
        "AVAILABILITY",
        "MINUTES",
        "CALLS",
        "ERRORS",
        "P50 MS",
        "P99 MS",
        "STATUS"
    );
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for s in &report.sites {
        out.push_str(&format!(
            "{:<16} {:<16} {:>12} {:>9} {:>9} {:>10} {:>8} {:>8}  {}\n",
            s.provider,
            s.region,
            or_dash(s.availability.map(|a| format!("{a}%"))),
            s.minutes_observed,
            s.calls,
            or_dash(s.error_rate.map(|e| format!("{e}%"))),
            or_dash(s.p50_ms.map(|v| v.to_string())),
            or_dash(s.p99_ms.map(|v| v.to_string())),
            if s.breached { "BREACHED" } else { "ok" }
        ));
    }
    if report.sites.is_empty() {
        out.push_str("(no provider observed in this month)\n");
    }
    out
}
